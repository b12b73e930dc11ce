"""Tests of the snapshot module: documented API, recorded states and bodies, port shapes, bad input."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import inspect
import json
import logging
import math
import re
import string
import typing
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import states
from hypothesis import given
from hypothesis import strategies as st

from symphony_otel import RetryEntry, RunningEntry, SnapshotGenerator, SystemSnapshot, _reading
from symphony_otel._reading import ValueReport

UTC = dt.timezone.utc
REQUIRED = object()
FACTORY = object()
ISO_UTC = re.compile(r"\A\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3}|\.\d{6})?Z\Z")
LOGGER = "symphony_otel._reading"

RUNNING_KEYS = [
    "issue_id",
    "identifier",
    "turn_count",
    "codex_total_tokens",
    "last_codex_event",
    "started_at",
    "session_id",
    "codex_input_tokens",
    "codex_output_tokens",
    "worker_host",
    "workspace_path",
]
RETRY_KEYS = [
    "issue_id",
    "identifier",
    "attempt",
    "delay_type",
    "error",
    "worker_host",
    "workspace_path",
]
SNAPSHOT_KEYS = [
    "running",
    "retrying",
    "completed_count",
    "codex_totals",
    "rate_limits",
    "poll_interval_ms",
    "max_concurrent_agents",
    "poll_check_in_progress",
    "next_poll_due_at_ms",
    "generated_at",
]


def generate(state: Any) -> SystemSnapshot:
    """Generate with a fresh generator, so counts and logs start empty."""
    return SnapshotGenerator().generate(state)


def body_of(snapshot: SystemSnapshot) -> dict[str, Any]:
    """Return ``to_dict()`` without ``generated_at``, which changes on every call."""
    data = snapshot.to_dict()
    del data["generated_at"]
    return data


def running_row(**values: Any) -> dict[str, Any]:
    """Return a running row with the documented defaults, overridden by ``values``."""
    row = RunningEntry(issue_id="", identifier="").to_dict()
    row.update(values)
    return row


def retry_row(**values: Any) -> dict[str, Any]:
    """Return a retry row with the documented defaults, overridden by ``values``."""
    row = RetryEntry(issue_id="", identifier="", attempt=0).to_dict()
    row.update(values)
    return row


def assert_rows_documented(snapshot: SystemSnapshot) -> None:
    """Check that every row is exactly what the documented entry class produces."""
    for row in snapshot.running:
        assert list(row) == RUNNING_KEYS
        assert RunningEntry(**row).to_dict() == row
    for row in snapshot.retrying:
        assert list(row) == RETRY_KEYS
        assert RetryEntry(**row).to_dict() == row


# =============================================================================
# The documented API
# =============================================================================


def _declared(cls: type) -> list[tuple[str, Any, Any]]:
    hints = typing.get_type_hints(cls)
    declared = []
    for field in dataclasses.fields(cls):
        if field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = FACTORY
        else:
            default = REQUIRED
        declared.append((field.name, hints[field.name], default))
    return declared


def test_system_snapshot_fields_documented() -> None:
    assert _declared(SystemSnapshot) == [
        ("running", list[dict[str, Any]], REQUIRED),
        ("retrying", list[dict[str, Any]], REQUIRED),
        ("completed_count", int, REQUIRED),
        ("codex_totals", dict[str, Any], REQUIRED),
        ("rate_limits", dict[str, Any] | None, REQUIRED),
        ("poll_interval_ms", int, REQUIRED),
        ("max_concurrent_agents", int, REQUIRED),
        ("poll_check_in_progress", bool, False),
        ("next_poll_due_at_ms", float | None, None),
        ("generated_at", str, FACTORY),
    ]


def test_running_entry_fields_documented() -> None:
    assert _declared(RunningEntry) == [
        ("issue_id", str, REQUIRED),
        ("identifier", str, REQUIRED),
        ("turn_count", int, 0),
        ("codex_total_tokens", int, 0),
        ("last_codex_event", str | None, None),
        ("started_at", str, ""),
        ("session_id", str | None, None),
        ("codex_input_tokens", int, 0),
        ("codex_output_tokens", int, 0),
        ("worker_host", str | None, None),
        ("workspace_path", str | None, None),
    ]


def test_retry_entry_fields_documented() -> None:
    assert _declared(RetryEntry) == [
        ("issue_id", str, REQUIRED),
        ("identifier", str, REQUIRED),
        ("attempt", int, REQUIRED),
        ("delay_type", str, "failure"),
        ("error", str | None, None),
        ("worker_host", str | None, None),
        ("workspace_path", str | None, None),
    ]


def test_to_dict_keys_follow_field_order() -> None:
    snapshot = SystemSnapshot([], [], 0, {}, None, 0, 0)
    assert list(snapshot.to_dict()) == SNAPSHOT_KEYS
    assert list(RunningEntry("i", "E-1").to_dict()) == RUNNING_KEYS
    assert list(RetryEntry("i", "E-1", 1).to_dict()) == RETRY_KEYS


def test_entry_to_dict_values() -> None:
    entry = RunningEntry(
        "iss-1", "E-1", 2, 30, "turn_completed", "2026-12-04T19:33:09Z", "s", 20, 10, "h", "/w"
    )
    assert entry.to_dict() == {
        "issue_id": "iss-1",
        "identifier": "E-1",
        "turn_count": 2,
        "codex_total_tokens": 30,
        "last_codex_event": "turn_completed",
        "started_at": "2026-12-04T19:33:09Z",
        "session_id": "s",
        "codex_input_tokens": 20,
        "codex_output_tokens": 10,
        "worker_host": "h",
        "workspace_path": "/w",
    }
    retry = RetryEntry("iss-2", "E-2", 3, "continuation", None, "h", "/w2")
    assert retry.to_dict() == {
        "issue_id": "iss-2",
        "identifier": "E-2",
        "attempt": 3,
        "delay_type": "continuation",
        "error": None,
        "worker_host": "h",
        "workspace_path": "/w2",
    }


@pytest.mark.parametrize("name", ["_format_datetime", "_extract_codex_totals"])
def test_generator_helpers_are_staticmethods(name: str) -> None:
    assert isinstance(inspect.getattr_static(SnapshotGenerator, name), staticmethod)


def test_generator_format_datetime_helper() -> None:
    moment = dt.datetime(2026, 12, 4, 20, 33, 9, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert SnapshotGenerator._format_datetime(moment) == "2026-12-04T19:33:09Z"
    assert SnapshotGenerator._format_datetime(None) is None
    assert SnapshotGenerator._format_datetime("garbage") is None


def test_generator_extract_totals_helper() -> None:
    state = {"agent_totals": {"input_tokens": 7, "output_tokens": 3}}
    assert SnapshotGenerator._extract_codex_totals(state) == {
        "input_tokens": 7,
        "output_tokens": 3,
        "total_tokens": 10,
        "seconds_running": 0,
    }


def test_generated_at_is_utc_now() -> None:
    before = dt.datetime.now(UTC)
    snapshot = generate({"running": {}})
    after = dt.datetime.now(UTC)
    assert ISO_UTC.match(snapshot.generated_at), snapshot.generated_at
    moment = dt.datetime.fromisoformat(snapshot.generated_at[:-1] + "+00:00")
    assert before - dt.timedelta(milliseconds=1) <= moment <= after


def test_generated_at_default_on_direct_build() -> None:
    snapshot = SystemSnapshot([], [], 0, {}, None, 0, 0)
    assert ISO_UTC.match(snapshot.generated_at), snapshot.generated_at


def test_to_dict_returns_copies() -> None:
    snapshot = SystemSnapshot(
        running=[running_row(issue_id="i", identifier="E")],
        retrying=[retry_row(issue_id="r", identifier="R", attempt=1)],
        completed_count=1,
        codex_totals={
            "input_tokens": 1,
            "output_tokens": 1,
            "total_tokens": 2,
            "seconds_running": 0,
        },
        rate_limits={"primary": {"used_percent": 1.0}},
        poll_interval_ms=1000,
        max_concurrent_agents=2,
    )
    data = snapshot.to_dict()
    data["running"][0]["identifier"] = "changed"
    data["retrying"][0]["attempt"] = 99
    data["codex_totals"]["input_tokens"] = 99
    data["rate_limits"]["primary"]["used_percent"] = 99.0
    assert snapshot.running[0]["identifier"] == "E"
    assert snapshot.retrying[0]["attempt"] == 1
    assert snapshot.codex_totals["input_tokens"] == 1
    assert snapshot.rate_limits == {"primary": {"used_percent": 1.0}}


def test_from_dict_round_trip_direct_build() -> None:
    snapshot = SystemSnapshot(
        running=[running_row(issue_id="i", identifier="E", started_at="2026-12-04T19:33:09.123Z")],
        retrying=[retry_row(issue_id="r", identifier="R", attempt=2, delay_type="continuation")],
        completed_count=4,
        codex_totals={
            "input_tokens": 5,
            "output_tokens": 6,
            "total_tokens": 11,
            "seconds_running": 2.5,
        },
        rate_limits={"primary": {"used_percent": 12.5, "resets_at": 1796416439}, "credits": None},
        poll_interval_ms=30000,
        max_concurrent_agents=5,
        poll_check_in_progress=True,
        next_poll_due_at_ms=418802.0,
        generated_at="2026-12-04T19:33:02.123Z",
    )
    report = ValueReport()
    assert SystemSnapshot.from_dict(snapshot.to_dict(), report=report) == snapshot
    assert report.counts() == {}


def test_from_dict_round_trip_generated() -> None:
    generator = SnapshotGenerator()
    for _ in range(20):
        snapshot = generator.generate(documented_state())
        report = ValueReport()
        data = json.loads(json.dumps(snapshot.to_dict()))
        assert SystemSnapshot.from_dict(data, report=report) == snapshot
        assert report.counts() == {}


def test_from_dict_rejects_non_mapping() -> None:
    with pytest.raises(TypeError, match="mapping"):
        SystemSnapshot.from_dict([])  # type: ignore[arg-type]


# =============================================================================
# The documented state shape
# =============================================================================


@dataclasses.dataclass
class TokenUsage:
    """Token totals in the documented state."""

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    seconds_running: float = 0.0


@dataclasses.dataclass
class DocRunningEntry:
    """A running worker in the documented state."""

    issue_id: str
    identifier: str
    started_at: dt.datetime
    turn_count: int = 0
    codex_input_tokens: int = 0
    codex_output_tokens: int = 0
    codex_total_tokens: int = 0
    last_codex_event: str | None = None
    session_id: str | None = None
    worker_host: str | None = None
    workspace_path: str | None = None
    task: Any = None


@dataclasses.dataclass
class DocRetryEntry:
    """A retry-queue entry in the documented state."""

    issue_id: str
    identifier: str
    attempt: int
    delay_type: str = "failure"
    error: str | None = None
    worker_host: str | None = None
    workspace_path: str | None = None
    due_at_ms: float = 0.0


@dataclasses.dataclass
class OrchestratorState:
    """The state object that the module's documentation describes."""

    running: dict[str, DocRunningEntry]
    retry_attempts: dict[str, DocRetryEntry]
    completed: set[str]
    codex_totals: TokenUsage
    codex_rate_limits: dict[str, Any] | None
    poll_interval_ms: int
    max_concurrent_agents: int
    poll_check_in_progress: bool = False
    next_poll_due_at_ms: float | None = None


