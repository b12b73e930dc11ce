"""Runtime snapshots of a Symphony orchestrator.

A snapshot is the complete, JSON-serialisable picture of the orchestrator's
runtime state for the HTTP API and for debugging: the running workers, the retry
queue, token totals and the configuration that shapes them.  This module imports
nothing of OpenTelemetry; :mod:`symphony_otel.recorder` builds on it.

Usage::

    import json
    from symphony_otel import SnapshotGenerator

    snapshot = SnapshotGenerator().generate(orchestrator.state)
    print(json.dumps(snapshot.to_dict(), indent=2))
"""

from __future__ import annotations

import datetime as _dt
import logging
import sys
import time as _time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from symphony_otel import _compiled, _reading
from symphony_otel._reading import MISSING, ValueReport

__all__ = ["RetryEntry", "RunningEntry", "SnapshotGenerator", "SystemSnapshot"]

_logger = logging.getLogger(__name__)


# The text of the latest whole second that _utc_now_iso() formatted.
_now_second: tuple[int, str] = (-1, "")


def _utc_now_iso() -> str:
    """Return the current time with millisecond precision, as ``iso_utc_text`` writes it.

    That is the form that ``from_dict()`` reads back unchanged: no fraction at
    a whole second, otherwise three digits.
    """
    global _now_second
    second, nanoseconds = divmod(_time.time_ns(), 1_000_000_000)
    cached = _now_second
    if cached[0] != second:
        cached = (second, _time.strftime("%Y-%m-%dT%H:%M:%S", _time.gmtime(second)))
        _now_second = cached
    milliseconds = nanoseconds // 1_000_000
    return f"{cached[1]}.{milliseconds:03d}Z" if milliseconds else cached[1] + "Z"


@dataclass
class RunningEntry:
    """Summary of one running worker."""

    issue_id: str
    identifier: str
    turn_count: int = 0
    codex_total_tokens: int = 0
    last_codex_event: str | None = None
    started_at: str = ""
    session_id: str | None = None
    codex_input_tokens: int = 0
    codex_output_tokens: int = 0
    worker_host: str | None = None
    workspace_path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Convert to a dict."""
        return {
            "issue_id": self.issue_id,
            "identifier": self.identifier,
            "turn_count": self.turn_count,
            "codex_total_tokens": self.codex_total_tokens,
            "last_codex_event": self.last_codex_event,
            "started_at": self.started_at,
            "session_id": self.session_id,
            "codex_input_tokens": self.codex_input_tokens,
            "codex_output_tokens": self.codex_output_tokens,
            "worker_host": self.worker_host,
            "workspace_path": self.workspace_path,
        }


@dataclass
class RetryEntry:
    """One entry of the retry queue."""

    issue_id: str
    identifier: str
    attempt: int
    delay_type: str = "failure"
    error: str | None = None
    worker_host: str | None = None
    workspace_path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Convert to a dict."""
        return {
            "issue_id": self.issue_id,
            "identifier": self.identifier,
            "attempt": self.attempt,
            "delay_type": self.delay_type,
            "error": self.error,
            "worker_host": self.worker_host,
            "workspace_path": self.workspace_path,
        }


