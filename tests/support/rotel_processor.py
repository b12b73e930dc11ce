"""Rotel processor that appends every received span, metric point and log record as JSON.

rotel-agent loads this file with ``--otlp-with-trace-processor``,
``--otlp-with-metrics-processor`` and ``--otlp-with-logs-processor`` and calls
``process_spans``, ``process_metrics`` and ``process_logs`` on every batch,
inside its embedded interpreter. That interpreter offers only the standard
library, and rotel discards any exception raised here, so every failure is
written to the output file as an ``"error"`` record instead.

The output file is named by the ``SYMPHONY_OTEL_TEST_RECORDS_FILE``
environment variable. Each line is one JSON object whose ``"kind"`` is
``"span"``, ``"metric_point"``, ``"log_record"`` or ``"error"``. The field
layout is documented in ``otlp_receiver.py``, which reads the file back.

The attribute objects of rotel 0.0.1a15 mirror the OTLP protobuf messages.
``AnyValue.value`` is already a Python ``str``, ``bool``, ``int``, ``float`` or
``bytes``, or an ``ArrayValue`` / ``KeyValueList`` wrapper. ``Metric.data[0]``
is the Gauge, Sum, Histogram, ExponentialHistogram or Summary message, and
``NumberDataPoint.value[0]`` is the ``int`` or ``float`` value.
"""

from __future__ import annotations

import base64
import json
import os
import traceback
from collections.abc import Callable
from typing import Any

RECORDS_FILE_ENV = "SYMPHONY_OTEL_TEST_RECORDS_FILE"

_SPAN_KINDS = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}
_STATUS_CODES = {0: "unset", 1: "ok", 2: "error"}
_TEMPORALITIES = {0: "unspecified", 1: "delta", 2: "cumulative"}
_METRIC_TYPES = {
    "Gauge": "gauge",
    "Sum": "sum",
    "Histogram": "histogram",
    "ExponentialHistogram": "exponential_histogram",
    "Summary": "summary",
}


def process_spans(resource_spans: Any) -> None:
    """Append one record per span in the batch."""
    _write_records("traces", _span_records, resource_spans)


def process_metrics(resource_metrics: Any) -> None:
    """Append one record per metric data point in the batch."""
    _write_records("metrics", _metric_point_records, resource_metrics)


def process_logs(resource_logs: Any) -> None:
    """Append one record per log record in the batch."""
    _write_records("logs", _log_records, resource_logs)


