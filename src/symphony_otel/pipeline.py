"""Tracer, meter and logger providers for applications with no pipeline yet.

A host that already has OpenTelemetry set up passes its own providers to
``OTelSnapshotGenerator`` and never needs this module.  For the others, and for
the command line, :func:`build_pipeline` builds the three SDK providers from the
standard ``OTEL_*`` variables:

- ``OTEL_EXPORTER_OTLP_[TRACES_|METRICS_|LOGS_]ENDPOINT``, ``..._PROTOCOL``
  (``grpc`` or ``http/protobuf``, the default), ``..._HEADERS``,
  ``..._COMPRESSION``, ``..._CERTIFICATE`` and ``..._INSECURE`` are read by the
  SDK's OTLP exporters as the specification defines them;
- ``OTEL_EXPORTER_OTLP_[TRACES_|METRICS_|LOGS_]TIMEOUT`` is read here, in
  milliseconds as the specification says, and passed to the exporters in
  seconds.  The Python SDK alone would read the same number as seconds, so a
  spec-conforming ``10000`` would mean almost three hours;
- ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES`` make the resource;
- ``OTEL_METRIC_EXPORT_INTERVAL`` (ms) and ``OTEL_BSP_*`` / ``OTEL_BLRP_*`` tune
  the batching.

With no OTLP endpoint configured, the ``auto`` sink writes OTLP/JSON files
instead, so that the data can be replayed into any backend later.

Usage::

    from symphony_otel import OTelSnapshotGenerator
    from symphony_otel.pipeline import build_pipeline

    pipeline = build_pipeline()
    generator = OTelSnapshotGenerator(
        meter_provider=pipeline.meter_provider,
        tracer_provider=pipeline.tracer_provider,
        logger_provider=pipeline.logger_provider,
    )
    ...
    pipeline.shutdown(timeout=5.0)
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    ConsoleLogRecordExporter,
    LogRecordExporter,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from symphony_otel.sinks import (
    CountingLogExporter,
    CountingMetricExporter,
    CountingSpanExporter,
    DropCounter,
    OtlpJsonFileLogExporter,
    OtlpJsonFileMetricExporter,
    OtlpJsonFileSpanExporter,
)

__all__ = [
    "DEFAULT_EXPORT_TIMEOUT",
    "DEFAULT_OUTPUT_DIR",
    "Protocol",
    "Sink",
    "TelemetryPipeline",
    "build_pipeline",
    "export_timeout_from_env",
    "otlp_endpoint_configured",
]

_logger = logging.getLogger(__name__)

Sink = Literal["auto", "otlp", "file", "console"]
Protocol = Literal["grpc", "http/protobuf"]

DEFAULT_OUTPUT_DIR: Final = Path("symphony-otel-data")
DEFAULT_EXPORT_TIMEOUT: Final = 10.0
DEFAULT_METRIC_EXPORT_INTERVAL: Final = 10.0
DEFAULT_SERVICE_NAME: Final = "symphony-otel"

_SIGNALS: Final = ("traces", "metrics", "logs")
_PROTOCOLS: Final = ("grpc", "http/protobuf")
# Paths the HTTP exporters append to a base endpoint, as the specification says.
_HTTP_PATHS: Final = {"traces": "/v1/traces", "metrics": "/v1/metrics", "logs": "/v1/logs"}


def otlp_endpoint_configured(environ: Mapping[str, str] | None = None) -> bool:
    """Whether any ``OTEL_EXPORTER_OTLP_*ENDPOINT`` variable is set."""
    env = os.environ if environ is None else environ
    names = ["OTEL_EXPORTER_OTLP_ENDPOINT"] + [
        f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT" for signal in _SIGNALS
    ]
    return any(env.get(name, "").strip() for name in names)


def export_timeout_from_env(signal: str, environ: Mapping[str, str] | None = None) -> float:
    """Read the OTLP export timeout of ``signal`` in milliseconds and return seconds.

    Raises:
        ValueError: If the variable is not a positive number.
    """
    env = os.environ if environ is None else environ
    for name in (f"OTEL_EXPORTER_OTLP_{signal.upper()}_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"):
        raw = env.get(name, "").strip()
        if not raw:
            continue
        try:
            milliseconds = float(raw)
        except ValueError:
            raise ValueError(
                f"{name} must be a positive number of milliseconds, got {raw!r}"
            ) from None
        if not milliseconds > 0:
            raise ValueError(f"{name} must be a positive number of milliseconds, got {raw!r}")
        return milliseconds / 1000.0
    return DEFAULT_EXPORT_TIMEOUT


def _protocol(signal: str, explicit: str | None, env: Mapping[str, str]) -> str:
    if explicit is not None:
        name, raw = "protocol", explicit
    else:
        name = f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL"
        raw = env.get(name, "").strip()
        if not raw:
            name = "OTEL_EXPORTER_OTLP_PROTOCOL"
            raw = env.get(name, "").strip() or "http/protobuf"
    if raw not in _PROTOCOLS:
        raise ValueError(f"{name} must be grpc or http/protobuf, got {raw!r}")
    return raw


@dataclass
class TelemetryPipeline:
    """The providers of one pipeline and how to stop them.

    Attributes:
        tracer_provider: SDK tracer provider with a batch span processor.
        meter_provider: SDK meter provider with a periodic exporting reader.
        logger_provider: SDK logger provider with a batch log record processor.
        description: Where the telemetry goes, for people.
        drops: Items that the exporters failed to deliver, by signal.
    """

    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    logger_provider: LoggerProvider
    description: str
    drops: DropCounter

    def force_flush(self, timeout: float = 5.0) -> bool:
        """Export what is buffered; return within about ``timeout`` seconds.

        Returns:
            True when every provider finished flushing in time.  The SDK's
            OTLP exporters report success even for a batch they dropped, so
            check :attr:`drops` for data that did not arrive.
        """
        millis = int(timeout * 1000)
        return _run_bounded(
            "flush",
            timeout,
            lambda: (
                self.tracer_provider.force_flush(millis),
                self.meter_provider.force_flush(millis),
                self.logger_provider.force_flush(millis),
            ),
        )

    def shutdown(self, timeout: float = 5.0) -> bool:
        """Flush and shut down the three providers within about ``timeout`` seconds.

        An export to a receiver that never answers would otherwise block for
        the exporter timeout on every retry; past ``timeout`` the rest of the
        shutdown goes on in a daemon thread and this method returns False.
        """
        millis = int(timeout * 1000)

        def stop() -> None:
            self.meter_provider.shutdown(timeout_millis=millis)
            self.tracer_provider.shutdown()
            self.logger_provider.shutdown()

        return _run_bounded("shutdown", timeout, stop)


def _run_bounded(what: str, timeout: float, action: Callable[[], Any]) -> bool:
    failure: list[BaseException] = []

    def target() -> None:
        try:
            action()
        except Exception as exc:  # the SDK's own failures must not stop the caller
            failure.append(exc)

    worker = threading.Thread(target=target, name=f"symphony-otel-{what}", daemon=True)
    started = time.monotonic()
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        _logger.warning(
            "Telemetry %s did not finish within %.1f s; data still buffered may be lost.",
            what,
            timeout,
        )
        return False
    if failure:
        _logger.warning("Telemetry %s failed: %s", what, type(failure[0]).__name__)
        return False
    _logger.debug("Telemetry %s took %.3f s", what, time.monotonic() - started)
    return True


def build_pipeline(
    *,
    sink: Sink = "auto",
    output_dir: Path | str = DEFAULT_OUTPUT_DIR,
    otlp_endpoint: str | None = None,
    protocol: str | None = None,
    service_name: str = DEFAULT_SERVICE_NAME,
    metric_export_interval: float | None = None,
    export_timeout: float | None = None,
    environ: Mapping[str, str] | None = None,
) -> TelemetryPipeline:
    """Build tracer, meter and logger providers that export to one sink.

    Args:
        sink: ``otlp``, ``file`` (OTLP/JSON lines in ``output_dir``),
            ``console`` (stdout), or ``auto``: ``otlp`` when an endpoint is
            given or configured through ``OTEL_EXPORTER_OTLP_*ENDPOINT``, else
            ``file``.
        output_dir: Directory of ``traces.jsonl``, ``metrics.jsonl`` and
            ``logs.jsonl`` for the file sink.
        otlp_endpoint: OTLP endpoint for all signals, in place of
            ``OTEL_EXPORTER_OTLP_ENDPOINT``.  For ``http/protobuf`` this is
            the base address; ``/v1/traces`` and the like are appended.
        protocol: ``grpc`` or ``http/protobuf``, in place of
            ``OTEL_EXPORTER_OTLP_PROTOCOL``; ``http/protobuf`` by default.
        service_name: ``service.name`` unless ``OTEL_SERVICE_NAME`` or
            ``OTEL_RESOURCE_ATTRIBUTES`` set one.
        metric_export_interval: Seconds between metric exports, in place of
            ``OTEL_METRIC_EXPORT_INTERVAL``; 10 s when neither is set.
        export_timeout: Seconds an OTLP export may take, in place of
            ``OTEL_EXPORTER_OTLP_TIMEOUT`` (milliseconds); 10 s by default.
        environ: The environment to read, ``os.environ`` when None.

    Returns:
        The pipeline; call :meth:`TelemetryPipeline.shutdown` when done.

    Raises:
        ValueError: If a setting or variable is invalid.
    """
    env = os.environ if environ is None else environ
    if sink not in ("auto", "otlp", "file", "console"):
        raise ValueError(f"sink must be one of auto, otlp, file, console; got {sink!r}")
    if sink == "auto":
        sink = "otlp" if otlp_endpoint or otlp_endpoint_configured(env) else "file"
    interval = _metric_interval(metric_export_interval, env)
    resource = _resource(service_name, env)

    if sink == "otlp":
        exporters, description = _otlp_exporters(otlp_endpoint, protocol, export_timeout, env)
    elif sink == "file":
        directory = Path(output_dir).resolve()
        exporters = (
            OtlpJsonFileSpanExporter(directory / "traces.jsonl"),
            OtlpJsonFileMetricExporter(directory / "metrics.jsonl"),
            OtlpJsonFileLogExporter(directory / "logs.jsonl"),
        )
        description = f"OTLP/JSON files in {directory}"
    else:
        exporters = (ConsoleSpanExporter(), ConsoleMetricExporter(), ConsoleLogRecordExporter())
        description = "the console (stdout)"

    drops = DropCounter(description)
    span_exporter, metric_exporter, log_exporter = exporters
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(CountingSpanExporter(span_exporter, drops)))
    meter_provider = MeterProvider(
        resource=resource,
        metric_readers=[
            PeriodicExportingMetricReader(
                CountingMetricExporter(metric_exporter, drops),
                export_interval_millis=interval * 1000,
            )
        ],
    )
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(
        BatchLogRecordProcessor(CountingLogExporter(log_exporter, drops))
    )
    return TelemetryPipeline(tracer_provider, meter_provider, logger_provider, description, drops)


def _metric_interval(explicit: float | None, env: Mapping[str, str]) -> float:
    if explicit is not None:
        if not explicit > 0:
            raise ValueError(f"metric_export_interval must be a positive number of seconds, got {explicit!r}")
        return float(explicit)
    raw = env.get("OTEL_METRIC_EXPORT_INTERVAL", "").strip()
    if not raw:
        return DEFAULT_METRIC_EXPORT_INTERVAL
    try:
        milliseconds = float(raw)
    except ValueError:
        raise ValueError(
            f"OTEL_METRIC_EXPORT_INTERVAL must be a positive number of milliseconds, got {raw!r}"
        ) from None
    if not milliseconds > 0:
        raise ValueError(
            f"OTEL_METRIC_EXPORT_INTERVAL must be a positive number of milliseconds, got {raw!r}"
        )
    return milliseconds / 1000.0


def _resource(service_name: str, env: Mapping[str, str]) -> Resource:
    configured = env.get("OTEL_SERVICE_NAME", "").strip() or "service.name=" in env.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    )
    # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES itself.
    return Resource.create({} if configured else {"service.name": service_name})


def _otlp_exporters(
    endpoint: str | None,
    protocol: str | None,
    export_timeout: float | None,
    env: Mapping[str, str],
) -> tuple[tuple[SpanExporter, MetricExporter, LogRecordExporter], str]:
    protocols = {signal: _protocol(signal, protocol, env) for signal in _SIGNALS}
    timeouts = {
        signal: export_timeout if export_timeout is not None else export_timeout_from_env(signal, env)
        for signal in _SIGNALS
    }
    if export_timeout is not None and not export_timeout > 0:
        raise ValueError(f"export_timeout must be a positive number of seconds, got {export_timeout!r}")

    def endpoint_for(signal: str) -> str | None:
        if endpoint is None:
            return None  # the exporter reads the OTEL_EXPORTER_OTLP_*ENDPOINT variables
        base = endpoint.rstrip("/")
        return base + _HTTP_PATHS[signal] if protocols[signal] == "http/protobuf" else base

    exporters = (
        _span_exporter(protocols["traces"], endpoint_for("traces"), timeouts["traces"]),
        _metric_exporter(protocols["metrics"], endpoint_for("metrics"), timeouts["metrics"]),
        _log_exporter(protocols["logs"], endpoint_for("logs"), timeouts["logs"]),
    )
    shown = endpoint or env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip() or "the per-signal endpoints"
    kinds = sorted(set(protocols.values()))
    label = " and ".join("OTLP/gRPC" if kind == "grpc" else "OTLP/HTTP" for kind in kinds)
    return exporters, f"{label} to {shown}"


def _span_exporter(protocol: str, endpoint: str | None, timeout: float) -> SpanExporter:
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=endpoint, timeout=timeout)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter

    return HttpSpanExporter(endpoint=endpoint, timeout=timeout)


def _metric_exporter(protocol: str, endpoint: str | None, timeout: float) -> MetricExporter:
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        return OTLPMetricExporter(endpoint=endpoint, timeout=timeout)
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
        OTLPMetricExporter as HttpMetricExporter,
    )

    return HttpMetricExporter(endpoint=endpoint, timeout=timeout)


def _log_exporter(protocol: str, endpoint: str | None, timeout: float) -> LogRecordExporter:
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter

        return OTLPLogExporter(endpoint=endpoint, timeout=timeout)
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter

    return HttpLogExporter(endpoint=endpoint, timeout=timeout)
