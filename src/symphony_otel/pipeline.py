"""Tracer, meter and logger providers for applications with no pipeline yet.

A host that already has OpenTelemetry set up passes its own providers to
``OTelSnapshotGenerator`` and never needs this module.  For the others, and for
the command line, :func:`build_pipeline` builds the three SDK providers from the
standard ``OTEL_*`` variables:

- ``OTEL_EXPORTER_OTLP_[TRACES_|METRICS_|LOGS_]ENDPOINT``, ``..._PROTOCOL``
  (``grpc`` or ``http/protobuf``, the default) and ``..._HEADERS`` are read
  here as the specification defines them: a per-signal endpoint is used as it
  is, and for HTTP the general endpoint gets ``/v1/traces``, ``/v1/metrics`` or
  ``/v1/logs`` appended;
- ``OTEL_EXPORTER_OTLP_[TRACES_|METRICS_|LOGS_]TIMEOUT`` is read here, in
  milliseconds as the specification defines it, and passed to the exporters in
  seconds.  The Python SDK alone (checked with 1.45) reads the same number as
  seconds, so a spec-conforming ``10000`` would mean almost three hours;
- ``..._COMPRESSION``, ``..._CERTIFICATE``, ``..._CLIENT_KEY`` and
  ``..._INSECURE`` are read by the SDK's OTLP exporters from ``os.environ``;
- ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES`` make the resource;
- ``OTEL_METRIC_EXPORT_INTERVAL`` (ms) and ``OTEL_BSP_*`` / ``OTEL_BLRP_*``
  (schedule delay in ms, queue size, batch size) tune the batching.  The batch
  size defaults to :data:`DEFAULT_BATCH_SIZE`, not the SDK's 512, so that a
  request of snapshot events stays below the 4 MiB that gRPC receivers accept.

With no OTLP endpoint configured, the ``auto`` sink writes OTLP/JSON files
instead, so that the data can be replayed into any backend later.

:meth:`TelemetryPipeline.shutdown` and :meth:`TelemetryPipeline.force_flush`
return within their timeout, by default the export timeout plus
:data:`SHUTDOWN_MARGIN`, even when the receiver never responds.  A pipeline that
is not shut down explicitly is shut down the same way at interpreter exit.

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
    pipeline.shutdown()
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import unquote, urlsplit, urlunsplit

from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import ConsoleLogRecordExporter, LogRecordExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SpanExporter
from opentelemetry.util.re import parse_env_headers

from symphony_otel.sinks import (
    CountingBatchLogRecordProcessor,
    CountingBatchSpanProcessor,
    CountingLogExporter,
    CountingMetricExporter,
    CountingSpanExporter,
    DropCounter,
    OtlpJsonFileLogExporter,
    OtlpJsonFileMetricExporter,
    OtlpJsonFileSpanExporter,
    quiet_sdk_export_logs,
)

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_EXPORT_TIMEOUT",
    "DEFAULT_OUTPUT_DIR",
    "SHUTDOWN_MARGIN",
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

DEFAULT_BATCH_SIZE: Final = 64
"""Spans or log records per export request, unless ``OTEL_BSP_MAX_EXPORT_BATCH_SIZE``
or ``OTEL_BLRP_MAX_EXPORT_BATCH_SIZE`` sets another number.  A snapshot event
carries up to 32 KiB of JSON by default, so 64 of them make about 2 MiB, half of
the 4 MiB that the Collector's gRPC receiver accepts."""

SHUTDOWN_MARGIN: Final = 1.0
"""Seconds that shutdown and flush wait beyond the export timeout by default."""

DEFAULT_MAX_QUEUE_SIZE: Final = 2048
_SPAN_SCHEDULE_DELAY_MS: Final = 5000.0
_LOG_SCHEDULE_DELAY_MS: Final = 1000.0

_SIGNALS: Final = ("traces", "metrics", "logs")
_PROTOCOLS: Final = ("grpc", "http/protobuf")
# Paths the HTTP exporters append to a base endpoint, as the specification defines them.
_HTTP_PATHS: Final = {"traces": "/v1/traces", "metrics": "/v1/metrics", "logs": "/v1/logs"}
_DEFAULT_ENDPOINTS: Final = {"grpc": "http://localhost:4317", "http/protobuf": "http://localhost:4318"}