def _write_records(signal: str, convert: Callable[[Any, list], None], batch: Any) -> None:
    records: list[dict[str, Any]] = []
    try:
        convert(batch, records)
    except Exception:  # noqa: BLE001 - rotel would drop the exception silently.
        records.append({"kind": "error", "signal": signal, "error": traceback.format_exc()})
    if not records:
        return

    lines = [json.dumps(record, ensure_ascii=False) + "\n" for record in records]
    data = "".join(lines).encode("utf-8")

    # One O_APPEND write per batch keeps the lines whole when rotel runs the
    # trace, metric and log processors at the same time.
    fd = os.open(os.environ[RECORDS_FILE_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
    finally:
        os.close(fd)


def _span_records(resource_spans: Any, records: list) -> None:
    resource = _attributes_of(resource_spans.resource)
    for scope_spans in resource_spans.scope_spans:
        scope_name, scope_version = _scope_of(scope_spans.scope)
        for span in scope_spans.spans:
            status = span.status
            records.append(
                {
                    "kind": "span",
                    "resource": resource,
                    "scope": scope_name,
                    "scope_version": scope_version,
                    "name": span.name,
                    "span_kind": _SPAN_KINDS.get(span.kind, span.kind),
                    "trace_id": _hex_id(span.trace_id),
                    "span_id": _hex_id(span.span_id),
                    "parent_span_id": _hex_id(span.parent_span_id),
                    "start_time_unix_nano": span.start_time_unix_nano,
                    "end_time_unix_nano": span.end_time_unix_nano,
                    "attributes": _attributes(span.attributes),
                    "events": [
                        {
                            "name": event.name,
                            "time_unix_nano": event.time_unix_nano,
                            "attributes": _attributes(event.attributes),
                        }
                        for event in span.events
                    ],
                    "links": [
                        {
                            "trace_id": _hex_id(link.trace_id),
                            "span_id": _hex_id(link.span_id),
                            "attributes": _attributes(link.attributes),
                        }
                        for link in span.links
                    ],
                    "status": {
                        "code": "unset" if status is None else _STATUS_CODES.get(status.code, status.code),
                        "message": "" if status is None else status.message,
                    },
                }
            )


def _metric_point_records(resource_metrics: Any, records: list) -> None:
    resource = _attributes_of(resource_metrics.resource)
    for scope_metrics in resource_metrics.scope_metrics:
        scope_name, scope_version = _scope_of(scope_metrics.scope)
        for metric in scope_metrics.metrics:
            if metric.data is None:
                continue
            data = metric.data[0]
            metric_type = _METRIC_TYPES[type(data).__name__]
            temporality = getattr(data, "aggregation_temporality", None)
            common = {
                "kind": "metric_point",
                "resource": resource,
                "scope": scope_name,
                "scope_version": scope_version,
                "name": metric.name,
                "unit": metric.unit,
                "description": metric.description,
                "type": metric_type,
                "is_monotonic": getattr(data, "is_monotonic", None),
                "aggregation_temporality": None if temporality is None else _TEMPORALITIES[int(temporality)],
            }
            for point in data.data_points:
                record = dict(common)
                record["attributes"] = _attributes(point.attributes)
                record["time_unix_nano"] = point.time_unix_nano
                record["start_time_unix_nano"] = point.start_time_unix_nano
                record.update(_point_values(metric_type, point))
                records.append(record)


def _point_values(metric_type: str, point: Any) -> dict[str, Any]:
    if metric_type in ("gauge", "sum"):
        return {"value": None if point.value is None else point.value[0]}

    values: dict[str, Any] = {"value": None, "count": point.count, "sum": point.sum}
    if metric_type == "summary":
        values["quantile_values"] = [[q.quantile, q.value] for q in point.quantile_values]
        return values

    values["min"] = point.min
    values["max"] = point.max
    if metric_type == "histogram":
        values["bucket_counts"] = list(point.bucket_counts)
        values["explicit_bounds"] = list(point.explicit_bounds)
    else:
        values["scale"] = point.scale
        values["zero_count"] = point.zero_count
    return values


def _log_records(resource_logs: Any, records: list) -> None:
    resource = _attributes_of(resource_logs.resource)
    for scope_logs in resource_logs.scope_logs:
        scope_name, scope_version = _scope_of(scope_logs.scope)
        for log_record in scope_logs.log_records:
            records.append(
                {
                    "kind": "log_record",
                    "resource": resource,
                    "scope": scope_name,
                    "scope_version": scope_version,
                    # OTLP cannot tell an unset event name from an empty one.
                    "event_name": log_record.event_name or None,
                    "body": _value(log_record.body),
                    "attributes": _attributes(log_record.attributes),
                    "severity_number": log_record.severity_number,
                    "severity_text": log_record.severity_text,
                    "trace_id": _hex_id(log_record.trace_id),
                    "span_id": _hex_id(log_record.span_id),
                    "time_unix_nano": log_record.time_unix_nano,
                    "observed_time_unix_nano": log_record.observed_time_unix_nano,
                }
            )


def _scope_of(scope: Any) -> tuple[str, str]:
    if scope is None:
        return "", ""
    return scope.name, scope.version


def _attributes_of(owner: Any) -> dict[str, Any]:
    return {} if owner is None else _attributes(owner.attributes)


def _attributes(key_values: Any) -> dict[str, Any]:
    return {key_value.key: _value(key_value.value) for key_value in key_values}


def _value(any_value: Any) -> Any:
    """Convert an OTLP AnyValue to plain JSON data, keeping its Python type."""
    if any_value is None:
        return None
    value = any_value.value
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, bytes):
        # JSON has no bytes type, and a plain string would pass for a string attribute.
        return {"bytes_base64": base64.b64encode(value).decode("ascii")}

    type_name = type(value).__name__
    if type_name == "ArrayValue":
        return [_value(item) for item in value]
    if type_name == "KeyValueList":
        return {key_value.key: _value(key_value.value) for key_value in value}
    raise TypeError(f"unsupported AnyValue content of type {type_name}: {value!r}")


def _hex_id(raw: bytes) -> str | None:
    """Return a trace or span id as lower-case hex, or None when it is empty or all zeros."""
    if not raw or not any(raw):
        return None
    return raw.hex()
