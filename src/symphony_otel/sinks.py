"""Exporters of our own: OTLP/JSON files, and wrappers that count dropped data.

The file exporters write one OTLP/JSON export request per line, the format that
the Collector's ``otlpjsonfile`` receiver reads back, so data recorded with no
Collector running can be replayed into any backend later.  OTLP/JSON differs
from protobuf's generic JSON mapping in one way that matters here: trace and
span ids are hex strings, not base64.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from google.protobuf.json_format import MessageToDict
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

__all__ = [
    "CountingLogExporter",
    "CountingMetricExporter",
    "CountingSpanExporter",
    "DropCounter",
    "OtlpJsonFileLogExporter",
    "OtlpJsonFileMetricExporter",
    "OtlpJsonFileSpanExporter",
]

_logger = logging.getLogger(__name__)

# Fields that OTLP/JSON writes as hex, in every message that has them.
_HEX_ID_FIELDS: Final = frozenset({"traceId", "spanId", "parentSpanId"})


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
    """An append-only file of JSON lines shared by the threads of one exporter."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._file = path.open("a", encoding="utf-8")

    def write(self, message: Any) -> bool:
        document = _hex_ids(MessageToDict(message, use_integers_for_enums=True))
        line = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
        with self._lock:
            if self._file.closed:
                return False
            try:
                self._file.write(line + "\n")
                self._file.flush()
            except OSError as exc:
                _logger.warning("Writing telemetry to %s failed (%s); the batch is dropped", self.path, exc)
                return False
        return True

    def close(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.close()


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
    """Counts items that exporters failed to deliver, per signal.

    The first failure of an outage is logged, and so is the recovery with the
    number of items lost in between; the failures in between are only counted.
    """

    def __init__(self, destination: str) -> None:
        self.destination = destination
        self._lock = threading.Lock()
        self._dropped: dict[str, int] = {}
        self._outage: dict[str, int] = {}

    def failed(self, signal: str, items: int) -> None:
        """Count ``items`` of ``signal`` as dropped."""
        with self._lock:
            self._dropped[signal] = self._dropped.get(signal, 0) + items
            first = signal not in self._outage
            self._outage[signal] = self._outage.get(signal, 0) + items
        if first:
            _logger.warning(
                "Exporting %s to %s failed; the batch of %d items is dropped. Later "
                "failures are counted, not logged, until the export works again.",
                signal,
                self.destination,
                items,
            )

    def succeeded(self, signal: str) -> None:
        """Note a successful export, ending an outage of ``signal`` if there was one."""
        if signal not in self._outage:
            return
        with self._lock:
            lost = self._outage.pop(signal, None)
        if lost is not None:
            _logger.warning(
                "Exporting %s to %s works again; %d items were dropped during the outage.",
                signal,
                self.destination,
                lost,
            )

    def counts(self) -> dict[str, int]:
        """Return the dropped items by signal since start."""
        with self._lock:
            return dict(self._dropped)


def _exception_failure(counter: DropCounter, signal: str, items: int, exc: Exception) -> None:
    _logger.debug("The %s exporter raised %s", signal, type(exc).__name__)
    counter.failed(signal, items)


class CountingSpanExporter(SpanExporter):
    """Delegates to ``inner`` and counts the spans it fails to export."""

    def __init__(self, inner: SpanExporter, counter: DropCounter) -> None:
        self._inner = inner
        self._counter = counter

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self._inner.export(spans)
        except Exception as exc:
            _exception_failure(self._counter, "traces", len(spans), exc)
            return SpanExportResult.FAILURE
        if result is SpanExportResult.SUCCESS:
            self._counter.succeeded("traces")
        else:
            self._counter.failed("traces", len(spans))
        return result

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
        try:
            result = self._inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
        except Exception as exc:
            _exception_failure(self._counter, "metrics", _data_points(metrics_data), exc)
            return MetricExportResult.FAILURE
        if result is MetricExportResult.SUCCESS:
            self._counter.succeeded("metrics")
        else:
            self._counter.failed("metrics", _data_points(metrics_data))
        return result

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
        try:
            result = self._inner.export(batch)
        except Exception as exc:
            _exception_failure(self._counter, "logs", len(batch), exc)
            return LogRecordExportResult.FAILURE
        if result is LogRecordExportResult.SUCCESS:
            self._counter.succeeded("logs")
        else:
            self._counter.failed("logs", len(batch))
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)