def otlp_endpoint_configured(environ: Mapping[str, str] | None = None) -> bool:
    """Return whether any ``OTEL_EXPORTER_OTLP_*ENDPOINT`` variable is set."""
    env = os.environ if environ is None else environ
    names = ["OTEL_EXPORTER_OTLP_ENDPOINT"] + [
        f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT" for signal in _SIGNALS
    ]
    return any(env.get(name, "").strip() for name in names)


def export_timeout_from_env(signal: str, environ: Mapping[str, str] | None = None) -> float:
    """Read the OTLP export timeout of ``signal`` in milliseconds and return seconds.

    ``OTEL_EXPORTER_OTLP_<SIGNAL>_TIMEOUT`` comes first, then
    ``OTEL_EXPORTER_OTLP_TIMEOUT``, then 10 s.

    Raises:
        ValueError: If the variable is not a finite, positive number.
    """
    env = os.environ if environ is None else environ
    for name in (f"OTEL_EXPORTER_OTLP_{signal.upper()}_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"):
        milliseconds = _env_positive(env, name, "milliseconds")
        if milliseconds is not None:
            return milliseconds / 1000.0
    return DEFAULT_EXPORT_TIMEOUT


@dataclass
class TelemetryPipeline:
    """The providers of one pipeline and how to stop them.

    Attributes:
        tracer_provider: SDK tracer provider with a batch span processor.
        meter_provider: SDK meter provider with a periodic exporting reader.
        logger_provider: SDK logger provider with a batch log record processor.
        description: Where the telemetry goes, for people.
        drops: Items that were not delivered, by signal.
        export_timeout: Seconds one export may take (the longest of the three
            signals); the default bound of shutdown and flush derives from it.
    """

    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    logger_provider: LoggerProvider
    description: str
    drops: DropCounter
    export_timeout: float = DEFAULT_EXPORT_TIMEOUT
    _stopped: bool = field(default=False, init=False, repr=False, compare=False)

    def default_timeout(self) -> float:
        """Return the default bound of shutdown and flush: the export timeout plus 1 s."""
        return self.export_timeout + SHUTDOWN_MARGIN

    def force_flush(self, timeout: float | None = None) -> bool:
        """Export what is buffered, returning within ``timeout`` seconds.

        The three providers flush in parallel.

        Args:
            timeout: Seconds to wait; :meth:`default_timeout` when None.

        Returns:
            True when every provider finished flushing in time.  The SDK's
            OTLP exporters report success even for a batch they dropped, so
            check :attr:`drops` for data that did not arrive.
        """
        limit = self._limit(timeout)
        millis = int(limit * 1000)
        return _run_bounded(
            "flush",
            limit,
            {
                "traces": lambda: self.tracer_provider.force_flush(millis),
                "metrics": lambda: self.meter_provider.force_flush(millis),
                "logs": lambda: self.logger_provider.force_flush(millis),
            },
        )

    def shutdown(self, timeout: float | None = None) -> bool:
        """Flush and shut down the three providers, returning within ``timeout`` seconds.

        The providers shut down in parallel.  A receiver that never responds
        blocks each export for the whole export timeout.  When ``timeout`` runs
        out, the rest of the shutdown goes on in daemon threads, and data still
        queued is lost.  Later calls return True at once.

        Args:
            timeout: Seconds to wait; :meth:`default_timeout` when None.

        Returns:
            True when every provider shut down in time without raising.
        """
        limit = self._limit(timeout)
        millis = int(limit * 1000)
        if self._stopped:
            return True
        self._stopped = True
        atexit.unregister(self._shutdown_at_exit)
        return _run_bounded(
            "shutdown",
            limit,
            {
                "traces": self.tracer_provider.shutdown,
                "metrics": lambda: self.meter_provider.shutdown(timeout_millis=millis),
                "logs": self.logger_provider.shutdown,
            },
        )

    def _limit(self, timeout: float | None) -> float:
        if timeout is None:
            return self.default_timeout()
        valid = isinstance(timeout, (int, float)) and not isinstance(timeout, bool)
        if not (valid and timeout >= 0 and math.isfinite(timeout)):
            raise ValueError(f"timeout must be a finite number of seconds of at least 0, got {timeout!r}")
        return float(timeout)

    def _shutdown_at_exit(self) -> None:
        self.shutdown()


