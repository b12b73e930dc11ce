"""OpenTelemetry for Symphony coding-agent orchestrators.

``SnapshotGenerator`` turns an orchestrator's runtime state into a
``SystemSnapshot``; ``OTelSnapshotGenerator`` also records every snapshot as
observable OpenTelemetry instruments and a ``symphony.snapshot`` event.
"""

from symphony_otel.recorder import OTelSnapshotGenerator
from symphony_otel.snapshot import RetryEntry, RunningEntry, SnapshotGenerator, SystemSnapshot
from symphony_otel.version import __version__

__all__ = [
    "OTelSnapshotGenerator",
    "RetryEntry",
    "RunningEntry",
    "SnapshotGenerator",
    "SystemSnapshot",
    "__version__",
]