def documented_state() -> OrchestratorState:
    """Build a documented state; its expected snapshot is ``DOCUMENTED_BODY``."""
    return OrchestratorState(
        running={
            "iss-1": DocRunningEntry(
                issue_id="iss-1",
                identifier="SYM-1",
                started_at=dt.datetime(2026, 12, 4, 19, 0, 0, tzinfo=UTC),
                turn_count=3,
                codex_input_tokens=1200,
                codex_output_tokens=300,
                codex_total_tokens=1500,
                last_codex_event="turn_completed",
                session_id="sess-1",
                worker_host="builder-a",
                workspace_path="/srv/ws/SYM-1",
                task=states.PendingTask("worker-1"),
            ),
            "iss-2": DocRunningEntry(
                issue_id="iss-2",
                identifier="SYM-2",
                started_at=dt.datetime(2026, 12, 4, 19, 5, 30, 250000),
                turn_count=1,
                codex_input_tokens=800,
                codex_total_tokens=800,
                task=states.PendingTask("worker-2"),
            ),
        },
        retry_attempts={
            "iss-3": DocRetryEntry(
                "iss-3", "SYM-3", 2, "failure", "turn_timeout", None, "/srv/ws/SYM-3", 9.5e5
            ),
            "iss-4": DocRetryEntry("iss-4", "SYM-4", 1, "continuation", due_at_ms=9.6e5),
        },
        completed={"iss-0", "iss-8", "iss-9"},
        codex_totals=TokenUsage(
            input_tokens=5000, output_tokens=1250, total_tokens=6250, seconds_running=912.5
        ),
        codex_rate_limits={
            "primary": {"used_percent": 30.0, "window_minutes": 300, "resets_at": 1796416439},
            "credits": {"has_credits": True, "balance": "12.50"},
        },
        poll_interval_ms=30000,
        max_concurrent_agents=4,
        poll_check_in_progress=True,
        next_poll_due_at_ms=123456.5,
    )


DOCUMENTED_BODY = {
    "running": [
        {
            "issue_id": "iss-1",
            "identifier": "SYM-1",
            "turn_count": 3,
            "codex_total_tokens": 1500,
            "last_codex_event": "turn_completed",
            "started_at": "2026-12-04T19:00:00Z",
            "session_id": "sess-1",
            "codex_input_tokens": 1200,
            "codex_output_tokens": 300,
            "worker_host": "builder-a",
            "workspace_path": "/srv/ws/SYM-1",
        },
        {
            "issue_id": "iss-2",
            "identifier": "SYM-2",
            "turn_count": 1,
            "codex_total_tokens": 800,
            "last_codex_event": None,
            "started_at": "2026-12-04T19:05:30.250Z",
            "session_id": None,
            "codex_input_tokens": 800,
            "codex_output_tokens": 0,
            "worker_host": None,
            "workspace_path": None,
        },
    ],
    "retrying": [
        {
            "issue_id": "iss-3",
            "identifier": "SYM-3",
            "attempt": 2,
            "delay_type": "failure",
            "error": "turn_timeout",
            "worker_host": None,
            "workspace_path": "/srv/ws/SYM-3",
        },
        {
            "issue_id": "iss-4",
            "identifier": "SYM-4",
            "attempt": 1,
            "delay_type": "continuation",
            "error": None,
            "worker_host": None,
            "workspace_path": None,
        },
    ],
    "completed_count": 3,
    "codex_totals": {
        "input_tokens": 5000,
        "output_tokens": 1250,
        "total_tokens": 6250,
        "seconds_running": 912.5,
    },
    "rate_limits": {
        "primary": {"used_percent": 30.0, "window_minutes": 300, "resets_at": 1796416439},
        "credits": {"has_credits": True, "balance": "12.50"},
    },
    "poll_interval_ms": 30000,
    "max_concurrent_agents": 4,
    "poll_check_in_progress": True,
    "next_poll_due_at_ms": 123456.5,
}


def test_documented_state_snapshot() -> None:
    generator = SnapshotGenerator()
    snapshot = generator.generate(documented_state())
    assert body_of(snapshot) == DOCUMENTED_BODY
    assert generator.value_report.counts() == {}


def test_documented_state_rows_documented() -> None:
    assert_rows_documented(generate(documented_state()))


def test_documented_state_json_round_trip() -> None:
    data = generate(documented_state()).to_dict()
    assert json.loads(json.dumps(data, allow_nan=False)) == data


def test_documented_state_deepcopy_would_fail() -> None:
    # The entries hold task stand-ins that refuse copying, as real tasks do,
    # so a snapshot that copies host objects wholesale fails these tests.
    with pytest.raises(TypeError):
        copy.deepcopy(documented_state())
    with pytest.raises(TypeError):
        dataclasses.asdict(documented_state())


# =============================================================================
# code-factory-agent 0.8.0 states
# =============================================================================


@pytest.fixture(scope="module")
def running3_document(load_fixture: Callable[[str], Any]) -> dict[str, Any]:
    """The code-factory fixture with three running workers."""
    return load_fixture("code-factory/code_factory_running3.json")


@pytest.fixture(scope="module")
def retrying_document(load_fixture: Callable[[str], Any]) -> dict[str, Any]:
    """The code-factory fixture with three queued retries."""
    return load_fixture("code-factory/code_factory_retrying.json")


def test_code_factory_classes_match_attrs(
    running3_document: dict[str, Any], retrying_document: dict[str, Any]
) -> None:
    running_attrs = running3_document["attrs"]["running_entries"]["iss-aaa111"]
    retry_attrs = retrying_document["attrs"]["retry_entries"]["iss-ccc333"]
    assert [f.name for f in dataclasses.fields(states.RunningEntry)] == list(running_attrs)
    assert [f.name for f in dataclasses.fields(states.RetryEntry)] == list(retry_attrs)


def test_code_factory_actor_matches_attrs(running3_document: dict[str, Any]) -> None:
    actor = states.code_factory_state(running3_document)
    for name, type_name in running3_document["attrs"]["OrchestratorActor"].items():
        assert type(getattr(actor, name)).__name__ == type_name, name
    entry = actor.running["iss-aaa111"]
    assert isinstance(entry.started_at, dt.datetime)
    assert entry.started_at.tzinfo is not None
    assert isinstance(entry.issue, states.Issue)


