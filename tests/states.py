"""Host-side orchestrator states for the snapshot tests.

``code_factory_state`` rebuilds a recorded code-factory-agent 0.8.0 state into
objects shaped like that port's classes.  Entries and issues are dataclasses,
times are real ``datetime`` values, and id collections are sets.  The actor has
a ``settings`` object, and each entry's worker has a lock and a task stand-in
that cannot be copied.  These classes log every instance attribute read inside
``record_reads()``, so a test can show that the snapshot code never touched
``__dict__`` or a copy hook.

``build`` turns a plain dict into one of the object shapes that other ports
use: dataclasses, slotted classes, plain classes, dicts, pydantic-style models
and objects that expose their data only through ``to_dict()``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import keyword
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ClassVar

# --- Attribute-read logging ---------------------------------------------------

_READ_LOGS: list[list[tuple[str, str]]] = []

# Names whose read on a host instance means the object was copied or dumped
# wholesale (vars(), copy.deepcopy(), dataclasses.asdict(), pickling).
WHOLESALE_READS = frozenset(
    {
        "__dict__",
        "__deepcopy__",
        "__copy__",
        "__reduce__",
        "__reduce_ex__",
        "__getstate__",
        "__dataclass_fields__",
    }
)


class Watched:
    """Mixin that logs instance attribute reads while ``record_reads()`` is active."""

    __slots__ = ()

    def __getattribute__(self, name: str) -> Any:
        if _READ_LOGS:
            _READ_LOGS[-1].append((type(self).__name__, name))
        return object.__getattribute__(self, name)


@contextmanager
def record_reads() -> Iterator[list[tuple[str, str]]]:
    """Log ``(class name, attribute name)`` for every read on a ``Watched`` instance."""
    log: list[tuple[str, str]] = []
    _READ_LOGS.append(log)
    try:
        yield log
    finally:
        _READ_LOGS.pop()


# --- Objects that must never be copied ----------------------------------------


class PendingTask(Watched):
    """Stand-in for a running ``asyncio.Task``: copying or pickling it raises."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def done(self) -> bool:
        """Report the task as still running."""
        return False

    def __reduce_ex__(self, protocol: Any) -> Any:
        raise TypeError(f"cannot copy or pickle the running task {self.name!r}")

    def __copy__(self) -> Any:
        raise TypeError(f"cannot copy the running task {self.name!r}")

    def __deepcopy__(self, memo: Any) -> Any:
        raise TypeError(f"cannot copy the running task {self.name!r}")


class DummyWorker(Watched):
    """The worker handle a code-factory entry holds: a lock and a running task."""

    def __init__(self, issue_id: str) -> None:
        self.lock = threading.Lock()
        self.task = PendingTask(f"worker-{issue_id}")


# --- code-factory-agent 0.8.0 classes ------------------------------------------


@dataclasses.dataclass(eq=False)
class Issue(Watched):
    """An issue in code-factory's tracker layer."""

    id: str
    identifier: str
    title: str
    description: str | None
    priority: int | None
    state: str
    branch_name: str | None
    url: str | None
    assignee_id: str | None
    blocked_by: list[Any]
    labels: list[str]
    assigned_to_worker: bool
    created_at: dt.datetime | None
    updated_at: dt.datetime | None


@dataclasses.dataclass(eq=False)
class RunningEntry(Watched):
    """One running worker, with code-factory's ``agent_*`` token names."""

    issue_id: str
    identifier: str | None
    issue: Issue
    workspace_path: str
    worker: Any
    started_at: dt.datetime
    retry_attempt: int
    repair_attempts: int
    session_id: str | None
    thread_id: str | None
    turn_id: str | None
    last_agent_message: Any
    last_agent_timestamp: dt.datetime | None
    last_agent_event: str | None
    agent_runtime_pid: str | None
    agent_input_tokens: int
    agent_output_tokens: int
    agent_total_tokens: int
    agent_last_reported_input_tokens: int
    agent_last_reported_output_tokens: int
    agent_last_reported_total_tokens: int
    turn_count: int
    activity_phase: str
    stopping: bool
    stop_requested_at: dt.datetime | None
    cleanup_workspace: bool
    last_stop_reason: str | None
    post_exit_retry_attempt: int | None
    post_exit_retry_error: str | None
    workpad_path: str | None
    workpad_last_synced_hash: str | None
    workpad_watch_task: Any
    workpad_debounce_task: Any
    workpad_sync_task: Any


@dataclasses.dataclass(eq=False)
class RetryEntry(Watched):
    """One retry-queue entry; ``due_at_ms`` is on the orchestrator's monotonic clock."""

    issue_id: str
    identifier: str | None
    attempt: int
    due_at_ms: int
    token: str
    error: str | None
    workspace_path: str | None
    state_name: str | None
    mode: str


@dataclasses.dataclass
class PollingSettings:
    """The ``settings.polling`` section."""

    interval_ms: int


@dataclasses.dataclass
class AgentSettings:
    """The ``settings.agent`` section."""

    max_concurrent_agents: int


@dataclasses.dataclass
class Settings:
    """The parts of code-factory's settings that a snapshot reads."""

    polling: PollingSettings
    agent: AgentSettings


