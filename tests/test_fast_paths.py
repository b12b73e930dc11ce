"""Tests of the fast paths of generate() and of the recorder: each must give what the lenient path gives.

The fast paths read classes with fixed attributes through compiled readers and
reuse work of the previous snapshot (rows, rate limits, encoded rows) while
the state does not change.  A ``PlainObject`` state has no fixed attributes,
so a fresh generator reads it on the lenient path only: the reference here.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
from typing import Any

import orjson
import pytest
import states
from metrics_helpers import collect, only
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from symphony_otel import OTelSnapshotGenerator, SnapshotGenerator, _compiled
from symphony_otel.recorder.events import ATTR_JSON
from symphony_otel.recorder.view import MonotonicTotals, RateLimitReader

UTC = dt.timezone.utc
START = dt.datetime(2025, 6, 11, 9, 30, tzinfo=UTC)

# Values of one field: mostly valid, with the invalid kinds the lenient reader
# converts, reports or drops.  No bools and no floats equal to an int: a value
# that compares equal to the previous one reuses its row (see _compiled), and
# True == 1, 2.0 == 2 are the documented exceptions where a fresh read differs.
text_value_st = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["ENG-1", "turn/started", "\ud800lone", "naïve", ""]),
    st.none(),
    st.integers(-5, 5),
)
count_value_st = st.one_of(
    st.integers(0, 10**6),
    st.sampled_from([-1, 2**63, 2**63 - 1, 0]),
    st.floats(allow_nan=True, allow_infinity=True).filter(lambda f: not f.is_integer()),
    st.none(),
    st.text(max_size=3),
)
time_value_st = st.one_of(
    st.integers(0, 10**6).map(lambda seconds: START + dt.timedelta(seconds=seconds)),
    st.datetimes(min_value=dt.datetime(1970, 1, 2), max_value=dt.datetime(2100, 1, 1)),
    st.just("2025-06-11T09:30:00Z"),
    st.none(),
)
RUNNING_VALUES = {
    "issue_id": text_value_st,
    "identifier": text_value_st,
    "turn_count": count_value_st,
    "codex_total_tokens": count_value_st,
    "last_codex_event": text_value_st,
    "started_at": time_value_st,
    "session_id": text_value_st,
    "codex_input_tokens": count_value_st,
    "codex_output_tokens": count_value_st,
    "worker_host": text_value_st,
    "workspace_path": text_value_st,
}
RETRY_VALUES = {
    "issue_id": text_value_st,
    "identifier": text_value_st,
    "attempt": count_value_st,
    "delay_type": text_value_st,
    "error": text_value_st,
    "worker_host": text_value_st,
    "workspace_path": text_value_st,
}


def _valid_running(index: int) -> dict[str, Any]:
    return {
        "issue_id": f"issue-{index}",
        "identifier": f"ENG-{index}",
        "turn_count": index,
        "codex_total_tokens": 30 * index,
        "last_codex_event": "turn/started",
        "started_at": START + dt.timedelta(seconds=index),
        "session_id": f"session-{index}",
        "codex_input_tokens": 20 * index,
        "codex_output_tokens": 10 * index,
        "worker_host": None,
        "workspace_path": f"/work/ENG-{index}",
    }


def _valid_retry(index: int) -> dict[str, Any]:
    return {
        "issue_id": f"retry-{index}",
        "identifier": f"OPS-{index}",
        "attempt": index + 1,
        "delay_type": "failure",
        "error": f"turn failed after {index} turns",
        "worker_host": "worker-1",
        "workspace_path": None,
    }


def _changes(values: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[list[tuple[int, str, Any]]]:
    return st.lists(
        st.sampled_from(sorted(values)).flatmap(
            lambda name: st.tuples(st.integers(0, 3), st.just(name), values[name])
        ),
        max_size=4,
    )


def _state(shape: str, running: list[dict[str, Any]], retrying: list[dict[str, Any]]) -> Any:
    return states.build(
        shape,
        {
            "running": {row["issue_id"] if isinstance(row["issue_id"], str) else f"k{i}": states.build(shape, row) for i, row in enumerate(running)},
            "retry_attempts": {f"r{i}": states.build(shape, row) for i, row in enumerate(retrying)},
            "completed": {"a", "b"},
            "codex_totals": states.build(
                shape,
                {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15, "seconds_running": 1.5},
            ),
            "codex_rate_limits": {"primary": {"used_percent": 42.0, "window_minutes": 300}},
            "poll_interval_ms": 30_000,
            "max_concurrent_agents": 4,
            "poll_check_in_progress": False,
            "next_poll_due_at_ms": 12_345,
        },
        nested=False,
    )


def _apply(state: Any, changes: list[tuple[int, str, Any]], attribute: str) -> None:
    entries = list(getattr(state, attribute).values())
    for index, name, value in changes:
        if index < len(entries):
            setattr(entries[index], name, value)


def _comparable(generator: SnapshotGenerator, state: Any) -> tuple[dict[str, Any], dict[str, int]]:
    before = generator.value_report.counts()
    body = generator.generate(state).to_dict()
    del body["generated_at"]
    after = generator.value_report.counts()
    growth = {name: count - before.get(name, 0) for name, count in after.items() if count != before.get(name, 0)}
    return body, growth


@pytest.mark.parametrize("shape", ["dataclass", "slots"])
@given(
    running_changes=_changes(RUNNING_VALUES),
    retry_changes=_changes(RETRY_VALUES),
    later_running=_changes(RUNNING_VALUES),
)
def test_fast_path_matches_lenient_across_changes(
    shape: str,
    running_changes: list[tuple[int, str, Any]],
    retry_changes: list[tuple[int, str, Any]],
    later_running: list[tuple[int, str, Any]],
) -> None:
    running = [_valid_running(index) for index in range(4)]
    retrying = [_valid_retry(index) for index in range(3)]
    fast_state = _state(shape, running, retrying)
    plain_state = _state("plain", running, retrying)
    fast = SnapshotGenerator()

    # Warm every cache on the valid state, then change it under the fast generator.
    assert _comparable(fast, fast_state) == _comparable(SnapshotGenerator(), plain_state)
    assert fast._running._readers, "the dataclass entries took the compiled reader"
    for changes, later in ((running_changes, later_running), (later_running, [])):
        _apply(fast_state, changes, "running")
        _apply(plain_state, changes, "running")
        _apply(fast_state, retry_changes, "retry_attempts")
        _apply(plain_state, retry_changes, "retry_attempts")
        assert _comparable(fast, fast_state) == _comparable(SnapshotGenerator(), plain_state)
        # The same state again: every row from the caches, the same result.
        assert _comparable(fast, fast_state) == _comparable(SnapshotGenerator(), plain_state)


def test_unchanged_rows_are_fresh_copies() -> None:
    state = _state("dataclass", [_valid_running(i) for i in range(3)], [_valid_retry(0)])
    generator = SnapshotGenerator()
    first = generator.generate(state)
    second = generator.generate(state)
    assert first.running == second.running
    assert all(a is not b for a, b in zip(first.running, second.running))
    first.running[0]["turn_count"] = 999
    second.retrying[0]["error"] = "changed by the host"
    third = generator.generate(state)
    assert third.running[0]["turn_count"] == 0
    assert third.retrying[0]["error"] == "turn failed after 0 turns"


def test_changed_entry_is_read_again() -> None:
    state = _state("dataclass", [_valid_running(i) for i in range(3)], [])
    generator = SnapshotGenerator()
    generator.generate(state)
    entry = state.running["issue-1"]
    entry.codex_input_tokens += 7
    entry.started_at = START + dt.timedelta(hours=1)
    row = generator.generate(state).running[1]
    assert row["codex_input_tokens"] == 27
    assert row["started_at"] == "2025-06-11T10:30:00Z"
    entry.turn_count = -3  # invalid: the default, and counted
    row = generator.generate(state).running[1]
    assert row["turn_count"] == 0
    assert generator.value_report.counts() == {"turn_count": 1}
    assert repr(generator.value_report) == "ValueReport({'turn_count': 1})"


@dataclasses.dataclass
class _TurnsOnly:
    issue_id: str
    identifier: str
    turns: int


@dataclasses.dataclass
class _TurnCountFirst:
    issue_id: str
    identifier: str
    turns: int
    turn_count: int


def test_entries_of_another_class_follow_their_own_paths() -> None:
    # turn_count comes before turns in the paths; a reader compiled for a class
    # with turns only must not read the new class's entries.
    state = {"running": {"a": _TurnsOnly("a", "ENG-1", 5)}}
    generator = SnapshotGenerator()
    assert generator.generate(state).running[0]["turn_count"] == 5
    state["running"] = {"a": _TurnCountFirst("a", "ENG-1", 5, 9)}
    assert generator.generate(state).running[0]["turn_count"] == 9
    # The entry took the lenient path; the next snapshot compiles a reader for its class.
    assert generator.generate(state).running[0]["turn_count"] == 9
    assert len(generator._running._readers) == 2


def test_entries_in_a_list_take_the_fast_path() -> None:
    entries = [states.build("dataclass", _valid_running(i)) for i in range(3)]
    generator = SnapshotGenerator()
    first = generator.generate({"running": entries})
    assert generator.generate({"running": entries}).running == first.running
    assert [row["identifier"] for row in first.running] == ["ENG-0", "ENG-1", "ENG-2"]


def test_row_caches_stay_bounded() -> None:
    generator = SnapshotGenerator()
    for round_ in range(40):
        state = _state("dataclass", [_valid_running(100 * round_ + i) for i in range(5)], [])
        generator.generate(state)
    reader = generator._running._readers[type(next(iter(state.running.values())))]
    namespace = reader.__kwdefaults__
    # Twice the rows of the latest snapshot, and 256 more.
    assert len(namespace["cache"]) <= 2 * 5 + 256
    assert namespace["latest"][0][1] is not None


@dataclasses.dataclass
class _FlakyState:
    running: Any
    failing: bool = False

    @property
    def poll_interval_ms(self) -> int:
        if self.failing:
            raise RuntimeError("settings not loaded yet")
        return 5000


def test_state_reader_falls_back_when_a_property_raises() -> None:
    state = _FlakyState({})
    assert _compiled.compile_state_reader(state) is not None
    generator = SnapshotGenerator()
    assert generator.generate(state).poll_interval_ms == 5000
    state.failing = True  # the lenient reader reads the raising property as missing
    assert generator.generate(state).poll_interval_ms == 0
    state.failing = False
    assert generator.generate(state).poll_interval_ms == 5000


@dataclasses.dataclass
class _Settings:
    poll_interval_ms: Any


@dataclasses.dataclass
class _NestedState:
    running: Any
    settings: Any


def test_state_with_nested_settings_reads_each_form() -> None:
    generator = SnapshotGenerator()
    state = _NestedState({}, _Settings(5000))
    assert generator.generate(state).poll_interval_ms == 5000
    state.settings = {"polling": {"interval_ms": 7000}}
    assert generator.generate(state).poll_interval_ms == 7000
    state.settings = None
    assert generator.generate(state).poll_interval_ms == 0


@dataclasses.dataclass
class _TwoQueues:
    running: Any
    retry_attempts: Any
    retry_queue: Any


def test_state_two_retry_names_lenient() -> None:
    assert _compiled.compile_state_reader(_TwoQueues({}, None, {})) is None
    state = _TwoQueues({}, None, {"x": {"issue_id": "x", "identifier": "ENG-9", "attempt": 2}})
    assert SnapshotGenerator().generate(state).retrying[0]["identifier"] == "ENG-9"


@pytest.mark.parametrize(
    ("seconds", "expected", "invalid"),
    [(1.5, 1.5, {}), (7, 7, {}), (math.nan, 0, {"codex_totals.seconds_running": 1}), (-1.0, 0, {"codex_totals.seconds_running": 1})],
)
def test_totals_reader_matches_lenient(seconds: float, expected: float, invalid: dict[str, int]) -> None:
    totals = states.build(
        "dataclass", {"input_tokens": 1, "output_tokens": 2, "total_tokens": 3, "seconds_running": seconds}
    )
    generator = SnapshotGenerator()
    assert generator.generate({"running": {}, "codex_totals": totals}).codex_totals["seconds_running"] == expected
    assert generator.value_report.counts() == invalid


def test_rate_limits_copy_is_reused_but_never_shared() -> None:
    payload = {"primary": {"used_percent": 10.0}, "limit_id": "codex", "credits": {"balance": "5"}}
    state = {"running": {}, "codex_rate_limits": payload}
    generator = SnapshotGenerator()
    first = generator.generate(state)
    second = generator.generate(state)
    assert first.rate_limits == second.rate_limits == payload
    assert first.rate_limits is not second.rate_limits
    assert first.rate_limits["primary"] is not second.rate_limits["primary"]
    second.rate_limits["primary"]["used_percent"] = 99.0  # a consumer changes its copy
    assert generator.generate(state).rate_limits["primary"]["used_percent"] == 10.0
    payload["primary"]["used_percent"] = 55.0  # the host changes its payload in place
    assert generator.generate(state).rate_limits["primary"]["used_percent"] == 55.0
    payload["primary"]["nested"] = {"deeper": [1, 2]}
    third = generator.generate(state)
    fourth = generator.generate(state)
    assert third.rate_limits == fourth.rate_limits
    assert third.rate_limits["primary"]["nested"] is not fourth.rate_limits["primary"]["nested"]


def test_generated_at_forms(monkeypatch: pytest.MonkeyPatch) -> None:
    from symphony_otel import snapshot as snapshot_module

    second = int(dt.datetime(2025, 6, 11, 9, 30, 5, tzinfo=UTC).timestamp())
    for nanoseconds, expected in (
        (0, "2025-06-11T09:30:05Z"),
        (7_000_000, "2025-06-11T09:30:05.007Z"),
        (999_999_999, "2025-06-11T09:30:05.999Z"),
    ):
        monkeypatch.setattr(snapshot_module._time, "time_ns", lambda n=nanoseconds: second * 10**9 + n)
        assert snapshot_module._utc_now_iso() == expected


def test_rate_limit_reader_reuses_only_absolute_readings() -> None:
    reader = RateLimitReader(lambda text: text)
    absolute = {"primary": {"used_percent": 50.0, "resets_at": 1_800_000_000}}
    first = reader.read(absolute, now=100.0)
    assert reader.read(dict(absolute), now=200.0) is first
    relative = {"primary": {"used_percent": 50.0, "resets_in_seconds": 60}}
    assert reader.read(relative, now=100.0).windows[0].resets_at == 160.0
    assert reader.read(relative, now=200.0).windows[0].resets_at == 260.0
    absolute["primary"]["used_percent"] = 75.0
    assert reader.read(absolute, now=300.0).windows[0].utilization == 0.75


def test_monotonic_totals_reuse_unchanged_totals() -> None:
    totals = MonotonicTotals()
    first = totals.advance({"input_tokens": 5})
    assert totals.advance({"input_tokens": 5}) is first
    totals.add("input_tokens", 1)
    assert totals.advance({"input_tokens": 5}) == {"input_tokens": 6}
    assert totals.advance({"input_tokens": 8}) == {"input_tokens": 9}


def _recorder(limit: int) -> tuple[OTelSnapshotGenerator, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    generator = OTelSnapshotGenerator(
        meter_provider=MeterProvider(metric_readers=[InMemoryMetricReader()]),
        tracer_provider=tracer_provider,
        payload_limit=limit,
    )
    return generator, exporter


def _payloads(exporter: InMemorySpanExporter) -> list[str]:
    return [span.events[0].attributes[ATTR_JSON] for span in exporter.get_finished_spans()]


@pytest.mark.parametrize("limit", [1 << 30, 2048])
def test_recorded_payload_equals_a_whole_encoding(limit: int) -> None:
    running = [_valid_running(i) for i in range(12)]
    running[3]["last_codex_event"] = "token sk-proj-" + "A" * 40  # scrubbed
    state = _state("dataclass", running, [_valid_retry(i) for i in range(6)])
    generator, exporter = _recorder(limit)
    for step in range(4):
        if step == 2:
            state.running["issue-5"].codex_output_tokens += 1  # one row changes
        if step == 3:
            state.codex_rate_limits["primary"]["used_percent"] = 99.0  # changed in place
        snapshot = generator.generate(state)
        payload = json.loads(_payloads(exporter)[-1])
        expected = generator.redacted_dict(snapshot)
        if limit < 1 << 30:
            kept_running = len(payload["running"])
            kept_retrying = len(payload["retrying"])
            assert payload["dropped_rows"] == {
                "running": 12 - kept_running,
                "retrying": 6 - kept_retrying,
            }
            assert kept_retrying == 0 or kept_running == 12
            expected["running"] = expected["running"][:kept_running]
            expected["retrying"] = expected["retrying"][:kept_retrying]
            expected["dropped_rows"] = payload["dropped_rows"]
            assert len(_payloads(exporter)[-1].encode()) <= limit
        assert payload == expected
        assert _payloads(exporter)[-1] == orjson.dumps(expected).decode()
    assert "sk-proj-" not in "".join(_payloads(exporter))
    assert json.loads(_payloads(exporter)[-1])["rate_limits"]["primary"]["used_percent"] == 99.0
    generator.close()


def test_rate_limit_gauge_follows_payload_changes() -> None:
    reader = InMemoryMetricReader()
    generator = OTelSnapshotGenerator(
        meter_provider=MeterProvider(metric_readers=[reader]), tracer_provider=TracerProvider()
    )
    state = _state("dataclass", [_valid_running(0)], [])
    utilization = []
    for used_percent in (42.0, 42.0, 80.0, 80.0):
        state.codex_rate_limits["primary"]["used_percent"] = used_percent
        generator.generate(state)
        points = only(collect(reader), "symphony.rate_limit.utilization")
        assert len(points) == 1
        utilization.extend(points.values())
    assert utilization == [0.42, 0.42, 0.8, 0.8]
    generator.close()
