"""Tests of the lenient value and path readers behind the snapshot module."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import logging
import math
import threading
from collections.abc import Iterator, Mapping
from pathlib import PurePosixPath
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from symphony_otel import _reading
from symphony_otel._reading import MISSING, EntryPlan, PlanCache, ValueReport

UTC = dt.timezone.utc
PLUS_1H = dt.timezone(dt.timedelta(hours=1))
MINUS_1H = dt.timezone(dt.timedelta(hours=-1))
NEW_YORK = ZoneInfo("America/New_York")


class Level(enum.IntEnum):
    """An int subclass, as hosts use for counts kept in enums."""

    THREE = 3


# --- read_count ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (5, 5),
        (0, 0),
        (2**63 - 1, 2**63 - 1),
        (2.9, 2),
        (0.0, 0),
        (Level.THREE, 3),
        (None, 0),
        (MISSING, 0),
    ],
)
def test_read_count_accepts(value: Any, expected: int) -> None:
    report = ValueReport()
    result = _reading.read_count(value, "turn_count", report)
    assert result == expected
    assert type(result) is int
    assert report.counts() == {}


@pytest.mark.parametrize(
    "value",
    [
        -1,
        -(10**30),
        -0.5,
        2**63,
        pytest.param(10**5000, id="ten_to_5000"),
        1e30,
        "5",
        b"5",
        True,
        False,
        math.nan,
        math.inf,
        -math.inf,
        [1],
        {"n": 1},
    ],
)
def test_read_count_rejects(value: Any) -> None:
    report = ValueReport()
    assert _reading.read_count(value, "turn_count", report) == 0
    assert report.counts() == {"turn_count": 1}


def test_read_count_custom_default() -> None:
    report = ValueReport()
    assert _reading.read_count("x", "attempt", report, default=7) == 7
    assert _reading.read_count(None, "attempt", report, default=7) == 7


# --- read_number ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected", "expected_type"),
    [(7, 7, int), (1.5, 1.5, float), (0, 0, int), (None, 0, int), (MISSING, 0, int)],
)
def test_read_number_accepts(value: Any, expected: float, expected_type: type) -> None:
    report = ValueReport()
    result = _reading.read_number(value, "seconds_running", report)
    assert result == expected
    assert type(result) is expected_type
    assert report.counts() == {}


@pytest.mark.parametrize("value", [-1, -0.5, 2**63, 1e30, math.nan, math.inf, "3", True, [3]])
def test_read_number_rejects(value: Any) -> None:
    report = ValueReport()
    assert _reading.read_number(value, "seconds_running", report) == 0
    assert report.counts() == {"seconds_running": 1}


# --- read_optional_number ------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [(418802, 418802.0), (1.25, 1.25), (-5, -5.0), (0, 0.0), (None, None), (MISSING, None)],
)
def test_read_optional_number_accepts(value: Any, expected: float | None) -> None:
    report = ValueReport()
    result = _reading.read_optional_number(value, "next_poll_due_at_ms", report)
    assert result == expected
    if expected is not None:
        assert type(result) is float
    assert report.counts() == {}


@pytest.mark.parametrize(
    "value",
    [
        math.nan,
        math.inf,
        -math.inf,
        pytest.param(10**400, id="ten_to_400"),
        True,
        "418802",
        dt.datetime(2026, 1, 1, tzinfo=UTC),
    ],
)
def test_read_optional_number_rejects(value: Any) -> None:
    report = ValueReport()
    assert _reading.read_optional_number(value, "next_poll_due_at_ms", report) is None
    assert report.counts() == {"next_poll_due_at_ms": 1}


# --- read_flag -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, True), (False, False), (1, True), (0, False), (None, False), (MISSING, False)],
)
def test_read_flag_accepts(value: Any, expected: bool) -> None:
    report = ValueReport()
    assert _reading.read_flag(value, "poll_check_in_progress", report) is expected
    assert report.counts() == {}


@pytest.mark.parametrize("value", [2, -1, "yes", "true", 0.5, [True]])
def test_read_flag_rejects(value: Any) -> None:
    report = ValueReport()
    assert _reading.read_flag(value, "poll_check_in_progress", report) is False
    assert report.counts() == {"poll_check_in_progress": 1}


# --- read_text -----------------------------------------------------------------


class TextSubclass(str):
    """A str subclass, as enums with a str base are."""


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("ENG-101", "ENG-101"),
        ("", ""),
        ("lone \ud800 surrogate", "lone \ufffd surrogate"),
        ("pair \ud800\udc00", "pair \ufffd\ufffd"),
        ("ws/caf\udce9", "ws/caf\ufffd"),
        ("naïve ✓", "naïve ✓"),
        (TextSubclass("sub"), "sub"),
        (42, "42"),
        (1.5, "1.5"),
        (PurePosixPath("/srv/ws/ENG-1"), "/srv/ws/ENG-1"),
        (PurePosixPath("/srv/ws/caf\udce9"), "/srv/ws/caf\ufffd"),
        (ValueError("boom"), "ValueError: boom"),
        (b"bytes \xff", "bytes \ufffd"),
        (None, None),
        (MISSING, None),
    ],
)
def test_read_text_accepts(value: Any, expected: str | None) -> None:
    report = ValueReport()
    result = _reading.read_text(value, "error", report)
    assert result == expected
    if expected is not None:
        assert type(result) is str
    assert report.counts() == {}


@pytest.mark.parametrize(
    "value", [True, ["a"], {"a": 1}, object(), pytest.param(10**5000, id="ten_to_5000")]
)
def test_read_text_rejects(value: Any) -> None:
    report = ValueReport()
    assert _reading.read_text(value, "error", report) is None
    assert report.counts() == {"error": 1}


class UnprintableError(Exception):
    """An exception whose ``__str__`` raises."""

    def __str__(self) -> str:
        raise RuntimeError("no message")


def test_read_text_unprintable_exception() -> None:
    report = ValueReport()
    assert _reading.read_text(UnprintableError(), "error", report) == "UnprintableError"
    assert report.counts() == {}


def test_valid_text_output_encodes() -> None:
    for text in ["plain", "naïve", "\ud800", "a\udfffb", "\ud83d\ude00", "😀"]:
        cleaned = _reading.valid_text(text)
        assert cleaned.encode("utf-8")
        assert len(cleaned) == len(text)
    assert _reading.valid_text("😀") == "😀"


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("name", "name"),
        (5, "5"),
        (None, "None"),
        ("k\ud800", "k\ufffd"),
        (pytest.param(10**5000, "<int>", id="ten_to_5000")),
    ],
)
def test_key_text(key: Any, expected: str) -> None:
    assert _reading.key_text(key) == expected


# --- format_datetime and read_time ---------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (dt.datetime(2026, 12, 4, 19, 19, 26, 201296, tzinfo=UTC), "2026-12-04T19:19:26.201296Z"),
        (dt.datetime(2026, 12, 4, 19, 33, 9, tzinfo=UTC), "2026-12-04T19:33:09Z"),
        (dt.datetime(2026, 12, 4, 19, 33, 9, 500000, tzinfo=UTC), "2026-12-04T19:33:09.500Z"),
        (
            dt.datetime(
                2026, 12, 4, 14, 19, 26, 201296, tzinfo=dt.timezone(dt.timedelta(hours=-5))
            ),
            "2026-12-04T19:19:26.201296Z",
        ),
        (dt.datetime(2026, 7, 1, 12, 0, tzinfo=ZoneInfo("Europe/Berlin")), "2026-07-01T10:00:00Z"),
        (dt.datetime(2026, 1, 15, 9, 30, tzinfo=ZoneInfo("Asia/Kolkata")), "2026-01-15T04:00:00Z"),
        (dt.datetime(2026, 12, 4, 19, 33, 9), "2026-12-04T19:33:09Z"),
        (dt.date(2026, 12, 4), "2026-12-04T00:00:00Z"),
        ("2026-12-04T19:33:09Z", "2026-12-04T19:33:09Z"),
        ("2026-12-04T19:33:09z", "2026-12-04T19:33:09Z"),
        ("  2026-12-04T19:33:09Z ", "2026-12-04T19:33:09Z"),
        ("2026-12-04T19:19:26.201296+00:00", "2026-12-04T19:19:26.201296Z"),
        ("2026-12-04T21:33:09+02:00", "2026-12-04T19:33:09Z"),
        ("2026-12-04T19:33:09", "2026-12-04T19:33:09Z"),
        (1796416439, "2026-12-04T20:33:59Z"),
        (1796416439.5, "2026-12-04T20:33:59.500Z"),
        (1796416439000, "2026-12-04T20:33:59Z"),
        (1796416439500, "2026-12-04T20:33:59.500Z"),
        (0, "1970-01-01T00:00:00Z"),
    ],
)
def test_format_datetime_valid(value: Any, expected: str) -> None:
    assert _reading.format_datetime(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        None,
        MISSING,
        True,
        "",
        "   ",
        "not a time",
        "2026-13-45T99:00:00Z",
        "2026-12-04T19:33:09\ud800",
        "9" * 65,
        math.nan,
        math.inf,
        1e300,
        pytest.param(10**400, id="ten_to_400"),
        pytest.param(-(10**400), id="minus_ten_to_400"),
        [2026, 12, 4],
        object(),
        dt.datetime(1, 1, 1, tzinfo=PLUS_1H),
        dt.datetime.max.replace(tzinfo=MINUS_1H),
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
    ],
)
def test_format_datetime_invalid(value: Any) -> None:
    assert _reading.format_datetime(value) is None


@pytest.mark.parametrize("first_fold", [0, 1])
def test_format_datetime_ambiguous_wall_time(first_fold: int) -> None:
    # 01:30 happens twice in New York on 2026-11-01: EDT (fold 0), then EST (fold 1).
    # The two compare equal (same tzinfo), so a cache keyed by the value alone mixes them.
    _reading._ISO_CACHE.clear()
    expected = {0: "2026-11-01T05:30:00Z", 1: "2026-11-01T06:30:00Z"}
    for fold in (first_fold, 1 - first_fold):
        value = dt.datetime(2026, 11, 1, 1, 30, tzinfo=NEW_YORK, fold=fold)
        assert _reading.format_datetime(value) == expected[fold]


def test_format_datetime_naive_and_aware_distinct() -> None:
    naive = dt.datetime(2026, 12, 4, 12, 0)
    aware = dt.datetime(2026, 12, 4, 12, 0, tzinfo=PLUS_1H)
    assert _reading.format_datetime(naive) == "2026-12-04T12:00:00Z"
    assert _reading.format_datetime(aware) == "2026-12-04T11:00:00Z"
    assert _reading.format_datetime(naive) == "2026-12-04T12:00:00Z"


def test_format_datetime_output_reparses_unchanged() -> None:
    values = [
        dt.datetime(2026, 12, 4, 19, 19, 26, 201296, tzinfo=UTC),
        dt.datetime(2026, 12, 4, 19, 19, 26, 201000, tzinfo=UTC),
        dt.datetime(2026, 12, 4, 19, 19, 26, tzinfo=UTC),
        dt.datetime(5, 1, 2, 3, 4, 5, 6),
    ]
    for value in values:
        text = _reading.format_datetime(value)
        assert text is not None
        assert text.endswith("Z")
        assert _reading.format_datetime(text) == text


def test_read_time_empty_string_is_absent() -> None:
    # "" is the documented default of RunningEntry.started_at, not an invalid time.
    report = ValueReport()
    assert _reading.read_time("", "started_at", report) is None
    assert report.counts() == {}


def test_read_time_counts_invalid() -> None:
    report = ValueReport()
    assert _reading.read_time("yesterday", "started_at", report) is None
    assert _reading.read_time(10**400, "started_at", report) is None
    assert _reading.read_time(None, "started_at", report) is None
    assert report.counts() == {"started_at": 2}


# --- plain_copy and export_model -----------------------------------------------


class Dumped:
    """A pydantic-style model."""

    def __init__(self, payload: dict[str, Any]) -> None:
        self._payload = payload

    def model_dump(self) -> dict[str, Any]:
        """Return the payload."""
        return self._payload


def test_plain_copy_detaches_nested_data() -> None:
    source: dict[str, Any] = {
        "primary": {"used_percent": 30.0, "windows": [1, 2]},
        "plan_type": "pro",
    }
    copied = _reading.plain_copy(source, "rate_limits", ValueReport())
    assert copied == source
    source["primary"]["used_percent"] = 99.0
    source["primary"]["windows"].append(3)
    assert copied == {"primary": {"used_percent": 30.0, "windows": [1, 2]}, "plan_type": "pro"}


def test_plain_copy_converts_foreign_values() -> None:
    report = ValueReport()
    source = {
        1: (1, 2),
        "when": dt.datetime(2026, 12, 4, 19, 33, 9, tzinfo=UTC),
        "model": Dumped({"remaining": 5}),
        "path": PurePosixPath("/srv/x"),
        "flag": True,
        "max": 2**64 - 1,
        "min": -(2**63),
        "text\ud800": "value\udc00",
    }
    copied = _reading.plain_copy(source, "rate_limits", report)
    assert copied == {
        "1": [1, 2],
        "when": "2026-12-04T19:33:09Z",
        "model": {"remaining": 5},
        "path": "/srv/x",
        "flag": True,
        "max": 2**64 - 1,
        "min": -(2**63),
        "text\ufffd": "value\ufffd",
    }
    assert report.counts() == {}


def test_plain_copy_drops_huge_ints() -> None:
    report = ValueReport()
    copied = _reading.plain_copy({"a": 2**64, "b": [-(10**40)], 10**5000: 1}, "rate_limits", report)
    assert copied == {"a": None, "b": [None], "<int>": 1}
    assert report.counts() == {"rate_limits": 2}


def test_plain_copy_set_becomes_list() -> None:
    copied = _reading.plain_copy({"ids": {"a"}}, "rate_limits", ValueReport())
    assert copied == {"ids": ["a"]}


def test_plain_copy_non_finite_float_counted() -> None:
    report = ValueReport()
    copied = _reading.plain_copy({"a": math.nan, "b": [math.inf]}, "rate_limits", report)
    assert copied == {"a": None, "b": [None]}
    assert report.counts() == {"rate_limits": 2}


def test_plain_copy_cuts_deep_nesting() -> None:
    report = ValueReport()
    deep: dict[str, Any] = {"leaf": 1}
    for _ in range(20):
        deep = {"next": deep}
    copied = _reading.plain_copy(deep, "rate_limits", report)
    depth = 0
    node = copied
    while isinstance(node, dict) and "next" in node:
        node = node["next"]
        depth += 1
    assert depth == 12
    assert node is None
    assert report.counts() == {"rate_limits": 1}


def test_plain_copy_cuts_self_reference() -> None:
    report = ValueReport()
    loop: list[Any] = []
    loop.append(loop)
    _reading.plain_copy({"loop": loop}, "rate_limits", report)
    assert report.counts() == {"rate_limits": 1}


def test_plain_copy_cuts_long_containers() -> None:
    report = ValueReport()
    copied = _reading.plain_copy({"items": list(range(1500))}, "rate_limits", report)
    assert copied == {"items": list(range(1000))}
    assert report.counts() == {"rate_limits": 1}


def test_plain_copy_unknown_object_counted() -> None:
    report = ValueReport()
    assert _reading.plain_copy({"lock": threading.Lock()}, "rate_limits", report) == {"lock": None}
    assert report.counts() == {"rate_limits": 1}


class Exporter:
    """An object with both export methods, one of them broken."""

    def __init__(self, dump_raises: bool) -> None:
        self.dump_raises = dump_raises

    def model_dump(self) -> dict[str, Any]:
        """Return one payload, or raise."""
        if self.dump_raises:
            raise RuntimeError("not ready")
        return {"from": "model_dump"}

    def to_dict(self) -> dict[str, Any]:
        """Return another payload."""
        return {"from": "to_dict"}


def test_export_model_prefers_model_dump() -> None:
    assert _reading.export_model(Exporter(dump_raises=False)) == {"from": "model_dump"}


def test_export_model_falls_back_on_error() -> None:
    assert _reading.export_model(Exporter(dump_raises=True)) == {"from": "to_dict"}


def test_export_model_without_method() -> None:
    assert _reading.export_model(object()) is MISSING
    assert _reading.export_model({"a": 1}.items()) is MISSING


def test_export_model_ignores_non_mapping() -> None:
    class ListExport:
        def to_dict(self) -> list[int]:
            return [1]

    assert _reading.export_model(ListExport()) is MISSING


# --- items_of and count_of -----------------------------------------------------


class FlakyMapping(Mapping[str, Any]):
    """A mapping whose ``items()`` fails as a dict changed by another thread does."""

    def __init__(self, data: dict[str, Any], failures: int) -> None:
        self._data = data
        self.failures = failures

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def items(self) -> Any:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("dictionary changed size during iteration")
        return self._data.items()


def test_items_of_shapes() -> None:
    report = ValueReport()
    assert _reading.items_of({"a": 1}, "running", report) == [("a", 1)]
    assert _reading.items_of([1, 2], "running", report) == [(None, 1), (None, 2)]
    assert _reading.items_of((1,), "running", report) == [(None, 1)]
    assert _reading.items_of({3}, "running", report) == [(None, 3)]
    assert _reading.items_of(None, "running", report) == []
    assert _reading.items_of(MISSING, "running", report) == []
    assert report.counts() == {}


def test_items_of_rejects_scalar() -> None:
    report = ValueReport()
    assert _reading.items_of("abc", "running", report) == []
    assert _reading.items_of(5, "running", report) == []
    assert report.counts() == {"running": 2}


def test_items_of_retries_changing_map() -> None:
    report = ValueReport()
    assert _reading.items_of(FlakyMapping({"a": 1}, failures=2), "running", report) == [("a", 1)]
    assert report.counts() == {}


def test_items_of_gives_up_on_changing_map() -> None:
    report = ValueReport()
    assert _reading.items_of(FlakyMapping({"a": 1}, failures=5), "running", report) == []
    assert report.counts() == {"running": 1}


def test_count_of_shapes() -> None:
    report = ValueReport()
    assert _reading.count_of({"a", "b"}, "completed", report) == 2
    assert _reading.count_of(["a"], "completed", report) == 1
    assert _reading.count_of({"a": 1}, "completed", report) == 1
    assert _reading.count_of(frozenset(), "completed", report) == 0
    assert _reading.count_of(4, "completed", report) == 4
    assert _reading.count_of(None, "completed", report) == 0
    assert report.counts() == {}
    assert _reading.count_of("ab", "completed", report) == 0
    assert report.counts() == {"completed": 1}


# --- get_path and first_present --------------------------------------------------


class Node:
    """A plain object for path walking."""

    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)


class Broken:
    """An object whose property raises."""

    @property
    def tokens(self) -> Any:
        raise RuntimeError("session closed")


def test_get_path_walks_objects_and_mappings() -> None:
    obj = Node(issue={"identifier": "ENG-1"}, live=Node(tokens={"input_tokens": 4}))
    assert _reading.get_path(obj, ("issue", "identifier")) == "ENG-1"
    assert _reading.get_path(obj, ("live", "tokens", "input_tokens")) == 4
    assert _reading.get_path(obj, ("missing",)) is MISSING
    assert _reading.get_path(obj, ("issue", "missing")) is MISSING


def test_get_path_none_midway_is_missing() -> None:
    assert _reading.get_path(Node(issue=None), ("issue", "id")) is MISSING
    assert _reading.get_path(Node(issue=None), ("issue",)) is None


def test_get_path_raising_property_is_missing() -> None:
    assert _reading.get_path(Broken(), ("tokens", "input_tokens")) is MISSING


def test_first_present_order_and_none() -> None:
    paths = _reading.split_paths(("identifier", "issue.identifier"))
    assert _reading.first_present(Node(identifier="A", issue=Node(identifier="B")), paths) == "A"
    assert _reading.first_present(Node(identifier=None, issue=Node(identifier="B")), paths) == "B"
    assert _reading.first_present(Node(identifier=None), paths) is None
    assert _reading.first_present(Node(), paths) is MISSING


def test_split_paths() -> None:
    assert _reading.split_paths(("a", "b.c")) == (("a",), ("b", "c"))


# --- EntryPlan and PlanCache ---------------------------------------------------


@dataclasses.dataclass
class AgentEntry:
    """A dataclass entry with code-factory's token names."""

    issue_id: str
    agent_input_tokens: int


