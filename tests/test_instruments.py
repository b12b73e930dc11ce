"""Tests of the instrument catalogue, the pure callbacks and the view they read (rate limits, totals)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from symphony_otel.recorder import instruments
from symphony_otel.recorder.instruments import (
    ATTR_OVERFLOW,
    CALLBACKS,
    INSTRUMENT_SPECS,
    CallbackContext,
)
from symphony_otel.recorder.view import (
    MonotonicTotals,
    RateLimits,
    RateLimitWindow,
    SnapshotView,
    parse_rate_limits,
)
from symphony_otel.snapshot import SystemSnapshot
from tests.metrics_helpers import (
    ELIXIR_STATE_FIXTURES,
    FIXTURE_15,
    Point,
    load_snapshot,
    only,
    point,
    snapshot,
    worker,
)

ORCHESTRATOR = {"symphony.orchestrator.name": "main"}
RECORDED_AT = 1000.0
# 1515 s before fixture 15's primary window resets at 1796416439.
WALL_NOW = 1796414924.0

SPECS = {spec.name: spec for spec in INSTRUMENT_SPECS}
LEVEL_GAUGES = {
    "symphony.workers.running",
    "symphony.workers.limit",
    "symphony.workers.overflow",
    "symphony.retry_queue.size",
    "symphony.poll.interval",
    "symphony.poll.in_progress",
    "symphony.rate_limit.utilization",
    "symphony.rate_limit.reset",
    "symphony.rate_limit.credits.balance",
    "symphony.worker.tokens",
    "symphony.worker.turns",
}
COUNTERS = {
    "symphony.tokens",
    "symphony.agent.runtime",
    "symphony.issues.completed",
    "symphony.snapshot.invalid_values",
    "symphony.snapshot.payload.dropped_rows",
    "symphony.snapshot.record_errors",
}


def view_of(snap: SystemSnapshot, totals: Mapping[str, float] | None = None) -> SnapshotView:
    codex = snap.codex_totals
    return SnapshotView(
        snapshot=snap,
        recorded_at=RECORDED_AT,
        stale_after=60.0,
        rate_limits=parse_rate_limits(snap.rate_limits, WALL_NOW),
        totals=totals
        or {
            "input_tokens": codex["input_tokens"],
            "output_tokens": codex["output_tokens"],
            "seconds_running": codex["seconds_running"],
            "completed": snap.completed_count,
        },
    )


def context(
    *,
    base: Mapping[str, Any] | None = None,
    fresh: bool = True,
    worker_series_limit: int = 100,
    invalid_counts: Mapping[str, int] | None = None,
    counters: Mapping[str, float] | None = None,
) -> CallbackContext:
    return CallbackContext(
        base=base or {},
        monotonic_now=RECORDED_AT + 2.5,
        wall_now=WALL_NOW,
        fresh=fresh,
        worker_series_limit=worker_series_limit,
        invalid_counts=invalid_counts or {},
        counters=counters or {},
    )


def observe_all(view: SnapshotView, ctx: CallbackContext) -> dict[Point, Any]:
    """Run every callback and flatten the observations like one collection."""
    values: dict[Point, Any] = {}
    for name, compute in CALLBACKS.items():
        for observation in compute(view, ctx):
            key = point(name, dict(observation.attributes or {}))
            assert key not in values, f"two observations for {key}"
            values[key] = observation.value
    return values


def worker_point(name: str, identifier: str, token_type: str | None = None) -> Point:
    attributes = {"symphony.issue.identifier": identifier}
    if token_type is not None:
        attributes["gen_ai.token.type"] = token_type
    return point(name, attributes)


FIXTURE_15_POINTS: dict[Point, Any] = {
    point("symphony.workers.running"): 3,
    point("symphony.workers.overflow"): 0,
    point("symphony.retry_queue.size"): 3,
    point("symphony.poll.in_progress"): 0,
    point("symphony.snapshot.age"): 2.5,
    point("symphony.rate_limit.utilization", {"symphony.rate_limit.window": "primary", "symphony.rate_limit.id": "codex"}): 0.3,
    point("symphony.rate_limit.utilization", {"symphony.rate_limit.window": "secondary", "symphony.rate_limit.id": "codex"}): 0.075,
    point("symphony.rate_limit.reset", {"symphony.rate_limit.window": "primary", "symphony.rate_limit.id": "codex"}): 1515.0,
    point("symphony.rate_limit.reset", {"symphony.rate_limit.window": "secondary", "symphony.rate_limit.id": "codex"}): 257115.0,
    worker_point("symphony.worker.tokens", "FAKE-101", "input"): 69461,
    worker_point("symphony.worker.tokens", "FAKE-101", "output"): 10686,
    worker_point("symphony.worker.tokens", "FAKE-102", "input"): 65654,
    worker_point("symphony.worker.tokens", "FAKE-102", "output"): 10122,
    worker_point("symphony.worker.tokens", "FAKE-103", "input"): 70962,
    worker_point("symphony.worker.tokens", "FAKE-103", "output"): 11658,
    worker_point("symphony.worker.turns", "FAKE-101"): 2,
    worker_point("symphony.worker.turns", "FAKE-102"): 2,
    worker_point("symphony.worker.turns", "FAKE-103"): 2,
    point("symphony.tokens", {"gen_ai.token.type": "input"}): 259485,
    point("symphony.tokens", {"gen_ai.token.type": "output"}): 40334,
    point("symphony.agent.runtime"): 37,
    point("symphony.issues.completed"): 0,
    point("symphony.snapshot.payload.dropped_rows"): 0,
    point("symphony.snapshot.record_errors"): 0,
}


# --- Catalogue -----------------------------------------------------------------


def test_catalogue_names_unique_and_namespaced() -> None:
    names = [spec.name for spec in instruments.ALL_INSTRUMENT_SPECS]

    assert len(names) == len(set(names))
    for name in names:
        assert re.fullmatch(r"symphony(\.[a-z_]+)+", name), name


def test_catalogue_units_are_ucum() -> None:
    # UCUM: "s" for seconds, "1" for ratios and flags, {annotation} for counts.
    for spec in instruments.ALL_INSTRUMENT_SPECS:
        assert re.fullmatch(r"s|1|\{[a-z]+\}", spec.unit), f"{spec.name}: {spec.unit!r}"
    assert SPECS["symphony.snapshot.age"].unit == "s"
    assert SPECS["symphony.poll.interval"].unit == "s"
    assert SPECS["symphony.rate_limit.utilization"].unit == "1"
    assert SPECS["symphony.tokens"].unit == "{token}"


def test_catalogue_levels_gauges_totals_counters() -> None:
    kinds = {spec.name: spec.kind for spec in INSTRUMENT_SPECS}

    assert {name for name, kind in kinds.items() if kind == "counter"} == COUNTERS
    assert {name for name, kind in kinds.items() if kind == "gauge"} == LEVEL_GAUGES | {"symphony.snapshot.age"}


def test_catalogue_every_instrument_has_callback() -> None:
    assert set(CALLBACKS) == set(SPECS)


def test_catalogue_no_total_token_type() -> None:
    for spec in instruments.ALL_INSTRUMENT_SPECS:
        assert "total" not in spec.name.split(".")
        assert "total" not in spec.attributes


# --- Callbacks over fixture 15 ---------------------------------------------------


def test_callbacks_fixture_15_values() -> None:
    view = view_of(load_snapshot(FIXTURE_15))

    assert observe_all(view, context()) == FIXTURE_15_POINTS


def test_callbacks_orchestrator_name_everywhere() -> None:
    view = view_of(load_snapshot(FIXTURE_15))

    observed = observe_all(view, context(base=ORCHESTRATOR))

    expected = {
        point(name, {**dict(attributes), **ORCHESTRATOR}): value
        for (name, attributes), value in FIXTURE_15_POINTS.items()
    }
    assert observed == expected


@pytest.mark.parametrize("fixture", ELIXIR_STATE_FIXTURES)
def test_callbacks_attributes_match_catalogue(fixture: str) -> None:
    view = view_of(load_snapshot(fixture))

    for name, attributes in observe_all(view, context(base=ORCHESTRATOR)):
        keys = {key for key, _value in attributes}
        assert keys == set(SPECS[name].attributes) | set(ORCHESTRATOR), name


@pytest.mark.parametrize("fixture", ELIXIR_STATE_FIXTURES)
def test_callbacks_token_types_input_output_only(fixture: str) -> None:
    view = view_of(load_snapshot(fixture))

    for name, attributes in observe_all(view, context()):
        token_types = [value for key, value in attributes if key == "gen_ai.token.type"]
        assert token_types in ([], ["input"], ["output"]), (name, token_types)


def test_callbacks_idle_fixture_values() -> None:
    view = view_of(load_snapshot("01_state_idle.json"))

    observed = observe_all(view, context())

    assert observed == {
        point("symphony.workers.running"): 0,
        point("symphony.workers.overflow"): 0,
        point("symphony.retry_queue.size"): 0,
        point("symphony.poll.in_progress"): 0,
        point("symphony.snapshot.age"): 2.5,
        point("symphony.tokens", {"gen_ai.token.type": "input"}): 0,
        point("symphony.tokens", {"gen_ai.token.type": "output"}): 0,
        point("symphony.agent.runtime"): 0,
        point("symphony.issues.completed"): 0,
        point("symphony.snapshot.payload.dropped_rows"): 0,
        point("symphony.snapshot.record_errors"): 0,
    }


def test_callbacks_limits_and_poll_values() -> None:
    snap = snapshot(poll_interval_ms=2500, max_concurrent_agents=4, poll_check_in_progress=True)

    observed = observe_all(view_of(snap), context())

    assert observed[point("symphony.poll.interval")] == 2.5
    assert observed[point("symphony.workers.limit")] == 4
    assert observed[point("symphony.poll.in_progress")] == 1


def test_callbacks_stale_view_only_age_and_totals() -> None:
    view = view_of(load_snapshot(FIXTURE_15))

    observed = observe_all(view, context(fresh=False))

    assert observed == {
        point("symphony.snapshot.age"): 2.5,
        point("symphony.tokens", {"gen_ai.token.type": "input"}): 259485,
        point("symphony.tokens", {"gen_ai.token.type": "output"}): 40334,
        point("symphony.agent.runtime"): 37,
        point("symphony.issues.completed"): 0,
        point("symphony.snapshot.payload.dropped_rows"): 0,
        point("symphony.snapshot.record_errors"): 0,
    }


def test_callbacks_own_counters_and_invalid_values() -> None:
    view = view_of(snapshot())
    ctx = context(
        invalid_counts={"turn_count": 2, "rate_limits": 1},
        counters={"dropped_rows": 17, "record_errors": 3},
    )

    observed = observe_all(view, ctx)

    assert only(observed, "symphony.snapshot.invalid_values") == {
        frozenset({("symphony.snapshot.field", "turn_count")}): 2,
        frozenset({("symphony.snapshot.field", "rate_limits")}): 1,
    }
    assert observed[point("symphony.snapshot.payload.dropped_rows")] == 17
    assert observed[point("symphony.snapshot.record_errors")] == 3


def test_callbacks_reset_in_past_is_zero() -> None:
    snap = snapshot(rate_limits={"primary": {"used_percent": 99.0, "resets_at": WALL_NOW - 30}})

    observed = observe_all(view_of(snap), context())

    reset = only(observed, "symphony.rate_limit.reset")
    assert list(reset.values()) == [0.0]


def test_callbacks_credits_balance_per_limit() -> None:
    snap = snapshot(rate_limits={"limit_id": "codex", "credits": {"has_credits": True, "balance": 12.5}})

    observed = observe_all(view_of(snap), context())

    assert only(observed, "symphony.rate_limit.credits.balance") == {
        frozenset({("symphony.rate_limit.id", "codex")}): 12.5
    }


# --- Per-worker series -----------------------------------------------------------


def test_worker_series_limit_folds_extras() -> None:
    rows = [worker(f"W-{n}", input_tokens=100 * n, output_tokens=10 * n, turns=n) for n in range(1, 6)]
    view = view_of(snapshot(running=rows))

    observed = observe_all(view, context(worker_series_limit=2))

    assert only(observed, "symphony.worker.turns") == {
        frozenset({("symphony.issue.identifier", "W-1")}): 1,
        frozenset({("symphony.issue.identifier", "W-2")}): 2,
        frozenset({(ATTR_OVERFLOW, True)}): 3 + 4 + 5,
    }
    assert only(observed, "symphony.worker.tokens") == {
        frozenset({("symphony.issue.identifier", "W-1"), ("gen_ai.token.type", "input")}): 100,
        frozenset({("symphony.issue.identifier", "W-1"), ("gen_ai.token.type", "output")}): 10,
        frozenset({("symphony.issue.identifier", "W-2"), ("gen_ai.token.type", "input")}): 200,
        frozenset({("symphony.issue.identifier", "W-2"), ("gen_ai.token.type", "output")}): 20,
        frozenset({(ATTR_OVERFLOW, True), ("gen_ai.token.type", "input")}): 1200,
        frozenset({(ATTR_OVERFLOW, True), ("gen_ai.token.type", "output")}): 120,
    }
    assert observed[point("symphony.workers.overflow")] == 3
    assert observed[point("symphony.workers.running")] == 5


def test_worker_series_at_limit_no_overflow() -> None:
    rows = [worker(f"W-{n}", turns=1) for n in range(3)]

    observed = observe_all(view_of(snapshot(running=rows)), context(worker_series_limit=3))

    assert len(only(observed, "symphony.worker.turns")) == 3
    assert observed[point("symphony.workers.overflow")] == 0
    assert all(ATTR_OVERFLOW not in dict(attributes) for _name, attributes in observed)


def test_worker_series_shared_identifier_one_series() -> None:
    # Rows without an identifier of their own share one, so they share a series
    # and nothing is folded into the overflow series.
    rows = [worker("", input_tokens=5, turns=1) for _ in range(4)]

    observed = observe_all(view_of(snapshot(running=rows)), context(worker_series_limit=2))

    assert only(observed, "symphony.worker.turns") == {frozenset({("symphony.issue.identifier", "")}): 4}
    assert observed[point("symphony.workers.overflow")] == 0


def test_worker_series_huge_counts_capped_int64() -> None:
    huge = 2**70
    snap = snapshot(
        running=[worker("FAKE-1", input_tokens=huge, output_tokens=1, turns=huge)],
        codex_totals={"input_tokens": huge, "output_tokens": 2, "total_tokens": huge + 2, "seconds_running": huge},
        completed_count=huge,
    )

    observed = observe_all(view_of(snap), context())

    int64_max = 2**63 - 1
    assert observed[worker_point("symphony.worker.tokens", "FAKE-1", "input")] == int64_max
    assert observed[worker_point("symphony.worker.turns", "FAKE-1")] == int64_max
    assert observed[point("symphony.tokens", {"gen_ai.token.type": "input"})] == int64_max
    assert observed[point("symphony.tokens", {"gen_ai.token.type": "output"})] == 2
    assert observed[point("symphony.agent.runtime")] == int64_max
    assert observed[point("symphony.issues.completed")] == int64_max


# --- Rate limits -----------------------------------------------------------------

NOW = 1_000_000.0

RATE_LIMIT_CASES: dict[str, tuple[Any, RateLimits]] = {
    "fixture 15 windows": (
        {
            "credits": {"balance": None, "has_credits": False, "unlimited": False},
            "limit_id": "codex",
            "limit_name": None,
            "plan_type": "pro",
            "primary": {"resets_at": 1796416439, "used_percent": 30.0, "window_minutes": 300},
            "secondary": {"resets_at": 1796672039, "used_percent": 7.5, "window_minutes": 10080},
        },
        RateLimits(
            windows=(
                RateLimitWindow("codex", "primary", 0.3, 1796416439.0),
                RateLimitWindow("codex", "secondary", 0.075, 1796672039.0),
            )
        ),
    ),
    "camel case": (
        {"limitId": "codex", "primary": {"usedPercent": 42, "windowMinutes": 60, "resetsAt": 1796416439}},
        RateLimits(windows=(RateLimitWindow("codex", "primary", 0.42, 1796416439.0),)),
    ),
    "resets in seconds": (
        {"primary": {"used_percent": 10, "window_minutes": 300, "resets_in_seconds": 120}},
        RateLimits(windows=(RateLimitWindow("default", "primary", 0.1, NOW + 120),)),
    ),
    "resets in seconds camel case": (
        {"secondary": {"usedPercent": 50, "resetsInSeconds": 60.5}},
        RateLimits(windows=(RateLimitWindow("default", "secondary", 0.5, NOW + 60.5),)),
    ),
    "resets at in milliseconds": (
        {"primary": {"used_percent": 1, "resets_at": 1796416439000}},
        RateLimits(windows=(RateLimitWindow("default", "primary", 0.01, 1796416439.0),)),
    ),
    "older remaining and limit": (
        {"requests": {"remaining": 250, "limit": 1000, "reset_in_seconds": 30}},
        RateLimits(windows=(RateLimitWindow("default", "requests", 0.75, NOW + 30),)),
    ),
    "older camel case": (
        {"tokens": {"remaining": 0, "limit": 40000, "resetInSeconds": 12.5}},
        RateLimits(windows=(RateLimitWindow("default", "tokens", 1.0, NOW + 12.5),)),
    ),
    "older numbers as strings": (
        {"requests": {"remaining": "90", "limit": "100"}},
        RateLimits(windows=(RateLimitWindow("default", "requests", 0.1, None),)),
    ),
    "credits balance": (
        {"credits": {"has_credits": True, "unlimited": False, "balance": 12.5}},
        RateLimits(credits=(("default", 12.5),)),
    ),
    "credits camel case balance string": (
        {"limitId": "codex", "credits": {"hasCredits": True, "unlimited": False, "balance": "7"}},
        RateLimits(credits=(("codex", 7.0),)),
    ),
    "credits unlimited without balance": (
        {"credits": {"has_credits": True, "unlimited": True}},
        RateLimits(),
    ),
    "limits keyed by id": (
        {
            "codex": {"primary": {"used_percent": 20, "resets_at": 1796416439}},
            "gpt-5": {"secondary": {"used_percent": 80}, "credits": {"balance": 3}},
        },
        RateLimits(
            windows=(
                RateLimitWindow("codex", "primary", 0.2, 1796416439.0),
                RateLimitWindow("gpt-5", "secondary", 0.8, None),
            ),
            credits=(("gpt-5", 3.0),),
        ),
    ),
    "window without readings": (
        {"primary": {"window_minutes": 300}},
        RateLimits(windows=(RateLimitWindow("default", "primary", None, None),)),
    ),
    "unreadable values skipped": (
        {
            "primary": {"used_percent": "abc", "resets_at": None},
            "secondary": {"used_percent": True, "resets_at": "soon"},
            "tertiary": {"remaining": 5, "limit": 0},
            "credits": {"balance": "lots"},
        },
        RateLimits(
            windows=(
                RateLimitWindow("default", "primary", None, None),
                RateLimitWindow("default", "secondary", None, None),
                RateLimitWindow("default", "tertiary", None, None),
            )
        ),
    ),
    "negative used percent clamped": (
        {"primary": {"used_percent": -5, "resets_in_seconds": -10}},
        RateLimits(windows=(RateLimitWindow("default", "primary", 0.0, NOW),)),
    ),
    "null": (None, RateLimits()),
    "empty": ({}, RateLimits()),
    "not a mapping": (["primary", 30], RateLimits()),
    "scalars only": ({"limit_id": "codex", "plan_type": "pro"}, RateLimits()),
}


@pytest.mark.parametrize("case", RATE_LIMIT_CASES)
def test_parse_rate_limits_shapes(case: str) -> None:
    payload, expected = RATE_LIMIT_CASES[case]

    parsed = parse_rate_limits(payload, NOW)

    assert len(parsed.windows) == len(expected.windows)
    for window, expected_window in zip(parsed.windows, expected.windows):
        assert (window.limit_id, window.window) == (expected_window.limit_id, expected_window.window)
        if expected_window.utilization is None:
            assert window.utilization is None
        else:
            assert window.utilization == pytest.approx(expected_window.utilization)
        assert window.resets_at == expected_window.resets_at
    assert parsed.credits == expected.credits


JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
)
WINDOW_KEYS = st.sampled_from(
    [
        "used_percent",
        "usedPercent",
        "window_minutes",
        "resets_at",
        "resetsAt",
        "resets_in_seconds",
        "reset_in_seconds",
        "remaining",
        "limit",
        "limit_id",
        "id",
        "credits",
        "balance",
        "primary",
    ]
)
RATE_LIMIT_PAYLOADS = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(WINDOW_KEYS | st.text(max_size=8) | st.integers(), children, max_size=5),
    max_leaves=25,
)


@given(RATE_LIMIT_PAYLOADS)
def test_parse_rate_limits_never_raises(payload: Any) -> None:
    parsed = parse_rate_limits(payload, NOW)

    for window in parsed.windows:
        assert window.utilization is None or (math.isfinite(window.utilization) and window.utilization >= 0)
        assert window.resets_at is None or math.isfinite(window.resets_at)
    for _limit_id, balance in parsed.credits:
        assert math.isfinite(balance)


@given(RATE_LIMIT_PAYLOADS)
def test_callbacks_never_raise_on_rate_limits(payload: Any) -> None:
    snap = snapshot(rate_limits=payload if isinstance(payload, dict) else None)

    observe_all(view_of(snap), context())


# --- Totals across restarts ----------------------------------------------------------


def test_monotonic_totals_restart_adds_growth_from_zero() -> None:
    totals = MonotonicTotals()

    assert totals.advance({"input_tokens": 100}) == {"input_tokens": 100}
    assert totals.advance({"input_tokens": 150}) == {"input_tokens": 150}
    # The orchestrator restarted: 30 tokens since, not a loss of 120.
    assert totals.advance({"input_tokens": 30}) == {"input_tokens": 180}
    assert totals.advance({"input_tokens": 40}) == {"input_tokens": 190}
    assert totals.advance({"input_tokens": 40}) == {"input_tokens": 190}


def test_monotonic_totals_restart_to_zero() -> None:
    totals = MonotonicTotals()
    totals.advance({"seconds_running": 37, "completed": 2})

    assert totals.advance({"seconds_running": 0, "completed": 0}) == {"seconds_running": 37, "completed": 2}
    assert totals.advance({"seconds_running": 5.5, "completed": 1}) == {"seconds_running": 42.5, "completed": 3}


def test_monotonic_totals_add_counts() -> None:
    totals = MonotonicTotals()

    totals.add("record_errors", 1)

    assert totals.add("record_errors", 2) == {"record_errors": 3}


@given(st.lists(st.integers(min_value=0, max_value=10**12), min_size=1, max_size=30))
def test_monotonic_totals_never_decrease(values: list[int]) -> None:
    totals = MonotonicTotals()
    previous = 0

    for value in values:
        current = totals.advance({"input_tokens": value})["input_tokens"]
        assert current >= previous
        previous = current


# --- Freshness ---------------------------------------------------------------------


def test_view_fresh_until_stale_after() -> None:
    view = view_of(snapshot())

    assert view.is_fresh(RECORDED_AT + 60.0)
    assert not view.is_fresh(RECORDED_AT + 60.001)
