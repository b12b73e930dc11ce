"""Tests of the pipeline module: sink choice, settings and their precedence, resource, export, shutdown.

Settings come from ``environ=`` dicts, so the tests never change ``os.environ``.
Exports go to real receivers on 127.0.0.1: rotel-agent for OTLP, and a small
HTTP server that records each request's path and headers.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from symphony_otel import OTelSnapshotGenerator
from symphony_otel.pipeline import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_EXPORT_TIMEOUT,
    SHUTDOWN_MARGIN,
    TelemetryPipeline,
    build_pipeline,
    export_timeout_from_env,
    otlp_endpoint_configured,
)
from tests.support.otlp_receiver import OtlpReceiver

ENDPOINT_VARIABLES = [
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
]
UNUSED_ENDPOINT = "http://127.0.0.1:9"  # nothing is exported in the tests that use it
SNAPSHOT_STATE: dict[str, Any] = {
    "running": {"issue-1": {"identifier": "SYM-1", "turn_count": 2, "codex_input_tokens": 5}},
    "completed": {"issue-0"},
    "poll_interval_ms": 1000,
    "max_concurrent_agents": 2,
}


@pytest.fixture
def pipelines() -> Iterator[Callable[..., TelemetryPipeline]]:
    """Yield ``build_pipeline``; every pipeline it built is shut down after the test."""
    built: list[TelemetryPipeline] = []

    def build(**kwargs: Any) -> TelemetryPipeline:
        pipeline = build_pipeline(**kwargs)
        built.append(pipeline)
        return pipeline

    yield build
    for pipeline in built:
        pipeline.shutdown(timeout=2.0)


@pytest.fixture
def otlp_receiver(tmp_path: Path) -> Iterator[OtlpReceiver]:
    """Yield a started rotel-agent receiver; it is stopped after the test."""
    with OtlpReceiver(tmp_path / "otlp-receiver") as receiver:
        yield receiver


class _RecordingHandler(BaseHTTPRequestHandler):
    requests: list[tuple[str, dict[str, str]]]

    def do_POST(self) -> None:  # the name http.server calls
        length = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(length)
        self.requests.append((self.path, {key.lower(): value for key, value in self.headers.items()}))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # the base class's signature
        """Keep the test output quiet."""


@pytest.fixture
def http_requests() -> Iterator[tuple[str, list[tuple[str, dict[str, str]]]]]:
    """Yield the base URL of an OTLP/HTTP stand-in on 127.0.0.1 and the requests it received."""
    received: list[tuple[str, dict[str, str]]] = []
    handler = type("RecordingHandler", (_RecordingHandler,), {"requests": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5.0)


def generator_for(pipeline: TelemetryPipeline, **options: Any) -> OTelSnapshotGenerator:
    return OTelSnapshotGenerator(
        meter_provider=pipeline.meter_provider,
        tracer_provider=pipeline.tracer_provider,
        logger_provider=pipeline.logger_provider,
        **options,
    )


def span_counts_per_request(path: Path) -> list[int]:
    counts = []
    for line in path.read_text(encoding="utf-8").splitlines():
        request = json.loads(line)
        counts.append(
            sum(
                len(scope_spans["spans"])
                for resource_spans in request["resourceSpans"]
                for scope_spans in resource_spans["scopeSpans"]
            )
        )
    return counts


# --- Sink choice ----------------------------------------------------------------


def test_auto_sink_without_endpoint_writes_files(
    pipelines: Callable[..., TelemetryPipeline], tmp_path: Path
) -> None:
    pipeline = pipelines(output_dir=tmp_path, environ={})
    generator_for(pipeline).generate(SNAPSHOT_STATE)

    assert pipeline.shutdown()

    assert pipeline.description == f"OTLP/JSON files in {tmp_path.resolve()}"
    assert (tmp_path / "traces.jsonl").read_text(encoding="utf-8").count("\n") == 1
    assert (tmp_path / "metrics.jsonl").stat().st_size > 0


@pytest.mark.parametrize("variable", ENDPOINT_VARIABLES)
def test_auto_sink_with_endpoint_variable_uses_otlp(
    pipelines: Callable[..., TelemetryPipeline], tmp_path: Path, variable: str
) -> None:
    pipeline = pipelines(output_dir=tmp_path, environ={variable: UNUSED_ENDPOINT})

    assert pipeline.description.startswith("OTLP/HTTP to ")
    assert otlp_endpoint_configured({variable: UNUSED_ENDPOINT})
    assert not (tmp_path / "traces.jsonl").exists()


def test_auto_sink_with_endpoint_argument_uses_otlp(pipelines: Callable[..., TelemetryPipeline]) -> None:
    pipeline = pipelines(otlp_endpoint=UNUSED_ENDPOINT, environ={})

    assert pipeline.description == f"OTLP/HTTP to {UNUSED_ENDPOINT}"


def test_auto_sink_ignores_blank_endpoint_variable(
    pipelines: Callable[..., TelemetryPipeline], tmp_path: Path
) -> None:
    pipeline = pipelines(output_dir=tmp_path, environ={"OTEL_EXPORTER_OTLP_ENDPOINT": "  "})

    assert pipeline.description.startswith("OTLP/JSON files in ")
    assert not otlp_endpoint_configured({"OTEL_EXPORTER_OTLP_ENDPOINT": "  "})


def test_file_sink_ignores_endpoint_variable(pipelines: Callable[..., TelemetryPipeline], tmp_path: Path) -> None:
    pipeline = pipelines(sink="file", output_dir=tmp_path, environ={"OTEL_EXPORTER_OTLP_ENDPOINT": UNUSED_ENDPOINT})

    assert pipeline.description.startswith("OTLP/JSON files in ")


def test_invalid_sink_raises() -> None:
    with pytest.raises(ValueError, match=r"sink must be one of auto, otlp, file, console; got 'kafka'"):
        build_pipeline(sink="kafka", environ={})  # type: ignore[arg-type]


# --- Protocol -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("protocol", "environ", "label"),
    [
        (None, {}, "OTLP/HTTP"),
        (None, {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "OTLP/gRPC"),
        ("http/protobuf", {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "OTLP/HTTP"),
        ("grpc", {"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"}, "OTLP/gRPC"),
        (None, {"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"}, "OTLP/gRPC and OTLP/HTTP"),
        (
            None,
            {
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc",
                "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "grpc",
                "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL": "http/protobuf",
            },
            "OTLP/gRPC and OTLP/HTTP",
        ),
    ],
)
def test_protocol_precedence(
    pipelines: Callable[..., TelemetryPipeline], protocol: str | None, environ: dict[str, str], label: str
) -> None:
    pipeline = pipelines(otlp_endpoint=UNUSED_ENDPOINT, protocol=protocol, environ=environ)

    assert pipeline.description == f"{label} to {UNUSED_ENDPOINT}"


@pytest.mark.parametrize(
    ("protocol", "environ", "setting"),
    [
        ("http/json", {}, "protocol"),
        ("GRPC", {}, "protocol"),
        (None, {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "OTEL_EXPORTER_OTLP_PROTOCOL"),
        (None, {"OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "udp"}, "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"),
    ],
)
def test_invalid_protocol_names_setting(protocol: str | None, environ: dict[str, str], setting: str) -> None:
    value = protocol or next(iter(environ.values()))
    with pytest.raises(ValueError, match=rf"^{setting} must be grpc or http/protobuf, got '{value}'$"):
        build_pipeline(otlp_endpoint=UNUSED_ENDPOINT, protocol=protocol, environ=environ)


@pytest.mark.e2e
def test_per_signal_protocol_and_endpoint(
    otlp_receiver: OtlpReceiver, pipelines: Callable[..., TelemetryPipeline]
) -> None:
    # Traces over gRPC to the gRPC port; metrics and logs over HTTP to the
    # general endpoint, the HTTP port, with the signal paths appended.
    pipeline = pipelines(
        metric_export_interval=0.2,
        environ={
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.http_endpoint,
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": otlp_receiver.grpc_endpoint,
        },
    )
    generator_for(pipeline, event_mode="both").generate(SNAPSHOT_STATE)

    assert pipeline.shutdown()

    otlp_receiver.wait_for_span("symphony.snapshot")
    otlp_receiver.wait_for_metric("symphony.workers.running")
    otlp_receiver.wait_for_log_record("symphony.snapshot")
    assert pipeline.drops.counts() == {}


# --- Endpoints and headers --------------------------------------------------------


@pytest.mark.parametrize(
    ("otlp_endpoint", "environ", "path"),
    [
        ("{base}", {}, "/v1/traces"),
        ("{base}/", {}, "/v1/traces"),
        (None, {"OTEL_EXPORTER_OTLP_ENDPOINT": "{base}"}, "/v1/traces"),
        (
            None,
            {
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "{base}/custom/traces",
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "{base}/custom/metrics",
                "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "{base}/custom/logs",
            },
            "/custom/traces",
        ),
        (
            None,
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "{base}/unused", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "{base}/t"},
            "/t",
        ),
    ],
)
def test_http_endpoint_paths(
    http_requests: tuple[str, list[tuple[str, dict[str, str]]]],
    pipelines: Callable[..., TelemetryPipeline],
    otlp_endpoint: str | None,
    environ: dict[str, str],
    path: str,
) -> None:
    base, received = http_requests
    pipeline = pipelines(
        otlp_endpoint=otlp_endpoint.format(base=base) if otlp_endpoint else None,
        metric_export_interval=60.0,
        environ={name: value.format(base=base) for name, value in environ.items()},
    )
    generator_for(pipeline).generate(SNAPSHOT_STATE)

    assert pipeline.force_flush()

    assert path in [request_path for request_path, _headers in received]
    assert pipeline.drops.counts() == {}


def test_headers_read_from_environ(
    http_requests: tuple[str, list[tuple[str, dict[str, str]]]], pipelines: Callable[..., TelemetryPipeline]
) -> None:
    base, received = http_requests
    pipeline = pipelines(
        otlp_endpoint=base,
        metric_export_interval=60.0,
        environ={
            "OTEL_EXPORTER_OTLP_HEADERS": "x-team=agents,x-scope=all",
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "x-tenant=acme%20corp",
        },
    )
    generator_for(pipeline).generate(SNAPSHOT_STATE)

    assert pipeline.force_flush()

    headers = {path: request_headers for path, request_headers in received}
    assert headers["/v1/traces"]["x-tenant"] == "acme corp"
    assert "x-team" not in headers["/v1/traces"]  # the per-signal variable replaces the general one
    assert headers["/v1/metrics"]["x-team"] == "agents"
    assert headers["/v1/metrics"]["x-scope"] == "all"


def test_description_hides_endpoint_password(pipelines: Callable[..., TelemetryPipeline]) -> None:
    pipeline = pipelines(otlp_endpoint="http://deploy:hunter2-secret@127.0.0.1:9", environ={})

    assert pipeline.description == "OTLP/HTTP to http://deploy:REDACTED@127.0.0.1:9"


# --- Timeouts ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, {"traces": 10.0, "metrics": 10.0, "logs": 10.0}),
        ({"OTEL_EXPORTER_OTLP_TIMEOUT": "1500"}, {"traces": 1.5, "metrics": 1.5, "logs": 1.5}),
        (
            {"OTEL_EXPORTER_OTLP_TIMEOUT": "9000", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "250"},
            {"traces": 0.25, "metrics": 9.0, "logs": 9.0},
        ),
        ({"OTEL_EXPORTER_OTLP_LOGS_TIMEOUT": " 20000 "}, {"traces": 10.0, "metrics": 10.0, "logs": 20.0}),
        ({"OTEL_EXPORTER_OTLP_TIMEOUT": "0.5"}, {"traces": 0.0005, "metrics": 0.0005, "logs": 0.0005}),
    ],
)
def test_timeout_variables_read_as_milliseconds(environ: dict[str, str], expected: dict[str, float]) -> None:
    assert {signal: export_timeout_from_env(signal, environ) for signal in expected} == expected


@pytest.mark.parametrize("value", ["abc", "0", "-5", "inf", "nan", "10s"])
def test_invalid_timeout_variable_raises(value: str) -> None:
    message = rf"^OTEL_EXPORTER_OTLP_METRICS_TIMEOUT must be a finite, positive number of milliseconds, got '{value}'$"
    with pytest.raises(ValueError, match=message):
        build_pipeline(otlp_endpoint=UNUSED_ENDPOINT, environ={"OTEL_EXPORTER_OTLP_METRICS_TIMEOUT": value})


@pytest.mark.parametrize("value", [0, -1.0, math.nan, math.inf, True])
def test_invalid_export_timeout_argument_raises(value: float) -> None:
    with pytest.raises(ValueError, match=r"^export_timeout must be a finite, positive number of seconds"):
        build_pipeline(otlp_endpoint=UNUSED_ENDPOINT, export_timeout=value, environ={})


def test_export_timeout_argument_overrides_variables(pipelines: Callable[..., TelemetryPipeline]) -> None:
    pipeline = pipelines(
        otlp_endpoint=UNUSED_ENDPOINT, export_timeout=2.5, environ={"OTEL_EXPORTER_OTLP_TIMEOUT": "abc"}
    )

    assert pipeline.export_timeout == 2.5
    assert pipeline.default_timeout() == 2.5 + SHUTDOWN_MARGIN


def test_export_timeout_is_longest_signal(pipelines: Callable[..., TelemetryPipeline]) -> None:
    pipeline = pipelines(
        otlp_endpoint=UNUSED_ENDPOINT,
        environ={"OTEL_EXPORTER_OTLP_TIMEOUT": "1000", "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT": "3000"},
    )

    assert pipeline.export_timeout == 3.0


def test_file_sink_default_timeout(pipelines: Callable[..., TelemetryPipeline], tmp_path: Path) -> None:
    pipeline = pipelines(sink="file", output_dir=tmp_path, environ={})

    assert pipeline.default_timeout() == DEFAULT_EXPORT_TIMEOUT + SHUTDOWN_MARGIN


# --- Metric interval and batching -------------------------------------------------


def test_metric_interval_variable_read_as_milliseconds(
    pipelines: Callable[..., TelemetryPipeline], tmp_path: Path
) -> None:
    pipeline = pipelines(sink="file", output_dir=tmp_path, environ={"OTEL_METRIC_EXPORT_INTERVAL": "100"})
    generator_for(pipeline).generate(SNAPSHOT_STATE)
    metrics_file = tmp_path / "metrics.jsonl"

    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        if metrics_file.exists() and metrics_file.read_text(encoding="utf-8").count("\n") >= 3:
            break
        time.sleep(0.05)

    assert metrics_file.read_text(encoding="utf-8").count("\n") >= 3


@pytest.mark.parametrize("value", [0, -1, math.nan, True, "10"])
def test_invalid_metric_interval_argument_raises(value: Any) -> None:
    with pytest.raises(ValueError, match=r"^metric_export_interval must be a positive number of seconds"):
        build_pipeline(sink="console", metric_export_interval=value, environ={})


@pytest.mark.parametrize("value", ["abc", "0", "-100", "nan"])
def test_invalid_metric_interval_variable_raises(value: str) -> None:
    message = rf"^OTEL_METRIC_EXPORT_INTERVAL must be a finite, positive number of milliseconds, got '{value}'$"
    with pytest.raises(ValueError, match=message):
        build_pipeline(sink="console", environ={"OTEL_METRIC_EXPORT_INTERVAL": value})


def test_default_batch_size_bounds_requests(pipelines: Callable[..., TelemetryPipeline], tmp_path: Path) -> None:
    pipeline = pipelines(sink="file", output_dir=tmp_path, metric_export_interval=60.0, environ={})
    generator = generator_for(pipeline)
    for _ in range(200):
        generator.generate(SNAPSHOT_STATE)

    assert pipeline.shutdown()

    counts = span_counts_per_request(tmp_path / "traces.jsonl")
    assert sum(counts) == 200
    assert max(counts) == DEFAULT_BATCH_SIZE


def test_batch_size_variable_respected(pipelines: Callable[..., TelemetryPipeline], tmp_path: Path) -> None:
    pipeline = pipelines(
        sink="file",
        output_dir=tmp_path,
        metric_export_interval=60.0,
        environ={"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "10", "OTEL_BSP_SCHEDULE_DELAY": "60000"},
    )
    generator = generator_for(pipeline)
    for _ in range(35):
        generator.generate(SNAPSHOT_STATE)

    assert pipeline.shutdown()

    counts = span_counts_per_request(tmp_path / "traces.jsonl")
    assert sum(counts) == 35
    assert max(counts) == 10


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"OTEL_BSP_MAX_QUEUE_SIZE": "0"}, "OTEL_BSP_MAX_QUEUE_SIZE must be a positive integer, got '0'"),
        ({"OTEL_BLRP_MAX_QUEUE_SIZE": "many"}, "OTEL_BLRP_MAX_QUEUE_SIZE must be a positive integer, got 'many'"),
        (
            {"OTEL_BSP_SCHEDULE_DELAY": "-1"},
            "OTEL_BSP_SCHEDULE_DELAY must be a finite, positive number of milliseconds, got '-1'",
        ),
        (
            {"OTEL_BSP_MAX_QUEUE_SIZE": "32", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "64"},
            r"OTEL_BSP_MAX_EXPORT_BATCH_SIZE must not exceed OTEL_BSP_MAX_QUEUE_SIZE \(32\), got 64",
        ),
    ],
)
def test_invalid_batch_variable_raises(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=rf"^{message}$"):
        build_pipeline(sink="console", environ=environ)


def test_small_queue_lowers_batch_size(pipelines: Callable[..., TelemetryPipeline], tmp_path: Path) -> None:
    pipeline = pipelines(
        sink="file", output_dir=tmp_path, metric_export_interval=60.0, environ={"OTEL_BSP_MAX_QUEUE_SIZE": "16"}
    )
    generator = generator_for(pipeline)
    for _ in range(10):
        generator.generate(SNAPSHOT_STATE)

    assert pipeline.shutdown()

    assert sum(span_counts_per_request(tmp_path / "traces.jsonl")) == 10


# --- Resource ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "service_name"),
    [
        ({}, "symphony-otel"),
        ({"OTEL_RESOURCE_ATTRIBUTES": "service.name=from-attributes"}, "from-attributes"),
        ({"OTEL_SERVICE_NAME": "from-variable"}, "from-variable"),
        (
            {"OTEL_SERVICE_NAME": "from-variable", "OTEL_RESOURCE_ATTRIBUTES": "service.name=from-attributes"},
            "from-variable",
        ),
        ({"OTEL_SERVICE_NAME": "  ", "OTEL_RESOURCE_ATTRIBUTES": "team=agents"}, "symphony-otel"),
        ({"OTEL_RESOURCE_ATTRIBUTES": "myservice.name=other"}, "symphony-otel"),
    ],
)
def test_service_name_precedence(
    pipelines: Callable[..., TelemetryPipeline], environ: dict[str, str], service_name: str
) -> None:
    pipeline = pipelines(sink="console", environ=environ)

    assert pipeline.tracer_provider.resource.attributes["service.name"] == service_name


def test_service_name_argument_is_the_default(pipelines: Callable[..., TelemetryPipeline]) -> None:
    pipeline = pipelines(sink="console", service_name="bridge-7", environ={})

    assert pipeline.tracer_provider.resource.attributes["service.name"] == "bridge-7"


def test_resource_attributes_parsed(pipelines: Callable[..., TelemetryPipeline]) -> None:
    pipeline = pipelines(
        sink="console",
        environ={"OTEL_RESOURCE_ATTRIBUTES": " deployment.environment = staging ,team=agents%2Fcore,, note=a=b"},
    )

    attributes = pipeline.tracer_provider.resource.attributes
    assert attributes["deployment.environment"] == "staging"
    assert attributes["team"] == "agents/core"
    assert attributes["note"] == "a=b"
    assert attributes["telemetry.sdk.name"] == "opentelemetry"


@pytest.mark.parametrize("value", ["team", "=agents", "team=agents,broken"])
def test_invalid_resource_attributes_raise(value: str) -> None:
    with pytest.raises(ValueError, match=r"^OTEL_RESOURCE_ATTRIBUTES must be a comma-separated list of key=value"):
        build_pipeline(sink="console", environ={"OTEL_RESOURCE_ATTRIBUTES": value})


def test_environ_replaces_os_environ(
    monkeypatch: pytest.MonkeyPatch, pipelines: Callable[..., TelemetryPipeline], tmp_path: Path
) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-os-environ")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", UNUSED_ENDPOINT)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "not-a-number")

    pipeline = pipelines(output_dir=tmp_path, environ={})

    assert pipeline.description.startswith("OTLP/JSON files in ")
    assert pipeline.tracer_provider.resource.attributes["service.name"] == "symphony-otel"


# --- Export and shutdown ----------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_pipeline_exports_to_receiver(
    otlp_receiver: OtlpReceiver, pipelines: Callable[..., TelemetryPipeline], protocol: str
) -> None:
    endpoint = otlp_receiver.grpc_endpoint if protocol == "grpc" else otlp_receiver.http_endpoint
    pipeline = pipelines(
        otlp_endpoint=endpoint,
        protocol=protocol,
        service_name="pipeline-test",
        metric_export_interval=60.0,
        environ={"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test"},
    )
    generator_for(pipeline, event_mode="both").generate(SNAPSHOT_STATE)

    assert pipeline.shutdown()

    span = otlp_receiver.wait_for_span("symphony.snapshot")
    assert span["resource"]["service.name"] == "pipeline-test"
    assert span["resource"]["deployment.environment"] == "test"
    assert span["events"][0]["attributes"]["symphony.workers.running"] == 1
    point = otlp_receiver.wait_for_metric("symphony.workers.running")
    assert point["value"] == 1
    assert point["resource"]["service.name"] == "pipeline-test"
    record = otlp_receiver.wait_for_log_record("symphony.snapshot")
    assert record["attributes"]["symphony.workers.running"] == 1
    assert pipeline.drops.counts() == {}


def test_shutdown_twice_returns_true(pipelines: Callable[..., TelemetryPipeline], tmp_path: Path) -> None:
    pipeline = pipelines(sink="file", output_dir=tmp_path, environ={})

    assert pipeline.shutdown()
    started = time.monotonic()
    assert pipeline.shutdown()
    assert time.monotonic() - started < 0.1


@pytest.mark.parametrize("value", [-1.0, math.nan, math.inf, "5"])
def test_invalid_shutdown_timeout_raises(
    pipelines: Callable[..., TelemetryPipeline], tmp_path: Path, value: Any
) -> None:
    pipeline = pipelines(sink="file", output_dir=tmp_path, environ={})

    with pytest.raises(ValueError, match=r"^timeout must be a finite number of seconds of at least 0"):
        pipeline.force_flush(timeout=value)


def test_force_flush_writes_buffered_data(pipelines: Callable[..., TelemetryPipeline], tmp_path: Path) -> None:
    pipeline = pipelines(sink="file", output_dir=tmp_path, environ={"OTEL_BSP_SCHEDULE_DELAY": "60000"})
    generator_for(pipeline).generate(SNAPSHOT_STATE)

    assert pipeline.force_flush()

    assert span_counts_per_request(tmp_path / "traces.jsonl") == [1]
    assert (tmp_path / "metrics.jsonl").stat().st_size > 0