def _run_bounded(what: str, timeout: float, actions: Mapping[str, Callable[[], Any]]) -> bool:
    """Run ``actions`` in parallel daemon threads and wait for them at most ``timeout`` seconds."""
    failures: dict[str, BaseException] = {}

    def run(name: str, action: Callable[[], Any]) -> None:
        try:
            action()
        except Exception as exc:  # noqa: BLE001 - the SDK's own failures must not stop the caller
            failures[name] = exc

    started = time.monotonic()
    workers: dict[str, threading.Thread] = {}
    for name, action in actions.items():
        worker = threading.Thread(
            target=run, args=(name, action), name=f"symphony-otel-{what}-{name}", daemon=True
        )
        try:
            worker.start()
        except RuntimeError:
            # NOTE: Python 3.12 (checked with 3.12.1, not 3.13) refuses new
            # threads at interpreter exit, so the at-exit shutdown runs without
            # a time bound there.
            _logger.debug("Telemetry %s of %s runs without a time bound at exit", what, name)
            run(name, action)
            continue
        workers[name] = worker
    deadline = started + timeout
    for worker in workers.values():
        worker.join(max(deadline - time.monotonic(), 0.0))
    late = sorted(name for name, worker in workers.items() if worker.is_alive())
    if late:
        _logger.warning(
            "Telemetry %s of %s did not finish within %.1f s; data still queued may be lost.",
            what,
            ", ".join(late),
            timeout,
        )
        return False
    if failures:
        _logger.warning(
            "Telemetry %s failed: %s",
            what,
            ", ".join(f"{name} raised {type(exc).__name__}" for name, exc in sorted(failures.items())),
        )
        return False
    _logger.debug("Telemetry %s took %.3f s", what, time.monotonic() - started)
    return True


class _ForkSafeMetricReader(PeriodicExportingMetricReader):
    """A periodic exporting reader whose export lock is new in a forked child.

    NOTE: opentelemetry-sdk 1.45 restarts the reader's thread in a forked
    child but keeps its private ``_export_lock``.  When the parent was
    exporting at the fork, every later export of the child would wait forever.
    """

    def __init__(self, exporter: MetricExporter, **kwargs: Any) -> None:
        super().__init__(exporter, **kwargs)
        if hasattr(os, "register_at_fork"):
            reinit = weakref.WeakMethod(self._reset_export_lock)

            def after_in_child() -> None:
                method = reinit()
                if method is not None:
                    method()

            os.register_at_fork(after_in_child=after_in_child)

    def _reset_export_lock(self) -> None:
        if hasattr(self, "_export_lock"):
            self._export_lock = threading.Lock()


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
        otlp_endpoint: OTLP endpoint for all signals, in place of the
            ``OTEL_EXPORTER_OTLP_*ENDPOINT`` variables.  For ``http/protobuf``
            this is the base address; ``/v1/traces`` and the like are appended.
        protocol: ``grpc`` or ``http/protobuf``, in place of
            ``OTEL_EXPORTER_OTLP_[<SIGNAL>_]PROTOCOL``; ``http/protobuf`` by default.
        service_name: ``service.name`` unless ``OTEL_SERVICE_NAME`` or
            ``OTEL_RESOURCE_ATTRIBUTES`` set one.
        metric_export_interval: Seconds between metric exports, in place of
            ``OTEL_METRIC_EXPORT_INTERVAL`` (milliseconds); 10 s when neither is set.
        export_timeout: Seconds an OTLP export may take, in place of
            ``OTEL_EXPORTER_OTLP_[<SIGNAL>_]TIMEOUT`` (milliseconds); 10 s by default.
        environ: The environment to read, ``os.environ`` when None.  NOTE: the
            SDK's exporters still read compression, TLS and, when ``environ``
            sets no headers, header variables from ``os.environ``, and the
            SDK's resource detectors read ``OTEL_RESOURCE_ATTRIBUTES`` there
            too (the values read here take precedence).

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
    span_batching = _batching("OTEL_BSP", _SPAN_SCHEDULE_DELAY_MS, env)
    log_batching = _batching("OTEL_BLRP", _LOG_SCHEDULE_DELAY_MS, env)

    timeout = DEFAULT_EXPORT_TIMEOUT
    if sink == "otlp":
        exporters, description, timeout = _otlp_exporters(otlp_endpoint, protocol, export_timeout, env)
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
    quiet_sdk_export_logs()

    drops = DropCounter(description)
    span_exporter, metric_exporter, log_exporter = exporters
    # The pipeline shuts the providers down itself at exit, within a time bound.
    tracer_provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    tracer_provider.add_span_processor(
        CountingBatchSpanProcessor(CountingSpanExporter(span_exporter, drops), drops, **span_batching)
    )
    meter_provider = MeterProvider(
        resource=resource,
        metric_readers=[
            _ForkSafeMetricReader(
                CountingMetricExporter(metric_exporter, drops),
                export_interval_millis=interval * 1000,
            )
        ],
        shutdown_on_exit=False,
    )
    logger_provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
    logger_provider.add_log_record_processor(
        CountingBatchLogRecordProcessor(CountingLogExporter(log_exporter, drops), drops, **log_batching)
    )
    pipeline = TelemetryPipeline(tracer_provider, meter_provider, logger_provider, description, drops, timeout)
    atexit.register(pipeline._shutdown_at_exit)
    return pipeline


