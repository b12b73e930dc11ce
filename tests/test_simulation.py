"""Tests of the simulated orchestrator, driven by ``step`` without sleeping."""

from __future__ import annotations

import datetime as dt
import re
import threading
import time

import pytest

from symphony_otel import SnapshotGenerator
from symphony_otel.recorder.redaction import Redactor
from symphony_otel.simulation import (
    CONTINUATION_DELAY,
    FAILURE_BACKOFF_BASE,
    FAILURE_BACKOFF_MAX,
    NO_SLOTS_ERROR,
    POLL_DURATION,
    PRIMARY_WINDOW_MINUTES,
    Simulation,
    run_in_real_time,
)

START = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.timezone.utc)


def simulation(seed: int = 3, **options: object) -> Simulation:
    return Simulation(seed=seed, start_time=START, **options)  # type: ignore[arg-type]


def test_same_seed_gives_same_state() -> None:
    first, second = simulation(seed=11), simulation(seed=11)
    for _ in range(120):
        first.step(30)
        second.step(30)

    assert first.state == second.state


def test_step_size_does_not_change_run() -> None:
    fine, coarse = simulation(), simulation()
    for _ in range(360):
        fine.step(10)
    coarse.step(3600)

    assert fine.elapsed == coarse.elapsed == 3600
    assert fine.state == coarse.state


def test_different_seeds_differ() -> None:
    first, second = simulation(seed=1), simulation(seed=2)
    first.step(1800)
    second.step(1800)

    assert first.state.codex_totals != second.state.codex_totals


def test_speed_scales_simulated_time() -> None:
    fast = simulation(speed=60)
    fast.step(1.5)

    assert fast.elapsed == 90
    assert fast.clock == START + dt.timedelta(seconds=90)