CODE_FACTORY_RUNNING3_BODY = {
    "running": [
        {
            "issue_id": "iss-aaa111",
            "identifier": "ENG-101",
            "turn_count": 1,
            "codex_total_tokens": 2500,
            "last_codex_event": "turn_completed",
            "started_at": "2026-12-04T19:19:26.201296Z",
            "session_id": "thr-0-sess",
            "codex_input_tokens": 2000,
            "codex_output_tokens": 500,
            "worker_host": None,
            "workspace_path": "/srv/code-factory/ws/ENG-101",
        },
        {
            "issue_id": "iss-bbb222",
            "identifier": "ENG-102",
            "turn_count": 1,
            "codex_total_tokens": 5000,
            "last_codex_event": "turn_completed",
            "started_at": "2026-12-04T19:28:26.201362Z",
            "session_id": "thr-1-sess",
            "codex_input_tokens": 4000,
            "codex_output_tokens": 1000,
            "worker_host": None,
            "workspace_path": "/srv/code-factory/ws/ENG-102",
        },
        {
            "issue_id": "iss-ddd444",
            "identifier": "ENG-104",
            "turn_count": 1,
            "codex_total_tokens": 0,
            "last_codex_event": "session_started",
            "started_at": "2026-12-04T19:31:26.201395Z",
            "session_id": "thr-2-sess",
            "codex_input_tokens": 0,
            "codex_output_tokens": 0,
            "worker_host": None,
            "workspace_path": "/srv/code-factory/ws/ENG-104",
        },
    ],
    "retrying": [],
    "completed_count": 2,
    "codex_totals": {
        "input_tokens": 6000,
        "output_tokens": 1500,
        "total_tokens": 7500,
        "seconds_running": 0,
    },
    "rate_limits": None,
    "poll_interval_ms": 30000,
    "max_concurrent_agents": 5,
    "poll_check_in_progress": False,
    "next_poll_due_at_ms": 418802.0,
}

CODE_FACTORY_RETRYING_BODY = {
    "running": [],
    "retrying": [
        {
            "issue_id": "iss-ccc333",
            "identifier": "ENG-103",
            "attempt": 1,
            "delay_type": "failure",
            "error": "agent exited: codex app-server exited with status 1",
            "worker_host": None,
            "workspace_path": "/srv/code-factory/ws/ENG-103",
        },
        {
            "issue_id": "iss-eee555",
            "identifier": "ENG-105",
            "attempt": 3,
            "delay_type": "failure",
            "error": "turn_timeout",
            "worker_host": None,
            "workspace_path": None,
        },
        {
            "issue_id": "iss-fff666",
            "identifier": "ENG-106",
            "attempt": 2,
            "delay_type": "wait",
            "error": "no available orchestrator slots",
            "worker_host": None,
            "workspace_path": None,
        },
    ],
    "completed_count": 1,
    "codex_totals": {
        "input_tokens": 0,
        "output_tokens": 0,
        "total_tokens": 0,
        "seconds_running": 0,
    },
    "rate_limits": None,
    "poll_interval_ms": 30000,
    "max_concurrent_agents": 5,
    "poll_check_in_progress": False,
    "next_poll_due_at_ms": 458804.0,
}


def test_code_factory_running3_snapshot(running3_document: dict[str, Any]) -> None:
    generator = SnapshotGenerator()
    snapshot = generator.generate(states.code_factory_state(running3_document))
    assert body_of(snapshot) == CODE_FACTORY_RUNNING3_BODY
    assert generator.value_report.counts() == {}


def test_code_factory_retrying_snapshot(retrying_document: dict[str, Any]) -> None:
    generator = SnapshotGenerator()
    snapshot = generator.generate(states.code_factory_state(retrying_document))
    assert body_of(snapshot) == CODE_FACTORY_RETRYING_BODY
    assert generator.value_report.counts() == {}


def test_code_factory_running3_agrees_with_api(running3_document: dict[str, Any]) -> None:
    snapshot = generate(states.code_factory_state(running3_document))
    api = running3_document["api_state"]
    assert len(snapshot.running) == api["counts"]["running"] == 3
    for row, api_row in zip(snapshot.running, api["running"], strict=True):
        assert row["issue_id"] == api_row["issue_id"]
        assert row["identifier"] == api_row["issue_identifier"]
        assert row["codex_input_tokens"] == api_row["tokens"]["input_tokens"]
        assert row["codex_output_tokens"] == api_row["tokens"]["output_tokens"]
        assert row["codex_total_tokens"] == api_row["tokens"]["total_tokens"]
        assert row["last_codex_event"] == api_row["last_event"]
        assert row["session_id"] == api_row["session_id"]
        assert row["workspace_path"] == api_row["workspace_path"]
        # The port's API drops the microseconds that the snapshot keeps.
        assert row["started_at"][:19] == api_row["started_at"][:19]
        assert row["started_at"] != api_row["started_at"]
    assert snapshot.codex_totals == api["agent_totals"]
    assert snapshot.rate_limits is api["rate_limits"] is None
    assert snapshot.max_concurrent_agents == api["workflow"]["agent"]["max_concurrent_agents"]


def test_code_factory_retrying_agrees_with_api(retrying_document: dict[str, Any]) -> None:
    snapshot = generate(states.code_factory_state(retrying_document))
    api = retrying_document["api_state"]
    assert len(snapshot.retrying) == api["counts"]["retrying"] == 3
    for row, api_row in zip(snapshot.retrying, api["retrying"], strict=True):
        assert row["issue_id"] == api_row["issue_id"]
        assert row["identifier"] == api_row["issue_identifier"]
        assert row["attempt"] == api_row["attempt"]
        assert row["error"] == api_row["error"]
        assert row["workspace_path"] == api_row["workspace_path"]
        # due_at_ms is on the monotonic clock: the row has no due time at all.
        assert "due_at" not in row
        assert "due_at_ms" not in row
    assert snapshot.codex_totals == api["agent_totals"]


def test_code_factory_mode_becomes_delay_type(retrying_document: dict[str, Any]) -> None:
    actor = states.code_factory_state(retrying_document)
    snapshot = generate(actor)
    modes = [entry.mode for entry in actor.retry_entries.values()]
    assert (
        [row["delay_type"] for row in snapshot.retrying] == modes == ["failure", "failure", "wait"]
    )


@pytest.mark.parametrize("name", ["running3_document", "retrying_document"])
def test_code_factory_no_wholesale_reads(name: str, request: pytest.FixtureRequest) -> None:
    actor = states.code_factory_state(request.getfixturevalue(name))
    with states.record_reads() as reads:
        snapshot = generate(actor)
    assert snapshot.generated_at
    read_names = {attribute for _, attribute in reads}
    assert not read_names & states.WHOLESALE_READS
    assert not [read for read in reads if read[0] in ("DummyWorker", "PendingTask")]
    assert ("RunningEntry", "worker") not in reads
    assert ("OrchestratorActor", "_lock") not in reads


def test_code_factory_round_trip(
    running3_document: dict[str, Any], retrying_document: dict[str, Any]
) -> None:
    for document in (running3_document, retrying_document):
        snapshot = generate(states.code_factory_state(document))
        assert_rows_documented(snapshot)
        report = ValueReport()
        assert (
            SystemSnapshot.from_dict(json.loads(json.dumps(snapshot.to_dict())), report=report)
            == snapshot
        )
        assert report.counts() == {}


def test_code_factory_snapshot_repeatable(running3_document: dict[str, Any]) -> None:
    generator = SnapshotGenerator()
    actor = states.code_factory_state(running3_document)
    bodies = [body_of(generator.generate(actor)) for _ in range(50)]
    assert all(body == CODE_FACTORY_RUNNING3_BODY for body in bodies)


# =============================================================================
# Elixir reference bodies
# =============================================================================


ELIXIR_FILES = [
    "01_state_idle.json",
    "02_issue_unknown_404.json",
    "08_state_running3_retrying3_no_rate_limits.json",
    "09_issue_running_FAKE-101.json",
    "10_issue_retrying_turn_failed_FAKE-104.json",
    "15_state_3running_3retrying_rate_limits.json",
    "18_state_continuation_retry_error_null.json",
    "20_state_retry_no_available_slots.json",
]
ELIXIR_STATE_FILES = [name for name in ELIXIR_FILES if "_state_" in name]


@pytest.fixture
def elixir(load_fixture: Callable[[str], Any]) -> Callable[[str], Any]:
    """Return a loader of one Elixir body by file name."""
    return lambda name: load_fixture(f"symphony-elixir/{name}")


def test_elixir_fixture_list_complete(fixtures_dir: Any) -> None:
    assert (
        sorted(path.name for path in (fixtures_dir / "symphony-elixir").glob("*.json"))
        == ELIXIR_FILES
    )


def test_elixir_idle(elixir: Callable[[str], Any]) -> None:
    report = ValueReport()
    snapshot = SystemSnapshot.from_dict(elixir("01_state_idle.json"), report=report)
    assert snapshot == SystemSnapshot(
        running=[],
        retrying=[],
        completed_count=0,
        codex_totals={
            "input_tokens": 0,
            "output_tokens": 0,
            "total_tokens": 0,
            "seconds_running": 0,
        },
        rate_limits=None,
        poll_interval_ms=0,
        max_concurrent_agents=0,
        poll_check_in_progress=False,
        next_poll_due_at_ms=None,
        generated_at="2026-12-04T19:33:02Z",
    )
    assert report.counts() == {}