def _env_positive(env: Mapping[str, str], name: str, unit: str) -> float | None:
    """Read a finite, positive number from ``env[name]``, or None when unset."""
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        number = float(raw)
    except ValueError:
        number = math.nan
    if not (number > 0 and math.isfinite(number)):
        raise ValueError(f"{name} must be a finite, positive number of {unit}, got {raw!r}")
    return number


def _env_count(env: Mapping[str, str], name: str) -> int | None:
    """Read a positive integer from ``env[name]``, or None when unset."""
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        number = int(raw)
    except ValueError:
        number = 0
    if number < 1:
        raise ValueError(f"{name} must be a positive integer, got {raw!r}")
    return number


def _batching(prefix: str, default_delay_millis: float, env: Mapping[str, str]) -> dict[str, Any]:
    """Read the batch processor settings ``<prefix>_SCHEDULE_DELAY``, ``_MAX_QUEUE_SIZE`` and
    ``_MAX_EXPORT_BATCH_SIZE`` as keyword arguments of the SDK's batch processors."""
    delay = _env_positive(env, f"{prefix}_SCHEDULE_DELAY", "milliseconds")
    queue_size = _env_count(env, f"{prefix}_MAX_QUEUE_SIZE") or DEFAULT_MAX_QUEUE_SIZE
    batch_name = f"{prefix}_MAX_EXPORT_BATCH_SIZE"
    batch_size = _env_count(env, batch_name)
    if batch_size is None:
        batch_size = min(DEFAULT_BATCH_SIZE, queue_size)
    elif batch_size > queue_size:
        raise ValueError(
            f"{batch_name} must not exceed {prefix}_MAX_QUEUE_SIZE ({queue_size}), got {batch_size}"
        )
    return {
        "schedule_delay_millis": default_delay_millis if delay is None else delay,
        "max_queue_size": queue_size,
        "max_export_batch_size": batch_size,
    }


def _metric_interval(explicit: float | None, env: Mapping[str, str]) -> float:
    if explicit is not None:
        if isinstance(explicit, bool) or not (isinstance(explicit, (int, float)) and explicit > 0):
            raise ValueError(
                f"metric_export_interval must be a positive number of seconds, got {explicit!r}"
            )
        return float(explicit)
    milliseconds = _env_positive(env, "OTEL_METRIC_EXPORT_INTERVAL", "milliseconds")
    return DEFAULT_METRIC_EXPORT_INTERVAL if milliseconds is None else milliseconds / 1000.0


