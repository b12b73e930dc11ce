"""SDK OTLP exporters aimed at an :class:`OtlpReceiver`, over gRPC or HTTP/protobuf."""

from __future__ import annotations

from opentelemetry.exporter.otlp.proto.grpc._log_exporter import (
    OTLPLogExporter as GrpcLogExporter,
)
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
    OTLPMetricExporter as GrpcMetricExporter,
)
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http._log_exporter import (
    OTLPLogExporter as HttpLogExporter,
)
from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
    OTLPMetricExporter as HttpMetricExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.sdk._logs.export import LogRecordExporter
from opentelemetry.sdk.metrics.export import MetricExporter
from opentelemetry.sdk.trace.export import SpanExporter

from .otlp_receiver import OtlpReceiver

__all__ = ["EXPORT_TIMEOUT_S", "log_exporter", "metric_exporter", "span_exporter"]

EXPORT_TIMEOUT_S = 5.0

# Given an endpoint, the HTTP exporters take the full URL of their signal.


def span_exporter(receiver: OtlpReceiver, protocol: str, timeout: float = EXPORT_TIMEOUT_S) -> SpanExporter:
    """Return a span exporter to ``receiver`` over ``grpc`` or ``http/protobuf``."""
    if protocol == "grpc":
        return GrpcSpanExporter(endpoint=receiver.grpc_endpoint, insecure=True, timeout=timeout)
    return HttpSpanExporter(endpoint=f"{receiver.http_endpoint}/v1/traces", timeout=timeout)


def metric_exporter(receiver: OtlpReceiver, protocol: str, timeout: float = EXPORT_TIMEOUT_S) -> MetricExporter:
    """Return a metric exporter to ``receiver`` over ``grpc`` or ``http/protobuf``."""
    if protocol == "grpc":
        return GrpcMetricExporter(endpoint=receiver.grpc_endpoint, insecure=True, timeout=timeout)
    return HttpMetricExporter(endpoint=f"{receiver.http_endpoint}/v1/metrics", timeout=timeout)


def log_exporter(receiver: OtlpReceiver, protocol: str, timeout: float = EXPORT_TIMEOUT_S) -> LogRecordExporter:
    """Return a log record exporter to ``receiver`` over ``grpc`` or ``http/protobuf``."""
    if protocol == "grpc":
        return GrpcLogExporter(endpoint=receiver.grpc_endpoint, insecure=True, timeout=timeout)
    return HttpLogExporter(endpoint=f"{receiver.http_endpoint}/v1/logs", timeout=timeout)