def test_negative_step_raises() -> None:
    with pytest.raises(ValueError, match="seconds must be zero or more"):
        simulation().step(-1)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("speed", 0, "speed must be a positive number"),
        ("max_concurrent_agents", 0, "max_concurrent_agents must be at least 1"),
        ("poll_interval_ms", 0, "poll_interval_ms must be at least 1"),
    ],
)
def test_invalid_options_raise(option: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        simulation(**{option: value})


def test_first_poll_starts_workers() -> None:
    sim = simulation(max_concurrent_agents=4)
    sim.step(0)

    assert sim.state.poll_check_in_progress is True
    assert sim.state.running == {}
    assert sim.state.next_poll_due_at_ms == sim.monotonic_ms + 30_000

    sim.step(POLL_DURATION)

    assert sim.state.poll_check_in_progress is False
    assert len(sim.state.running) == 4
    for entry in sim.state.running.values():
        assert entry.identifier.startswith("SIM-")
        assert entry.turn_count == 1
        assert entry.started_at == START + dt.timedelta(seconds=POLL_DURATION)
        assert re.fullmatch(r"thr_[0-9a-f]{16}-turn_1_[0-9a-f]{8}", entry.session_id or "")
        assert entry.workspace_path == f"/var/lib/symphony/workspaces/{entry.identifier}"


def test_running_never_exceeds_limit() -> None:
    sim = simulation(max_concurrent_agents=3)
    for _ in range(600):
        sim.step(20)
        assert len(sim.state.running) <= 3


def test_tokens_grow_per_turn() -> None:
    sim = simulation(seed=5)
    sim.step(POLL_DURATION)
    issue_id = sorted(sim.state.running)[0]
    entry = sim.state.running[issue_id]
    seen: list[tuple[int, int]] = []
    for _ in range(600):
        sim.step(1)
        if issue_id not in sim.state.running:
            break
        seen.append((entry.turn_count, entry.codex_total_tokens))

    tokens = [total for _turns, total in seen]
    turns = [turn for turn, _total in seen]
    assert tokens == sorted(tokens)
    assert tokens[-1] > tokens[0]
    assert turns == sorted(turns)
    assert entry.codex_total_tokens == entry.codex_input_tokens + entry.codex_output_tokens


def test_totals_are_monotonic() -> None:
    sim = simulation()
    previous = (0, 0, 0.0, 0)
    for _ in range(200):
        sim.step(60)
        totals = sim.state.codex_totals
        current = (totals.input_tokens, totals.output_tokens, totals.seconds_running, len(sim.state.completed))
        assert all(now >= before for now, before in zip(current, previous))
        assert totals.total_tokens == totals.input_tokens + totals.output_tokens
        previous = current

    assert previous[0] > 0
    assert previous[3] > 0


def test_failures_wait_with_exponential_backoff() -> None:
    sim = simulation(seed=8)
    checked: dict[str, int] = {}
    known: set[tuple[str, int]] = set()
    for _ in range(4 * 3600):
        sim.step(1)
        for issue_id, retry in sim.state.retry_attempts.items():
            if (issue_id, retry.attempt) in known:
                continue
            known.add((issue_id, retry.attempt))
            waits = (retry.due_at_ms - sim.monotonic_ms) / 1000.0
            if retry.delay_type == "continuation":
                expected = CONTINUATION_DELAY
                assert retry.attempt == 1
                assert retry.error is None
            else:
                expected = min(FAILURE_BACKOFF_BASE * 2 ** (retry.attempt - 1), FAILURE_BACKOFF_MAX)
                assert retry.error
            # Scheduled at most one step (1 s) before this check.
            assert expected - 1.0 <= waits <= expected
            checked[retry.delay_type] = checked.get(retry.delay_type, 0) + 1

    assert checked.get("failure", 0) > 10
    assert checked.get("continuation", 0) > 10


def test_retry_queue_holds_failures_and_continuations() -> None:
    sim = simulation(seed=8)
    delay_types: set[str] = set()
    errors: set[str] = set()
    for _ in range(600):
        sim.step(30)
        for retry in sim.state.retry_attempts.values():
            delay_types.add(retry.delay_type)
            if retry.error:
                errors.add(retry.error)

    assert delay_types == {"failure", "continuation"}
    assert NO_SLOTS_ERROR in errors
    assert len(errors) >= 3


def test_errors_hold_no_secrets() -> None:
    sim = simulation(seed=8)
    redact = Redactor(None)
    errors: set[str] = set()
    for _ in range(600):
        sim.step(30)
        errors.update(retry.error for retry in sim.state.retry_attempts.values() if retry.error)

    assert errors
    for error in errors:
        assert redact(error) == error


def test_rate_limit_windows_fill_and_reset() -> None:
    sim = simulation(seed=4)
    sim.step(0)
    assert sim.state.codex_rate_limits is None

    readings: list[tuple[float, int]] = []
    for _ in range(12 * 60):
        sim.step(60)
        primary = sim.state.codex_rate_limits["primary"]  # type: ignore[index]
        readings.append((primary["used_percent"], primary["resets_at"]))

    drops = [
        (before, after)
        for before, after in zip(readings, readings[1:])
        if after[0] < before[0]
    ]
    assert drops, "the primary window never reset"
    for before, after in drops:
        assert after[1] - before[1] == PRIMARY_WINDOW_MINUTES * 60
    assert max(used for used, _resets in readings) > 50
    assert all(0 <= used <= 100 for used, _resets in readings)


def test_rate_limits_shape() -> None:
    sim = simulation(seed=4)
    sim.step(300)
    limits = sim.state.codex_rate_limits

    assert limits is not None
    assert limits["limit_id"] == "codex"
    assert limits["primary"]["window_minutes"] == 300
    assert limits["secondary"]["window_minutes"] == 10_080
    assert limits["primary"]["resets_at"] > START.timestamp()
    assert limits["credits"]["has_credits"] is True
    assert float(limits["credits"]["balance"]) > 0


def test_state_reads_without_invalid_values() -> None:
    sim = simulation(seed=6, max_concurrent_agents=4)
    generator = SnapshotGenerator()
    snapshot = None
    for _ in range(100):
        sim.step(45)
        snapshot = generator.generate(sim.state)

    assert snapshot is not None
    assert generator.value_report.counts() == {}
    assert snapshot.max_concurrent_agents == 4
    assert snapshot.poll_interval_ms == 30_000
    assert snapshot.completed_count == len(sim.state.completed)
    assert snapshot.codex_totals["input_tokens"] == sim.state.codex_totals.input_tokens
    assert {row["identifier"] for row in snapshot.running} == {
        entry.identifier for entry in sim.state.running.values()
    }
    assert snapshot.running[0]["started_at"].endswith("Z")


class _CollectingGenerator:
    def __init__(self) -> None:
        self.states: list[float] = []

    def generate(self, state: object) -> float:
        self.states.append(time.monotonic())
        return self.states[-1]


def test_run_in_real_time_until_stopped() -> None:
    sim = simulation(speed=100)
    generator = _CollectingGenerator()
    stop = threading.Event()
    seen: list[float] = []
    timer = threading.Timer(0.35, stop.set)
    started = time.monotonic()
    timer.start()
    try:
        count = run_in_real_time(sim, generator, stop, interval=0.05, on_snapshot=seen.append)
    finally:
        timer.cancel()
    elapsed = time.monotonic() - started

    assert elapsed < 1.0
    assert count == len(generator.states) == len(seen)
    assert count >= 4
    # The simulation advanced with the clock, up to the last snapshot.
    assert sim.elapsed == pytest.approx(100 * (generator.states[-1] - generator.states[0]), abs=1.0)


def test_run_in_real_time_rejects_bad_interval() -> None:
    with pytest.raises(ValueError, match="interval must be a positive number"):
        run_in_real_time(simulation(), _CollectingGenerator(), threading.Event(), interval=0)