def test_elixir_error_envelope(elixir: Callable[[str], Any]) -> None:
    with pytest.raises(ValueError, match="issue_not_found"):
        SystemSnapshot.from_dict(elixir("02_issue_unknown_404.json"), report=ValueReport())


@pytest.mark.parametrize("code", ["snapshot_timeout", "snapshot_unavailable"])
def test_elixir_snapshot_failure_body(code: str) -> None:
    body = {
        "generated_at": "2026-12-04T19:33:02Z",
        "error": {"code": code, "message": "Snapshot timed out"},
    }
    with pytest.raises(ValueError, match=code):
        SystemSnapshot.from_dict(body, report=ValueReport())


def test_elixir_running3_retrying3(elixir: Callable[[str], Any]) -> None:
    report = ValueReport()
    snapshot = SystemSnapshot.from_dict(
        elixir("08_state_running3_retrying3_no_rate_limits.json"), report=report
    )
    assert report.counts() == {}
    assert len(snapshot.running) == 3
    assert len(snapshot.retrying) == 3
    assert snapshot.codex_totals == {
        "input_tokens": 52332,
        "output_tokens": 7609,
        "total_tokens": 59941,
        "seconds_running": 13,
    }
    assert snapshot.rate_limits is None
    assert snapshot.generated_at == "2026-12-04T19:33:19Z"

    assert snapshot.running[0] == {
        "issue_id": "7b1c0e2a-0000-4000-8000-000000000001",
        "identifier": "FAKE-101",
        "turn_count": 1,
        "codex_total_tokens": 13926,
        "last_codex_event": "notification",
        "started_at": "2026-12-04T19:33:09Z",
        "session_id": "thr_bacac181ce044f3d-turn_1_c5e00c95",
        "codex_input_tokens": 12852,
        "codex_output_tokens": 1074,
        "worker_host": None,
        "workspace_path": "/srv/symphony/workspaces/FAKE-101",
    }
    assert [row["identifier"] for row in snapshot.running] == ["FAKE-101", "FAKE-102", "FAKE-103"]
    assert [row["codex_total_tokens"] for row in snapshot.running] == [13926, 13622, 12952]

    assert [row["identifier"] for row in snapshot.retrying] == ["FAKE-104", "FAKE-105", "FAKE-106"]
    assert [row["attempt"] for row in snapshot.retrying] == [1, 1, 1]
    assert [row["delay_type"] for row in snapshot.retrying] == ["failure"] * 3
    assert snapshot.retrying[1]["error"].startswith(
        'agent exited: {%RuntimeError{message: "Agent run failed for '
        "issue_id=7b1c0e2a-0000-4000-8000-000000000005 issue_identifier=FAKE-105: {:port_exit, 3}"
    )
    assert snapshot.retrying[0]["workspace_path"] == "/srv/symphony/workspaces/FAKE-104"

    assert snapshot.completed_count == 0
    assert snapshot.poll_interval_ms == 0
    assert snapshot.max_concurrent_agents == 0


def test_elixir_rate_limits_copied(elixir: Callable[[str], Any]) -> None:
    body = elixir("15_state_3running_3retrying_rate_limits.json")
    snapshot = SystemSnapshot.from_dict(body, report=ValueReport())
    assert snapshot.rate_limits == {
        "credits": {"balance": None, "has_credits": False, "unlimited": False},
        "limit_id": "codex",
        "limit_name": None,
        "plan_type": "pro",
        "primary": {"resets_at": 1796416439, "used_percent": 30.0, "window_minutes": 300},
        "secondary": {"resets_at": 1796672039, "used_percent": 7.5, "window_minutes": 10080},
    }
    body["rate_limits"]["primary"]["used_percent"] = 99.0
    assert snapshot.rate_limits["primary"]["used_percent"] == 30.0
    assert snapshot.codex_totals == {
        "input_tokens": 259485,
        "output_tokens": 40334,
        "total_tokens": 299819,
        "seconds_running": 37,
    }
    assert [row["turn_count"] for row in snapshot.running] == [2, 2, 2]
    assert snapshot.running[2]["codex_input_tokens"] == 70962
    assert snapshot.running[2]["codex_output_tokens"] == 11658
    assert snapshot.running[2]["session_id"] == "thr_3a123692b65c4b07-turn_2_73e921e2"
    assert [row["attempt"] for row in snapshot.retrying] == [3, 3, 3]


def test_elixir_continuation_retry(elixir: Callable[[str], Any]) -> None:
    snapshot = SystemSnapshot.from_dict(
        elixir("18_state_continuation_retry_error_null.json"), report=ValueReport()
    )
    assert len(snapshot.running) == 2
    assert len(snapshot.retrying) == 4
    assert snapshot.retrying[0] == {
        "issue_id": "7b1c0e2a-0000-4000-8000-000000000003",
        "identifier": "FAKE-103",
        "attempt": 1,
        "delay_type": "continuation",
        "error": None,
        "worker_host": None,
        "workspace_path": "/srv/symphony/workspaces/FAKE-103",
    }
    assert [row["delay_type"] for row in snapshot.retrying[1:]] == ["failure"] * 3
    assert [row["attempt"] for row in snapshot.retrying[1:]] == [6, 6, 6]
    assert snapshot.running[1]["started_at"] == "2026-12-04T19:35:11Z"
    assert snapshot.codex_totals == {
        "input_tokens": 1091640,
        "output_tokens": 167773,
        "total_tokens": 1259413,
        "seconds_running": 554,
    }
    assert snapshot.rate_limits is not None
    assert snapshot.rate_limits["primary"]["used_percent"] == 57.0
    assert snapshot.rate_limits["secondary"]["used_percent"] == 14.2


def test_elixir_no_available_slots(elixir: Callable[[str], Any]) -> None:
    snapshot = SystemSnapshot.from_dict(
        elixir("20_state_retry_no_available_slots.json"), report=ValueReport()
    )
    assert [row["error"] for row in snapshot.retrying] == ["no available orchestrator slots"] * 3
    assert [row["attempt"] for row in snapshot.retrying] == [7, 7, 7]
    assert [row["codex_total_tokens"] for row in snapshot.running] == [50160, 50880, 55144]
    assert snapshot.codex_totals == {
        "input_tokens": 1231697,
        "output_tokens": 189808,
        "total_tokens": 1421505,
        "seconds_running": 794,
    }
    assert snapshot.generated_at == "2026-12-04T19:37:47Z"


def test_elixir_issue_bodies_yield_no_rows(elixir: Callable[[str], Any]) -> None:
    # Issue detail bodies are not state bodies, because their "running" is one object, not a list.
    report = ValueReport()
    running = SystemSnapshot.from_dict(elixir("09_issue_running_FAKE-101.json"), report=report)
    assert running.running == []
    assert report.counts() == {"running": 1}
    retrying = SystemSnapshot.from_dict(
        elixir("10_issue_retrying_turn_failed_FAKE-104.json"), report=ValueReport()
    )
    assert retrying.running == []
    assert retrying.retrying == []


@pytest.mark.parametrize("name", ELIXIR_STATE_FILES)
def test_elixir_state_counts_match(name: str, elixir: Callable[[str], Any]) -> None:
    body = elixir(name)
    report = ValueReport()
    snapshot = SystemSnapshot.from_dict(body, report=report)
    assert report.counts() == {}
    assert len(snapshot.running) == body["counts"]["running"]
    assert len(snapshot.retrying) == body["counts"]["retrying"]
    assert snapshot.codex_totals == body["codex_totals"]
    assert snapshot.rate_limits == body["rate_limits"]
    assert snapshot.generated_at == body["generated_at"]
    for row, body_row in zip(snapshot.running, body["running"], strict=True):
        assert row["identifier"] == body_row["issue_identifier"]
        assert row["issue_id"] == body_row["issue_id"]
        assert row["codex_input_tokens"] == body_row["tokens"]["input_tokens"]
        assert row["codex_output_tokens"] == body_row["tokens"]["output_tokens"]
        assert row["codex_total_tokens"] == body_row["tokens"]["total_tokens"]
        assert row["last_codex_event"] == body_row["last_event"]
        assert row["started_at"] == body_row["started_at"]
    for row, body_row in zip(snapshot.retrying, body["retrying"], strict=True):
        assert row["identifier"] == body_row["issue_identifier"]
        assert row["error"] == body_row["error"]
        assert row["delay_type"] == ("continuation" if body_row["error"] is None else "failure")
    assert_rows_documented(snapshot)
    assert (
        SystemSnapshot.from_dict(json.loads(json.dumps(snapshot.to_dict())), report=ValueReport())
        == snapshot
    )


# =============================================================================
# Shapes of other ports
# =============================================================================