@dataclass
class SystemSnapshot:
    """Runtime snapshot of the system.

    Attributes:
        running: One :meth:`RunningEntry.to_dict` row per running worker.
        retrying: One :meth:`RetryEntry.to_dict` row per retry-queue entry.
        completed_count: Number of completed issues.
        codex_totals: Token usage and running-time totals: ``input_tokens``,
            ``output_tokens``, ``total_tokens`` and ``seconds_running``.
        rate_limits: Current rate-limit state as the agent reported it, or None.
        poll_interval_ms: Current poll interval in milliseconds (0 when unknown).
        max_concurrent_agents: Maximum number of concurrent agents (0 when unknown).
        poll_check_in_progress: Whether a poll check is running now.
        next_poll_due_at_ms: When the next poll is due, in milliseconds of the
            orchestrator's monotonic clock: comparable only with that clock's
            other readings, never a wall-clock time.
        generated_at: When the snapshot was generated (ISO 8601 UTC).
    """

    running: list[dict[str, Any]]
    retrying: list[dict[str, Any]]
    completed_count: int
    codex_totals: dict[str, Any]
    rate_limits: dict[str, Any] | None
    poll_interval_ms: int
    max_concurrent_agents: int
    poll_check_in_progress: bool = False
    next_poll_due_at_ms: float | None = None
    generated_at: str = field(default_factory=_utc_now_iso)

    def to_dict(self) -> dict[str, Any]:
        """Convert to a dict (for JSON serialisation).

        The rows and the totals are copied, so changing the result leaves the
        snapshot as it was.
        """
        rate_limits = self.rate_limits
        return {
            "running": [dict(row) for row in self.running],
            "retrying": [dict(row) for row in self.retrying],
            "completed_count": self.completed_count,
            "codex_totals": dict(self.codex_totals),
            "rate_limits": _copy_json(rate_limits) if rate_limits is not None else None,
            "poll_interval_ms": self.poll_interval_ms,
            "max_concurrent_agents": self.max_concurrent_agents,
            "poll_check_in_progress": self.poll_check_in_progress,
            "next_poll_due_at_ms": self.next_poll_due_at_ms,
            "generated_at": self.generated_at,
        }

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, report: ValueReport | None = None
    ) -> SystemSnapshot:
        """Build a snapshot from a dict, the inverse of :meth:`to_dict`.

        Also reads the ``/api/v1/state`` bodies of Symphony implementations:
        rows naming the issue ``issue_identifier``, tokens nested under
        ``tokens``, ``last_event``, totals under ``agent_totals``, and the
        concurrency limit under ``workflow.agent``.  Keys that the snapshot does
        not model (``counts``, ``blocked``, ``due_at``, ``issue_url`` and the
        like) are ignored.  Invalid values take their defaults, as in
        :meth:`SnapshotGenerator.generate`.

        Args:
            data: A mapping, such as the parsed JSON of ``to_dict()`` or of an
                ``/api/v1/state`` response.
            report: Where invalid values are counted; a module-wide report when
                omitted.

        Returns:
            A new snapshot.

        Raises:
            TypeError: If ``data`` is not a mapping.
            ValueError: If ``data`` is the error envelope of a failed snapshot
                (``{"error": {"code": ...}}`` without ``running``).
        """
        if not isinstance(data, Mapping):
            raise TypeError(f"snapshot data must be a mapping, got {type(data).__name__}")
        if "running" not in data and isinstance(data.get("error"), Mapping):
            code = data["error"].get("code")
            raise ValueError(f"the body is an error envelope, not a snapshot (code {code!r})")
        return _BODY_READER.read(data, report or _FROM_DICT_REPORT)


def _copy_json(value: Any) -> Any:
    """Copy JSON-compatible data (dicts, lists and scalars) built by this package."""
    if type(value) is dict:
        return {
            key: _copy_json(item) if type(item) is dict or type(item) is list else item
            for key, item in value.items()
        }
    if type(value) is list:
        return [_copy_json(item) if type(item) is dict or type(item) is list else item for item in value]
    return value


RUNNING_FIELDS = tuple(f.name for f in fields(RunningEntry))
RETRY_FIELDS = tuple(f.name for f in fields(RetryEntry))


_UNSEEN: Any = object()
# The sources a snapshot was copied from: the generator's own copies of its running
# rows, of its retrying rows and of its rate limits (see SnapshotGenerator._generate).
Origins = tuple[list[dict[str, Any]] | None, list[dict[str, Any]] | None, object | None]
_SIZED = frozenset({set, frozenset, list, tuple, dict})
_CONTAINERS = frozenset({dict, list})
_EXACT_FLOAT = 2**53  # ints up to this size are floats exactly
_FLOAT_MAX = sys.float_info.max