def _resource(service_name: str, env: Mapping[str, str]) -> Resource:
    """Build the resource: ``OTEL_SERVICE_NAME``, then ``OTEL_RESOURCE_ATTRIBUTES``, then ``service_name``."""
    attributes: dict[str, str] = {}
    raw = env.get("OTEL_RESOURCE_ATTRIBUTES", "")
    for item in raw.split(","):
        if not item.strip():
            continue
        key, separator, value = item.partition("=")
        if not separator or not key.strip():
            raise ValueError(
                f"OTEL_RESOURCE_ATTRIBUTES must be a comma-separated list of key=value pairs, "
                f"got the item {item.strip()!r}"
            )
        attributes[key.strip()] = unquote(value.strip())
    name = env.get("OTEL_SERVICE_NAME", "").strip() or attributes.get("service.name") or service_name
    attributes["service.name"] = name
    return Resource.create(attributes)


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


def _endpoint(signal: str, protocol: str, explicit: str | None, env: Mapping[str, str]) -> str:
    """Resolve the endpoint of ``signal`` as the specification defines it."""
    if explicit is None:
        per_signal = env.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT", "").strip()
        if per_signal:
            return per_signal
    base = explicit or env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip() or _DEFAULT_ENDPOINTS[protocol]
    if protocol == "http/protobuf":
        return base.rstrip("/") + _HTTP_PATHS[signal]
    return base


def _without_password(url: str) -> str:
    """Return ``url`` with the password of its user information replaced, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:REDACTED@{host}"))


def _headers(signal: str, env: Mapping[str, str]) -> dict[str, str] | None:
    raw = (
        env.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_HEADERS", "").strip()
        or env.get("OTEL_EXPORTER_OTLP_HEADERS", "").strip()
    )
    return dict(parse_env_headers(raw, liberal=True)) if raw else None


def _otlp_exporters(
    endpoint: str | None,
    protocol: str | None,
    export_timeout: float | None,
    env: Mapping[str, str],
) -> tuple[tuple[SpanExporter, MetricExporter, LogRecordExporter], str, float]:
    if export_timeout is not None and (
        isinstance(export_timeout, bool)
        or not isinstance(export_timeout, (int, float))
        or not (export_timeout > 0 and math.isfinite(export_timeout))
    ):
        raise ValueError(
            f"export_timeout must be a finite, positive number of seconds, got {export_timeout!r}"
        )
    protocols = {signal: _protocol(signal, protocol, env) for signal in _SIGNALS}
    timeouts = {
        signal: float(export_timeout) if export_timeout is not None else export_timeout_from_env(signal, env)
        for signal in _SIGNALS
    }
    endpoints = {signal: _endpoint(signal, protocols[signal], endpoint, env) for signal in _SIGNALS}
    headers = {signal: _headers(signal, env) for signal in _SIGNALS}

    exporters = (
        _span_exporter(protocols["traces"], endpoints["traces"], timeouts["traces"], headers["traces"]),
        _metric_exporter(protocols["metrics"], endpoints["metrics"], timeouts["metrics"], headers["metrics"]),
        _log_exporter(protocols["logs"], endpoints["logs"], timeouts["logs"], headers["logs"]),
    )
    shown = _without_password(
        endpoint or env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip() or "the per-signal endpoints"
    )
    kinds = sorted(set(protocols.values()))
    label = " and ".join("OTLP/gRPC" if kind == "grpc" else "OTLP/HTTP" for kind in kinds)
    return exporters, f"{label} to {shown}", max(timeouts.values())


def _span_exporter(
    protocol: str, endpoint: str, timeout: float, headers: dict[str, str] | None
) -> SpanExporter:
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=endpoint, timeout=timeout, headers=headers)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter

    return HttpSpanExporter(endpoint=endpoint, timeout=timeout, headers=headers)


def _metric_exporter(
    protocol: str, endpoint: str, timeout: float, headers: dict[str, str] | None
) -> MetricExporter:
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        return OTLPMetricExporter(endpoint=endpoint, timeout=timeout, headers=headers)
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
        OTLPMetricExporter as HttpMetricExporter,
    )

    return HttpMetricExporter(endpoint=endpoint, timeout=timeout, headers=headers)


def _log_exporter(
    protocol: str, endpoint: str, timeout: float, headers: dict[str, str] | None
) -> LogRecordExporter:
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter

        return OTLPLogExporter(endpoint=endpoint, timeout=timeout, headers=headers)
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter

    return HttpLogExporter(endpoint=endpoint, timeout=timeout, headers=headers)
