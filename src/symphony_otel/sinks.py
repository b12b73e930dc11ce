"""Exporters of our own: OTLP/JSON files, and wrappers that count dropped data.

The file exporters write one OTLP/JSON export request per line, the format that
the Collector's ``otlpjsonfile`` receiver reads back, so data recorded with no
Collector running can be replayed into any backend later.  OTLP/JSON differs
from protobuf's generic JSON mapping in one way that matters here: trace and
span ids are hex strings, not base64.

The counting wrappers and batch processors report an outage once, through
:class:`DropCounter`.  The SDK's exporters log every failed batch and every
retry at WARNING or ERROR; inside a counted export those records are turned
into DEBUG records, so they show only when DEBUG is enabled for their logger.
"""

from __future__ import annotations

import base64
import collections
import json
import logging
import os
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from google.protobuf.json_format import MessageToDict
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    LogRecordExporter,
    LogRecordExportResult,
)
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from symphony_otel.recorder.redaction import Redactor

__all__ = [
    "CountingBatchLogRecordProcessor",
    "CountingBatchSpanProcessor",
    "CountingLogExporter",
    "CountingMetricExporter",
    "CountingSpanExporter",
    "DropCounter",
    "OtlpJsonFileLogExporter",
    "OtlpJsonFileMetricExporter",
    "OtlpJsonFileSpanExporter",
]

_logger = logging.getLogger(__name__)
# The file exporters' own failures; inside a counted export they become the
# reason of the outage that DropCounter logs.
_file_logger = logging.getLogger(f"{__name__}.file")

# Fields that OTLP/JSON writes as hex, in every message that has them.
_HEX_ID_FIELDS: Final = frozenset({"traceId", "spanId", "parentSpanId"})

# Loggers of the SDK's exporters and batch processors (checked with
# opentelemetry-sdk 1.45), whose per-batch failure records DropCounter replaces.
_SDK_LOGGER_PREFIXES: Final = ("opentelemetry.exporter.", "opentelemetry.sdk._shared_internal")
_MAX_REASON_LENGTH: Final = 300
_QUEUE_FULL: Final = "the export queue is full"