class SlottedEntry:
    """A slotted entry whose ``session_id`` slot may be unset."""

    __slots__ = ("issue_id", "session_id")
    issue_id: str
    session_id: str


class PropertyEntry:
    """A slotted entry whose token count is a property that raises until a session starts."""

    __slots__ = ("issue_id", "session")

    def __init__(self, issue_id: str, session: dict[str, int] | None) -> None:
        self.issue_id = issue_id
        self.session = session

    @property
    def codex_input_tokens(self) -> int:
        if self.session is None:
            raise LookupError("no session yet")
        return self.session["input_tokens"]


def _plan_paths(plan: EntryPlan) -> dict[str, tuple[tuple[str, ...], ...]]:
    return dict(plan.fields)


def test_entry_plan_dataclass_drops_absent_names() -> None:
    plan = EntryPlan(AgentEntry("i", 3), _reading.RUNNING_PATHS)
    paths = _plan_paths(plan)
    assert paths["codex_input_tokens"] == (("agent_input_tokens",),)
    assert paths["issue_id"] == (("issue_id",),)
    assert paths["session_id"] == ()
    assert plan.read(AgentEntry("j", 9))["codex_input_tokens"] == 9


def test_entry_plan_keeps_unset_slot() -> None:
    sample = SlottedEntry()
    sample.issue_id = "i"
    plan = EntryPlan(sample, _reading.RUNNING_PATHS)
    assert _plan_paths(plan)["session_id"] == (("session_id",),)
    later = SlottedEntry()
    later.issue_id = "j"
    later.session_id = "s-1"
    assert plan.read(later)["session_id"] == "s-1"
    assert plan.read(sample)["session_id"] is MISSING


