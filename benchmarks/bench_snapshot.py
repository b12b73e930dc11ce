"""Benchmarks of snapshot generation and recording, side by side with their floors.

Usage::

    python benchmarks/bench_snapshot.py [--quick] [--output benchmarks/results/latest.json]
    python benchmarks/bench_snapshot.py --profile 1000   # cProfile of OTelSnapshotGenerator.generate

Each comparison times its variants in the same rounds, alternating their order
(A, B, then B, A), so that machine noise hits all of them.  The tables show
medians over the rounds.  The state objects imitate a Python port of Symphony:
dataclass entries with aware datetimes, token counts, issue identifiers and
error strings of realistic length, held by a dataclass state.

The package is imported from this checkout's ``src`` folder, not from an
installed copy.  Timings are printed and written as JSON, never asserted.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import datetime as dt
import gc
import itertools
import json
import logging
import os
import platform
import pstats
import random
import statistics
import subprocess
import sys
import time
import tracemalloc
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "src"))

import orjson
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SpanExporter,
    SpanExportResult,
)

import symphony_otel
from symphony_otel import OTelSnapshotGenerator, SnapshotGenerator
from symphony_otel.recorder import events as recorder_events
from symphony_otel.recorder.redaction import Redactor

SIZES = (10, 100, 1_000, 10_000)
SEED = 20240611

# A payload limit far above any payload here, so that nothing is truncated.
UNLIMITED_PAYLOAD = 1 << 40


# --- Host-side state ---------------------------------------------------------------


@dataclass(eq=False)
class HostIssue:
    """The tracker issue a host keeps on each running entry (never read by a snapshot)."""

    id: str
    identifier: str
    title: str
    description: str
    state: str
    labels: list[str]
    url: str


@dataclass(eq=False)
class HostRunningEntry:
    """A running worker as a Python port keeps it."""

    issue_id: str
    identifier: str
    issue: HostIssue
    session_id: str
    codex_app_server_pid: int
    last_codex_event: str
    last_codex_timestamp: dt.datetime
    last_codex_message: dict[str, Any]
    codex_input_tokens: int
    codex_output_tokens: int
    codex_total_tokens: int
    last_reported_input_tokens: int
    last_reported_output_tokens: int
    last_reported_total_tokens: int
    turn_count: int
    retry_attempt: int
    started_at: dt.datetime
    worker_host: str | None
    workspace_path: str


@dataclass(eq=False)
class HostRetryEntry:
    """A retry-queue entry as a Python port keeps it."""

    issue_id: str
    identifier: str
    attempt: int
    due_at_ms: int
    timer_handle: object
    error: str | None
    delay_type: str
    worker_host: str | None
    workspace_path: str


@dataclass
class HostTokenTotals:
    """Token and running-time totals of a host."""

    input_tokens: int
    output_tokens: int
    total_tokens: int
    seconds_running: float


@dataclass
class HostState:
    """The orchestrator state of a Python port."""

    poll_interval_ms: int
    max_concurrent_agents: int
    running: dict[str, HostRunningEntry] = field(default_factory=dict)
    claimed: set[str] = field(default_factory=set)
    retry_attempts: dict[str, HostRetryEntry] = field(default_factory=dict)
    completed: set[str] = field(default_factory=set)
    codex_totals: HostTokenTotals = field(
        default_factory=lambda: HostTokenTotals(0, 0, 0, 0.0)
    )
    codex_rate_limits: dict[str, Any] | None = None
    poll_check_in_progress: bool = False
    next_poll_due_at_ms: int = 0


_TEAMS = ("ENG", "PLAT", "OPS", "WEB", "DATA")
_EVENTS = (
    "turn/started",
    "item/started",
    "item/agentMessage/delta",
    "item/commandExecution/outputDelta",
    "item/completed",
    "thread/tokenUsage/updated",
    "turn/completed",
)
_ERRORS = (
    (
        "codex app-server exited with status 1 after {turns} turns: turn/failed: stream "
        "disconnected before completion: error sending request for url "
        "(https://api.openai.com/v1/responses): operation timed out; workspace {path}"
    ),
    (
        "workspace hook after_create failed (exit 128) in {path}: fatal: unable to access "
        "'https://github.com/acme/widgets.git/': The requested URL returned error: 403"
    ),
    (
        "turn timeout: no codex event for 300000 ms (last event: "
        "item/commandExecution/outputDelta, {turns} turns); stopping the worker in {path}"
    ),
    (
        "linear: GraphQL request for issue {identifier} failed: 429 Too Many Requests: rate "
        "limit exceeded, retry after 60 s (request id {request})"
    ),
    (
        "codex app-server rejected the approval request for `npm test -- --runInBand` in "
        "{path}: sandbox denied write access outside the workspace"
    ),
)


class StateFactory:
    """Builds host states and the running and retry entries in them, from a seed."""

    def __init__(self, seed: int = SEED) -> None:
        self._rng = random.Random(seed)
        self._now = dt.datetime(2025, 6, 11, 9, 30, tzinfo=dt.timezone.utc)
        self._next_number = 1000

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def _identifier(self) -> str:
        self._next_number += 1
        return f"{self._rng.choice(_TEAMS)}-{self._next_number}"

    def running_entry(self) -> HostRunningEntry:
        """Return a running entry with fresh identifiers."""
        rng = self._rng
        identifier = self._identifier()
        issue_id = self._uuid()
        input_tokens = rng.randint(1_000, 2_000_000)
        output_tokens = rng.randint(100, 200_000)
        started_at = self._now - dt.timedelta(seconds=rng.uniform(5, 7200))
        issue = HostIssue(
            id=issue_id,
            identifier=identifier,
            title=f"Fix flaky checkout test in {identifier.lower()} pipeline",
            description="The checkout integration test fails about once in twenty runs. "
            * 8,
            state="In Progress",
            labels=["bug", "ci"],
            url=f"https://linear.app/acme/issue/{identifier}",
        )
        return HostRunningEntry(
            issue_id=issue_id,
            identifier=identifier,
            issue=issue,
            session_id=f"{self._uuid()}-{self._uuid()}",
            codex_app_server_pid=rng.randint(1000, 60000),
            last_codex_event=rng.choice(_EVENTS),
            last_codex_timestamp=started_at + dt.timedelta(seconds=rng.uniform(1, 5)),
            last_codex_message={
                "method": "item/completed",
                "params": {"itemId": self._uuid()},
            },
            codex_input_tokens=input_tokens,
            codex_output_tokens=output_tokens,
            codex_total_tokens=input_tokens + output_tokens,
            last_reported_input_tokens=input_tokens,
            last_reported_output_tokens=output_tokens,
            last_reported_total_tokens=input_tokens + output_tokens,
            turn_count=rng.randint(1, 40),
            retry_attempt=rng.randint(0, 2),
            started_at=started_at,
            worker_host=None
            if rng.random() < 0.5
            else f"worker-{rng.randint(1, 8)}.build.internal",
            workspace_path=f"/srv/symphony/workspaces/{identifier}",
        )

    def retry_entry(self) -> HostRetryEntry:
        """Return a retry entry with fresh identifiers and, mostly, an error string."""
        rng = self._rng
        identifier = self._identifier()
        path = f"/srv/symphony/workspaces/{identifier}"
        continuation = rng.random() < 0.2
        error = None
        if not continuation:
            error = rng.choice(_ERRORS).format(
                turns=rng.randint(1, 30),
                path=path,
                identifier=identifier,
                request=self._uuid(),
            )
        return HostRetryEntry(
            issue_id=self._uuid(),
            identifier=identifier,
            attempt=rng.randint(1, 6),
            due_at_ms=rng.randint(10_000_000, 20_000_000),
            timer_handle=object(),
            error=error,
            delay_type="continuation" if continuation else "failure",
            worker_host=None
            if rng.random() < 0.5
            else f"worker-{rng.randint(1, 8)}.build.internal",
            workspace_path=path,
        )

    def state(self, workers: int, retries: int) -> HostState:
        """Return a state with ``workers`` running entries and ``retries`` retry entries."""
        state = HostState(
            poll_interval_ms=30_000, max_concurrent_agents=max(workers, 10)
        )
        for _ in range(workers):
            entry = self.running_entry()
            state.running[entry.issue_id] = entry
            state.claimed.add(entry.issue_id)
        for _ in range(retries):
            retry = self.retry_entry()
            state.retry_attempts[retry.issue_id] = retry
        state.completed = {self._uuid() for _ in range(workers * 3)}
        state.codex_totals = HostTokenTotals(
            input_tokens=sum(e.codex_input_tokens for e in state.running.values()) * 4,
            output_tokens=sum(e.codex_output_tokens for e in state.running.values())
            * 4,
            total_tokens=0,
            seconds_running=123_456.5,
        )
        state.codex_totals.total_tokens = (
            state.codex_totals.input_tokens + state.codex_totals.output_tokens
        )
        resets = self._now.timestamp()
        state.codex_rate_limits = {
            "limit_id": "codex",
            "primary": {
                "used_percent": 42.0,
                "window_minutes": 300,
                "resets_at": resets + 3600,
            },
            "secondary": {
                "used_percent": 7.5,
                "window_minutes": 10080,
                "resets_at": resets + 86400,
            },
            "credits": {"has_credits": True, "unlimited": False, "balance": "17.25"},
        }
        state.next_poll_due_at_ms = 12_345_678
        return state

    def churn(self, state: HostState, tick: int) -> None:
        """Advance the state by one poll tick: tokens grow, and now and then issues rotate.

        Every 10th tick one worker is replaced by a new one and one retry entry
        by a new one, so the caches keyed by strings and times see new keys.
        """
        for entry in state.running.values():
            entry.codex_input_tokens += 120
            entry.codex_output_tokens += 15
            entry.codex_total_tokens += 135
        state.codex_totals.input_tokens += 120 * len(state.running)
        state.codex_totals.output_tokens += 15 * len(state.running)
        if tick % 10 == 0 and state.running:
            old_id = next(iter(state.running))
            del state.running[old_id]
            state.claimed.discard(old_id)
            state.completed.add(old_id)
            entry = self.running_entry()
            state.running[entry.issue_id] = entry
            state.claimed.add(entry.issue_id)
        if tick % 10 == 5 and state.retry_attempts:
            del state.retry_attempts[next(iter(state.retry_attempts))]
            retry = self.retry_entry()
            state.retry_attempts[retry.issue_id] = retry


def floor_snapshot(state: HostState) -> dict[str, Any]:
    """Read the fields a snapshot holds, with no validation, conversion or formatting.

    Times stay ``datetime`` objects and ``generated_at`` is a float, so this is
    a strict floor: the cheapest Python code that touches the same attributes.
    """
    totals = state.codex_totals
    rate_limits = state.codex_rate_limits
    return {
        "running": [
            {
                "issue_id": e.issue_id,
                "identifier": e.identifier,
                "turn_count": e.turn_count,
                "codex_total_tokens": e.codex_total_tokens,
                "last_codex_event": e.last_codex_event,
                "started_at": e.started_at,
                "session_id": e.session_id,
                "codex_input_tokens": e.codex_input_tokens,
                "codex_output_tokens": e.codex_output_tokens,
                "worker_host": e.worker_host,
                "workspace_path": e.workspace_path,
            }
            for e in state.running.values()
        ],
        "retrying": [
            {
                "issue_id": r.issue_id,
                "identifier": r.identifier,
                "attempt": r.attempt,
                "delay_type": r.delay_type,
                "error": r.error,
                "worker_host": r.worker_host,
                "workspace_path": r.workspace_path,
            }
            for r in state.retry_attempts.values()
        ],
        "completed_count": len(state.completed),
        "codex_totals": {
            "input_tokens": totals.input_tokens,
            "output_tokens": totals.output_tokens,
            "total_tokens": totals.total_tokens,
            "seconds_running": totals.seconds_running,
        },
        "rate_limits": (
            None
            if rate_limits is None
            else {
                k: dict(v) if isinstance(v, dict) else v for k, v in rate_limits.items()
            }
        ),
        "poll_interval_ms": state.poll_interval_ms,
        "max_concurrent_agents": state.max_concurrent_agents,
        "poll_check_in_progress": state.poll_check_in_progress,
        "next_poll_due_at_ms": state.next_poll_due_at_ms,
        "generated_at": time.time(),
    }


# --- OpenTelemetry SDK set-up --------------------------------------------------------


class DroppingSpanExporter(SpanExporter):
    """A span exporter that accepts every batch and sends nothing."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Drop ``spans``."""
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        """Do nothing."""