class SnapshotGenerator:
    """Builds a snapshot from an ``OrchestratorState``.

    The generator takes the orchestrator's runtime state and projects it into a
    JSON-serialisable :class:`SystemSnapshot` for the HTTP API and the
    dashboard.  It reads the documented state exactly and the state shapes of
    other Symphony ports leniently; see :meth:`generate`.

    A generator is safe to use from several threads at once.
    """

    def __init__(self) -> None:
        self.value_report = ValueReport()
        self._running_plans = _reading.PlanCache(_reading.RUNNING_PATHS)
        self._retry_plans = _reading.PlanCache(_reading.RETRY_PATHS)
        self._running = _RowSource(
            "running", self._running_plans, _compiled.RUNNING_KINDS, self._running_row, self.value_report
        )
        self._retrying = _RowSource(
            "retry_attempts", self._retry_plans, _compiled.RETRY_KINDS, self._retry_row, self.value_report
        )
        self._state_readers: dict[type, _compiled.StateReader | None] = {}
        self._totals_readers: dict[type, _compiled.TotalsReader | None] = {}
        # The latest rate limits copied, and the keys of their containers (None when nested deeper).
        self._rate_limits_copy: tuple[dict[str, Any], tuple[str, ...] | None] | None = None

    def generate(self, state: Any) -> SystemSnapshot:
        """Generate a system snapshot from the orchestrator state.

        Args:
            state: The orchestrator's runtime state.  The documented shape has
                these attributes (an object's attributes or a mapping's keys):

                - ``running: dict[str, RunningEntry]``: the running workers
                - ``retry_attempts: dict[str, RetryEntry]``: the retry queue
                - ``completed: set[str]``: ids of the completed issues
                - ``codex_totals: TokenUsage``: token usage totals
                - ``codex_rate_limits: dict | None``: rate limits
                - ``poll_interval_ms: int``: the poll interval
                - ``max_concurrent_agents: int``: the maximum concurrency

                Ports that name these ``retry_entries``, ``retry_queue``,
                ``agent_totals``, ``agent_rate_limits`` or ``rate_limits``, or
                keep the poll interval and concurrency under ``settings`` or
                ``config``, are read too.  A missing attribute takes its default.

        Returns:
            A new :class:`SystemSnapshot`.  Invalid values take their field's
            default and are counted in :attr:`value_report`.

        Raises:
            TypeError: If ``state`` is None or has none of the state's attributes.
        """
        return self._generate(state)[0]

    def _generate(self, state: Any) -> tuple[SystemSnapshot, Origins]:
        """Generate a snapshot, and what the generator copied its rows and rate limits from.

        Those are the generator's own copies, which it never changes: a list of
        running rows, a list of retrying rows and an object that represents the
        rate limits.  Each is the same object again as long as its part of the
        state does not change, so a subclass can reuse the work it did for the
        previous snapshot.  Each is None when there is no such copy (some rows
        took the lenient path, or there are no rate limits).
        """
        report = self.value_report
        (
            running_map,
            retry_map,
            completed,
            totals,
            rate_limits,
            poll_interval,
            max_agents,
            in_progress,
            next_due,
        ) = self._read_state(state)
        running, running_origins = self._running.read(running_map)
        retrying, retry_origins = self._retrying.read(retry_map)
        rate_limits_copy, rate_limits_origin = self._copy_rate_limits(rate_limits, report)

        # Plain valid values are taken as they are, and anything else goes to the
        # lenient readers, which convert it or count it as invalid.
        if type(completed) in _SIZED:
            completed_count = len(completed)
        else:
            completed_count = _reading.count_of(completed, "completed", report)
        if not (type(poll_interval) is int and 0 <= poll_interval <= _reading.INT64_MAX):
            poll_interval = _reading.read_count(poll_interval, "poll_interval_ms", report)
        if not (type(max_agents) is int and 0 <= max_agents <= _reading.INT64_MAX):
            max_agents = _reading.read_count(max_agents, "max_concurrent_agents", report)
        if not (in_progress is True or in_progress is False):
            in_progress = _reading.read_flag(in_progress, "poll_check_in_progress", report)
        if type(next_due) is int and -_EXACT_FLOAT <= next_due <= _EXACT_FLOAT:
            next_due = float(next_due)
        elif not (type(next_due) is float and -_FLOAT_MAX <= next_due <= _FLOAT_MAX):  # NaN, infinite, other
            next_due = _reading.read_optional_number(next_due, "next_poll_due_at_ms", report)

        snapshot = SystemSnapshot(
            running,
            retrying,
            completed_count,
            self._read_totals(totals, report),
            rate_limits_copy,
            poll_interval,
            max_agents,
            in_progress,
            next_due,
            _utc_now_iso(),
        )
        return snapshot, (running_origins, retry_origins, rate_limits_origin)

    @staticmethod
    def _format_datetime(value: Any) -> str | None:
        """Format a date-time value as an ISO 8601 string.

        Aware datetimes are converted to UTC and naive ones are taken as UTC;
        ISO 8601 strings and Unix epoch numbers (seconds, or milliseconds past
        1e11) are read too.  The result ends in ``Z``.

        Returns:
            The formatted time, or None for None and values that are not times.
        """
        return _reading.format_datetime(value)

    @staticmethod
    def _extract_codex_totals(state: Any) -> dict[str, Any]:
        """Extract the token totals from the orchestrator state.

        Reads ``codex_totals`` or ``agent_totals`` as a mapping, a dataclass, a
        plain object, a pydantic-style model or an object with ``to_dict()``.

        Returns:
            ``input_tokens``, ``output_tokens``, ``total_tokens`` (input plus
            output when the state has none) and ``seconds_running`` (0 when
            absent).
        """
        return _read_totals(
            _reading.read_state_value(state, _reading.STATE_TOTALS), _FROM_DICT_REPORT
        )

    # --- Internals -------------------------------------------------------------

    def _read_state(self, state: Any) -> tuple[Any, ...]:
        """Read the raw value of each of ``_compiled.STATE_GROUPS`` (``MISSING`` when absent)."""
        cls = type(state)
        reader = self._state_readers.get(cls, _UNSEEN)
        if reader is _UNSEEN:
            reader = _compiled.compile_state_reader(state) if state is not None else None
            if len(self._state_readers) < 64:
                self._state_readers[cls] = reader
        if reader is not None:
            try:
                return reader(state)
            except Exception:  # a nested object is missing, or a property raised
                pass
        _check_state(state)
        return tuple(_reading.read_state_value(state, group) for group in _compiled.STATE_GROUPS)

    def _read_totals(self, totals: Any, report: ValueReport) -> dict[str, Any]:
        cls = type(totals)
        reader = self._totals_readers.get(cls, _UNSEEN)
        if reader is _UNSEEN:
            reader = _compiled.compile_totals_reader(totals)
            if len(self._totals_readers) < 64:
                self._totals_readers[cls] = reader
        if reader is not None:
            try:
                read = reader(totals)
            except Exception:  # a property of the host raised: the lenient reader reports it
                read = None
            if read is not None:
                return read
        return _read_totals(totals, report)

    def _copy_rate_limits(self, value: Any, report: ValueReport) -> tuple[dict[str, Any] | None, object | None]:
        """Copy the rate limits, reusing the previous copy while the payload equals it.

        The payload changes only when the agent reports new limits, while a
        snapshot is taken on every poll.  Equality is Python's, so numbers that
        compare equal (``50`` and ``50.0``) keep the previous copy's type.

        Returns:
            The copy, and the generator's own record it was copied from (see
            :meth:`_generate`), or None for either.
        """
        if value is MISSING or value is None:
            return None, None
        previous = self._rate_limits_copy
        if previous is not None:
            try:
                if value == previous[0]:
                    shallow = previous[1]
                    if shallow is None:
                        return _copy_json(previous[0]), previous
                    copied = previous[0].copy()
                    for key in shallow:
                        copied[key] = copied[key].copy()
                    return copied, previous
            except Exception:  # a host value's __eq__ raised: copy it afresh
                pass
        copied = _copy_rate_limits(value, report)
        if copied is None:
            self._rate_limits_copy = None
            return None, None
        # Agents report windows two levels deep, where copying the payload and
        # each of its containers will do; deeper ones are copied whole.
        containers = tuple(key for key, item in copied.items() if type(item) in _CONTAINERS)
        deeper = any(
            type(inner) in _CONTAINERS
            for key in containers
            for inner in (copied[key].values() if type(copied[key]) is dict else copied[key])
        )
        record = (_copy_json(copied), None if deeper else containers)
        self._rate_limits_copy = record
        return copied, record

    def _extract_totals(self, state: Any, report: ValueReport) -> dict[str, Any]:
        return _read_totals(_reading.read_state_value(state, _reading.STATE_TOTALS), report)

    def _running_row(self, entry: Any, key: Any) -> dict[str, Any]:
        return _running_row(self._running_plans.plan_for(entry).read(entry), key, self.value_report)

    def _retry_row(self, entry: Any, key: Any) -> dict[str, Any]:
        return _retry_row(self._retry_plans.plan_for(entry).read(entry), key, self.value_report)