FULL_ENTRY = {
    "issue_id": "iss-7",
    "identifier": "ENG-7",
    "turn_count": 2,
    "codex_input_tokens": 10,
    "codex_output_tokens": 5,
    "codex_total_tokens": 15,
    "last_codex_event": "turn_completed",
    "started_at": "2026-12-04T19:33:09Z",
    "session_id": "s-7",
    "worker_host": "w1",
    "workspace_path": "/srv/ws/ENG-7",
}
FULL_ROW = dict(FULL_ENTRY)
FULL_RETRY = {
    "issue_id": "iss-8",
    "identifier": "ENG-8",
    "attempt": 4,
    "delay_type": "continuation",
    "error": None,
    "worker_host": "w2",
    "workspace_path": "/srv/ws/ENG-8",
}


def one_running_row(entry: Any, key: Any = "map-key") -> dict[str, Any]:
    """Generate from a state with one running entry, and return its row."""
    generator = SnapshotGenerator()
    snapshot = generator.generate({"running": {key: entry}})
    assert generator.value_report.counts() == {}
    (row,) = snapshot.running
    return row


def one_retry_row(entry: Any, key: Any = "map-key") -> dict[str, Any]:
    """Generate from a state with one retry entry, and return its row."""
    generator = SnapshotGenerator()
    snapshot = generator.generate({"retry_attempts": {key: entry}})
    assert generator.value_report.counts() == {}
    (row,) = snapshot.retrying
    return row


@pytest.mark.parametrize("shape", states.SHAPES)
def test_entry_shape_running(shape: str) -> None:
    assert one_running_row(states.build(shape, FULL_ENTRY)) == FULL_ROW


@pytest.mark.parametrize("shape", states.SHAPES)
def test_entry_shape_retry(shape: str) -> None:
    assert one_retry_row(states.build(shape, FULL_RETRY)) == FULL_RETRY


@pytest.mark.parametrize("shape", [shape for shape in states.SHAPES if shape != "to_dict"])
def test_state_shape(shape: str) -> None:
    data = {
        "running": {"iss-7": states.build("dataclass", FULL_ENTRY)},
        "retry_attempts": {"iss-8": FULL_RETRY},
        "completed": {"a", "b"},
        "codex_totals": {
            "input_tokens": 1,
            "output_tokens": 2,
            "total_tokens": 3,
            "seconds_running": 4,
        },
        "codex_rate_limits": {"limit_id": "codex"},
        "poll_interval_ms": 1000,
        "max_concurrent_agents": 3,
        "poll_check_in_progress": True,
        "next_poll_due_at_ms": 5,
    }
    snapshot = generate(states.build(shape, data, nested=False))
    assert body_of(snapshot) == {
        "running": [FULL_ROW],
        "retrying": [FULL_RETRY],
        "completed_count": 2,
        "codex_totals": {
            "input_tokens": 1,
            "output_tokens": 2,
            "total_tokens": 3,
            "seconds_running": 4,
        },
        "rate_limits": {"limit_id": "codex"},
        "poll_interval_ms": 1000,
        "max_concurrent_agents": 3,
        "poll_check_in_progress": True,
        "next_poll_due_at_ms": 5.0,
    }


@pytest.mark.parametrize("name", ["retry_attempts", "retry_entries", "retry_queue"])
def test_retry_map_names(name: str) -> None:
    snapshot = generate({name: {"iss-8": FULL_RETRY}})
    assert snapshot.retrying == [FULL_RETRY]


def test_retry_map_documented_name_wins() -> None:
    snapshot = generate(
        {"retry_attempts": {"a": {"attempt": 1}}, "retry_entries": {"b": {"attempt": 2}}}
    )
    assert [row["issue_id"] for row in snapshot.retrying] == ["a"]


@pytest.mark.parametrize("name", ["codex_totals", "agent_totals"])
@pytest.mark.parametrize("shape", states.SHAPES)
def test_totals_names_and_shapes(name: str, shape: str) -> None:
    totals = {"input_tokens": 40, "output_tokens": 2, "total_tokens": 42, "seconds_running": 7.5}
    snapshot = generate({name: states.build(shape, totals)})
    assert snapshot.codex_totals == totals


def test_totals_documented_dataclass() -> None:
    assert generate({"codex_totals": TokenUsage(3, 4, 0, 1.5)}).codex_totals == {
        "input_tokens": 3,
        "output_tokens": 4,
        "total_tokens": 0,
        "seconds_running": 1.5,
    }


def test_totals_missing_total_and_seconds() -> None:
    generator = SnapshotGenerator()
    snapshot = generator.generate({"codex_totals": {"input_tokens": 40, "output_tokens": 2}})
    assert snapshot.codex_totals == {
        "input_tokens": 40,
        "output_tokens": 2,
        "total_tokens": 42,
        "seconds_running": 0,
    }
    assert generator.value_report.counts() == {}


def test_totals_absent() -> None:
    snapshot = generate({"running": {}})
    assert snapshot.codex_totals == {
        "input_tokens": 0,
        "output_tokens": 0,
        "total_tokens": 0,
        "seconds_running": 0,
    }


@pytest.mark.parametrize("value", ["6000", 6000, ["input_tokens"], object()])
def test_totals_unreadable_counted(value: Any) -> None:
    generator = SnapshotGenerator()
    snapshot = generator.generate({"running": {}, "codex_totals": value})
    assert snapshot.codex_totals == {
        "input_tokens": 0,
        "output_tokens": 0,
        "total_tokens": 0,
        "seconds_running": 0,
    }
    assert generator.value_report.counts() == {"codex_totals": 1}


@pytest.mark.parametrize("name", ["codex_rate_limits", "agent_rate_limits", "rate_limits"])
@pytest.mark.parametrize("shape", ["dict", "model", "to_dict"])
def test_rate_limit_names_and_shapes(name: str, shape: str) -> None:
    limits = {"limit_id": "codex", "primary": {"used_percent": 30.0, "resets_at": 1796416439}}
    snapshot = generate({"running": {}, name: states.build(shape, limits, nested=False)})
    assert snapshot.rate_limits == limits


def test_rate_limits_old_style_windows() -> None:
    limits = {"requests": {"remaining": 10, "limit": 100, "reset_in_seconds": 12.5}}
    assert generate({"rate_limits": limits}).rate_limits == limits


def test_rate_limits_copied_from_host() -> None:
    host: dict[str, Any] = {
        "primary": {"used_percent": 30.0, "history": [1, 2]},
        "plan_type": "pro",
    }
    snapshot = generate({"running": {}, "codex_rate_limits": host})
    host["primary"]["used_percent"] = 99.0
    host["primary"]["history"].append(3)
    host["plan_type"] = "free"
    host["new"] = True
    assert snapshot.rate_limits == {
        "primary": {"used_percent": 30.0, "history": [1, 2]},
        "plan_type": "pro",
    }
    assert snapshot.to_dict()["rate_limits"] == snapshot.rate_limits


@pytest.mark.parametrize("value", ["limited", 5, ["a"]])
def test_rate_limits_not_mapping_counted(value: Any) -> None:
    generator = SnapshotGenerator()
    assert generator.generate({"running": {}, "rate_limits": value}).rate_limits is None
    assert generator.value_report.counts() == {"rate_limits": 1}


@pytest.mark.parametrize("holder", ["settings", "config"])
@pytest.mark.parametrize("shape", ["dataclass", "slots", "plain", "dict", "model"])
def test_poll_and_concurrency_nested(holder: str, shape: str) -> None:
    settings = states.build(
        shape, {"polling": {"interval_ms": 15000}, "agent": {"max_concurrent_agents": 7}}
    )
    snapshot = generate({"running": {}, holder: settings})
    assert snapshot.poll_interval_ms == 15000
    assert snapshot.max_concurrent_agents == 7


def test_poll_and_concurrency_flat_settings() -> None:
    snapshot = generate({"settings": {"poll_interval_ms": 2000, "max_concurrent_agents": 9}})
    assert snapshot.poll_interval_ms == 2000
    assert snapshot.max_concurrent_agents == 9


def test_poll_and_concurrency_state_wins() -> None:
    snapshot = generate(
        {
            "poll_interval_ms": 1000,
            "max_concurrent_agents": 2,
            "settings": {"polling": {"interval_ms": 15000}, "agent": {"max_concurrent_agents": 7}},
        }
    )
    assert snapshot.poll_interval_ms == 1000
    assert snapshot.max_concurrent_agents == 2


def test_poll_and_concurrency_absent() -> None:
    snapshot = generate({"running": {}})
    assert snapshot.poll_interval_ms == 0
    assert snapshot.max_concurrent_agents == 0