@dataclass
class Telemetry:
    """One SDK TracerProvider shared by all generators of a run."""

    tracer_provider: TracerProvider
    processor: BatchSpanProcessor

    @classmethod
    def create(cls) -> Telemetry:
        """Create a TracerProvider whose batch span processor drops every span."""
        provider = TracerProvider()
        processor = BatchSpanProcessor(DroppingSpanExporter())
        provider.add_span_processor(processor)
        return cls(provider, processor)

    def recorder(
        self, **options: Any
    ) -> tuple[OTelSnapshotGenerator, InMemoryMetricReader]:
        """Create a generator with a MeterProvider of its own and that provider's reader."""
        reader = InMemoryMetricReader()
        generator = OTelSnapshotGenerator(
            meter_provider=MeterProvider(metric_readers=[reader]),
            tracer_provider=self.tracer_provider,
            **options,
        )
        return generator, reader

    def shutdown(self) -> None:
        """Flush and stop the span processor's thread."""
        self.tracer_provider.shutdown()


# --- Timing ----------------------------------------------------------------------------


@dataclass
class Timing:
    """Per-call times of one variant, in nanoseconds, one value per round."""

    calls_per_round: int
    samples: list[float]

    @property
    def median(self) -> float:
        """Median per-call time over the rounds."""
        return statistics.median(self.samples)

    def to_json(self) -> dict[str, Any]:
        """Return the summary written to the results file."""
        quartiles = (
            statistics.quantiles(self.samples, n=4)
            if len(self.samples) > 1
            else [0, 0, 0]
        )
        return {
            "median_ns": round(self.median, 1),
            "min_ns": round(min(self.samples), 1),
            "q1_ns": round(quartiles[0], 1),
            "q3_ns": round(quartiles[2], 1),
            "rounds": len(self.samples),
            "calls_per_round": self.calls_per_round,
        }