class _RowSource:
    """Reads one kind of row (running or retrying) through compiled readers, by entry class."""

    __slots__ = ("_field", "_kinds", "_last", "_plans", "_readers", "_report", "_slow_row")

    def __init__(
        self,
        field: str,
        plans: _reading.PlanCache,
        kinds: Mapping[str, str],
        slow_row: _compiled.SlowRow,
        report: ValueReport,
    ) -> None:
        self._field = field
        self._plans = plans
        self._kinds = kinds
        self._slow_row = slow_row
        self._report = report
        self._readers: dict[type, _compiled.RowsReader | None] = {}
        # The reader that took every row of the latest snapshot.
        self._last: _compiled.RowsReader | None = None

    def read(self, container: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
        """Read the rows of ``container`` through the reader of its first entry's class.

        Returns:
            The rows, and the reader's own copies of them (see
            ``SnapshotGenerator._generate``).

        A plain dict is read in place.  When the host changes its size meanwhile
        (a ``RuntimeError``), it is read again from a copy, as any other
        container is.
        """
        last = self._last
        if last is not None and type(container) is dict:
            # The reader that read every row of the previous snapshot: no need
            # to look up the class of the first entry.
            try:
                rows, own_rows = last(container.items(), container.values())
            except RuntimeError:  # the host changed the dict while it was read
                pass
            else:
                if own_rows is None:  # some rows took the lenient path: look the class up next time
                    self._last = None
                return rows, own_rows
        items: Any = None
        if type(container) is dict:
            if not container:
                return [], None
            items = container.items()
            entries: Any = container.values()
        else:
            items = _reading.items_of(container, self._field, self._report)
            if not items:
                return [], None
            entries = [entry for _, entry in items]
        for _ in range(2):
            try:
                sample = next(iter(items), None)
                if sample is None:  # emptied meanwhile
                    return [], None
                reader = self._reader_for(sample[1])
                if reader is None:
                    return [self._slow_row(entry, key) for key, entry in items], None
                rows, own_rows = reader(items, entries)
                if own_rows is not None:
                    self._last = reader
                return rows, own_rows
            except RuntimeError:  # the host changed the dict while it was read
                items = _reading.items_of(container, self._field, self._report)
                if not items:
                    return [], None
                entries = [entry for _, entry in items]
        return [], None

    def _reader_for(self, sample: Any) -> _compiled.RowsReader | None:
        cls = type(sample)
        reader = self._readers.get(cls, _UNSEEN)
        if reader is _UNSEEN:
            reader = _compiled.compile_rows_reader(
                sample, self._plans.plan_for(sample), self._kinds, self._slow_row
            )
            if len(self._readers) < 64:
                self._readers[cls] = reader
        return reader


def _check_state(state: Any) -> None:
    if state is None:
        raise TypeError(
            "state must be an orchestrator state, got None; expected an object with "
            "the attributes running, retry_attempts, completed, codex_totals, "
            "codex_rate_limits, poll_interval_ms and max_concurrent_agents"
        )
    for name in _reading.STATE_MARKERS:
        if _reading.get_path(state, (name,)) is not MISSING:
            return
    raise TypeError(
        f"state of type {type(state).__name__} has none of the orchestrator state's "
        "attributes running, retry_attempts (or retry_entries, retry_queue), completed, "
        "codex_totals (or agent_totals), codex_rate_limits (or agent_rate_limits, "
        "rate_limits), poll_interval_ms and max_concurrent_agents"
    )


def _identity(raw: dict[str, Any], key: Any, report: ValueReport) -> tuple[str, str]:
    """Read ``issue_id`` and ``identifier``, falling back on each other and the map key."""
    issue_id = _reading.read_text(raw["issue_id"], "issue_id", report)
    identifier = _reading.read_text(raw["identifier"], "identifier", report)
    key_text = _reading.key_text(key) if key is not None else None
    if issue_id is None:
        issue_id = key_text if key_text is not None else (identifier or "")
    if identifier is None:
        identifier = key_text if key_text is not None else issue_id
    return issue_id, identifier


def _running_row(raw: dict[str, Any], key: Any, report: ValueReport) -> dict[str, Any]:
    issue_id, identifier = _identity(raw, key, report)
    input_tokens = _reading.read_count(raw["codex_input_tokens"], "codex_input_tokens", report)
    output_tokens = _reading.read_count(raw["codex_output_tokens"], "codex_output_tokens", report)
    total = raw["codex_total_tokens"]
    if total is MISSING or total is None:
        total_tokens = input_tokens + output_tokens
    else:
        total_tokens = _reading.read_count(total, "codex_total_tokens", report)
    return {
        "issue_id": issue_id,
        "identifier": identifier,
        "turn_count": _reading.read_count(raw["turn_count"], "turn_count", report),
        "codex_total_tokens": total_tokens,
        "last_codex_event": _reading.read_text(raw["last_codex_event"], "last_codex_event", report),
        "started_at": _reading.read_time(raw["started_at"], "started_at", report) or "",
        "session_id": _reading.read_text(raw["session_id"], "session_id", report),
        "codex_input_tokens": input_tokens,
        "codex_output_tokens": output_tokens,
        "worker_host": _reading.read_text(raw["worker_host"], "worker_host", report),
        "workspace_path": _reading.read_text(raw["workspace_path"], "workspace_path", report),
    }


def _retry_row(raw: dict[str, Any], key: Any, report: ValueReport) -> dict[str, Any]:
    issue_id, identifier = _identity(raw, key, report)
    error = _reading.read_text(raw["error"], "error", report)
    delay_type = _reading.read_text(raw["delay_type"], "delay_type", report)
    if delay_type is None:
        # Symphony schedules a continuation retry, with no error, after a worker
        # exits normally; the API bodies of the Elixir reference leave the type out.
        delay_type = "continuation" if raw["delay_type"] is MISSING and error is None else "failure"
    return {
        "issue_id": issue_id,
        "identifier": identifier,
        "attempt": _reading.read_count(raw["attempt"], "attempt", report),
        "delay_type": delay_type,
        "error": error,
        "worker_host": _reading.read_text(raw["worker_host"], "worker_host", report),
        "workspace_path": _reading.read_text(raw["workspace_path"], "workspace_path", report),
    }


def _read_totals(totals: Any, report: ValueReport) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if totals is not MISSING and totals is not None:
        source = totals
        if not isinstance(totals, Mapping):
            present = [name for name in _reading.TOTALS_KEYS if _reading.get_path(totals, (name,)) is not MISSING]
            if not present:
                exported = _reading.export_model(totals)
                if exported is MISSING:
                    report.invalid("codex_totals", totals, "must be a mapping or hold token counts")
                    source = {}
                else:
                    source = exported
        for name in _reading.TOTALS_KEYS:
            values[name] = _reading.get_path(source, (name,))
    input_tokens = _reading.read_count(values.get("input_tokens"), "codex_totals.input_tokens", report)
    output_tokens = _reading.read_count(values.get("output_tokens"), "codex_totals.output_tokens", report)
    total = values.get("total_tokens", MISSING)
    if total is MISSING or total is None:
        total_tokens = input_tokens + output_tokens
    else:
        total_tokens = _reading.read_count(total, "codex_totals.total_tokens", report)
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "total_tokens": total_tokens,
        "seconds_running": _reading.read_number(
            values.get("seconds_running"), "codex_totals.seconds_running", report
        ),
    }


