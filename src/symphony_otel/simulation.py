"""A simulated Symphony orchestrator, for the ``demo`` command and for tests.

:class:`Simulation` keeps a state object shaped like the documented
``OrchestratorState`` and moves it along the way Symphony does.  It polls the
tracker on a fixed interval and starts one agent worker per issue, up to
``max_concurrent_agents``.  Tokens add up turn by turn.  Failed turns go to the
retry queue with exponential backoff, and every normal worker exit schedules a
continuation retry.  The agent's rate-limit windows fill and reset.

A :class:`Simulation` never sleeps or reads the clock: :meth:`Simulation.step`
advances the simulated time, so a test can drive hours of activity in
milliseconds.  The same seed and start time give the same run, however the time
is cut into steps.  :func:`run_in_real_time` drives one from the real clock.

Usage::

    from symphony_otel import SnapshotGenerator
    from symphony_otel.simulation import Simulation

    simulation = Simulation(seed=7, speed=60.0)
    simulation.step(1.0)       # one second of wall time, one simulated minute
    snapshot = SnapshotGenerator().generate(simulation.state)
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, TypeVar

__all__ = [
    "Simulation",
    "run_in_real_time",
    "SimulatedRetryEntry",
    "SimulatedRunningEntry",
    "SimulatedState",
    "TokenUsage",
]

# Defaults of the Symphony specification: failure backoff is
# min(10 s * 2**(attempt - 1), 300 s) and a continuation retry waits 1 s.
FAILURE_BACKOFF_BASE: Final = 10.0
FAILURE_BACKOFF_MAX: Final = 300.0
CONTINUATION_DELAY: Final = 1.0

DEFAULT_POLL_INTERVAL_MS: Final = 30_000
DEFAULT_MAX_CONCURRENT_AGENTS: Final = 5
POLL_DURATION: Final = 1.5  # simulated seconds one tracker poll takes

PRIMARY_WINDOW_MINUTES: Final = 300
SECONDARY_WINDOW_MINUTES: Final = 10_080
# Tokens that fill each window; sized so that five busy workers come near the
# primary limit within one window, as heavy Codex users do.
PRIMARY_BUDGET_TOKENS: Final = 40_000_000
SECONDARY_BUDGET_TOKENS: Final = 600_000_000
CREDITS_PER_MILLION_TOKENS: Final = 0.05

TURN_FAILURE_PROBABILITY: Final = 0.07
ISSUE_DONE_PROBABILITY: Final = 0.7  # a continuation finds the issue in a terminal state
NEW_ISSUE_PROBABILITY: Final = 0.2  # per poll
INITIAL_BACKLOG: Final = 14

RATE_LIMITED_ERROR: Final = "rate_limited: the usage limit of the primary window is reached"
NO_SLOTS_ERROR: Final = "no available orchestrator slots"
TURN_ERRORS: Final = (
    "turn_failed: stream disconnected before completion (upstream HTTP 502)",
    "turn_failed: model response was incomplete (max_output_tokens)",
    "turn_timeout: no agent event for 300 s",
    "agent exited: codex app-server exited with status 1",
    "turn_input_required: the agent asked which database the migration should target",
    "workspace hook failed: after_create exited with status 2",
)

# The simulated orchestrator's monotonic clock starts here, in milliseconds,
# like a process that has been up for a while.
_MONOTONIC_START_MS: Final = 86_400_000.0
_WORKSPACE_ROOT: Final = "/var/lib/symphony/workspaces"
_FIRST_ISSUE_NUMBER: Final = 101


# --- The state, shaped like the documented OrchestratorState --------------------


@dataclass
class TokenUsage:
    """Token totals of the agent sessions, as in ``codex_totals``."""

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    seconds_running: float = 0.0


@dataclass
class SimulatedRunningEntry:
    """One running worker, with the fields of the documented ``RunningEntry``."""

    issue_id: str
    identifier: str
    started_at: dt.datetime
    session_id: str | None = None
    turn_count: int = 0
    codex_input_tokens: int = 0
    codex_output_tokens: int = 0
    codex_total_tokens: int = 0
    last_codex_event: str | None = None
    worker_host: str | None = None
    workspace_path: str | None = None


@dataclass
class SimulatedRetryEntry:
    """One retry-queue entry, with the fields of the documented ``RetryEntry``.

    ``due_at_ms`` is on the simulated orchestrator's monotonic clock.
    """

    issue_id: str
    identifier: str
    attempt: int
    delay_type: str = "failure"
    error: str | None = None
    due_at_ms: float = 0.0
    worker_host: str | None = None
    workspace_path: str | None = None


@dataclass
class SimulatedState:
    """The orchestrator state that :class:`~symphony_otel.SnapshotGenerator` reads."""

    running: dict[str, SimulatedRunningEntry] = field(default_factory=dict)
    retry_attempts: dict[str, SimulatedRetryEntry] = field(default_factory=dict)
    completed: set[str] = field(default_factory=set)
    codex_totals: TokenUsage = field(default_factory=TokenUsage)
    codex_rate_limits: dict[str, Any] | None = None
    poll_interval_ms: int = DEFAULT_POLL_INTERVAL_MS
    max_concurrent_agents: int = DEFAULT_MAX_CONCURRENT_AGENTS
    poll_check_in_progress: bool = False
    next_poll_due_at_ms: float | None = None


# --- What the simulation tracks besides the state -------------------------------


@dataclass
class _Issue:
    issue_id: str
    identifier: str


@dataclass
class _Session:
    """The plan of one running worker: its current turn and how it will end."""

    issue: _Issue
    entry: SimulatedRunningEntry
    attempt: int
    started: float
    turns_planned: int
    failing_turn: int | None
    thread_id: str
    turn_started: float = 0.0
    turn_duration: float = 1.0
    turn_input: int = 0
    turn_output: int = 0
    accrued_input: int = 0
    accrued_output: int = 0

    @property
    def turn_ends(self) -> float:
        return self.turn_started + self.turn_duration


@dataclass
class _Window:
    """One rate-limit window: tokens used since its last reset."""

    minutes: int
    budget: int
    resets_at: float  # simulated seconds
    used_tokens: float = 0.0

    @property
    def used_percent(self) -> float:
        # The agent reports at most 100 % and rejects turns from there on.
        return min(round(100.0 * self.used_tokens / self.budget, 1), 100.0)


# --- The simulation -------------------------------------------------------------


class Simulation:
    """A simulated orchestrator whose state moves when :meth:`step` is called.

    Args:
        seed: Seed of the random choices.  The same seed and ``start_time``
            give the same run.
        speed: Simulated seconds per second of :meth:`step`'s argument.
        max_concurrent_agents: Maximum number of workers at once.
        poll_interval_ms: Interval between two polls of the simulated tracker.
        start_time: Wall-clock time at the start, for ``started_at`` and the
            rate-limit reset times; now when None.  The simulated clock runs
            ``speed`` times faster than real time from there.

    Raises:
        ValueError: If ``speed``, ``max_concurrent_agents`` or
            ``poll_interval_ms`` is not positive.
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        speed: float = 1.0,
        max_concurrent_agents: int = DEFAULT_MAX_CONCURRENT_AGENTS,
        poll_interval_ms: int = DEFAULT_POLL_INTERVAL_MS,
        start_time: dt.datetime | None = None,
    ) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be a positive number, got {speed!r}")
        if max_concurrent_agents < 1:
            raise ValueError(f"max_concurrent_agents must be at least 1, got {max_concurrent_agents!r}")
        if poll_interval_ms < 1:
            raise ValueError(f"poll_interval_ms must be at least 1, got {poll_interval_ms!r}")
        self.seed = seed
        self.speed = float(speed)
        start = start_time or dt.datetime.now(dt.timezone.utc)
        self.start_time = start if start.tzinfo else start.replace(tzinfo=dt.timezone.utc)
        self._rng = random.Random(seed)
        self._now = 0.0
        self.state = SimulatedState(
            poll_interval_ms=poll_interval_ms,
            max_concurrent_agents=max_concurrent_agents,
        )
        self._sessions: dict[str, _Session] = {}
        self._issues: dict[str, _Issue] = {}
        self._backlog: list[_Issue] = []
        self._next_issue_number = _FIRST_ISSUE_NUMBER
        self._ended_seconds = 0.0
        self._next_poll = 0.0
        self._poll_ends: float | None = None
        self._initial_credits = round(self._rng.uniform(50.0, 500.0), 2)
        self._primary = self._new_window(PRIMARY_WINDOW_MINUTES, PRIMARY_BUDGET_TOKENS)
        self._secondary = self._new_window(SECONDARY_WINDOW_MINUTES, SECONDARY_BUDGET_TOKENS)
        for _ in range(INITIAL_BACKLOG):
            self._backlog.append(self._new_issue())
        self._update_poll_fields()

    # --- Public API ------------------------------------------------------------

    @property
    def elapsed(self) -> float:
        """Simulated seconds since the start."""
        return self._now

    @property
    def clock(self) -> dt.datetime:
        """The simulated wall-clock time (UTC)."""
        return self.start_time + dt.timedelta(seconds=self._now)

    @property
    def monotonic_ms(self) -> float:
        """The simulated orchestrator's monotonic clock, in milliseconds."""
        return _MONOTONIC_START_MS + self._now * 1000.0

    def step(self, seconds: float) -> None:
        """Advance the simulation by ``seconds`` times ``speed`` simulated seconds.

        Every poll, turn end, retry and window reset due in that span happens
        in order.

        Raises:
            ValueError: If ``seconds`` is negative.
        """
        if not seconds >= 0:
            raise ValueError(f"seconds must be zero or more, got {seconds!r}")
        target = self._now + seconds * self.speed
        # Each pass handles one event and every event it schedules lies later,
        # so the loop ends once the next event is past the target.
        while True:
            when, kind, key = self._next_event()
            if when > target:
                break
            self._advance_to(when)
            self._handle(kind, key)
        self._advance_to(target)

    # --- Events ----------------------------------------------------------------

    def _next_event(self) -> tuple[float, int, str]:
        # Ties break by kind, then by key, so that the order never depends on
        # dict order or on how the time was cut into steps.
        candidates: list[tuple[float, int, str]] = [(self._next_poll, 0, "")]
        if self._poll_ends is not None:
            candidates.append((self._poll_ends, 1, ""))
        for key, session in self._sessions.items():
            candidates.append((session.turn_ends, 2, key))
        for key, retry in self.state.retry_attempts.items():
            candidates.append((self._seconds_of(retry.due_at_ms), 3, key))
        candidates.append((self._primary.resets_at, 4, "primary"))
        candidates.append((self._secondary.resets_at, 4, "secondary"))
        return min(candidates)

    def _handle(self, kind: int, key: str) -> None:
        if kind == 0:
            self._start_poll()
        elif kind == 1:
            self._finish_poll()
        elif kind == 2:
            self._end_turn(key)
        elif kind == 3:
            self._fire_retry(key)
        else:
            self._reset_window(self._primary if key == "primary" else self._secondary)

    def _start_poll(self) -> None:
        self.state.poll_check_in_progress = True
        self._poll_ends = self._now + POLL_DURATION
        self._next_poll = self._now + self.state.poll_interval_ms / 1000.0
        self._update_poll_fields()

    def _finish_poll(self) -> None:
        self.state.poll_check_in_progress = False
        self._poll_ends = None
        if self._rng.random() < NEW_ISSUE_PROBABILITY:
            self._backlog.append(self._new_issue())
        starting = self._backlog[: self._free_slots()]
        del self._backlog[: len(starting)]
        for issue in starting:
            self._start_session(issue, attempt=0)
        self._update_poll_fields()

    def _fire_retry(self, issue_id: str) -> None:
        retry = self.state.retry_attempts.pop(issue_id)
        issue = self._issues[issue_id]
        if retry.delay_type == "continuation" and self._rng.random() < ISSUE_DONE_PROBABILITY:
            return  # the issue reached a terminal state: its claim is released
        if self._free_slots() == 0:
            self._schedule_retry(issue, retry.attempt + 1, "failure", NO_SLOTS_ERROR)
            return
        self._start_session(issue, attempt=retry.attempt)

    def _reset_window(self, window: _Window) -> None:
        window.used_tokens = 0.0
        window.resets_at += window.minutes * 60.0
        self._update_rate_limits()

    # --- Workers ---------------------------------------------------------------

    def _start_session(self, issue: _Issue, attempt: int) -> None:
        rng = self._rng
        turns = rng.randint(1, 6)
        failing = rng.randint(1, turns) if rng.random() < TURN_FAILURE_PROBABILITY * turns else None
        entry = SimulatedRunningEntry(
            issue_id=issue.issue_id,
            identifier=issue.identifier,
            started_at=self.clock,
            workspace_path=f"{_WORKSPACE_ROOT}/{issue.identifier}",
        )
        session = _Session(
            issue=issue,
            entry=entry,
            attempt=attempt,
            started=self._now,
            turns_planned=turns,
            failing_turn=failing,
            thread_id=f"thr_{rng.getrandbits(64):016x}",
        )
        self._sessions[issue.issue_id] = session
        self.state.running[issue.issue_id] = entry
        self._start_turn(session)

    def _start_turn(self, session: _Session) -> None:
        rng = self._rng
        entry = session.entry
        entry.turn_count += 1
        entry.session_id = f"{session.thread_id}-turn_{entry.turn_count}_{rng.getrandbits(32):08x}"
        entry.last_codex_event = "turn_started"
        # Every model call of a turn sends the whole thread again, so the
        # input of later turns grows with the context.
        growth = 1.0 + 0.35 * (entry.turn_count - 1)
        session.turn_started = self._now
        session.turn_duration = rng.uniform(25.0, 180.0)
        session.turn_input = int(rng.randint(9_000, 60_000) * growth)
        session.turn_output = rng.randint(700, 9_000)
        session.accrued_input = 0
        session.accrued_output = 0

    def _end_turn(self, issue_id: str) -> None:
        session = self._sessions[issue_id]
        entry = session.entry
        entry.last_codex_event = "turn_completed"
        if self._primary.used_tokens >= self._primary.budget:
            self._end_session(session)
            self._schedule_retry(session.issue, session.attempt + 1, "failure", RATE_LIMITED_ERROR)
        elif session.failing_turn == entry.turn_count:
            self._end_session(session)
            error = self._rng.choice(TURN_ERRORS)
            self._schedule_retry(session.issue, session.attempt + 1, "failure", error)
        elif entry.turn_count >= session.turns_planned:
            self._end_session(session)
            self.state.completed.add(issue_id)
            self._schedule_retry(session.issue, 1, "continuation", None)
        else:
            self._start_turn(session)

    def _end_session(self, session: _Session) -> None:
        issue_id = session.issue.issue_id
        del self._sessions[issue_id]
        del self.state.running[issue_id]
        self._ended_seconds += self._now - session.started
        self._update_seconds_running()

    def _schedule_retry(self, issue: _Issue, attempt: int, delay_type: str, error: str | None) -> None:
        if delay_type == "continuation":
            delay = CONTINUATION_DELAY
        else:
            delay = min(FAILURE_BACKOFF_BASE * 2.0 ** min(attempt - 1, 30), FAILURE_BACKOFF_MAX)
        self.state.retry_attempts[issue.issue_id] = SimulatedRetryEntry(
            issue_id=issue.issue_id,
            identifier=issue.identifier,
            attempt=attempt,
            delay_type=delay_type,
            error=error,
            due_at_ms=self.monotonic_ms + delay * 1000.0,
            workspace_path=f"{_WORKSPACE_ROOT}/{issue.identifier}",
        )

    def _free_slots(self) -> int:
        return max(self.state.max_concurrent_agents - len(self._sessions), 0)

    # --- Time and tokens -------------------------------------------------------

    def _advance_to(self, when: float) -> None:
        """Move the clock to ``when`` and add the tokens the turns used meanwhile."""
        if when <= self._now:
            return
        self._now = when
        used = 0
        totals = self.state.codex_totals
        for key in sorted(self._sessions):
            session = self._sessions[key]
            progress = min(max((when - session.turn_started) / session.turn_duration, 0.0), 1.0)
            input_now = int(session.turn_input * progress)
            output_now = int(session.turn_output * progress)
            added_input = input_now - session.accrued_input
            added_output = output_now - session.accrued_output
            if not added_input and not added_output:
                continue
            session.accrued_input = input_now
            session.accrued_output = output_now
            entry = session.entry
            entry.codex_input_tokens += added_input
            entry.codex_output_tokens += added_output
            entry.codex_total_tokens = entry.codex_input_tokens + entry.codex_output_tokens
            entry.last_codex_event = "notification"
            totals.input_tokens += added_input
            totals.output_tokens += added_output
            used += added_input + added_output
        totals.total_tokens = totals.input_tokens + totals.output_tokens
        self._update_seconds_running()
        if used:
            self._primary.used_tokens += used
            self._secondary.used_tokens += used
            self._update_rate_limits()

    def _update_seconds_running(self) -> None:
        # Ended sessions plus the live ones, as the specification describes it.
        live = sum(self._now - session.started for session in self._sessions.values())
        self.state.codex_totals.seconds_running = round(self._ended_seconds + live, 3)

    def _update_rate_limits(self) -> None:
        # NOTE: resets_at is on the simulated clock.  With speed above 1 that
        # clock runs ahead of the real one, so a reader that subtracts the real
        # time (as symphony.rate_limit.reset does) reports resets further away.
        epoch = self.start_time.timestamp()
        spent = self.state.codex_totals.total_tokens / 1e6 * CREDITS_PER_MILLION_TOKENS
        credits = max(self._initial_credits - spent, 0.0)
        self.state.codex_rate_limits = {
            "limit_id": "codex",
            "limit_name": None,
            "plan_type": "pro",
            "primary": {
                "used_percent": self._primary.used_percent,
                "window_minutes": self._primary.minutes,
                "resets_at": int(epoch + self._primary.resets_at),
            },
            "secondary": {
                "used_percent": self._secondary.used_percent,
                "window_minutes": self._secondary.minutes,
                "resets_at": int(epoch + self._secondary.resets_at),
            },
            # The Codex app-server sends the balance as a decimal string.
            "credits": {"has_credits": credits > 0, "unlimited": False, "balance": f"{credits:.2f}"},
        }

    def _update_poll_fields(self) -> None:
        self.state.next_poll_due_at_ms = _MONOTONIC_START_MS + self._next_poll * 1000.0

    def _seconds_of(self, monotonic_ms: float) -> float:
        return (monotonic_ms - _MONOTONIC_START_MS) / 1000.0

    # --- Set-up ----------------------------------------------------------------

    def _new_issue(self) -> _Issue:
        number = self._next_issue_number
        self._next_issue_number += 1
        issue = _Issue(str(uuid.UUID(int=self._rng.getrandbits(128), version=4)), f"SIM-{number}")
        self._issues[issue.issue_id] = issue
        return issue

    def _new_window(self, minutes: int, budget: int) -> _Window:
        # Start somewhere inside the window, with the usage that far into it
        # would have.
        length = minutes * 60.0
        remaining = self._rng.uniform(0.1, 1.0) * length
        used = budget * (1.0 - remaining / length) * self._rng.uniform(0.3, 0.8)
        return _Window(minutes=minutes, budget=budget, resets_at=remaining, used_tokens=used)