@dataclass(frozen=True)
class RunConfig:
    """How long and how often each comparison runs.

    Attributes:
        sizes: Numbers of running workers (each state has as many retry entries).
        rounds: Rounds per comparison, fewer when ``group_budget_ns`` runs out.
        min_rounds: Rounds per comparison whatever the budget.
        round_ns: Time one variant should take in one round; sets its calls per round.
        warmup_ns: Warm-up time per variant (at least one call).
        group_budget_ns: Time that the rounds of one comparison should take at most.
        memory_snapshots: Snapshots recorded in the memory loop.
        memory_workers: Running workers (and retry entries) of the memory loop's state.
    """

    sizes: tuple[int, ...]
    rounds: int
    min_rounds: int
    round_ns: int
    warmup_ns: int
    group_budget_ns: int
    memory_snapshots: int
    memory_workers: int = 10


FULL = RunConfig(
    sizes=SIZES,
    rounds=15,
    min_rounds=3,
    round_ns=40_000_000,
    warmup_ns=150_000_000,
    group_budget_ns=15_000_000_000,
    memory_snapshots=100_000,
)
QUICK = RunConfig(
    sizes=(10, 100, 1_000),
    rounds=5,
    min_rounds=3,
    round_ns=8_000_000,
    warmup_ns=30_000_000,
    group_budget_ns=2_000_000_000,
    memory_snapshots=10_000,
)