def _copy_rate_limits(value: Any, report: ValueReport) -> dict[str, Any] | None:
    if value is MISSING or value is None:
        return None
    copied = _reading.plain_copy(value, "rate_limits", report)
    if isinstance(copied, dict):
        return copied
    report.invalid("rate_limits", value, "must be a mapping")
    return None


class _BodyReader:
    """Reads snapshot dicts and ``/api/v1/state`` bodies (rows are always mappings)."""

    def __init__(self) -> None:
        self._running_plan = _reading.EntryPlan({}, _reading.RUNNING_PATHS)
        self._retry_plan = _reading.EntryPlan({}, _reading.RETRY_PATHS)

    def read(self, data: Mapping[str, Any], report: ValueReport) -> SystemSnapshot:
        running = [
            _running_row(self._running_plan.read(row), None, report)
            for row in _rows(data.get("running"), "running", report)
        ]
        retrying = [
            _retry_row(self._retry_plan.read(row), None, report)
            for row in _rows(data.get("retrying"), "retrying", report)
        ]
        totals = data.get("codex_totals", data.get("agent_totals"))
        max_agents = _reading.first_present(
            data,
            _reading.split_paths(("max_concurrent_agents", "workflow.agent.max_concurrent_agents")),
        )
        generated_at = _reading.read_time(data.get("generated_at"), "generated_at", report)
        completed = data.get("completed_count", data.get("completed"))
        return SystemSnapshot(
            running=running,
            retrying=retrying,
            completed_count=_reading.count_of(completed, "completed_count", report),
            codex_totals=_read_totals(totals, report),
            rate_limits=_copy_rate_limits(data.get("rate_limits"), report),
            poll_interval_ms=_reading.read_count(
                data.get("poll_interval_ms"), "poll_interval_ms", report
            ),
            max_concurrent_agents=_reading.read_count(max_agents, "max_concurrent_agents", report),
            poll_check_in_progress=_reading.read_flag(
                data.get("poll_check_in_progress"), "poll_check_in_progress", report
            ),
            next_poll_due_at_ms=_reading.read_optional_number(
                data.get("next_poll_due_at_ms"), "next_poll_due_at_ms", report
            ),
            generated_at=generated_at or _utc_now_iso(),
        )


def _rows(value: Any, field: str, report: ValueReport) -> list[Mapping[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list):
        report.invalid(field, value, "must be a list")
        return []
    rows = []
    for row in value:
        if isinstance(row, Mapping):
            rows.append(row)
        else:
            report.invalid(field, row, "rows must be objects")
    return rows


_BODY_READER = _BodyReader()
_FROM_DICT_REPORT = ValueReport()