def test_entry_plan_keeps_property_that_raised() -> None:
    plan = EntryPlan(PropertyEntry("i", None), _reading.RUNNING_PATHS)
    assert plan.read(PropertyEntry("j", {"input_tokens": 12}))["codex_input_tokens"] == 12


def test_entry_plan_mapping_keeps_all_paths() -> None:
    plan = EntryPlan({"issue_id": "i"}, _reading.RUNNING_PATHS)
    assert _plan_paths(plan) == {
        name: _reading.split_paths(paths) for name, paths in _reading.RUNNING_PATHS.items()
    }
    assert plan.read({"agent_input_tokens": 5})["codex_input_tokens"] == 5


def test_entry_plan_plain_class_keeps_all_paths() -> None:
    plan = EntryPlan(Node(issue_id="i"), _reading.RUNNING_PATHS)
    assert plan.read(Node(tokens={"input_tokens": 6}))["codex_input_tokens"] == 6


def test_entry_plan_reads_exported_only_entry() -> None:
    class Exported:
        __slots__ = ("_payload",)

        def __init__(self, payload: dict[str, Any]) -> None:
            self._payload = payload

        def to_dict(self) -> dict[str, Any]:
            return dict(self._payload)

    plan = EntryPlan(Exported({"issue_id": "i"}), _reading.RUNNING_PATHS)
    raw = plan.read(Exported({"issue_id": "j", "tokens": {"input_tokens": 8}}))
    assert raw["issue_id"] == "j"
    assert raw["codex_input_tokens"] == 8


