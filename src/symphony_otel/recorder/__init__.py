"""The OpenTelemetry side: instruments, the snapshot event and redaction."""

from symphony_otel.recorder.generator import OTelSnapshotGenerator

__all__ = ["OTelSnapshotGenerator"]
