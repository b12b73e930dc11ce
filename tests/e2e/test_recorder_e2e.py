"""End-to-end tests: OTelSnapshotGenerator exporting through the SDK's OTLP exporters to a real collector."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from symphony_otel import OTelSnapshotGenerator
from symphony_otel.recorder import generator as generator_module
from symphony_otel.recorder.instruments import INSTRUMENT_SPECS
from tests.metrics_helpers import FIXTURE_15, load_snapshot, retry, snapshot, worker
from tests.support.exporters import log_exporter, metric_exporter, span_exporter
from tests.support.otlp_receiver import OtlpReceiver, Record

pytestmark = pytest.mark.e2e

PROTOCOLS = ["grpc", "http/protobuf"]
ORCHESTRATOR = "e2e-orchestrator"
# 1515 s before fixture 15's primary window resets at 1796416439.
WALL_NOW = 1796414924.0

SPECS = {spec.name: spec for spec in INSTRUMENT_SPECS}

Key = tuple[str, frozenset[tuple[str, Any]]]


def key(name: str, attributes: dict[str, Any] | None = None) -> Key:
    return name, frozenset({"symphony.orchestrator.name": ORCHESTRATOR, **(attributes or {})}.items())


def window(name: str) -> dict[str, Any]:
    return {"symphony.rate_limit.window": name, "symphony.rate_limit.id": "codex"}


def worker_tokens(identifier: str, token_type: str) -> dict[str, Any]:
    return {"symphony.issue.identifier": identifier, "gen_ai.token.type": token_type}


# Fixture 15 by hand: 3 running, 3 retrying, rate limits 30 % and 7.5 % used,
# neither a poll interval nor a concurrency limit in the body.
FIXTURE_15_METRICS: dict[Key, Any] = {
    key("symphony.workers.running"): 3,
    key("symphony.workers.overflow"): 0,
    key("symphony.retry_queue.size"): 3,
    key("symphony.poll.in_progress"): 0,
    key("symphony.snapshot.age"): 0.0,
    key("symphony.rate_limit.utilization", window("primary")): 0.3,
    key("symphony.rate_limit.utilization", window("secondary")): 0.075,
    key("symphony.rate_limit.reset", window("primary")): 1515.0,
    key("symphony.rate_limit.reset", window("secondary")): 257115.0,
    key("symphony.worker.tokens", worker_tokens("FAKE-101", "input")): 69461,
    key("symphony.worker.tokens", worker_tokens("FAKE-101", "output")): 10686,
    key("symphony.worker.tokens", worker_tokens("FAKE-102", "input")): 65654,
    key("symphony.worker.tokens", worker_tokens("FAKE-102", "output")): 10122,
    key("symphony.worker.tokens", worker_tokens("FAKE-103", "input")): 70962,
    key("symphony.worker.tokens", worker_tokens("FAKE-103", "output")): 11658,
    key("symphony.worker.turns", {"symphony.issue.identifier": "FAKE-101"}): 2,
    key("symphony.worker.turns", {"symphony.issue.identifier": "FAKE-102"}): 2,
    key("symphony.worker.turns", {"symphony.issue.identifier": "FAKE-103"}): 2,
    key("symphony.tokens", {"gen_ai.token.type": "input"}): 259485,
    key("symphony.tokens", {"gen_ai.token.type": "output"}): 40334,
    key("symphony.agent.runtime"): 37,
    key("symphony.issues.completed"): 0,
    key("symphony.snapshot.payload.dropped_rows"): 0,
    key("symphony.snapshot.record_errors"): 0,
}

FIXTURE_15_EVENT_NUMBERS = {
    "symphony.snapshot.truncated": False,
    "symphony.snapshot.dropped_rows": 0,
    "symphony.workers.running": 3,
    "symphony.retry_queue.size": 3,
    "symphony.issues.completed": 0,
    "symphony.tokens.input": 259485,
    "symphony.tokens.output": 40334,
}


class FixedClock:
    """Stands in for the ``time`` module inside the generator module."""

    @staticmethod
    def monotonic() -> float:
        return 500.0

    @staticmethod
    def time() -> float:
        return WALL_NOW


@dataclass
class Pipeline:
    """One set of SDK providers that export to the receiver; spans are also kept in memory."""

    meter_provider: MeterProvider
    tracer_provider: TracerProvider
    logger_provider: LoggerProvider
    local_spans: InMemorySpanExporter

    def generator(self, **settings: Any) -> OTelSnapshotGenerator:
        return OTelSnapshotGenerator(
            meter_provider=self.meter_provider,
            tracer_provider=self.tracer_provider,
            logger_provider=self.logger_provider,
            orchestrator_name=ORCHESTRATOR,
            **settings,
        )


@contextmanager
def pipeline(receiver: OtlpReceiver, protocol: str) -> Iterator[Pipeline]:
    """Yield providers exporting over ``protocol``; leaving the block shuts them down, which exports."""
    resource = Resource.create({"service.name": "symphony-otel-e2e"})
    # The long interval leaves shutdown()'s final collection as the only metric export.
    reader = PeriodicExportingMetricReader(metric_exporter(receiver, protocol), export_interval_millis=60_000)
    meter_provider = MeterProvider(metric_readers=[reader], resource=resource)
    local_spans = InMemorySpanExporter()
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter(receiver, protocol)))
    tracer_provider.add_span_processor(SimpleSpanProcessor(local_spans))
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(log_exporter(receiver, protocol)))
    try:
        yield Pipeline(meter_provider, tracer_provider, logger_provider, local_spans)
    finally:
        tracer_provider.shutdown()
        logger_provider.shutdown()
        meter_provider.shutdown()


def wait_for_points(receiver: OtlpReceiver, expected: set[Key], timeout: float = 10.0) -> dict[Key, Any]:
    """Poll the receiver until every expected data point of the recorder's scope has arrived."""
    deadline = time.monotonic() + timeout
    while True:
        points: dict[Key, list[Record]] = {}
        for record in receiver.metric_points():
            if record["scope"] == "symphony_otel":
                points.setdefault((record["name"], frozenset(record["attributes"].items())), []).append(record)
        if expected <= points.keys() or time.monotonic() >= deadline:
            return points
        time.sleep(0.05)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_fixture_15_metrics_arrive(
    otlp_receiver: OtlpReceiver, protocol: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(generator_module, "time", FixedClock)

    with pipeline(otlp_receiver, protocol) as providers:
        generator = providers.generator()
        generator.record(load_snapshot(FIXTURE_15))

    arrived = wait_for_points(otlp_receiver, set(FIXTURE_15_METRICS))

    assert set(arrived) == set(FIXTURE_15_METRICS)
    for point_key, records in arrived.items():
        name = point_key[0]
        # A point may arrive more than once, but always with one value.
        assert {json.dumps(record["value"]) for record in records} == {json.dumps(FIXTURE_15_METRICS[point_key])}, name
        record = records[0]
        assert type(record["value"]) is type(FIXTURE_15_METRICS[point_key]), name
        spec = SPECS[name]
        assert (record["unit"], record["description"]) == (spec.unit, spec.description)
        if spec.kind == "counter":
            assert (record["type"], record["is_monotonic"]) == ("sum", True), name
            assert record["aggregation_temporality"] == "cumulative"
        else:
            assert record["type"] == "gauge", name
        assert record["resource"]["service.name"] == "symphony-otel-e2e"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_fixture_15_event_arrives_exact(otlp_receiver: OtlpReceiver, protocol: str) -> None:
    snap = load_snapshot(FIXTURE_15)

    with pipeline(otlp_receiver, protocol) as providers:
        generator = providers.generator(event_mode="both")
        generator.record(snap)
        (local,) = providers.local_spans.get_finished_spans()

    span = otlp_receiver.wait_for_span("symphony.snapshot")
    log = otlp_receiver.wait_for_log_record("symphony.snapshot")

    (event,) = span["events"]
    assert event["name"] == "symphony.snapshot"
    sent = local.events[0].attributes["symphony.snapshot.json"]
    received = event["attributes"]["symphony.snapshot.json"]
    assert received.encode("utf-8") == sent.encode("utf-8")
    assert len(received.encode("utf-8")) == 4329
    assert json.loads(received) == snap.to_dict()
    numbers = {name: value for name, value in event["attributes"].items() if name != "symphony.snapshot.json"}
    assert numbers == FIXTURE_15_EVENT_NUMBERS
    assert type(numbers["symphony.tokens.input"]) is int

    assert span["scope"] == "symphony_otel"
    assert span["span_kind"] == "internal"
    assert log["attributes"] == event["attributes"]
    assert log["trace_id"] == span["trace_id"]
    assert log["span_id"] == span["span_id"]
    assert log["scope"] == "symphony_otel"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_truncated_payload_arrives_exact(otlp_receiver: OtlpReceiver, protocol: str) -> None:
    error = "Zustand geändert — 東京の状態 🚀 \ud800 password=hunter2 \x00 "
    snap = snapshot(
        running=[worker(f"FAKE-{n}", input_tokens=n, turns=1) for n in range(50)],
        retrying=[retry(f"FAKE-{1000 + n}", attempt=n, error=error * 8) for n in range(150)],
        rate_limits={"limit_id": "codex", "primary": {"used_percent": 12.5, "resets_in_seconds": 60}},
    )

    with pipeline(otlp_receiver, protocol) as providers:
        generator = providers.generator()
        generator.record(snap)
        (local,) = providers.local_spans.get_finished_spans()

    span = otlp_receiver.wait_for_span("symphony.snapshot")

    (event,) = span["events"]
    sent = local.events[0].attributes["symphony.snapshot.json"]
    received = event["attributes"]["symphony.snapshot.json"]
    data = received.encode("utf-8")
    assert data == sent.encode("utf-8")
    assert 30_000 < len(data) <= 32 * 1024
    body = json.loads(data)
    assert len(body["running"]) == 50
    kept_retrying = len(body["retrying"])
    assert body["dropped_rows"] == {"running": 0, "retrying": 150 - kept_retrying}
    assert event["attributes"]["symphony.snapshot.dropped_rows"] == 150 - kept_retrying
    assert event["attributes"]["symphony.snapshot.truncated"] is True
    assert "hunter2" not in received
    assert "\\u" not in received.replace("\\u0000", "")
    assert body["retrying"][0]["error"].startswith("Zustand geändert — 東京の状態 🚀 \ufffd password=[REDACTED] \x00")
