"""Tests of the sinks module: OTLP/JSON files, drop counting and the once-per-outage log.

The OTLP/JSON lines are parsed back into the ``opentelemetry.proto`` export
requests with protobuf's own JSON parser, after their hex ids are turned back
into the base64 that protobuf's JSON mapping expects.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.json_format import MessageToDict, Parse
from google.protobuf.message import Message
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from symphony_otel import OTelSnapshotGenerator
from symphony_otel.pipeline import build_pipeline
from symphony_otel.sinks import (
    CountingBatchSpanProcessor,
    CountingSpanExporter,
    DropCounter,
    OtlpJsonFileSpanExporter,
)
from tests.reliability.conftest import SilentServer, closed_port

HEX_ID_FIELDS = {"traceId": 32, "spanId": 16, "parentSpanId": 16}
LOWER_CAMEL_CASE = re.compile(r"\A[a-z][a-zA-Z0-9]*\Z")
REQUESTS: dict[str, type[Message]] = {
    "traces.jsonl": ExportTraceServiceRequest,
    "metrics.jsonl": ExportMetricsServiceRequest,
    "logs.jsonl": ExportLogsServiceRequest,
}
STATE: dict[str, Any] = {
    "running": {
        "issue-1": {"identifier": "SYM-1", "turn_count": 2, "codex_input_tokens": 5, "last_codex_event": "Grüße 🚀"},
        "issue-2": {"identifier": "SYM-2", "turn_count": 1},
    },
    "retry_attempts": {"issue-3": {"identifier": "SYM-3", "attempt": 2, "error": "exit 1"}},
    "completed": {"issue-0"},
    "codex_totals": {"input_tokens": 5, "output_tokens": 7, "seconds_running": 1.5},
    "codex_rate_limits": {"primary": {"used_percent": 40.0, "resets_in_seconds": 30}},
    "poll_interval_ms": 1000,
    "max_concurrent_agents": 2,
}


@pytest.fixture
def file_sink(tmp_path: Path) -> Iterator[Path]:
    """Record two snapshots as spans, metrics and log events into OTLP/JSON files; yield the folder."""
    pipeline = build_pipeline(sink="file", output_dir=tmp_path, metric_export_interval=60.0, environ={})
    generator = OTelSnapshotGenerator(
        meter_provider=pipeline.meter_provider,
        tracer_provider=pipeline.tracer_provider,
        logger_provider=pipeline.logger_provider,
        event_mode="both",
    )
    tracer = pipeline.tracer_provider.get_tracer("sinks-test")
    with tracer.start_as_current_span("poll"), tracer.start_as_current_span("poll.snapshot"):
        generator.generate(STATE)
    generator.generate(STATE)
    assert pipeline.shutdown()
    yield tmp_path


def lines_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def walk(value: Any) -> Iterator[tuple[str, Any]]:
    """Yield every (key, value) pair of nested dicts and lists."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield key, item
            yield from walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk(item)