def _hex_ids(value: Any) -> Any:
    """Rewrite the base64 id fields of a protobuf JSON dict as OTLP/JSON hex."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key in _HEX_ID_FIELDS and isinstance(item, str):
                value[key] = base64.b64decode(item).hex()
            else:
                _hex_ids(item)
    elif isinstance(value, list):
        for item in value:
            _hex_ids(item)
    return value


class _JsonLinesFile:
    """An append-only file of JSON lines shared by the threads of one exporter.

    Each line is one ``os.write`` to a descriptor opened with ``O_APPEND``, so
    lines stay whole when forked processes append to the same file.  A Python
    file object would not do: its buffer lock, if a thread of the parent held
    it at fork, stays locked in the child forever.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if hasattr(os, "register_at_fork"):
            reinit = weakref.WeakMethod(self._reset_lock)

            def after_in_child() -> None:
                method = reinit()
                if method is not None:
                    method()

            os.register_at_fork(after_in_child=after_in_child)

    def _reset_lock(self) -> None:
        # A thread of the parent may have held the lock at fork.
        self._lock = threading.Lock()

    def write(self, message: Any) -> bool:
        document = _hex_ids(MessageToDict(message, use_integers_for_enums=True))
        data = (json.dumps(document, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
        with self._lock:
            if self._fd is None:
                return False
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(self._fd, view) :]
            except OSError as exc:
                _file_logger.warning("Writing telemetry to %s failed: %s", self.path, exc.strerror or exc)
                return False
        return True

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


class OtlpJsonFileSpanExporter(SpanExporter):
    """Writes spans as OTLP/JSON lines to ``path``."""

    def __init__(self, path: Path) -> None:
        self._out = _JsonLinesFile(path)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        ok = self._out.write(encode_spans(spans))
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def shutdown(self) -> None:
        self._out.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class OtlpJsonFileMetricExporter(MetricExporter):
    """Writes metrics as OTLP/JSON lines to ``path`` (cumulative temporality)."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._out = _JsonLinesFile(path)

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        ok = self._out.write(encode_metrics(metrics_data))
        return MetricExportResult.SUCCESS if ok else MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._out.close()


class OtlpJsonFileLogExporter(LogRecordExporter):
    """Writes log records as OTLP/JSON lines to ``path``."""

    def __init__(self, path: Path) -> None:
        self._out = _JsonLinesFile(path)

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        ok = self._out.write(encode_logs(batch))
        return LogRecordExportResult.SUCCESS if ok else LogRecordExportResult.FAILURE

    def shutdown(self) -> None:
        self._out.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class DropCounter:
    """Counts items that were not delivered, per signal, and logs each outage once.

    The first failure of an outage is logged with its reason.  The recovery is
    logged with the number of items lost in between, and the failures in
    between are only counted.

    Args:
        destination: Where the data goes, for the log messages.
    """

    def __init__(self, destination: str) -> None:
        self.destination = destination
        self._lock = threading.Lock()
        self._dropped: dict[str, int] = {}
        self._outage: dict[str, int] = {}
        self._redact = Redactor()

    def failed(self, signal: str, items: int, reason: str | None = None) -> None:
        """Count ``items`` of ``signal`` as dropped, and log it if an outage starts.

        Args:
            signal: ``traces``, ``metrics`` or ``logs``.
            items: Spans, data points or log records lost.
            reason: Why, for the log message; secrets in it are redacted.
        """
        with self._lock:
            self._dropped[signal] = self._dropped.get(signal, 0) + items
            first = signal not in self._outage
            self._outage[signal] = self._outage.get(signal, 0) + items
        if first:
            _logger.warning(
                "Exporting %s failed (%s); %d items are dropped. Later failures are "
                "counted, not logged, until an export succeeds. Destination: %s.",
                signal,
                self._redact(reason[:_MAX_REASON_LENGTH]) if reason else "no reason given",
                items,
                self.destination,
            )

    def succeeded(self, signal: str) -> None:
        """Note a successful export, ending an outage of ``signal`` if there was one."""
        with self._lock:
            lost = self._outage.pop(signal, None)
        if lost is not None:
            _logger.warning(
                "Exporting %s works again; %d items were dropped during the outage. Destination: %s.",
                signal,
                lost,
                self.destination,
            )

    def counts(self) -> dict[str, int]:
        """Return the dropped items by signal since start."""
        with self._lock:
            return dict(self._dropped)


# --- Quieting the SDK's per-batch failure logs -----------------------------------

_capture = threading.local()


class _ExportLogFilter(logging.Filter):
    """Turns the records of a counted export into DEBUG records and keeps their text."""

    def filter(self, record: logging.LogRecord) -> bool:
        messages: list[str] | None = getattr(_capture, "messages", None)
        if messages is None or record.levelno <= logging.DEBUG:
            return True
        try:
            messages.append(record.getMessage())
        except Exception:  # noqa: BLE001 - a record whose arguments do not fit its format
            messages.append(str(record.msg))
        record.levelno = logging.DEBUG
        record.levelname = logging.getLevelName(logging.DEBUG)
        # Handlers check only their own level, so a DEBUG record must be
        # dropped here unless DEBUG is enabled for the logger.
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


_EXPORT_LOG_FILTER: Final = _ExportLogFilter()


def quiet_sdk_export_logs() -> None:
    """Add the filter to every SDK exporter and batch processor logger created so far.

    Call it after the exporters are created, so that their modules are imported.
    """
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if not isinstance(logger, logging.Logger) or _EXPORT_LOG_FILTER in logger.filters:
            continue
        if name.startswith(_SDK_LOGGER_PREFIXES) or name == _file_logger.name:
            # First, because the SDK's duplicate filter drops repeats before a
            # later filter could keep their text.
            logger.filters.insert(0, _EXPORT_LOG_FILTER)


@contextmanager
def _captured_logs() -> Iterator[list[str]]:
    previous = getattr(_capture, "messages", None)
    messages: list[str] = []
    _capture.messages = messages
    try:
        yield messages
    finally:
        _capture.messages = previous


def _failure_reason(messages: list[str], exc: Exception | None) -> str:
    if exc is not None:
        return f"the exporter raised {type(exc).__name__}"
    return messages[-1] if messages else "the exporter reported a failure"


def _counted_export(
    counter: DropCounter, signal: str, items: int, export: Callable[[], Any], results: Any
) -> Any:
    """Run ``export`` and count its items as dropped unless it returns ``results.SUCCESS``.

    The log records that the exporter writes meanwhile become DEBUG records, and
    the last one is the reason given when an outage starts.
    """
    error: Exception | None = None
    result = results.FAILURE
    with _captured_logs() as messages:
        try:
            result = export()
        except Exception as exc:  # noqa: BLE001 - an exporter must not stop the batch processor's thread
            error = exc
    if error is None and result is results.SUCCESS:
        counter.succeeded(signal)
        return result
    counter.failed(signal, items, _failure_reason(messages, error))
    return results.FAILURE


class CountingSpanExporter(SpanExporter):
    """Delegates to ``inner`` and counts the spans it fails to export."""

    def __init__(self, inner: SpanExporter, counter: DropCounter) -> None:
        self._inner = inner
        self._counter = counter

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return _counted_export(
            self._counter, "traces", len(spans), lambda: self._inner.export(spans), SpanExportResult
        )

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


def _data_points(metrics_data: MetricsData) -> int:
    return sum(
        len(metric.data.data_points)
        for resource_metrics in metrics_data.resource_metrics
        for scope_metrics in resource_metrics.scope_metrics
        for metric in scope_metrics.metrics
    )


class CountingMetricExporter(MetricExporter):
    """Delegates to ``inner`` and counts the data points it fails to export."""

    def __init__(self, inner: MetricExporter, counter: DropCounter) -> None:
        super().__init__(
            preferred_temporality=inner._preferred_temporality,
            preferred_aggregation=inner._preferred_aggregation,
        )
        self._inner = inner
        self._counter = counter

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        return _counted_export(
            self._counter,
            "metrics",
            _data_points(metrics_data),
            lambda: self._inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs),
            MetricExportResult,
        )

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self._inner.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._inner.shutdown(timeout_millis=timeout_millis, **kwargs)


class CountingLogExporter(LogRecordExporter):
    """Delegates to ``inner`` and counts the log records it fails to export."""

    def __init__(self, inner: LogRecordExporter, counter: DropCounter) -> None:
        self._inner = inner
        self._counter = counter

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        return _counted_export(
            self._counter, "logs", len(batch), lambda: self._inner.export(batch), LogRecordExportResult
        )

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


# --- Batch processors that count what their full queue drops ----------------------


class _QueueGuard:
    """Makes room in a batch processor's full queue itself, so that every drop is counted once.

    The SDK's batch processor drops the oldest queued item when its queue is
    full, but its check and its drop are two steps, so a count taken from
    outside could miss a drop or count one that never happened.  Here the
    oldest item is dropped under a lock that every producer takes, before the
    SDK checks the queue, and the exporter thread can only make more room.

    NOTE: uses the private queue of the SDK's BatchProcessor (checked with
    opentelemetry-sdk 1.45).  With another layout nothing is dropped or counted
    here, and the SDK drops as it always does.
    """

    def __init__(self, processor: Any) -> None:
        queue = getattr(getattr(processor, "_batch_processor", None), "_queue", None)
        usable = isinstance(queue, collections.deque) and queue.maxlen is not None
        self._queue: collections.deque[Any] | None = queue if usable else None
        self.lock = threading.Lock()
        if hasattr(os, "register_at_fork"):
            reinit = weakref.WeakMethod(self._reset_lock)

            def after_in_child() -> None:
                method = reinit()
                if method is not None:
                    method()

            os.register_at_fork(after_in_child=after_in_child)

    def _reset_lock(self) -> None:
        # A thread of the parent may have held the lock at fork.
        self.lock = threading.Lock()

    def drop_oldest_if_full(self) -> bool:
        """Drop the oldest queued item if the queue is full; call with :attr:`lock` held."""
        queue = self._queue
        if queue is None or len(queue) < (queue.maxlen or 0):
            return False
        try:
            queue.pop()  # the oldest item, the one the SDK would drop
        except IndexError:  # the exporter thread took the whole queue meanwhile
            return False
        return True


class CountingBatchSpanProcessor(BatchSpanProcessor):
    """A :class:`BatchSpanProcessor` that counts the spans its full queue drops.

    When the exporter cannot keep up, as during an outage, the oldest queued
    span makes room for the new one and is counted as dropped.

    Args:
        exporter: The span exporter.
        counter: Where the dropped spans are counted.
        **kwargs: Passed to :class:`BatchSpanProcessor`.
    """

    def __init__(self, exporter: SpanExporter, counter: DropCounter, **kwargs: Any) -> None:
        super().__init__(exporter, **kwargs)
        self._counter = counter
        self._guard = _QueueGuard(self)

    def on_end(self, span: ReadableSpan) -> None:
        if span.context is None or not span.context.trace_flags.sampled:
            super().on_end(span)  # the SDK ignores unsampled spans
            return
        with self._guard.lock:
            dropped = self._guard.drop_oldest_if_full()
            super().on_end(span)
        if dropped:
            self._counter.failed("traces", 1, _QUEUE_FULL)


class CountingBatchLogRecordProcessor(BatchLogRecordProcessor):
    """A :class:`BatchLogRecordProcessor` that counts the log records its full queue drops.

    Args:
        exporter: The log record exporter.
        counter: Where the dropped log records are counted.
        **kwargs: Passed to :class:`BatchLogRecordProcessor`.
    """

    def __init__(self, exporter: LogRecordExporter, counter: DropCounter, **kwargs: Any) -> None:
        super().__init__(exporter, **kwargs)
        self._counter = counter
        self._guard = _QueueGuard(self)

    def on_emit(self, log_record: Any) -> None:
        with self._guard.lock:
            dropped = self._guard.drop_oldest_if_full()
            super().on_emit(log_record)
        if dropped:
            self._counter.failed("logs", 1, _QUEUE_FULL)
