"""Helpers for the recorder tests: fixture bodies, orchestrator states and in-memory pipelines.

``collect`` flattens an ``InMemoryMetricReader`` collection into
``{(metric name, frozenset of attribute items)): value}``, so a test can compare
a whole export with a literal dict.  ``Telemetry`` wires one SDK MeterProvider,
TracerProvider and LoggerProvider to in-memory exporters.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import (
    InMemoryLogRecordExporter,
    SimpleLogRecordProcessor,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, Metric, MetricsData
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from symphony_otel import (
    OTelSnapshotGenerator,
    RetryEntry,
    RunningEntry,
    SystemSnapshot,
)

FIXTURES_ENV = "SYMPHONY_OTEL_FIXTURES"
REPO_ROOT = Path(__file__).resolve().parent.parent

Point = tuple[str, frozenset[tuple[str, Any]]]

FIXTURE_15 = "15_state_3running_3retrying_rate_limits.json"
FIXTURE_18 = "18_state_continuation_retry_error_null.json"
ELIXIR_STATE_FIXTURES = (
    "01_state_idle.json",
    "08_state_running3_retrying3_no_rate_limits.json",
    FIXTURE_15,
    FIXTURE_18,
    "20_state_retry_no_available_slots.json",
)


def fixtures_dir() -> Path:
    """Return the recorded-outputs folder: ``SYMPHONY_OTEL_FIXTURES``, else ``tests/fixtures``."""
    override = os.environ.get(FIXTURES_ENV)
    return Path(override) if override else REPO_ROOT / "tests" / "fixtures"


def load_body(name: str) -> dict[str, Any]:
    """Parse one ``symphony-elixir`` fixture body."""
    path = fixtures_dir() / "symphony-elixir" / name
    with path.open(encoding="utf-8") as handle:
        return json.load(handle)


def load_snapshot(name: str) -> SystemSnapshot:
    """Read one ``symphony-elixir`` ``/api/v1/state`` body into a snapshot."""
    return SystemSnapshot.from_dict(load_body(name))


def point(name: str, attributes: Mapping[str, Any] | None = None) -> Point:
    """Return the ``collect`` key of one data point."""
    return name, frozenset((attributes or {}).items())


def metrics_of(data: MetricsData | None) -> dict[str, Metric]:
    """Return the metrics of one collection by name."""
    found: dict[str, Metric] = {}
    if data is None:
        return found
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                found[metric.name] = metric
    return found


def points_of(data: MetricsData | None) -> dict[Point, Any]:
    """Flatten one collection into ``{(name, attributes): value}``."""
    values: dict[Point, Any] = {}
    if data is None:
        return values
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                for data_point in metric.data.data_points:
                    key = point(metric.name, dict(data_point.attributes or {}))
                    assert key not in values, f"two data points for {key}"
                    values[key] = data_point.value
    return values


def collect(reader: InMemoryMetricReader) -> dict[Point, Any]:
    """Collect ``reader`` once and flatten the result."""
    return points_of(reader.get_metrics_data())


def without(points: Mapping[Point, Any], *names: str) -> dict[Point, Any]:
    """Return ``points`` without the data points of the metrics ``names``."""
    return {key: value for key, value in points.items() if key[0] not in names}


def only(points: Mapping[Point, Any], name: str) -> dict[frozenset[tuple[str, Any]], Any]:
    """Return the data points of metric ``name`` by attributes."""
    return {key[1]: value for key, value in points.items() if key[0] == name}


def snapshot(
    running: Iterable[Mapping[str, Any]] = (),
    retrying: Iterable[Mapping[str, Any]] = (),
    **fields: Any,
) -> SystemSnapshot:
    """Build a snapshot by hand; rows are ``RunningEntry``/``RetryEntry`` fields."""
    values: dict[str, Any] = {
        "running": [RunningEntry(**row).to_dict() for row in running],
        "retrying": [RetryEntry(**row).to_dict() for row in retrying],
        "completed_count": 0,
        "codex_totals": {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0, "seconds_running": 0},
        "rate_limits": None,
        "poll_interval_ms": 30_000,
        "max_concurrent_agents": 10,
        "generated_at": "2026-12-04T19:34:01Z",
    }
    values.update(fields)
    return SystemSnapshot(**values)


def worker(identifier: str, input_tokens: int = 0, output_tokens: int = 0, turns: int = 0) -> dict[str, Any]:
    """Return the ``RunningEntry`` fields of one worker."""
    return {
        "issue_id": f"id-{identifier}",
        "identifier": identifier,
        "turn_count": turns,
        "codex_input_tokens": input_tokens,
        "codex_output_tokens": output_tokens,
        "codex_total_tokens": input_tokens + output_tokens,
    }


def retry(identifier: str, attempt: int = 1, error: str | None = None) -> dict[str, Any]:
    """Return the ``RetryEntry`` fields of one retry-queue entry."""
    return {"issue_id": f"id-{identifier}", "identifier": identifier, "attempt": attempt, "error": error}


@dataclass
class TokenTotals:
    """The ``codex_totals`` of an orchestrator state."""

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    seconds_running: float = 0


@dataclass
class OrchestratorState:
    """An orchestrator state in the documented shape, as ``SnapshotGenerator.generate`` reads it."""

    running: dict[str, RunningEntry] = field(default_factory=dict)
    retry_attempts: dict[str, RetryEntry] = field(default_factory=dict)
    completed: set[str] = field(default_factory=set)
    codex_totals: TokenTotals = field(default_factory=TokenTotals)
    codex_rate_limits: dict[str, Any] | None = None
    poll_interval_ms: int = 30_000
    max_concurrent_agents: int = 10


def state_of(body: Mapping[str, Any]) -> OrchestratorState:
    """Rebuild the orchestrator state behind one ``/api/v1/state`` fixture body."""
    state = OrchestratorState()
    for row in body["running"]:
        tokens = row["tokens"]
        state.running[row["issue_id"]] = RunningEntry(
            issue_id=row["issue_id"],
            identifier=row["issue_identifier"],
            turn_count=row["turn_count"],
            codex_total_tokens=tokens["total_tokens"],
            last_codex_event=row["last_event"],
            started_at=row["started_at"],
            session_id=row["session_id"],
            codex_input_tokens=tokens["input_tokens"],
            codex_output_tokens=tokens["output_tokens"],
            worker_host=row["worker_host"],
            workspace_path=row["workspace_path"],
        )
    for row in body["retrying"]:
        state.retry_attempts[row["issue_id"]] = RetryEntry(
            issue_id=row["issue_id"],
            identifier=row["issue_identifier"],
            attempt=row["attempt"],
            error=row["error"],
            worker_host=row["worker_host"],
            workspace_path=row["workspace_path"],
        )
    totals = body["codex_totals"]
    state.codex_totals = TokenTotals(**totals)
    state.codex_rate_limits = body["rate_limits"]
    return state


class Telemetry:
    """SDK providers wired to in-memory exporters, one set per test.

    Args:
        span_limits: Limits of the TracerProvider.
        readers: Number of InMemoryMetricReaders on the MeterProvider.
    """

    def __init__(self, *, span_limits: SpanLimits | None = None, readers: int = 1) -> None:
        self.readers = [InMemoryMetricReader() for _ in range(readers)]
        self.reader = self.readers[0]
        self.meter_provider = MeterProvider(metric_readers=self.readers)
        self.span_exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider(span_limits=span_limits)
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.span_exporter))
        self.log_exporter = InMemoryLogRecordExporter()
        self.logger_provider = LoggerProvider()
        self.logger_provider.add_log_record_processor(SimpleLogRecordProcessor(self.log_exporter))

    def generator(self, **settings: Any) -> OTelSnapshotGenerator:
        """Create a generator that records on these providers."""
        return OTelSnapshotGenerator(
            meter_provider=self.meter_provider,
            tracer_provider=self.tracer_provider,
            logger_provider=self.logger_provider,
            **settings,
        )

    def collect(self) -> dict[Point, Any]:
        """Collect the first reader once."""
        return collect(self.reader)

    def spans(self) -> tuple[ReadableSpan, ...]:
        """Return the finished spans."""
        return self.span_exporter.get_finished_spans()

    def logs(self) -> tuple[ReadableLogRecord, ...]:
        """Return the emitted log records."""
        return self.log_exporter.get_finished_logs()

    def shutdown(self) -> None:
        """Shut the three providers down."""
        self.meter_provider.shutdown()
        self.tracer_provider.shutdown()
        self.logger_provider.shutdown()