# --- Driving a simulation from the real clock -----------------------------------

_SnapshotT = TypeVar("_SnapshotT")
_SnapshotT_co = TypeVar("_SnapshotT_co", covariant=True)


class _Generator(Protocol[_SnapshotT_co]):
    def generate(self, state: Any) -> _SnapshotT_co: ...


def run_in_real_time(
    simulation: Simulation,
    generator: _Generator[_SnapshotT],
    stop_event: threading.Event,
    *,
    interval: float = 2.0,
    on_snapshot: Callable[[_SnapshotT], None] | None = None,
) -> int:
    """Advance ``simulation`` with the real clock and generate a snapshot every ``interval``.

    The first snapshot is generated at once, the others every ``interval``
    seconds, until ``stop_event`` is set.

    Args:
        simulation: The simulation to advance.
        generator: Anything with ``generate(state)``, such as an
            :class:`~symphony_otel.OTelSnapshotGenerator`.
        stop_event: Ends the loop when set.
        interval: Seconds between two snapshots.
        on_snapshot: Called with each snapshot, on this thread.

    Returns:
        The number of snapshots generated.

    Raises:
        ValueError: If ``interval`` is not positive.
    """
    if not interval > 0:
        raise ValueError(f"interval must be a positive number of seconds, got {interval!r}")
    count = 0
    last = time.monotonic()
    while True:
        now = time.monotonic()
        simulation.step(now - last)
        last = now
        snapshot = generator.generate(simulation.state)
        count += 1
        if on_snapshot is not None:
            on_snapshot(snapshot)
        if stop_event.wait(interval):
            return count