def hex_ids_to_base64(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            key: base64.b64encode(bytes.fromhex(item)).decode("ascii")
            if key in HEX_ID_FIELDS and isinstance(item, str)
            else hex_ids_to_base64(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [hex_ids_to_base64(item) for item in value]
    return value


# --- OTLP/JSON files ------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_file_sink_one_request_per_line(file_sink: Path, name: str) -> None:
    top_key = {"traces.jsonl": "resourceSpans", "metrics.jsonl": "resourceMetrics", "logs.jsonl": "resourceLogs"}
    requests = lines_of(file_sink / name)

    assert requests
    assert all(list(request) == [top_key[name]] for request in requests)


def test_file_sink_ids_are_hex(file_sink: Path) -> None:
    ids = [
        (key, value)
        for name in ("traces.jsonl", "logs.jsonl")
        for request in lines_of(file_sink / name)
        for key, value in walk(request)
        if key in HEX_ID_FIELDS
    ]

    assert {key for key, _value in ids} == set(HEX_ID_FIELDS)
    for key, value in ids:
        assert re.fullmatch(rf"[0-9a-f]{{{HEX_ID_FIELDS[key]}}}", value), (key, value)


@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_file_sink_keys_lower_camel_case(file_sink: Path, name: str) -> None:
    keys = {key for request in lines_of(file_sink / name) for key, _value in walk(request)}

    assert keys
    assert sorted(key for key in keys if not LOWER_CAMEL_CASE.match(key)) == []


def test_file_sink_enums_are_integers(file_sink: Path) -> None:
    enums = {
        key: value
        for name in sorted(REQUESTS)
        for request in lines_of(file_sink / name)
        for key, value in walk(request)
        if key in ("kind", "aggregationTemporality", "severityNumber")
    }

    assert set(enums) == {"kind", "aggregationTemporality", "severityNumber"}
    assert all(type(value) is int for value in enums.values()), enums


@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_file_sink_parses_into_export_requests(file_sink: Path, name: str) -> None:
    for line in (file_sink / name).read_text(encoding="utf-8").splitlines():
        document = json.loads(line)
        request = Parse(json.dumps(hex_ids_to_base64(document)), REQUESTS[name]())

        again = MessageToDict(request, use_integers_for_enums=True)
        assert hex_ids_to_base64(document) == again


def test_file_sink_keeps_span_tree_and_payload(file_sink: Path) -> None:
    spans = [
        span
        for request in lines_of(file_sink / "traces.jsonl")
        for resource_spans in request["resourceSpans"]
        for scope_spans in resource_spans["scopeSpans"]
        for span in scope_spans["spans"]
    ]
    by_name = {span["name"]: span for span in spans if span["name"] != "symphony.snapshot"}

    assert by_name["poll.snapshot"]["parentSpanId"] == by_name["poll"]["spanId"]
    assert by_name["poll.snapshot"]["traceId"] == by_name["poll"]["traceId"]
    events = [event for span in spans for event in span.get("events", [])]
    assert len(events) == 2
    payload = next(
        attribute["value"]["stringValue"]
        for attribute in events[0]["attributes"]
        if attribute["key"] == "symphony.snapshot.json"
    )
    assert json.loads(payload)["running"][0]["last_codex_event"] == "Grüße 🚀"


def test_file_sink_appends_across_pipelines(tmp_path: Path) -> None:
    for _ in range(2):
        pipeline = build_pipeline(sink="file", output_dir=tmp_path, metric_export_interval=60.0, environ={})
        OTelSnapshotGenerator(
            meter_provider=pipeline.meter_provider, tracer_provider=pipeline.tracer_provider
        ).generate(STATE)
        assert pipeline.shutdown()

    assert len(lines_of(tmp_path / "traces.jsonl")) == 2


def test_file_exporter_after_shutdown_fails(tmp_path: Path) -> None:
    exporter = OtlpJsonFileSpanExporter(tmp_path / "traces.jsonl")
    exporter.shutdown()

    assert exporter.export([]) is SpanExportResult.FAILURE


def test_file_write_failure_counted_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    full_disk = Path("/dev/full")
    if not full_disk.exists():
        pytest.skip("/dev/full is not available on this platform")
    caplog.set_level(logging.INFO)
    counter = DropCounter("a full disk")
    exporter = CountingSpanExporter(OtlpJsonFileSpanExporter(full_disk), counter)
    provider = TracerProvider(shutdown_on_exit=False)
    spans: list[ReadableSpan] = []
    for name in ("first", "second", "third"):
        with provider.get_tracer("sinks-test").start_as_current_span(name) as span:
            pass
        spans.append(span)  # type: ignore[arg-type]

    results = [exporter.export([span]) for span in spans]

    assert results == [SpanExportResult.FAILURE] * 3
    assert counter.counts() == {"traces": 3}
    warnings = [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "No space left on device" in warnings[0]


# --- DropCounter -------------------------------------------------------------------------


def warning_messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]


def test_drop_counter_counts_per_signal() -> None:
    counter = DropCounter("the test")
    counter.failed("traces", 3)
    counter.failed("metrics", 10, "refused")
    counter.failed("traces", 2)
    counter.succeeded("traces")

    assert counter.counts() == {"traces": 5, "metrics": 10}


def test_drop_counter_logs_once_per_outage(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    counter = DropCounter("OTLP/gRPC to http://127.0.0.1:4317")
    for _ in range(5):
        counter.failed("traces", 64, "connection refused")

    assert warning_messages(caplog) == [
        (
            "Exporting traces failed (connection refused); 64 items are dropped. Later failures are counted, "
            "not logged, until an export succeeds. Destination: OTLP/gRPC to http://127.0.0.1:4317."
        )
    ]


def test_drop_counter_logs_recovery_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    counter = DropCounter("files")
    counter.failed("metrics", 10, "disk full")
    counter.failed("metrics", 15, "disk full")
    counter.succeeded("metrics")
    counter.succeeded("metrics")

    messages = warning_messages(caplog)
    assert len(messages) == 2
    assert messages[1] == (
        "Exporting metrics works again; 25 items were dropped during the outage. Destination: files."
    )


def test_drop_counter_quiet_without_outage(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    counter = DropCounter("files")
    counter.succeeded("traces")

    assert caplog.records == []
    assert counter.counts() == {}


def test_drop_counter_logs_each_outage(caplog: pytest.LogCaptureFixture) -> None:
    counter = DropCounter("files")
    for _ in range(2):
        counter.failed("logs", 1)
        counter.failed("logs", 1)
        counter.succeeded("logs")

    messages = warning_messages(caplog)
    assert [message.split(";")[0] for message in messages] == [
        "Exporting logs failed (no reason given)",
        "Exporting logs works again",
        "Exporting logs failed (no reason given)",
        "Exporting logs works again",
    ]
    assert counter.counts() == {"logs": 4}


def test_drop_counter_outages_per_signal(caplog: pytest.LogCaptureFixture) -> None:
    counter = DropCounter("files")
    counter.failed("traces", 1)
    counter.succeeded("metrics")
    counter.failed("traces", 1)

    assert len(warning_messages(caplog)) == 1


def test_drop_counter_redacts_and_shortens_reason(caplog: pytest.LogCaptureFixture) -> None:
    counter = DropCounter("files")
    counter.failed("traces", 1, "401 for token glpat-xZ8vK2mQ9nR4tW6yB1cD " + "x" * 1000)

    message = warning_messages(caplog)[0]
    assert "xZ8vK2mQ9nR4tW6yB1cD" not in message
    assert "[REDACTED]" in message
    assert len(message) < 600


def test_drop_counter_threads_count_exactly(caplog: pytest.LogCaptureFixture) -> None:
    counter = DropCounter("files")

    def fail_many() -> None:
        for _ in range(2000):
            counter.failed("traces", 1)

    threads = [threading.Thread(target=fail_many) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30.0)

    assert counter.counts() == {"traces": 16_000}
    assert len(warning_messages(caplog)) == 1


# --- Counting wrappers and processors ------------------------------------------------------


class RaisingExporter(SpanExporter):
    """An exporter that breaks its contract by raising."""

    def export(self, spans: Any) -> SpanExportResult:
        raise RuntimeError("broken exporter")

    def shutdown(self) -> None:
        """Nothing to release."""


def test_counting_exporter_counts_exception(caplog: pytest.LogCaptureFixture) -> None:
    counter = DropCounter("nowhere")
    exporter = CountingSpanExporter(RaisingExporter(), counter)

    assert exporter.export([object(), object()]) is SpanExportResult.FAILURE  # type: ignore[list-item]

    assert counter.counts() == {"traces": 2}
    assert "(the exporter raised RuntimeError)" in warning_messages(caplog)[0]


def test_counting_exporter_demotes_sdk_warnings(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    endpoint = f"http://127.0.0.1:{closed_port()}"
    pipeline = build_pipeline(
        otlp_endpoint=endpoint, protocol="grpc", export_timeout=0.5, metric_export_interval=60.0, environ={}
    )
    try:
        generator = OTelSnapshotGenerator(
            meter_provider=pipeline.meter_provider, tracer_provider=pipeline.tracer_provider
        )
        for _ in range(3):
            generator.generate(STATE)
            pipeline.force_flush(timeout=5.0)
    finally:
        pipeline.shutdown(timeout=5.0)

    sdk_records = [record for record in caplog.records if record.name.startswith("opentelemetry.exporter")]
    assert sdk_records, "the SDK's own records stay available at DEBUG"
    assert all(record.levelno == logging.DEBUG for record in sdk_records)
    warnings = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert {(record.name, record.getMessage().split(" (")[0]) for record in warnings} == {
        ("symphony_otel.sinks", "Exporting traces failed"),
        ("symphony_otel.sinks", "Exporting metrics failed"),
    }
    assert "StatusCode.UNAVAILABLE" in warnings[0].getMessage()
    assert pipeline.drops.counts()["traces"] == 3


def test_sdk_warnings_outside_counted_exports_kept(caplog: pytest.LogCaptureFixture) -> None:
    build_pipeline(sink="console", environ={}).shutdown(timeout=1.0)  # installs the filter
    logging.getLogger("opentelemetry.exporter.otlp.proto.grpc.exporter").warning("not inside an export")

    assert warning_messages(caplog) == ["not inside an export"]


def test_batch_processor_counts_queue_drops(
    caplog: pytest.LogCaptureFixture, silent_servers: Callable[[], SilentServer]
) -> None:
    server = silent_servers()
    counter = DropCounter("a silent receiver")
    processor = CountingBatchSpanProcessor(
        CountingSpanExporter(OTLPSpanExporter(endpoint=server.endpoint, timeout=0.3), counter),
        counter,
        max_queue_size=8,
        max_export_batch_size=8,
        schedule_delay_millis=60_000,
    )
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("sinks-test")
    for index in range(100):
        with tracer.start_as_current_span(f"span-{index}"):
            pass
    queue_drops = counter.counts()["traces"]

    provider.shutdown()

    assert queue_drops >= 100 - 3 * 8  # at most three batches queued or in flight
    assert counter.counts() == {"traces": 100}
    messages = warning_messages(caplog)
    assert len(messages) == 1, messages
    assert "the export queue is full" in messages[0]


@pytest.fixture
def silent_servers() -> Iterator[Callable[[], SilentServer]]:
    """Yield a factory of silent servers; each is stopped after the test."""
    servers: list[SilentServer] = []

    def start() -> SilentServer:
        server = SilentServer()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()

