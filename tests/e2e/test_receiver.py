"""Self-tests of the OTLP receiver harness, fed by the plain OpenTelemetry SDK exporters."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from opentelemetry._logs import SeverityNumber
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Status, StatusCode
from opentelemetry.util.types import AttributeValue

from tests.support.exporters import log_exporter, metric_exporter, span_exporter
from tests.support.otlp_receiver import OtlpReceiver, OtlpReceiverError

pytestmark = pytest.mark.e2e

PROTOCOLS = ["grpc", "http/protobuf"]
SCOPE = "receiver.self_test"


@contextmanager
def tracer_provider(receiver: OtlpReceiver, protocol: str) -> Iterator[TracerProvider]:
    provider = TracerProvider(resource=Resource.create({"service.name": "receiver-self-test"}))
    provider.add_span_processor(BatchSpanProcessor(span_exporter(receiver, protocol)))
    try:
        yield provider
    finally:
        provider.shutdown()


def json_document_of_size(size_bytes: int) -> str:
    """Build a JSON document with non-ASCII text, escapes and emoji that is exactly size_bytes of UTF-8."""
    line = 'Grüße aus Zürich — 東京の状態 🚀 "quoted" \\ back\tslash\n'
    line_bytes = len(json.dumps(line, ensure_ascii=False)[1:-1].encode("utf-8"))
    # Each list item costs its escaped bytes plus two quotes, a comma and a space.
    document = {"lines": [line] * ((size_bytes - 100) // (line_bytes + 4)), "padding": ""}
    missing = size_bytes - len(json.dumps(document, ensure_ascii=False).encode("utf-8"))
    document["padding"] = "x" * missing
    text = json.dumps(document, ensure_ascii=False)
    assert len(text.encode("utf-8")) == size_bytes
    return text


def accepts_connections(port_url: str) -> bool:
    port = int(port_url.rsplit(":", 1)[1])
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_span_event_large_json_attribute_exact(otlp_receiver: OtlpReceiver, protocol: str) -> None:
    payload = json_document_of_size(40_000)
    span_attributes: dict[str, AttributeValue] = {
        "flag": True,
        "count": 7,
        "ratio": 0.25,
        "whole_float": 2.0,
        "labels": ["a", "b"],
        "numbers": [1, 2, 3],
    }

    with tracer_provider(otlp_receiver, protocol) as provider:
        tracer = provider.get_tracer(SCOPE, "1.0")
        with tracer.start_as_current_span("parent") as parent:
            with tracer.start_as_current_span("child", attributes=span_attributes) as child:
                child.add_event("snapshot", {"payload": payload, "size": 40_000})
                child.set_status(Status(StatusCode.ERROR, "failed on purpose"))

    span = otlp_receiver.wait_for_span("child")
    event = span["events"][0]
    assert event["name"] == "snapshot"
    assert len(event["attributes"]["payload"].encode("utf-8")) == 40_000
    assert event["attributes"]["payload"] == payload
    assert event["attributes"]["size"] == 40_000

    attributes = span["attributes"]
    assert attributes == span_attributes
    assert type(attributes["flag"]) is bool
    assert type(attributes["count"]) is int
    assert type(attributes["whole_float"]) is float

    assert span["resource"]["service.name"] == "receiver-self-test"
    assert span["scope"] == SCOPE
    assert span["scope_version"] == "1.0"
    assert span["trace_id"] == format(child.get_span_context().trace_id, "032x")
    assert span["span_id"] == format(child.get_span_context().span_id, "016x")
    assert span["parent_span_id"] == format(parent.get_span_context().span_id, "016x")
    assert span["status"] == {"code": "error", "message": "failed on purpose"}

    root = otlp_receiver.wait_for_span("parent")
    assert root["parent_span_id"] is None


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_metrics_gauge_and_counter_arrive(otlp_receiver: OtlpReceiver, protocol: str) -> None:
    def observe_depth(options: CallbackOptions) -> list[Observation]:
        return [Observation(2.5, {"queue": "main"}), Observation(7, {"queue": "side"})]

    # The long interval leaves shutdown()'s final collection as the only export.
    reader = PeriodicExportingMetricReader(
        metric_exporter(otlp_receiver, protocol), export_interval_millis=60_000
    )
    provider = MeterProvider(
        metric_readers=[reader], resource=Resource.create({"service.name": "receiver-self-test"})
    )
    try:
        meter = provider.get_meter(SCOPE)
        meter.create_observable_gauge(
            "self_test.queue.depth", callbacks=[observe_depth], unit="{item}", description="Items waiting"
        )
        counter = meter.create_counter("self_test.requests", unit="{request}", description="Requests handled")
        counter.add(3, {"outcome": "ok", "retried": False})
    finally:
        provider.shutdown()

    gauge = otlp_receiver.wait_for_metric(
        "self_test.queue.depth", lambda point: point["attributes"]["queue"] == "main"
    )
    assert gauge["type"] == "gauge"
    assert gauge["value"] == 2.5
    assert gauge["unit"] == "{item}"
    assert gauge["description"] == "Items waiting"
    assert gauge["is_monotonic"] is None
    assert gauge["scope"] == SCOPE
    assert gauge["resource"]["service.name"] == "receiver-self-test"

    int_gauge = otlp_receiver.wait_for_metric(
        "self_test.queue.depth", lambda point: point["attributes"]["queue"] == "side"
    )
    assert int_gauge["value"] == 7
    assert type(int_gauge["value"]) is int

    requests = otlp_receiver.wait_for_metric("self_test.requests")
    assert requests["type"] == "sum"
    assert requests["is_monotonic"] is True
    assert requests["aggregation_temporality"] == "cumulative"
    assert requests["value"] == 3
    assert type(requests["value"]) is int
    assert requests["unit"] == "{request}"
    assert requests["attributes"] == {"outcome": "ok", "retried": False}
    assert requests["start_time_unix_nano"] <= requests["time_unix_nano"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_log_record_event_arrives(otlp_receiver: OtlpReceiver, protocol: str) -> None:
    provider = LoggerProvider(resource=Resource.create({"service.name": "receiver-self-test"}))
    provider.add_log_record_processor(BatchLogRecordProcessor(log_exporter(otlp_receiver, protocol)))
    tracer = TracerProvider().get_tracer(SCOPE)
    try:
        with tracer.start_as_current_span("logging") as span:
            provider.get_logger(SCOPE).emit(
                body={"message": "Zustand geändert", "items": [1, 2]},
                attributes={"attempt": 2, "final": True},
                event_name="self_test.state_changed",
                severity_number=SeverityNumber.WARN,
                severity_text="WARN",
            )
    finally:
        provider.shutdown()

    record = otlp_receiver.wait_for_log_record("self_test.state_changed")
    assert record["body"] == {"message": "Zustand geändert", "items": [1, 2]}
    assert record["attributes"] == {"attempt": 2, "final": True}
    assert record["severity_number"] == SeverityNumber.WARN.value
    assert record["severity_text"] == "WARN"
    assert record["scope"] == SCOPE
    assert record["trace_id"] == format(span.get_span_context().trace_id, "032x")
    assert record["span_id"] == format(span.get_span_context().span_id, "016x")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_receiver_restart_same_ports(otlp_receiver: OtlpReceiver, protocol: str) -> None:
    endpoints = (otlp_receiver.grpc_endpoint, otlp_receiver.http_endpoint)
    first_pid = otlp_receiver.pid
    assert first_pid is not None

    # One provider spans the outage, as in an application whose collector restarts.
    with tracer_provider(otlp_receiver, protocol) as provider:
        tracer = provider.get_tracer(SCOPE)
        with tracer.start_as_current_span("before-outage"):
            pass
        assert provider.force_flush()
        otlp_receiver.wait_for_span("before-outage")

        otlp_receiver.stop()
        assert not otlp_receiver.is_running
        assert otlp_receiver.pid is None
        with pytest.raises(ProcessLookupError):
            os.kill(first_pid, 0)
        assert not accepts_connections(otlp_receiver.grpc_endpoint)
        assert not accepts_connections(otlp_receiver.http_endpoint)

        otlp_receiver.start()
        assert (otlp_receiver.grpc_endpoint, otlp_receiver.http_endpoint) == endpoints
        with tracer.start_as_current_span("after-outage"):
            pass
        provider.force_flush()
        otlp_receiver.wait_for_span("after-outage")

    assert [span["name"] for span in otlp_receiver.spans()] == ["before-outage", "after-outage"]


def test_receiver_restart_port_taken_raises(otlp_receiver: OtlpReceiver) -> None:
    port = int(otlp_receiver.grpc_endpoint.rsplit(":", 1)[1])
    otlp_receiver.stop()

    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        with pytest.raises(OtlpReceiverError, match="exited with status"):
            otlp_receiver.start()

    assert not otlp_receiver.is_running


def test_wait_for_timeout_lists_arrivals(otlp_receiver: OtlpReceiver) -> None:
    with tracer_provider(otlp_receiver, "grpc") as provider:
        with provider.get_tracer(SCOPE).start_as_current_span("only-span"):
            pass
    otlp_receiver.wait_for_span("only-span")

    with pytest.raises(AssertionError, match="1 span record") as failure:
        otlp_receiver.wait_for_span("missing-span", timeout=0.3)
    assert "only-span" in str(failure.value)


def test_receiver_missing_binary_names_extras(tmp_path: Path) -> None:
    receiver = OtlpReceiver(tmp_path, rotel_agent=tmp_path / "no-such-rotel-agent")

    with pytest.raises(OtlpReceiverError, match=r"pip install -e '\.\[test\]'"):
        receiver.start()
    assert not receiver.is_running