# Upper bound on warm-up calls of one variant, whatever its speed.
_MAX_WARMUP_CALLS = 10_000


def _per_call_ns(function: Callable[[], object], calls: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(calls):
        function()
    return (time.perf_counter_ns() - start) / calls


def compare(
    variants: Mapping[str, Callable[[], object]], config: RunConfig
) -> dict[str, Timing]:
    """Time ``variants`` side by side and return their per-call times.

    Each variant is first warmed up for ``config.warmup_ns`` (at least one call,
    at most 10,000), which also sets how many calls one round makes.  Every
    round then times every variant once, in alternating order, for
    ``config.rounds`` rounds or as many as ``config.group_budget_ns`` allows,
    but never fewer than ``config.min_rounds``.
    """
    calls: dict[str, int] = {}
    round_ns = 0.0
    for name, function in variants.items():
        start = time.perf_counter_ns()
        done = 0
        while done < _MAX_WARMUP_CALLS and (
            done < 1 or time.perf_counter_ns() - start < config.warmup_ns
        ):
            function()
            done += 1
        per_call = (time.perf_counter_ns() - start) / done
        calls[name] = max(1, int(config.round_ns / per_call))
        round_ns += calls[name] * per_call
    rounds = min(
        config.rounds, max(config.min_rounds, int(config.group_budget_ns / round_ns))
    )

    samples: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for round_index in range(rounds):
        order = names if round_index % 2 == 0 else names[::-1]
        for name in order:
            samples[name].append(_per_call_ns(variants[name], calls[name]))
    return {name: Timing(calls[name], samples[name]) for name in names}


# --- Benchmarks ------------------------------------------------------------------------


def _ratio(numerator: Timing, denominator: Timing) -> float:
    return round(numerator.median / denominator.median, 3)


def alternating(state: HostState) -> Callable[[], Callable[[], HostState]]:
    """Return a maker of functions that return ``state`` and a changed copy of it in turns.

    In the copy every running entry has more tokens (the strings and times
    are the same objects), as after a poll tick in which every worker took a
    turn.  Each function made alternates on its own, so that each variant of
    a comparison reads a changed state on every call.
    """
    changed = dataclasses.replace(
        state,
        running={
            key: dataclasses.replace(
                entry,
                codex_input_tokens=entry.codex_input_tokens + 120,
                codex_output_tokens=entry.codex_output_tokens + 15,
                codex_total_tokens=entry.codex_total_tokens + 135,
            )
            for key, entry in state.running.items()
        },
        codex_totals=dataclasses.replace(
            state.codex_totals,
            input_tokens=state.codex_totals.input_tokens + 120 * len(state.running),
            output_tokens=state.codex_totals.output_tokens + 15 * len(state.running),
            total_tokens=state.codex_totals.total_tokens + 135 * len(state.running),
        ),
    )
    pair = (state, changed)

    def make() -> Callable[[], HostState]:
        turns = itertools.cycle(pair)
        return turns.__next__

    return make


def bench_generation(
    state: HostState, telemetry: Telemetry, config: RunConfig
) -> tuple[dict[str, Timing], dict[str, float]]:
    """Time the base and recording generators against their floors on one state.

    Each comparison runs twice: on a state that does not change between calls,
    and on states whose token counts change on every call (``_churn``).
    """
    base = SnapshotGenerator()
    parts_base = SnapshotGenerator()
    recorder, _reader = telemetry.recorder(payload_limit=UNLIMITED_PAYLOAD)
    recorder_default, _reader_default = telemetry.recorder()
    tracer = telemetry.tracer_provider.get_tracer("bench.parts")

    def parts_of(generator: SnapshotGenerator, host_state: HostState) -> None:
        snapshot = generator.generate(host_state)
        text = orjson.dumps(snapshot.to_dict()).decode("utf-8")
        span = tracer.start_span("symphony.snapshot")
        span.add_event("symphony.snapshot", {"symphony.snapshot.json": text})
        span.end()

    def parts() -> None:
        parts_of(parts_base, state)

    timings = compare(
        {"base": lambda: base.generate(state), "floor": lambda: floor_snapshot(state)},
        config,
    )
    timings.update(
        compare(
            {
                "otel": lambda: recorder.generate(state),
                "otel_default": lambda: recorder_default.generate(state),
                "parts": parts,
            },
            config,
        )
    )

    churn = alternating(state)
    base_churn, floor_churn, parts_churn, otel_churn = churn(), churn(), churn(), churn()
    churn_base = SnapshotGenerator()
    churn_parts_base = SnapshotGenerator()
    churn_recorder, _churn_reader = telemetry.recorder(payload_limit=UNLIMITED_PAYLOAD)
    timings.update(
        compare(
            {
                "base_churn": lambda: churn_base.generate(base_churn()),
                "floor_churn": lambda: floor_snapshot(floor_churn()),
            },
            config,
        )
    )
    timings.update(
        compare(
            {
                "otel_churn": lambda: churn_recorder.generate(otel_churn()),
                "parts_churn": lambda: parts_of(churn_parts_base, parts_churn()),
            },
            config,
        )
    )

    snapshot = base.generate(state)
    payload = snapshot.to_dict()
    # The recorder's default redaction.  One encode() first sizes the caches of
    # the redactor and of the scrubbed rows for this payload, as the recorder's
    # first snapshot does.  Without it, build() would run with caches of the
    # minimum size.
    encoder = recorder_events.PayloadEncoder(UNLIMITED_PAYLOAD, Redactor())
    encoder.encode(snapshot)
    timings.update(
        compare(
            {
                "to_dict": snapshot.to_dict,
                "build_redacted": lambda: encoder.build(snapshot),
                "orjson": lambda: orjson.dumps(payload),
                "json_stdlib": lambda: recorder_events._dumps_json(payload),
            },
            config,
        )
    )
    recorder.close()
    recorder_default.close()
    churn_recorder.close()
    ratios = {
        "base_over_floor": _ratio(timings["base"], timings["floor"]),
        "otel_over_parts": _ratio(timings["otel"], timings["parts"]),
        "otel_default_over_parts": _ratio(timings["otel_default"], timings["parts"]),
        "base_churn_over_floor_churn": _ratio(timings["base_churn"], timings["floor_churn"]),
        "otel_churn_over_parts_churn": _ratio(timings["otel_churn"], timings["parts_churn"]),
        "json_stdlib_over_orjson": _ratio(timings["json_stdlib"], timings["orjson"]),
    }
    return timings, ratios


def _collected_points(
    reader_data: Any,
) -> list[tuple[str, str, list[tuple[Any, dict[str, Any]]]]]:
    """List (name, kind, [(value, attributes)]) for every metric of a collection."""
    metrics = []
    for resource_metrics in reader_data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                kind = "counter" if type(metric.data).__name__ == "Sum" else "gauge"
                points = [
                    (point.value, dict(point.attributes or {}))
                    for point in metric.data.data_points
                ]
                metrics.append((metric.name, kind, points))
    return metrics


def bench_collection(
    state: HostState, telemetry: Telemetry, config: RunConfig
) -> tuple[dict[str, Timing], dict[str, float], int]:
    """Time one metric collection of a recorder against trivial callbacks of the same series."""
    recorder, reader = telemetry.recorder()
    recorder.generate(state)
    collected = _collected_points(reader.get_metrics_data())
    series = sum(len(points) for _name, _kind, points in collected)

    trivial_reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[trivial_reader]).get_meter("bench.trivial")
    for name, kind, points in collected:
        observations = [Observation(value, attributes) for value, attributes in points]

        def callback(
            options: CallbackOptions, observations: list[Observation] = observations
        ) -> list[Observation]:
            return observations

        if kind == "counter":
            meter.create_observable_counter(name, callbacks=[callback])
        else:
            meter.create_observable_gauge(name, callbacks=[callback])
    # Register every series in the SDK before timing, as the recorder's first collection did.
    trivial_reader.get_metrics_data()

    timings = compare(
        {
            "collect": reader.get_metrics_data,
            "collect_trivial": trivial_reader.get_metrics_data,
        },
        config,
    )
    recorder.close()
    return (
        timings,
        {
            "collect_over_trivial": _ratio(
                timings["collect"], timings["collect_trivial"]
            )
        },
        series,
    )