class OrchestratorActor(Watched):
    """code-factory's orchestrator actor: its state lives in plain attributes."""

    def __init__(
        self,
        settings: Settings,
        running: dict[str, RunningEntry],
        retry_entries: dict[str, RetryEntry],
        completed: set[str],
        claimed: set[str],
        agent_totals: dict[str, int],
        agent_rate_limits: dict[str, Any] | None,
        next_poll_due_at_ms: int,
        poll_check_in_progress: bool,
    ) -> None:
        self.settings = settings
        self.running = running
        self.claimed = claimed
        self.retry_entries = retry_entries
        self.completed = completed
        self.agent_totals = agent_totals
        self.agent_rate_limits = agent_rate_limits
        self.workflow_reload_error: str | None = None
        self.next_poll_due_at_ms = next_poll_due_at_ms
        self.poll_run_due_at_ms: int | None = None
        self.poll_check_in_progress = poll_check_in_progress
        self._lock = threading.Lock()
        self._poll_task = PendingTask("poll-loop")


_CLASSES_BY_TYPE_NAME = {
    "code_factory.issues.Issue": Issue,
    "code_factory.runtime.orchestration.models.RunningEntry": RunningEntry,
    "code_factory.runtime.orchestration.models.RetryEntry": RetryEntry,
}


def decode(value: Any) -> Any:
    """Turn the fixture's JSON encoding back into Python values and port objects."""
    if isinstance(value, list):
        return [decode(item) for item in value]
    if not isinstance(value, dict):
        return value
    type_name = value.get("__type__")
    if type_name == "datetime":
        return dt.datetime.fromisoformat(value["iso"])
    if type_name == "set":
        return {decode(item) for item in value["items"]}
    fields = {key: decode(item) for key, item in value.items() if key != "__type__"}
    if type_name is None:
        return fields
    cls = _CLASSES_BY_TYPE_NAME[type_name]
    if cls is RunningEntry:
        fields["worker"] = DummyWorker(fields["issue_id"])
    return cls(**fields)


def code_factory_state(document: Mapping[str, Any]) -> OrchestratorActor:
    """Rebuild the actor of a code-factory fixture from its ``raw_state`` and ``attrs``."""
    raw = document["raw_state"]
    attrs = document["attrs"]
    settings = Settings(
        polling=PollingSettings(interval_ms=attrs["settings.polling.interval_ms"]),
        agent=AgentSettings(max_concurrent_agents=attrs["settings.agent.max_concurrent_agents"]),
    )
    return OrchestratorActor(
        settings=settings,
        running=decode(raw["running"]),
        retry_entries=decode(raw["retry_entries"]),
        completed=decode(raw["completed"]),
        claimed=decode(raw["claimed"]),
        agent_totals=decode(raw["agent_totals"]),
        agent_rate_limits=decode(raw["agent_rate_limits"]),
        next_poll_due_at_ms=raw["next_poll_due_at_ms"],
        poll_check_in_progress=raw["poll_check_in_progress"],
    )


# --- Object shapes of other ports ---------------------------------------------

SHAPES = ("dataclass", "slots", "plain", "dict", "model", "to_dict")


class PlainObject:
    """A class with no declared attributes; every instance may carry different ones."""


class ExportedOnly:
    """An object whose data is reachable only through ``to_dict()``."""

    __slots__ = ("_payload",)

    def __init__(self, payload: dict[str, Any]) -> None:
        self._payload = payload

    def to_dict(self) -> dict[str, Any]:
        """Return a copy of the wrapped data."""
        return dict(self._payload)


class ModelBase:
    """Base of pydantic-style models: declared ``model_fields`` and ``model_dump()``."""

    model_fields: ClassVar[dict[str, Any]] = {}

    def __init__(self, **values: Any) -> None:
        for name, value in values.items():
            setattr(self, name, value)

    def model_dump(self) -> dict[str, Any]:
        """Return the declared fields as a dict."""
        return {name: getattr(self, name) for name in self.model_fields}


_SHAPE_CLASSES: dict[tuple[str, tuple[str, ...]], type] = {}


def _is_attribute_map(value: Any) -> bool:
    # Only dicts whose keys can be attribute names become objects; others stay dicts.
    return isinstance(value, dict) and all(
        isinstance(name, str)
        and name.isascii()
        and name.isidentifier()
        and not keyword.iskeyword(name)
        and not name.startswith("_")
        for name in value
    )


def _class_for(shape: str, names: tuple[str, ...]) -> type:
    key = (shape, names)
    cls = _SHAPE_CLASSES.get(key)
    if cls is None:
        if shape == "dataclass":
            cls = dataclasses.make_dataclass("PortEntry", [(name, Any) for name in names])
        elif shape == "slots":
            cls = type("SlottedEntry", (), {"__slots__": names})
        else:
            cls = type("ModelEntry", (ModelBase,), {"model_fields": dict.fromkeys(names)})
        _SHAPE_CLASSES[key] = cls
    return cls


def build(shape: str, data: Mapping[str, Any], *, nested: bool = True) -> Any:
    """Build an object of ``shape`` holding ``data``.

    Args:
        shape: One of ``SHAPES``.
        data: Attribute names (valid identifiers) and their values.
        nested: Whether dict values whose keys are all attribute names become
            objects of the same shape too.  The ``to_dict`` shape always
            exports nested values as plain dicts.

    Returns:
        The object; the same key set of a shape always gives the same class.
    """
    if shape == "to_dict":
        return ExportedOnly(dict(data))
    values = {
        name: build(shape, value) if nested and _is_attribute_map(value) else value
        for name, value in data.items()
    }
    if shape == "dict":
        return values
    if shape == "plain":
        obj = PlainObject()
        for name, value in values.items():
            setattr(obj, name, value)
        return obj
    names = tuple(values)
    cls = _class_for(shape, names)
    if shape == "slots":
        obj = cls()
        for name, value in values.items():
            setattr(obj, name, value)
        return obj
    return cls(**values)