@pytest.mark.parametrize("shape", states.SHAPES)
@pytest.mark.parametrize(
    ("key", "entry", "issue_id", "identifier"),
    [
        ("iss-1", {"issue_id": "iss-1", "identifier": "ENG-1"}, "iss-1", "ENG-1"),
        ("iss-1", {"turn_count": 1}, "iss-1", "iss-1"),
        ("iss-1", {"issue": {"id": "iss-1", "identifier": "ENG-1"}}, "iss-1", "ENG-1"),
        (
            "iss-1",
            {"identifier": None, "issue": {"id": "iss-1", "identifier": "ENG-1"}},
            "iss-1",
            "ENG-1",
        ),
        ("ENG-1", {"issue_id": "iss-1"}, "iss-1", "ENG-1"),
        ("ENG-1", {"issue": {"id": "iss-1"}}, "iss-1", "ENG-1"),
        ("iss-1", {"issue_identifier": "ENG-1"}, "iss-1", "ENG-1"),
        (7, {"turn_count": 1}, "7", "7"),
    ],
)
def test_identity_sources(
    shape: str, key: Any, entry: dict[str, Any], issue_id: str, identifier: str
) -> None:
    for row in (
        one_running_row(states.build(shape, entry), key),
        one_retry_row(states.build(shape, entry), key),
    ):
        assert row["issue_id"] == issue_id
        assert row["identifier"] == identifier


def test_identity_list_container() -> None:
    snapshot = generate({"running": [{"issue_id": "iss-1"}, {"identifier": "ENG-2"}, {}]})
    assert [(row["issue_id"], row["identifier"]) for row in snapshot.running] == [
        ("iss-1", "iss-1"),
        ("ENG-2", "ENG-2"),
        ("", ""),
    ]


TOKEN_LAYOUTS = [
    {"codex_input_tokens": 30, "codex_output_tokens": 12, "codex_total_tokens": 42},
    {"agent_input_tokens": 30, "agent_output_tokens": 12, "agent_total_tokens": 42},
    {"input_tokens": 30, "output_tokens": 12, "total_tokens": 42},
    {"tokens": {"input_tokens": 30, "output_tokens": 12, "total_tokens": 42}},
    {
        "live_session": {
            "codex_input_tokens": 30,
            "codex_output_tokens": 12,
            "codex_total_tokens": 42,
        }
    },
    {"live_session": {"input_tokens": 30, "output_tokens": 12, "total_tokens": 42}},
]


@pytest.mark.parametrize("shape", states.SHAPES)
@pytest.mark.parametrize("layout", TOKEN_LAYOUTS, ids=lambda layout: "-".join(layout)[:40])
def test_token_layouts(shape: str, layout: dict[str, Any]) -> None:
    row = one_running_row(states.build(shape, {"issue_id": "i", **layout}))
    assert (row["codex_input_tokens"], row["codex_output_tokens"], row["codex_total_tokens"]) == (
        30,
        12,
        42,
    )


def test_token_layout_tokens_object() -> None:
    tokens = states.build("slots", {"input_tokens": 30, "output_tokens": 12, "total_tokens": 42})
    row = one_running_row({"issue_id": "i", "tokens": tokens})
    assert (row["codex_input_tokens"], row["codex_output_tokens"], row["codex_total_tokens"]) == (
        30,
        12,
        42,
    )


@pytest.mark.parametrize("shape", states.SHAPES)
def test_missing_total_tokens_is_sum(shape: str) -> None:
    row = one_running_row(
        states.build(shape, {"issue_id": "i", "agent_input_tokens": 30, "agent_output_tokens": 12})
    )
    assert row["codex_total_tokens"] == 42


@pytest.mark.parametrize(
    ("layout", "field", "expected"),
    [
        ({"last_agent_event": "turn_completed"}, "last_codex_event", "turn_completed"),
        ({"last_event": "notification"}, "last_codex_event", "notification"),
        ({"live_session": {"last_event": "notification"}}, "last_codex_event", "notification"),
        ({"turns": 4}, "turn_count", 4),
        ({"live_session": {"turn_count": 4}}, "turn_count", 4),
        ({"live_session": {"session_id": "s-9"}}, "session_id", "s-9"),
        (
            {"live_session": {"started_at": "2026-12-04T19:33:09Z"}},
            "started_at",
            "2026-12-04T19:33:09Z",
        ),
    ],
)
def test_running_alternate_names(layout: dict[str, Any], field: str, expected: Any) -> None:
    for shape in states.SHAPES:
        assert (
            one_running_row(states.build(shape, {"issue_id": "i", **layout}))[field] == expected
        ), shape


@pytest.mark.parametrize(
    ("layout", "expected"),
    [
        (
            {"attempts": 3, "error": "boom"},
            {"attempt": 3, "error": "boom", "delay_type": "failure"},
        ),
        ({"attempt": 1, "mode": "wait"}, {"attempt": 1, "error": None, "delay_type": "wait"}),
        (
            {"attempt": 1, "retry_type": "continuation"},
            {"attempt": 1, "error": None, "delay_type": "continuation"},
        ),
        (
            {"attempt": 2, "last_error": "boom"},
            {"attempt": 2, "error": "boom", "delay_type": "failure"},
        ),
        ({"attempt": 1}, {"attempt": 1, "error": None, "delay_type": "continuation"}),
        (
            {"attempt": 1, "error": ValueError("bad")},
            {"attempt": 1, "error": "ValueError: bad", "delay_type": "failure"},
        ),
    ],
)
def test_retry_alternate_names(layout: dict[str, Any], expected: dict[str, Any]) -> None:
    for shape in states.SHAPES:
        row = one_retry_row(states.build(shape, {"issue_id": "i", **layout}))
        assert {name: row[name] for name in expected} == expected, shape


def test_missing_entry_fields_default() -> None:
    assert one_running_row({}, key="iss-1") == running_row(issue_id="iss-1", identifier="iss-1")
    assert one_retry_row({}, key="iss-1") == retry_row(
        issue_id="iss-1", identifier="iss-1", delay_type="continuation"
    )