# --- Memory ----------------------------------------------------------------------------


def _status_kib(field_name: str) -> int:
    """Read a ``VmRSS``-style field of /proc/self/status, in KiB."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise LookupError(f"{field_name} not found in /proc/self/status")


class MemoryLoop:
    """A churning host state, recorded by a generator of its own unless ``record`` is false.

    Metrics are collected every 100 snapshots, as a periodic reader would.
    """

    def __init__(self, workers: int, *, record: bool) -> None:
        self.factory = StateFactory(SEED + 1)
        self.state = self.factory.state(workers, workers)
        self.tick = 0
        self.telemetry: Telemetry | None = None
        self.recorder: OTelSnapshotGenerator | None = None
        self.reader: InMemoryMetricReader | None = None
        if record:
            self.telemetry = Telemetry.create()
            self.recorder, self.reader = self.telemetry.recorder()

    def run(self, ticks: int) -> float:
        """Advance ``ticks`` poll ticks, recording each, and return the seconds taken."""
        start = time.perf_counter()
        for _ in range(ticks):
            self.tick += 1
            self.factory.churn(self.state, self.tick)
            if self.recorder is not None and self.reader is not None:
                self.recorder.generate(self.state)
                if self.tick % 100 == 0:
                    self.reader.get_metrics_data()
        if self.telemetry is not None:
            self.telemetry.processor.force_flush()
        return time.perf_counter() - start

    def close(self) -> None:
        """Close the generator and stop the span processor."""
        if self.recorder is not None and self.telemetry is not None:
            self.recorder.close()
            self.telemetry.shutdown()


def _retained_during(loop: MemoryLoop, ticks: int) -> dict[str, Any]:
    """Run ``loop`` for ``ticks`` ticks under tracemalloc, in two halves.

    Returns the Python memory retained after each half (after a
    ``gc.collect()``), the seconds taken and the growth by allocating file.
    Memory that the second half adds shows whether the growth has levelled off.
    """
    gc.collect()
    tracemalloc.start()
    traced_start, _peak = tracemalloc.get_traced_memory()
    before = tracemalloc.take_snapshot()
    seconds = loop.run(ticks // 2)
    gc.collect()
    traced_half, _peak = tracemalloc.get_traced_memory()
    seconds += loop.run(ticks - ticks // 2)
    gc.collect()
    traced_end, _peak = tracemalloc.get_traced_memory()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    growth = [
        {
            "file": _short_path(stat.traceback[0].filename),
            "size_diff_bytes": stat.size_diff,
        }
        for stat in after.compare_to(before, "filename")[:8]
        if stat.size_diff
    ]
    return {
        "first_half_bytes": traced_half - traced_start,
        "total_bytes": traced_end - traced_start,
        "seconds": seconds,
        "growth_by_file": growth,
    }


def measure_memory(snapshots: int, workers: int) -> dict[str, Any]:
    """Measure peak RSS and retained memory over ``snapshots`` snapshots of a churning state.

    Runs in a child process of its own, in three phases, each after 1,000
    warm-up ticks:

    1. the recording loop without tracemalloc, for the RSS before and after
       and the peak (``VmHWM``, because Linux carries the parent's maximum RSS
       across ``exec`` into the child's ``getrusage`` figures);
    2. the host's churn alone under tracemalloc, for the host's own growth
       (its set of completed issues grows, as a real host's does);
    3. the recording loop under tracemalloc; its retained memory less the
       host's is what the recorder and the SDK kept.
    """
    warmup = 1000
    timed = MemoryLoop(workers, record=True)
    timed.run(warmup)
    gc.collect()
    rss_before = _status_kib("VmRSS")
    peak_before = _status_kib("VmHWM")
    timed_seconds = timed.run(snapshots)
    gc.collect()
    peak_after = _status_kib("VmHWM")
    rss_after = _status_kib("VmRSS")
    timed.close()
    del timed

    host = MemoryLoop(workers, record=False)
    host.run(warmup)
    host_retained = _retained_during(host, snapshots)
    del host

    traced = MemoryLoop(workers, record=True)
    traced.run(warmup)
    total_retained = _retained_during(traced, snapshots)
    traced.close()
    return {
        "snapshots": snapshots,
        "workers": workers,
        "retries": workers,
        "rotated_workers": (warmup + snapshots) // 10,
        "seconds": round(timed_seconds, 2),
        "seconds_with_tracemalloc": round(total_retained["seconds"], 2),
        "rss_before_kib": rss_before,
        "rss_after_kib": rss_after,
        "peak_rss_before_loop_kib": peak_before,
        "peak_rss_kib": peak_after,
        "retained_total_bytes": total_retained["total_bytes"],
        "retained_host_bytes": host_retained["total_bytes"],
        "retained_recording_bytes": total_retained["total_bytes"]
        - host_retained["total_bytes"],
        "retained_recording_first_half_bytes": (
            total_retained["first_half_bytes"] - host_retained["first_half_bytes"]
        ),
        "growth_by_file": total_retained["growth_by_file"],
    }


def _short_path(filename: str) -> str:
    for marker in ("site-packages/", "/src/", "/lib/python"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def run_memory_child(snapshots: int, workers: int) -> dict[str, Any]:
    """Run :func:`measure_memory` in a fresh interpreter and return its result."""
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--memory-child",
        str(snapshots),
        str(workers),
    ]
    completed = subprocess.run(
        command, capture_output=True, text=True, timeout=900, check=False
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"the memory child failed (exit {completed.returncode}): {completed.stderr[-2000:]}"
        )
    return json.loads(completed.stdout)


# --- Report ----------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    """Describe the machine, the interpreter and the package versions."""
    cpu_model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions: dict[str, str | None] = {}
    for package in ("opentelemetry-api", "opentelemetry-sdk", "orjson"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    versions["symphony-otel"] = symphony_otel.__version__
    try:
        described = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        described = ""
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "packages": versions,
        "symphony_otel_path": str(Path(symphony_otel.__file__).parent),
        "git_commit": described or None,
    }


def _format_ns(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:.2f} ms"
    if value >= 1e3:
        return f"{value / 1e3:.1f} µs"
    return f"{value:.0f} ns"


_TIMED_ROWS = (
    ("floor", "floor: plain dict comprehension"),
    ("base", "SnapshotGenerator.generate"),
    ("parts", "parts: base + orjson + span/event"),
    ("otel", "OTelSnapshotGenerator.generate, no payload limit"),
    ("otel_default", "OTelSnapshotGenerator.generate, default 32 KiB limit"),
    ("floor_churn", "floor, token counts changing"),
    ("base_churn", "SnapshotGenerator.generate, counts changing"),
    ("parts_churn", "parts, counts changing"),
    ("otel_churn", "OTelSnapshotGenerator.generate, counts changing"),
    ("to_dict", "SystemSnapshot.to_dict"),
    ("build_redacted", "PayloadEncoder.build (to_dict + redaction)"),
    ("orjson", "orjson.dumps(to_dict())"),
    ("json_stdlib", "json.dumps fallback"),
    ("collect", "collection of the recorder's metrics"),
    ("collect_trivial", "collection, trivial callbacks"),
)

_RATIO_ROWS = (
    ("base_over_floor", "base / floor", 1.5),
    ("otel_over_parts", "otel (no limit) / parts", 1.15),
    ("otel_default_over_parts", "otel (32 KiB) / parts", 1.15),
    ("base_churn_over_floor_churn", "base / floor, counts changing", 1.5),
    ("otel_churn_over_parts_churn", "otel / parts, counts changing", 1.15),
    ("collect_over_trivial", "collection / trivial", None),
    ("json_stdlib_over_orjson", "json stdlib / orjson", None),
)


def print_report(results: Mapping[str, Any]) -> None:
    """Print the medians, the ratios, the per-worker costs and the memory figures."""
    sizes = [str(size) for size in results["sizes"]]
    timings = results["timings"]
    width = 55
    header = "workers (+ as many retries)".ljust(width) + "".join(
        size.rjust(11) for size in sizes
    )
    print("\nMedian time per call")
    print(header)
    for key, label in _TIMED_ROWS:
        row = label.ljust(width)
        for size in sizes:
            row += _format_ns(timings[size][key]["median_ns"]).rjust(11)
        print(row)

    print("\nRatios of medians (target in brackets)")
    print(header)
    for key, label, target in _RATIO_ROWS:
        text = label + (f" [<= {target}]" if target else "")
        row = text.ljust(width)
        for size in sizes:
            row += f"{results['ratios'][size][key]:.2f}".rjust(11)
        print(row)
    print(
        "series collected".ljust(width)
        + "".join(str(results["series"][s]).rjust(11) for s in sizes)
    )

    print("\nMedian time per worker (one running entry and one retry entry)")
    print(header)
    for key in ("floor", "base", "parts", "otel", "otel_default", "floor_churn", "base_churn", "parts_churn", "otel_churn"):
        row = key.ljust(width)
        for size in sizes:
            row += _format_ns(results["per_worker_ns"][size][key]).rjust(11)
        print(row)

    memory = results.get("memory")
    if memory:
        print(
            f"\nMemory over {memory['snapshots']:,} snapshots of {memory['workers']} workers "
            f"+ {memory['retries']} retries, one worker replaced every 10 snapshots "
            f"({memory['seconds']} s without tracemalloc)"
        )
        print(
            f"  RSS {memory['rss_before_kib'] / 1024:.1f} MiB before the loop, "
            f"{memory['rss_after_kib'] / 1024:.1f} MiB after, peak {memory['peak_rss_kib'] / 1024:.1f} MiB "
            f"(peak before the loop {memory['peak_rss_before_loop_kib'] / 1024:.1f} MiB)"
        )
        print(
            f"  retained Python memory: {memory['retained_recording_bytes'] / 1024:.1f} KiB by "
            f"recording ({memory['retained_total_bytes'] / 1024:.1f} KiB in all, less "
            f"{memory['retained_host_bytes'] / 1024:.1f} KiB that the host state itself grew); "
            f"{memory['retained_recording_first_half_bytes'] / 1024:.1f} KiB of it after the first half"
        )
        print("  growth by allocating file, recording loop:")
        for item in memory["growth_by_file"]:
            print(f"  {item['size_diff_bytes'] / 1024:+9.1f} KiB  {item['file']}")

    print("\nTargets")
    for target in results["targets"]:
        print(
            f"  [{'met' if target['met'] else 'NOT met'}] {target['name']}: {target['value']}"
        )


def evaluate_targets(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Judge the results against the stated targets."""
    sizes = [str(size) for size in results["sizes"]]
    ratios = results["ratios"]
    per_worker = results["per_worker_ns"]
    targets = []
    for key, name, limit in (
        (
            "otel_over_parts",
            "OTelSnapshotGenerator.generate (no payload limit) <= 1.15x parts",
            1.15,
        ),
        (
            "otel_default_over_parts",
            "OTelSnapshotGenerator.generate (default limit) <= 1.15x parts",
            1.15,
        ),
        ("base_over_floor", "SnapshotGenerator.generate <= 1.5x floor", 1.5),
        (
            "otel_churn_over_parts_churn",
            "OTelSnapshotGenerator.generate <= 1.15x parts, token counts changing",
            1.15,
        ),
        (
            "base_churn_over_floor_churn",
            "SnapshotGenerator.generate <= 1.5x floor, token counts changing",
            1.5,
        ),
    ):
        worst = max(ratios[size][key] for size in sizes)
        targets.append(
            {
                "name": name,
                "limit": limit,
                "value": f"worst {worst:.2f}",
                "met": worst <= limit,
            }
        )

    # Flat per-worker cost: the largest state costs no more per worker than 1.25x the
    # cheapest per-worker cost among the smaller states (fixed costs make 10 workers
    # dearer), after dividing by the growth of its reference (the floor for base, the
    # parts for the recorder) between the same two sizes.  Every variant, the floor
    # included, pays more per worker once a state outgrows the CPU's caches; the
    # reference's growth measures that part.
    if len(sizes) > 1:
        for key, reference in (("base", "floor"), ("otel", "parts"), ("otel_default", "parts")):
            cheapest_size = min(sizes[:-1], key=lambda size: per_worker[size][key])
            growth = per_worker[sizes[-1]][key] / per_worker[cheapest_size][key]
            reference_growth = (
                per_worker[sizes[-1]][reference] / per_worker[cheapest_size][reference]
            )
            relative = growth / reference_growth
            targets.append(
                {
                    "name": (
                        f"{key}: per-worker cost at {sizes[-1]} workers <= 1.25x that at "
                        f"{cheapest_size}, relative to the {reference}"
                    ),
                    "limit": 1.25,
                    "value": (
                        f"{relative:.2f}x ({key} grew {growth:.2f}x, "
                        f"the {reference} {reference_growth:.2f}x)"
                    ),
                    "met": relative <= 1.25,
                }
            )

    memory = results.get("memory")
    if memory:
        retained = memory["retained_recording_bytes"]
        targets.append(
            {
                "name": f"memory retained by recording {memory['snapshots']:,} snapshots < 5 MB",
                "limit": 5_000_000,
                "value": f"{retained / 1e6:.2f} MB",
                "met": retained < 5_000_000,
            }
        )
    return targets


# --- Entry points ----------------------------------------------------------------------


def run(config: RunConfig, sizes: Sequence[int], with_memory: bool) -> dict[str, Any]:
    """Run every benchmark and return the results document."""
    telemetry = Telemetry.create()
    results: dict[str, Any] = {
        "machine": machine_info(),
        "config": dataclasses.asdict(config),
        "sizes": list(sizes),
        "timings": {},
        "ratios": {},
        "per_worker_ns": {},
        "series": {},
    }
    try:
        for size in sizes:
            started = time.perf_counter()
            state = StateFactory().state(size, size)
            timings, ratios = bench_generation(state, telemetry, config)
            collect_timings, collect_ratios, series = bench_collection(
                state, telemetry, config
            )
            timings.update(collect_timings)
            ratios.update(collect_ratios)
            key = str(size)
            results["timings"][key] = {
                name: timing.to_json() for name, timing in timings.items()
            }
            results["ratios"][key] = ratios
            results["series"][key] = series
            results["per_worker_ns"][key] = {
                name: round(timings[name].median / size, 1)
                for name in (
                    "floor",
                    "base",
                    "parts",
                    "otel",
                    "otel_default",
                    "floor_churn",
                    "base_churn",
                    "parts_churn",
                    "otel_churn",
                )
            }
            print(
                f"{size:>6} workers: done in {time.perf_counter() - started:.1f} s",
                file=sys.stderr,
            )
    finally:
        telemetry.shutdown()
    if with_memory:
        started = time.perf_counter()
        results["memory"] = run_memory_child(
            config.memory_snapshots, config.memory_workers
        )
        print(f"memory: done in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    results["targets"] = evaluate_targets(results)
    return results


def profile_recorder(workers: int, calls: int = 200) -> None:
    """Print the cProfile statistics of ``calls`` recorded snapshots of one state."""
    telemetry = Telemetry.create()
    recorder, _reader = telemetry.recorder()
    state = StateFactory().state(workers, workers)
    for _ in range(3):
        recorder.generate(state)
    calls = max(1, min(calls, 2_000_000 // max(workers, 1)))
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(calls):
        recorder.generate(state)
    profiler.disable()
    print(
        f"cProfile of {calls} calls of OTelSnapshotGenerator.generate, {workers} workers + {workers} retries"
    )
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(30)
    telemetry.shutdown()


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the benchmarks."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="fewer and shorter rounds, sizes up to 1000 workers, 10,000 memory snapshots",
    )
    parser.add_argument(
        "--output", type=Path, help="write the results as JSON to this file"
    )
    parser.add_argument(
        "--sizes",
        type=lambda text: tuple(int(part) for part in text.split(",")),
        help="comma-separated numbers of running workers (default 10,100,1000,10000; "
        "10,100,1000 with --quick)",
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the memory loop")
    parser.add_argument(
        "--profile",
        type=int,
        metavar="WORKERS",
        help="print a cProfile of OTelSnapshotGenerator.generate on a state of WORKERS workers, then exit",
    )
    parser.add_argument("--memory-child", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    # States past the worker series limit make the recorder warn once per generator.
    logging.getLogger("symphony_otel").setLevel(logging.ERROR)

    if args.memory_child:
        print(json.dumps(measure_memory(*args.memory_child)))
        return 0
    if args.profile is not None:
        profile_recorder(args.profile)
        return 0

    config = QUICK if args.quick else FULL
    started = time.perf_counter()
    sizes = sorted(set(args.sizes or config.sizes))
    results = run(config, sizes, with_memory=not args.no_memory)
    results["mode"] = "quick" if args.quick else "full"
    results["seconds"] = round(time.perf_counter() - started, 1)
    results["command"] = " ".join(
        ["python", "benchmarks/bench_snapshot.py", *(argv or sys.argv[1:])]
    )
    print_report(results)
    print(f"\nTotal {results['seconds']} s")
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        print(f"Results written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