def test_plan_cache_one_plan_per_class() -> None:
    cache = PlanCache(_reading.RUNNING_PATHS)
    first = cache.plan_for(AgentEntry("i", 1))
    assert cache.plan_for(AgentEntry("j", 2)) is first
    assert cache.plan_for({"issue_id": "k"}) is not first


def test_plan_cache_bounded() -> None:
    cache = PlanCache(_reading.RUNNING_PATHS)
    classes = [type(f"Entry{index}", (), {"__slots__": ("issue_id",)}) for index in range(300)]
    for cls in classes:
        cache.plan_for(cls())
    assert len(cache._plans) == 256
    assert isinstance(cache.plan_for(classes[-1]()), EntryPlan)


# --- ValueReport ---------------------------------------------------------------


def test_value_report_logs_once_per_field(caplog: pytest.LogCaptureFixture) -> None:
    report = ValueReport()
    with caplog.at_level(logging.WARNING, logger="symphony_otel._reading"):
        for _ in range(5):
            report.invalid("turn_count", "x", "must be an integer")
            report.invalid("started_at", "secret-token-value", "must be a time")
    assert report.counts() == {"turn_count": 5, "started_at": 5}
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2
    assert "turn_count" in messages[0]
    assert "started_at" in messages[1]
    assert all("secret-token-value" not in message for message in messages)


def test_value_report_counts_copy() -> None:
    report = ValueReport()
    report.invalid("a", 1, "rule")
    counts = report.counts()
    counts["a"] = 100
    assert report.counts() == {"a": 1}


def test_value_report_threads(caplog: pytest.LogCaptureFixture) -> None:
    report = ValueReport()
    barrier = threading.Barrier(8)

    def hammer() -> None:
        barrier.wait(timeout=10)
        for _ in range(1000):
            report.invalid("attempt", "x", "must be an integer")

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    with caplog.at_level(logging.WARNING, logger="symphony_otel._reading"):
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    assert report.counts() == {"attempt": 8000}
    assert len(caplog.records) == 1