BERLIN = ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize(
    ("started_at", "expected"),
    [
        (dt.datetime(2026, 7, 1, 12, 0, 5, tzinfo=BERLIN), "2026-07-01T10:00:05Z"),
        (dt.datetime(2026, 1, 15, 9, 30, tzinfo=ZoneInfo("Asia/Kolkata")), "2026-01-15T04:00:00Z"),
        (
            dt.datetime(2026, 12, 4, 14, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
            "2026-12-04T19:00:00Z",
        ),
        (
            dt.datetime(2026, 11, 1, 1, 30, tzinfo=ZoneInfo("America/New_York"), fold=1),
            "2026-11-01T06:30:00Z",
        ),
        (dt.datetime(2026, 12, 4, 19, 0, 0, 123456), "2026-12-04T19:00:00.123456Z"),
        ("2026-12-04T19:33:09Z", "2026-12-04T19:33:09Z"),
        ("2026-12-04T21:33:09+02:00", "2026-12-04T19:33:09Z"),
        ("2026-12-04T19:19:26.201296+00:00", "2026-12-04T19:19:26.201296Z"),
        (1796416439, "2026-12-04T20:33:59Z"),
        (1796416439.25, "2026-12-04T20:33:59.250Z"),
        (1796416439250, "2026-12-04T20:33:59.250Z"),
        ("", ""),
        (None, ""),
    ],
)
def test_started_at_forms(started_at: Any, expected: str) -> None:
    for shape in states.SHAPES:
        assert (
            one_running_row(states.build(shape, {"issue_id": "i", "started_at": started_at}))[
                "started_at"
            ]
            == expected
        )


def test_started_at_zone_not_mislabelled() -> None:
    # The same wall time in two zones must give two different instants.
    local = one_running_row({"started_at": dt.datetime(2026, 7, 1, 12, 0, tzinfo=BERLIN)})[
        "started_at"
    ]
    naive = one_running_row({"started_at": dt.datetime(2026, 7, 1, 12, 0)})["started_at"]
    assert local == "2026-07-01T10:00:00Z"
    assert naive == "2026-07-01T12:00:00Z"


@pytest.mark.parametrize(
    ("value", "expected"),
    [(418802, 418802.0), (1796416439000, 1796416439000.0), (12.5, 12.5), (-3, -3.0), (None, None)],
)
def test_next_poll_due_kept_as_number(value: Any, expected: float | None) -> None:
    generator = SnapshotGenerator()
    snapshot = generator.generate({"running": {}, "next_poll_due_at_ms": value})
    assert snapshot.next_poll_due_at_ms == expected
    assert snapshot.to_dict()["next_poll_due_at_ms"] == expected
    if expected is not None:
        assert type(snapshot.next_poll_due_at_ms) is float
    assert generator.value_report.counts() == {}


def test_next_poll_due_time_rejected() -> None:
    generator = SnapshotGenerator()
    snapshot = generator.generate(
        {"running": {}, "next_poll_due_at_ms": dt.datetime(2026, 12, 4, tzinfo=UTC)}
    )
    assert snapshot.next_poll_due_at_ms is None
    assert generator.value_report.counts() == {"next_poll_due_at_ms": 1}


def test_plain_class_entries_differ_per_instance() -> None:
    first = states.build("plain", {"issue_id": "a", "agent_input_tokens": 1})
    second = states.build("plain", {"issue_id": "b", "tokens": {"input_tokens": 2}})
    third = states.build("plain", {"issue_id": "c", "codex_input_tokens": 3})
    snapshot = generate({"running": {"a": first, "b": second, "c": third}})
    assert [row["codex_input_tokens"] for row in snapshot.running] == [1, 2, 3]


def test_dict_entries_differ_per_instance() -> None:
    entries = {
        "a": {"agent_input_tokens": 1},
        "b": {"tokens": {"input_tokens": 2}},
        "c": {"input_tokens": 3},
    }
    assert [row["codex_input_tokens"] for row in generate({"running": entries}).running] == [
        1,
        2,
        3,
    ]


def test_generator_reused_across_shapes() -> None:
    generator = SnapshotGenerator()
    for shape in states.SHAPES * 3:
        snapshot = generator.generate({"running": {"k": states.build(shape, FULL_ENTRY)}})
        assert snapshot.running == [FULL_ROW], shape
    assert generator.value_report.counts() == {}


# =============================================================================
# Bad input
# =============================================================================


def test_generate_none_raises() -> None:
    with pytest.raises(TypeError, match="got None.*running, retry_attempts, completed"):
        SnapshotGenerator().generate(None)


@pytest.mark.parametrize("state", [object(), {}, "running", 5])
def test_generate_unrelated_object_raises(state: Any) -> None:
    with pytest.raises(
        TypeError,
        match=rf"state of type {type(state).__name__} has none of .*running.*retry_attempts",
    ):
        SnapshotGenerator().generate(state)


BAD_FIELD_CASES = [
    ({"running": {"k": {"turn_count": "3"}}}, "turn_count"),
    ({"running": {"k": {"codex_input_tokens": -5}}}, "codex_input_tokens"),
    ({"running": {"k": {"codex_output_tokens": math.nan}}}, "codex_output_tokens"),
    ({"running": {"k": {"codex_total_tokens": math.inf}}}, "codex_total_tokens"),
    ({"running": {"k": {"started_at": "yesterday at noon"}}}, "started_at"),
    ({"running": {"k": {"session_id": ["s"]}}}, "session_id"),
    ({"retry_attempts": {"r": {"attempt": True}}}, "attempt"),
    ({"codex_totals": {"input_tokens": "6000"}}, "codex_totals.input_tokens"),
    ({"codex_totals": {"seconds_running": math.nan}}, "codex_totals.seconds_running"),
    ({"codex_totals": {"output_tokens": -1}}, "codex_totals.output_tokens"),
    ({"poll_interval_ms": True}, "poll_interval_ms"),
    ({"max_concurrent_agents": -2}, "max_concurrent_agents"),
    ({"next_poll_due_at_ms": math.inf}, "next_poll_due_at_ms"),
    ({"poll_check_in_progress": "yes"}, "poll_check_in_progress"),
    ({"completed": "iss-1"}, "completed"),
    ({"codex_rate_limits": {"primary": {"used_percent": math.nan}}}, "rate_limits"),
]


def _good_state() -> dict[str, Any]:
    return {
        "running": {
            "k": {
                "issue_id": "iss-1",
                "identifier": "ENG-1",
                "codex_input_tokens": 9,
                "codex_output_tokens": 2,
                "codex_total_tokens": 11,
                "turn_count": 2,
                "started_at": "2026-12-04T19:33:09Z",
                "session_id": "s-1",
            }
        },
        "retry_attempts": {
            "r": {"issue_id": "iss-2", "identifier": "ENG-2", "attempt": 3, "error": "boom"}
        },
        "completed": {"iss-0"},
        "codex_totals": {
            "input_tokens": 9,
            "output_tokens": 1,
            "total_tokens": 10,
            "seconds_running": 5,
        },
        "codex_rate_limits": {"primary": {"used_percent": 10.0}},
        "poll_interval_ms": 1000,
        "max_concurrent_agents": 4,
        "poll_check_in_progress": True,
        "next_poll_due_at_ms": 5,
    }


def _merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for name, value in patch.items():
        if isinstance(value, dict) and isinstance(merged.get(name), dict):
            merged[name] = _merge(merged[name], value)
        else:
            merged[name] = value
    return merged


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> dict[tuple[Any, ...], Any]:
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return {path: value}
    leaves: dict[tuple[Any, ...], Any] = {}
    for key, item in items:
        leaves.update(_leaves(item, (*path, key)))
    return leaves


@pytest.mark.parametrize(
    ("patch", "field"), BAD_FIELD_CASES, ids=[case[1] for case in BAD_FIELD_CASES]
)
def test_bad_field_takes_default(patch: dict[str, Any], field: str) -> None:
    good = _leaves(body_of(generate(_good_state())))
    generator = SnapshotGenerator()
    bad_snapshot = generator.generate(_merge(_good_state(), patch))
    assert generator.value_report.counts() == {field: 1}
    json.dumps(bad_snapshot.to_dict(), allow_nan=False)
    bad = _leaves(body_of(bad_snapshot))
    assert bad.keys() == good.keys()
    changed = {path: bad[path] for path in good if bad[path] != good[path]}
    assert len(changed) == 1, changed
    (default,) = changed.values()
    assert default in (0, "", None, False)


def test_bad_fields_defaults_values() -> None:
    state = _good_state()
    state["running"]["k"].update(
        turn_count="3", codex_input_tokens=-5, started_at="noon", session_id=["s"]
    )
    state["retry_attempts"]["r"]["attempt"] = True
    state["codex_totals"]["seconds_running"] = math.inf
    state["next_poll_due_at_ms"] = math.nan

    generator = SnapshotGenerator()
    snapshot = generator.generate(state)

    assert snapshot.running == [
        running_row(
            issue_id="iss-1",
            identifier="ENG-1",
            turn_count=0,
            codex_input_tokens=0,
            codex_output_tokens=2,
            codex_total_tokens=11,
            started_at="",
            session_id=None,
        )
    ]
    assert snapshot.retrying == [
        retry_row(issue_id="iss-2", identifier="ENG-2", attempt=0, error="boom")
    ]
    assert snapshot.codex_totals == {
        "input_tokens": 9,
        "output_tokens": 1,
        "total_tokens": 10,
        "seconds_running": 0,
    }
    assert snapshot.next_poll_due_at_ms is None
    assert snapshot.completed_count == 1
    assert snapshot.poll_interval_ms == 1000
    assert snapshot.max_concurrent_agents == 4
    assert snapshot.rate_limits == {"primary": {"used_percent": 10.0}}

    assert generator.value_report.counts() == {
        "turn_count": 1,
        "codex_input_tokens": 1,
        "started_at": 1,
        "session_id": 1,
        "attempt": 1,
        "codex_totals.seconds_running": 1,
        "next_poll_due_at_ms": 1,
    }


def test_bad_fields_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    generator = SnapshotGenerator()
    state = _good_state()
    state["running"]["k"].update(turn_count="3", started_at="noon")
    state["running"]["k2"] = {"turn_count": -1, "started_at": math.nan}
    state["retry_attempts"]["r"]["attempt"] = True
    state["poll_interval_ms"] = math.inf
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for _ in range(25):
            generator.generate(state)
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    logged_fields = sorted(str(record.args[0]) for record in warnings)  # type: ignore[index]
    assert logged_fields == ["attempt", "poll_interval_ms", "started_at", "turn_count"]
    assert generator.value_report.counts() == {
        "turn_count": 50,
        "started_at": 50,
        "attempt": 25,
        "poll_interval_ms": 25,
    }
    assert all("noon" not in record.getMessage() for record in warnings)


def test_bad_entries_do_not_stop_others() -> None:
    generator = SnapshotGenerator()
    snapshot = generator.generate(
        {"running": {"a": None, "b": 5, "c": "text", "d": {"issue_id": "iss-d", "turn_count": 2}}}
    )
    assert [row["issue_id"] for row in snapshot.running] == ["a", "b", "c", "iss-d"]
    assert snapshot.running[3]["turn_count"] == 2


@pytest.mark.parametrize("running", ["not a map", 5, 2.5])
def test_running_not_container(running: Any) -> None:
    generator = SnapshotGenerator()
    snapshot = generator.generate({"running": running, "poll_interval_ms": 7})
    assert snapshot.running == []
    assert snapshot.poll_interval_ms == 7
    assert generator.value_report.counts() == {"running": 1}


def test_raising_property_reads_as_missing() -> None:
    class Entry:
        issue_id = "iss-1"

        @property
        def session_id(self) -> str:
            raise RuntimeError("session closed")

    row = one_running_row(Entry())
    assert row["issue_id"] == "iss-1"
    assert row["session_id"] is None


def test_from_dict_bad_values_counted() -> None:
    report = ValueReport()
    body = {
        "running": [{"issue_id": "i", "turn_count": "x"}, "not a row"],
        "retrying": "nope",
        "codex_totals": {"input_tokens": -1},
        "generated_at": "never",
    }
    snapshot = SystemSnapshot.from_dict(body, report=report)
    assert snapshot.running == [running_row(issue_id="i", identifier="i")]
    assert snapshot.retrying == []
    assert ISO_UTC.match(snapshot.generated_at)
    assert report.counts() == {
        "turn_count": 1,
        "running": 1,
        "retrying": 1,
        "codex_totals.input_tokens": 1,
        "generated_at": 1,
    }


# =============================================================================
# Property-based tests
# =============================================================================


def _known_names() -> list[str]:
    names: set[str] = set()
    for table in (_reading.RUNNING_PATHS, _reading.RETRY_PATHS):
        for paths in table.values():
            for path in paths:
                names.update(path.split("."))
    names.update(_reading.TOTALS_KEYS)
    return sorted(names)


KNOWN_NAMES = _known_names()
names_st = st.one_of(
    st.sampled_from(KNOWN_NAMES),
    st.text(string.ascii_lowercase + "_", min_size=1, max_size=6).map(lambda text: "x_" + text),
)
text_st = st.one_of(
    st.text(max_size=20),
    st.text(st.characters(categories=["Cs", "Cc", "Zs", "Lu", "Nd"]), max_size=12),
)
# A fixed set of zones: st.timezones() spends most of a run probing transitions.
zone_st = st.sampled_from(
    [
        UTC,
        dt.timezone(dt.timedelta(hours=14)),
        dt.timezone(-dt.timedelta(hours=12, minutes=30)),
        ZoneInfo("America/New_York"),
        ZoneInfo("Asia/Kolkata"),
        ZoneInfo("Australia/Lord_Howe"),
        ZoneInfo("Europe/Berlin"),
    ]
)
aware_st = st.builds(
    lambda moment, zone, fold: moment.replace(tzinfo=zone, fold=fold),
    st.datetimes(),
    zone_st,
    st.integers(0, 1),
)
# The ends of the datetime range overflow when converted to UTC from some zones.
edge_datetime_st = st.builds(
    lambda moment, zone: moment.replace(tzinfo=zone),
    st.sampled_from([dt.datetime.min, dt.datetime.max]),
    st.one_of(st.none(), zone_st),
)
datetime_st = st.one_of(st.datetimes(), aware_st, edge_datetime_st)
scalar_st = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.builds(pow, st.just(10), st.integers(300, 400)),
    st.builds(pow, st.just(-10), st.integers(300, 400)),
    st.builds(pow, st.just(10), st.integers(4300, 4400)),
    st.sampled_from([2**63, 2**64]),
    st.floats(),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -0.0]),
    text_st,
    datetime_st,
    datetime_st.map(lambda value: value.isoformat()),
    st.dates(),
    st.integers(min_value=-(10**13), max_value=10**13),
)
value_st = st.recursive(
    scalar_st,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(names_st, children, max_size=5),
        st.dictionaries(st.one_of(st.integers(), text_st), children, max_size=3),
    ),
    max_leaves=8,
)
# Fields of the state itself: scalars and shallow containers keep generation fast.
field_st = st.one_of(
    scalar_st,
    st.lists(scalar_st, max_size=3),
    st.dictionaries(names_st, scalar_st, max_size=3),
)
entry_data_st = st.dictionaries(names_st, value_st, max_size=8)
entry_st = st.builds(states.build, st.sampled_from(states.SHAPES), entry_data_st)
map_key_st = st.one_of(st.text(max_size=10), st.integers(), st.none())
container_st = st.one_of(
    st.dictionaries(map_key_st, entry_st, max_size=3),
    st.lists(entry_st, max_size=3),
    field_st,
)
totals_st = st.one_of(
    field_st,
    st.builds(
        states.build,
        st.sampled_from(states.SHAPES),
        st.fixed_dictionaries({}, optional=dict.fromkeys(_reading.TOTALS_KEYS, field_st)),
    ),
)
settings_st = st.builds(
    states.build,
    st.sampled_from(states.SHAPES),
    st.fixed_dictionaries(
        {},
        optional={
            "polling": st.fixed_dictionaries({"interval_ms": field_st}),
            "agent": st.fixed_dictionaries({"max_concurrent_agents": field_st}),
            "poll_interval_ms": field_st,
        },
    ),
)
state_data_st = st.fixed_dictionaries(
    {"running": container_st},
    optional={
        "retry_attempts": container_st,
        "retry_entries": container_st,
        "retry_queue": container_st,
        "completed": st.one_of(st.sets(st.text(max_size=5), max_size=5), field_st),
        "codex_totals": totals_st,
        "agent_totals": totals_st,
        "codex_rate_limits": value_st,
        "agent_rate_limits": value_st,
        "rate_limits": value_st,
        "poll_interval_ms": field_st,
        "max_concurrent_agents": field_st,
        "settings": settings_st,
        "config": settings_st,
        "poll_check_in_progress": field_st,
        "next_poll_due_at_ms": field_st,
    },
)
state_st = st.builds(
    lambda shape, data: states.build(shape, data, nested=False),
    st.sampled_from(["dataclass", "slots", "plain", "dict", "model"]),
    state_data_st,
)

