"""Names, kinds, units and descriptions of the instruments the recorder exports.

This catalogue is the single source of the metric names: the recorder registers
its instruments from it, and the Collector configuration tests read it to check
dashboards and alert rules.  Below the catalogue, one small pure callback per
instrument computes its observations from a :class:`SnapshotView`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.util.types import AttributeValue

from symphony_otel.recorder.view import SnapshotView

__all__ = [
    "ATTR_FIELD",
    "ATTR_ISSUE_IDENTIFIER",
    "ATTR_OVERFLOW",
    "ATTR_RATE_LIMIT_ID",
    "ATTR_RATE_LIMIT_WINDOW",
    "ATTR_ERROR_TYPE",
    "ATTR_TOKEN_TYPE",
    "ALL_INSTRUMENT_SPECS",
    "BRIDGE_INSTRUMENT_SPECS",
    "INSTRUMENT_SPECS",
    "InstrumentSpec",
]

InstrumentKind = Literal["gauge", "counter"]

ATTR_ISSUE_IDENTIFIER = "symphony.issue.identifier"
ATTR_TOKEN_TYPE = "gen_ai.token.type"
ATTR_RATE_LIMIT_WINDOW = "symphony.rate_limit.window"
ATTR_RATE_LIMIT_ID = "symphony.rate_limit.id"
ATTR_FIELD = "symphony.snapshot.field"
ATTR_ERROR_TYPE = "error.type"
# The attribute the OpenTelemetry specification gives the series that collects
# measurements past a cardinality limit.
ATTR_OVERFLOW = "otel.metric.overflow"


@dataclass(frozen=True)
class InstrumentSpec:
    """Static description of one observable instrument."""

    name: str
    kind: InstrumentKind
    unit: str
    description: str
    attributes: tuple[str, ...] = ()


WORKERS_RUNNING = InstrumentSpec(
    "symphony.workers.running", "gauge", "{worker}", "Number of agent workers running."
)
WORKERS_LIMIT = InstrumentSpec(
    "symphony.workers.limit",
    "gauge",
    "{worker}",
    "Maximum number of concurrent agent workers (max_concurrent_agents).",
)
WORKERS_OVERFLOW = InstrumentSpec(
    "symphony.workers.overflow",
    "gauge",
    "{worker}",
    "Running workers folded into the overflow series of the per-worker instruments.",
)
RETRY_QUEUE_SIZE = InstrumentSpec(
    "symphony.retry_queue.size", "gauge", "{issue}", "Number of issues waiting in the retry queue."
)
POLL_INTERVAL = InstrumentSpec(
    "symphony.poll.interval", "gauge", "s", "Interval between two polls of the issue tracker."
)
POLL_IN_PROGRESS = InstrumentSpec(
    "symphony.poll.in_progress", "gauge", "1", "1 while a poll of the issue tracker runs, else 0."
)
SNAPSHOT_AGE = InstrumentSpec(
    "symphony.snapshot.age", "gauge", "s", "Seconds since the latest snapshot was recorded."
)
RATE_LIMIT_UTILIZATION = InstrumentSpec(
    "symphony.rate_limit.utilization",
    "gauge",
    "1",
    "Used fraction of a rate-limit window, from 0 to 1.",
    (ATTR_RATE_LIMIT_WINDOW, ATTR_RATE_LIMIT_ID),
)
RATE_LIMIT_RESET = InstrumentSpec(
    "symphony.rate_limit.reset",
    "gauge",
    "s",
    "Seconds until a rate-limit window resets.",
    (ATTR_RATE_LIMIT_WINDOW, ATTR_RATE_LIMIT_ID),
)
RATE_LIMIT_CREDITS_BALANCE = InstrumentSpec(
    "symphony.rate_limit.credits.balance",
    "gauge",
    "{credit}",
    "Remaining credit balance reported with the rate limits.",
    (ATTR_RATE_LIMIT_ID,),
)
WORKER_TOKENS = InstrumentSpec(
    "symphony.worker.tokens",
    "gauge",
    "{token}",
    "Tokens used by one running worker's session, by token type.",
    (ATTR_ISSUE_IDENTIFIER, ATTR_TOKEN_TYPE),
)
WORKER_TURNS = InstrumentSpec(
    "symphony.worker.turns",
    "gauge",
    "{turn}",
    "Turns taken by one running worker's session.",
    (ATTR_ISSUE_IDENTIFIER,),
)
TOKENS = InstrumentSpec(
    "symphony.tokens",
    "counter",
    "{token}",
    "Tokens used by all agent sessions since the orchestrator started, by token type.",
    (ATTR_TOKEN_TYPE,),
)
AGENT_RUNTIME = InstrumentSpec(
    "symphony.agent.runtime",
    "counter",
    "s",
    "Agent running time added up by the orchestrator.",
)
ISSUES_COMPLETED = InstrumentSpec(
    "symphony.issues.completed", "counter", "{issue}", "Issues the orchestrator has completed."
)
INVALID_VALUES = InstrumentSpec(
    "symphony.snapshot.invalid_values",
    "counter",
    "{value}",
    "Values of the orchestrator state that were invalid and replaced by their default.",
    (ATTR_FIELD,),
)
PAYLOAD_DROPPED_ROWS = InstrumentSpec(
    "symphony.snapshot.payload.dropped_rows",
    "counter",
    "{row}",
    "Rows left out of snapshot payloads to keep them within the size limit.",
)
RECORD_ERRORS = InstrumentSpec(
    "symphony.snapshot.record_errors",
    "counter",
    "{error}",
    "Snapshots whose recording failed inside the plugin; the host never sees these errors.",
)

INSTRUMENT_SPECS: tuple[InstrumentSpec, ...] = (
    WORKERS_RUNNING,
    WORKERS_LIMIT,
    WORKERS_OVERFLOW,
    RETRY_QUEUE_SIZE,
    POLL_INTERVAL,
    POLL_IN_PROGRESS,
    SNAPSHOT_AGE,
    RATE_LIMIT_UTILIZATION,
    RATE_LIMIT_RESET,
    RATE_LIMIT_CREDITS_BALANCE,
    WORKER_TOKENS,
    WORKER_TURNS,
    TOKENS,
    AGENT_RUNTIME,
    ISSUES_COMPLETED,
    INVALID_VALUES,
    PAYLOAD_DROPPED_ROWS,
    RECORD_ERRORS,
)

# The bridge (the `watch` command) registers these beside the recorder's own.
BRIDGE_UP = InstrumentSpec(
    "symphony.bridge.up",
    "gauge",
    "1",
    "1 when the latest scrape of the orchestrator's state API succeeded, else 0.",
)
BRIDGE_SCRAPE_ERRORS = InstrumentSpec(
    "symphony.bridge.scrape.errors",
    "counter",
    "{error}",
    "Failed scrapes of the orchestrator's state API, by error type.",
    (ATTR_ERROR_TYPE,),
)

BRIDGE_INSTRUMENT_SPECS: tuple[InstrumentSpec, ...] = (BRIDGE_UP, BRIDGE_SCRAPE_ERRORS)

ALL_INSTRUMENT_SPECS: tuple[InstrumentSpec, ...] = INSTRUMENT_SPECS + BRIDGE_INSTRUMENT_SPECS


# --- Callbacks -----------------------------------------------------------------
# Each function below computes the observations of one instrument from one
# SnapshotView.  They are pure: no I/O, no locks, no host objects.


@dataclass(frozen=True)
class CallbackContext:
    """The inputs of every callback besides the view.

    Attributes:
        base: Attributes added to every data point (the orchestrator name).
        monotonic_now: ``time.monotonic()`` at collection.
        wall_now: ``time.time()`` at collection.
        fresh: Whether the view is recent enough for the level gauges.
        worker_series_limit: Workers with series of their own.
        invalid_counts: Invalid values by field name, for ``symphony.snapshot.invalid_values``.
        counters: The recorder's own counters (dropped rows, record errors).
        series_budget: The identifiers allowed a series over the process's
            life, or None for no such bound.
        redact: Scrubs a list of issue identifiers before they become attributes.
        memo: Results shared by the callbacks of one collection.
    """

    base: Mapping[str, AttributeValue]
    monotonic_now: float
    wall_now: float
    fresh: bool
    worker_series_limit: int
    invalid_counts: Mapping[str, int]
    counters: Mapping[str, float]
    series_budget: SeriesBudget | None = None
    redact: Callable[[list[str]], list[str]] | None = None
    memo: dict[str, Any] = field(default_factory=dict)


class SeriesBudget:
    """The issue identifiers that have had series of their own, bounded for life.

    The OpenTelemetry Python SDK (1.45) keeps the storage of every attribute
    set an observable instrument has reported until the process ends, and
    folds new sets into its own overflow series past its cardinality limit
    (2000 by default).  For gauges that series contains an arbitrary last value.
    Identifiers past this budget therefore go to our overflow series, whose
    values are sums, before the SDK's limit is reached.

    Args:
        identifiers: How many identifiers may ever have a series.
    """

    def __init__(self, identifiers: int) -> None:
        self.capacity = identifiers
        self._admitted: set[str] = set()
        self._lock = threading.Lock()

    def admit(self, identifier: str) -> bool:
        """Return whether ``identifier`` may have a series: it had one, or there is room."""
        if identifier in self._admitted:
            return True
        with self._lock:
            if len(self._admitted) < self.capacity:
                self._admitted.add(identifier)
                return True
        return False

    @property
    def full(self) -> bool:
        """Whether no new identifier can get a series any more."""
        return len(self._admitted) >= self.capacity


def _attrs(ctx: CallbackContext, extra: Mapping[str, AttributeValue] | None = None) -> dict[str, AttributeValue]:
    if not extra:
        return dict(ctx.base)
    merged = dict(ctx.base)
    merged.update(extra)
    return merged


def _level(value: float, ctx: CallbackContext) -> list[Observation]:
    return [Observation(value, _attrs(ctx))] if ctx.fresh else []


_INT64_MAX = 2**63 - 1


def _int64(value: float) -> float:
    # OTLP carries integer points as int64, and one integer outside it makes
    # the exporter reject the whole batch, so counts are kept within 0..int64.
    # Snapshots from generate() are valid already; one built by hand may not be.
    if isinstance(value, int):
        return min(max(value, 0), _INT64_MAX)
    if isinstance(value, float) and value >= 0 and value != float("inf"):
        return value
    return 0


def observe_workers_running(view: SnapshotView, ctx: CallbackContext) -> list[Observation]:
    """symphony.workers.running"""
    return _level(len(view.snapshot.running), ctx)


def observe_workers_limit(view: SnapshotView, ctx: CallbackContext) -> list[Observation]:
    """symphony.workers.limit (nothing while the limit is unknown)"""
    limit = view.snapshot.max_concurrent_agents
    return _level(_int64(limit), ctx) if limit > 0 else []


def observe_workers_overflow(view: SnapshotView, ctx: CallbackContext) -> list[Observation]:
    """symphony.workers.overflow: running workers folded into the overflow series"""
    if not ctx.fresh:
        return []
    _series, _overflow, folded = _worker_series(view, ctx)
    return [Observation(folded, _attrs(ctx))]


def observe_retry_queue_size(view: SnapshotView, ctx: CallbackContext) -> list[Observation]:
    """symphony.retry_queue.size"""
    return _level(len(view.snapshot.retrying), ctx)


def observe_poll_interval(view: SnapshotView, ctx: CallbackContext) -> list[Observation]:
    """symphony.poll.interval in seconds (nothing while the interval is unknown)"""
    interval_ms = view.snapshot.poll_interval_ms
    return _level(_int64(interval_ms) / 1000.0, ctx) if interval_ms > 0 else []


def observe_poll_in_progress(view: SnapshotView, ctx: CallbackContext) -> list[Observation]:
    """symphony.poll.in_progress"""
    return _level(1 if view.snapshot.poll_check_in_progress else 0, ctx)


def observe_snapshot_age(view: SnapshotView, ctx: CallbackContext) -> list[Observation]:
    """symphony.snapshot.age, reported even when the snapshot is stale"""
    return [Observation(max(ctx.monotonic_now - view.recorded_at, 0.0), _attrs(ctx))]


def observe_rate_limit_utilization(view: SnapshotView, ctx: CallbackContext) -> list[Observation]:
    """symphony.rate_limit.utilization per window"""
    if not ctx.fresh:
        return []
    return [
        Observation(
            window.utilization,
            _attrs(ctx, {ATTR_RATE_LIMIT_WINDOW: window.window, ATTR_RATE_LIMIT_ID: window.limit_id}),
        )
        for window in view.rate_limits.windows
        if window.utilization is not None
    ]


def observe_rate_limit_reset(view: SnapshotView, ctx: CallbackContext) -> list[Observation]:
    """symphony.rate_limit.reset: seconds until each window resets"""
    if not ctx.fresh:
        return []
    return [
        Observation(
            max(window.resets_at - ctx.wall_now, 0.0),
            _attrs(ctx, {ATTR_RATE_LIMIT_WINDOW: window.window, ATTR_RATE_LIMIT_ID: window.limit_id}),
        )
        for window in view.rate_limits.windows
        if window.resets_at is not None
    ]


def observe_credits_balance(view: SnapshotView, ctx: CallbackContext) -> list[Observation]:
    """symphony.rate_limit.credits.balance per limit"""
    if not ctx.fresh:
        return []
    return [
        Observation(balance, _attrs(ctx, {ATTR_RATE_LIMIT_ID: limit_id}))
        for limit_id, balance in view.rate_limits.credits
    ]


def _worker_series(
    view: SnapshotView, ctx: CallbackContext
) -> tuple[dict[str, tuple[int, int, int]], tuple[int, int, int] | None, int]:
    """Per-identifier (input, output, turns), the sums of the overflow workers, and their number.

    Rows that share an identifier share its series.
    """
    memo = ctx.memo.get("workers")
    if memo is not None:
        return memo  # type: ignore[no-any-return]
    series: dict[str, tuple[int, int, int]] = {}
    overflow_input = overflow_output = overflow_turns = 0
    folded = 0
    limit = ctx.worker_series_limit
    budget = ctx.series_budget
    rows = view.snapshot.running
    identifiers = [row["identifier"] for row in rows]
    if ctx.redact is not None:
        identifiers = ctx.redact(identifiers)
    for row, identifier in zip(rows, identifiers):
        input_tokens, output_tokens, turns = (
            row["codex_input_tokens"],
            row["codex_output_tokens"],
            row["turn_count"],
        )
        previous = series.get(identifier)
        if previous is not None:
            series[identifier] = (
                previous[0] + input_tokens,
                previous[1] + output_tokens,
                previous[2] + turns,
            )
        elif len(series) < limit and (budget is None or budget.admit(identifier)):
            series[identifier] = (input_tokens, output_tokens, turns)
        else:
            overflow_input += input_tokens
            overflow_output += output_tokens
            overflow_turns += turns
            folded += 1
    overflow = (overflow_input, overflow_output, overflow_turns) if folded else None
    result = (series, overflow, folded)
    ctx.memo["workers"] = result
    return result


def observe_worker_tokens(view: SnapshotView, ctx: CallbackContext) -> list[Observation]:
    """symphony.worker.tokens per worker and token type, with an overflow series"""
    if not ctx.fresh:
        return []
    series, overflow, _folded = _worker_series(view, ctx)
    observations = []
    for identifier, (input_tokens, output_tokens, _turns) in series.items():
        observations.append(
            Observation(
                _int64(input_tokens),
                _attrs(ctx, {ATTR_ISSUE_IDENTIFIER: identifier, ATTR_TOKEN_TYPE: "input"}),
            )
        )
        observations.append(
            Observation(
                _int64(output_tokens),
                _attrs(ctx, {ATTR_ISSUE_IDENTIFIER: identifier, ATTR_TOKEN_TYPE: "output"}),
            )
        )
    if overflow is not None:
        observations.append(
            Observation(_int64(overflow[0]), _attrs(ctx, {ATTR_OVERFLOW: True, ATTR_TOKEN_TYPE: "input"}))
        )
        observations.append(
            Observation(_int64(overflow[1]), _attrs(ctx, {ATTR_OVERFLOW: True, ATTR_TOKEN_TYPE: "output"}))
        )
    return observations


def observe_worker_turns(view: SnapshotView, ctx: CallbackContext) -> list[Observation]:
    """symphony.worker.turns per worker, with an overflow series"""
    if not ctx.fresh:
        return []
    series, overflow, _folded = _worker_series(view, ctx)
    observations = [
        Observation(_int64(turns), _attrs(ctx, {ATTR_ISSUE_IDENTIFIER: identifier}))
        for identifier, (_input, _output, turns) in series.items()
    ]
    if overflow is not None:
        observations.append(Observation(_int64(overflow[2]), _attrs(ctx, {ATTR_OVERFLOW: True})))
    return observations


def observe_tokens(view: SnapshotView, ctx: CallbackContext) -> list[Observation]:
    """symphony.tokens by token type (cumulative, monotonic across restarts)"""
    return [
        Observation(_int64(view.totals["input_tokens"]), _attrs(ctx, {ATTR_TOKEN_TYPE: "input"})),
        Observation(_int64(view.totals["output_tokens"]), _attrs(ctx, {ATTR_TOKEN_TYPE: "output"})),
    ]


def observe_agent_runtime(view: SnapshotView, ctx: CallbackContext) -> list[Observation]:
    """symphony.agent.runtime (cumulative, monotonic across restarts)"""
    return [Observation(_int64(view.totals["seconds_running"]), _attrs(ctx))]


def observe_issues_completed(view: SnapshotView, ctx: CallbackContext) -> list[Observation]:
    """symphony.issues.completed (cumulative, monotonic across restarts)"""
    return [Observation(_int64(view.totals["completed"]), _attrs(ctx))]


def observe_invalid_values(view: SnapshotView, ctx: CallbackContext) -> list[Observation]:
    """symphony.snapshot.invalid_values by field name"""
    return [Observation(count, _attrs(ctx, {ATTR_FIELD: name})) for name, count in ctx.invalid_counts.items()]


def observe_payload_dropped_rows(view: SnapshotView, ctx: CallbackContext) -> list[Observation]:
    """symphony.snapshot.payload.dropped_rows"""
    return [Observation(ctx.counters.get("dropped_rows", 0), _attrs(ctx))]


def observe_record_errors(view: SnapshotView, ctx: CallbackContext) -> list[Observation]:
    """symphony.snapshot.record_errors"""
    return [Observation(ctx.counters.get("record_errors", 0), _attrs(ctx))]


ViewCallback = Callable[[SnapshotView, CallbackContext], list[Observation]]

CALLBACKS: Mapping[str, ViewCallback] = {
    WORKERS_RUNNING.name: observe_workers_running,
    WORKERS_LIMIT.name: observe_workers_limit,
    WORKERS_OVERFLOW.name: observe_workers_overflow,
    RETRY_QUEUE_SIZE.name: observe_retry_queue_size,
    POLL_INTERVAL.name: observe_poll_interval,
    POLL_IN_PROGRESS.name: observe_poll_in_progress,
    SNAPSHOT_AGE.name: observe_snapshot_age,
    RATE_LIMIT_UTILIZATION.name: observe_rate_limit_utilization,
    RATE_LIMIT_RESET.name: observe_rate_limit_reset,
    RATE_LIMIT_CREDITS_BALANCE.name: observe_credits_balance,
    WORKER_TOKENS.name: observe_worker_tokens,
    WORKER_TURNS.name: observe_worker_turns,
    TOKENS.name: observe_tokens,
    AGENT_RUNTIME.name: observe_agent_runtime,
    ISSUES_COMPLETED.name: observe_issues_completed,
    INVALID_VALUES.name: observe_invalid_values,
    PAYLOAD_DROPPED_ROWS.name: observe_payload_dropped_rows,
    RECORD_ERRORS.name: observe_record_errors,
}


def create_instrument(
    meter: Meter, spec: InstrumentSpec, callback: Callable[[CallbackOptions], Iterable[Observation]]
) -> Any:
    """Create the observable instrument described by ``spec``."""
    if spec.kind == "counter":
        return meter.create_observable_counter(
            spec.name, callbacks=[callback], unit=spec.unit, description=spec.description
        )
    return meter.create_observable_gauge(
        spec.name, callbacks=[callback], unit=spec.unit, description=spec.description
    )