SHARED_GENERATOR = SnapshotGenerator()


def _assert_count(value: Any) -> None:
    assert type(value) is int
    assert value >= 0
    assert value <= _reading.INT64_MAX


def _check_snapshot(snapshot: SystemSnapshot) -> None:
    encoded = json.dumps(snapshot.to_dict(), allow_nan=False)
    # Valid UTF-8 too: no lone surrogates reach the snapshot.
    json.dumps(snapshot.to_dict(), allow_nan=False, ensure_ascii=False).encode("utf-8")
    assert_rows_documented(snapshot)

    for row in snapshot.running:
        assert type(row["issue_id"]) is str
        assert type(row["identifier"]) is str
        assert type(row["started_at"]) is str
        assert row["started_at"] == "" or ISO_UTC.match(row["started_at"]), row["started_at"]
        for name in (
            "turn_count",
            "codex_total_tokens",
            "codex_input_tokens",
            "codex_output_tokens",
        ):
            _assert_count(row[name])
        for name in ("last_codex_event", "session_id", "worker_host", "workspace_path"):
            assert row[name] is None or type(row[name]) is str
    for row in snapshot.retrying:
        assert type(row["issue_id"]) is str
        assert type(row["identifier"]) is str
        _assert_count(row["attempt"])
        assert type(row["delay_type"]) is str

    assert list(snapshot.codex_totals) == list(_reading.TOTALS_KEYS)
    for name in ("input_tokens", "output_tokens", "total_tokens"):
        _assert_count(snapshot.codex_totals[name])
    _assert_count(snapshot.completed_count)
    _assert_count(snapshot.poll_interval_ms)
    _assert_count(snapshot.max_concurrent_agents)
    assert type(snapshot.poll_check_in_progress) is bool
    assert snapshot.next_poll_due_at_ms is None or type(snapshot.next_poll_due_at_ms) is float
    assert snapshot.rate_limits is None or isinstance(snapshot.rate_limits, dict)

    report = ValueReport()
    assert SystemSnapshot.from_dict(json.loads(encoded), report=report) == snapshot
    assert report.counts() == {}


@given(state_st)
def test_generate_any_state_serialises(state: Any) -> None:
    _check_snapshot(SnapshotGenerator().generate(state))


@given(st.lists(state_st, min_size=1, max_size=2))
def test_generate_shared_generator_any_states(state_list: list[Any]) -> None:
    for state in state_list:
        _check_snapshot(SHARED_GENERATOR.generate(state))


@given(st.dictionaries(map_key_st, entry_st, max_size=5))
def test_generate_any_entries(entries: dict[Any, Any]) -> None:
    snapshot = SnapshotGenerator().generate({"running": entries, "retry_attempts": entries})
    assert len(snapshot.running) == len(snapshot.retrying) == len(entries)
    _check_snapshot(snapshot)


json_st = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=10),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(names_st, children, max_size=5)
    ),
    max_leaves=15,
)
body_st = st.fixed_dictionaries(
    {},
    optional={
        "running": st.one_of(
            st.lists(st.dictionaries(names_st, json_st, max_size=8), max_size=3), json_st
        ),
        "retrying": st.one_of(
            st.lists(st.dictionaries(names_st, json_st, max_size=8), max_size=3), json_st
        ),
        "codex_totals": json_st,
        "agent_totals": json_st,
        "rate_limits": json_st,
        "completed_count": json_st,
        "poll_interval_ms": json_st,
        "max_concurrent_agents": json_st,
        "poll_check_in_progress": json_st,
        "next_poll_due_at_ms": json_st,
        "generated_at": st.one_of(json_st, datetime_st.map(lambda value: value.isoformat())),
        "workflow": json_st,
    },
)


@given(body_st)
def test_from_dict_any_body(body: dict[str, Any]) -> None:
    try:
        snapshot = SystemSnapshot.from_dict(body, report=ValueReport())
    except ValueError:
        assert "running" not in body
        assert isinstance(body.get("error"), dict)
        return
    _check_snapshot(snapshot)
