"""Lenient readers for the orchestrator states and API bodies of Symphony ports.

Ports of the Symphony specification name the same facts differently
(``retry_entries`` or ``retry_attempts``, ``agent_input_tokens`` or
``tokens.input_tokens``), hold them in dataclasses, slotted classes, pydantic
models or plain dicts, and keep the issue identity on the entry, on the nested
issue or only in the map key.  The readers here resolve which name an object's
class uses once, then read every later instance of that class through the
resolved path.

A value that is present but invalid (a string where a count belongs, a negative
count, NaN, an unparseable time) is replaced by the field's default, counted in a
:class:`ValueReport`, and logged once per field name.  Nothing here calls
``vars()``, ``asdict()`` or ``copy.deepcopy`` on host objects: they may hold
tasks, locks and timer handles.
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import is_dataclass
from os import PathLike, fspath
from typing import Any, Final

_logger = logging.getLogger(__name__)

MISSING: Final = object()

# Fields of RunningEntry and RetryEntry, each with the paths that ports of the
# Symphony specification use for it, in order of preference.  A dotted path
# walks into a nested object or mapping.
RUNNING_PATHS: Final[dict[str, tuple[str, ...]]] = {
    "issue_id": ("issue_id", "issue.id"),
    "identifier": ("identifier", "issue_identifier", "issue.identifier"),
    "turn_count": ("turn_count", "turns", "live_session.turn_count"),
    "codex_total_tokens": (
        "codex_total_tokens",
        "agent_total_tokens",
        "total_tokens",
        "tokens.total_tokens",
        "live_session.codex_total_tokens",
        "live_session.total_tokens",
    ),
    "last_codex_event": (
        "last_codex_event",
        "last_agent_event",
        "last_event",
        "live_session.last_codex_event",
        "live_session.last_event",
    ),
    "started_at": ("started_at", "live_session.started_at"),
    "session_id": ("session_id", "live_session.session_id"),
    "codex_input_tokens": (
        "codex_input_tokens",
        "agent_input_tokens",
        "input_tokens",
        "tokens.input_tokens",
        "live_session.codex_input_tokens",
        "live_session.input_tokens",
    ),
    "codex_output_tokens": (
        "codex_output_tokens",
        "agent_output_tokens",
        "output_tokens",
        "tokens.output_tokens",
        "live_session.codex_output_tokens",
        "live_session.output_tokens",
    ),
    "worker_host": ("worker_host",),
    "workspace_path": ("workspace_path",),
}

RETRY_PATHS: Final[dict[str, tuple[str, ...]]] = {
    "issue_id": ("issue_id", "issue.id"),
    "identifier": ("identifier", "issue_identifier", "issue.identifier"),
    "attempt": ("attempt", "attempts"),
    "delay_type": ("delay_type", "mode", "retry_type"),
    "error": ("error", "last_error"),
    "worker_host": ("worker_host",),
    "workspace_path": ("workspace_path",),
}

# Names of the orchestrator state's attributes, documented name first.
STATE_RUNNING: Final = ("running",)
STATE_RETRYING: Final = ("retry_attempts", "retry_entries", "retry_queue")
STATE_COMPLETED: Final = ("completed",)
STATE_TOTALS: Final = ("codex_totals", "agent_totals")
STATE_RATE_LIMITS: Final = ("codex_rate_limits", "agent_rate_limits", "rate_limits")
STATE_POLL_INTERVAL: Final = (
    "poll_interval_ms",
    "settings.polling.interval_ms",
    "config.polling.interval_ms",
    "settings.poll_interval_ms",
    "config.poll_interval_ms",
)
STATE_MAX_AGENTS: Final = (
    "max_concurrent_agents",
    "settings.agent.max_concurrent_agents",
    "config.agent.max_concurrent_agents",
    "settings.max_concurrent_agents",
    "config.max_concurrent_agents",
)
STATE_POLL_IN_PROGRESS: Final = ("poll_check_in_progress",)
STATE_NEXT_POLL_DUE: Final = ("next_poll_due_at_ms",)

# The attributes whose presence makes an object an orchestrator state.
STATE_MARKERS: Final = (
    STATE_RUNNING
    + STATE_RETRYING
    + STATE_COMPLETED
    + STATE_TOTALS
    + STATE_RATE_LIMITS
    + ("poll_interval_ms", "max_concurrent_agents", "settings", "config")
)

TOTALS_KEYS: Final = ("input_tokens", "output_tokens", "total_tokens", "seconds_running")

# Bounds of the copy made of foreign free-form data such as rate-limit payloads.
_PLAIN_MAX_DEPTH: Final = 12
_PLAIN_MAX_ITEMS: Final = 1000

_EPOCH_MS_THRESHOLD: Final = 1e11  # Unix seconds reach 1e11 only in the year 5138.

# OTLP carries counts as int64, so a larger count is corrupt.  An int past 4300
# digits (sys.get_int_max_str_digits()) would even make json.dumps() raise.
INT64_MAX: Final = 2**63 - 1

_SURROGATE = re.compile("[\ud800-\udfff]")


class ValueReport:
    """Counts invalid values per field and logs the first one of each field.

    One instance belongs to one generator; it is safe to share between threads.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    def invalid(self, field: str, value: Any, rule: str) -> None:
        """Count an invalid ``value`` of ``field`` that broke ``rule``."""
        with self._lock:
            seen = self._counts.get(field, 0)
            self._counts[field] = seen + 1
        if seen == 0:
            # The value's type, never the value: it may hold a secret.
            _logger.warning(
                "Invalid value for snapshot field %s (%s, got %s); the field takes its "
                "default. Further invalid values of this field are counted, not logged.",
                field,
                rule,
                type(value).__name__,
            )

    def counts(self) -> dict[str, int]:
        """Return a copy of the invalid-value counts by field name."""
        with self._lock:
            return dict(self._counts)

    def __repr__(self) -> str:
        return f"ValueReport({self.counts()!r})"


# --- Paths ---------------------------------------------------------------------


def split_paths(paths: Iterable[str]) -> tuple[tuple[str, ...], ...]:
    """Split dotted paths into tuples of names."""
    return tuple(tuple(path.split(".")) for path in paths)


# Whether a type is a Mapping, by type: isinstance() against an abstract base
# class costs several times a dict lookup.
_IS_MAPPING: dict[type, bool] = {dict: True}


def is_mapping(obj: Any) -> bool:
    """Return whether ``obj`` is a ``collections.abc.Mapping``."""
    kind = type(obj)
    known = _IS_MAPPING.get(kind)
    if known is None:
        known = isinstance(obj, Mapping)
        if len(_IS_MAPPING) < 1024:
            _IS_MAPPING[kind] = known
    return known


def get_path(obj: Any, parts: tuple[str, ...]) -> Any:
    """Return the value at ``parts`` inside ``obj``, or ``MISSING``."""
    for part in parts:
        if obj is None:
            return MISSING
        if is_mapping(obj):
            obj = obj.get(part, MISSING)
        else:
            try:
                obj = getattr(obj, part, MISSING)
            except Exception:  # a property of the host raised
                return MISSING
        if obj is MISSING:
            return MISSING
    return obj


def first_present(obj: Any, paths: tuple[tuple[str, ...], ...]) -> Any:
    """Return the first value at one of ``paths`` that is neither missing nor None.

    Returns None when a path exists but contains None, and ``MISSING`` when none exists.
    """
    found: Any = MISSING
    for parts in paths:
        value = get_path(obj, parts)
        if value is MISSING:
            continue
        if value is not None:
            return value
        found = None
    return found


class EntryPlan:
    """The paths that one class of entries uses for each field.

    Dataclasses, slotted classes and pydantic models keep a fixed set of
    attributes, so the paths whose head is absent from the first instance are
    dropped for the whole class.  Mappings and other classes keep every path,
    because their keys and attributes can differ from one instance to the next.
    A class whose first instance has none of the names as attributes but offers
    ``model_dump()`` or ``to_dict()`` is read through that method's mapping.
    """

    __slots__ = ("exported", "fields", "fixed")

    def __init__(self, sample: Any, table: Mapping[str, tuple[str, ...]]) -> None:
        all_paths = {name: split_paths(dotted) for name, dotted in table.items()}
        self.exported = (
            not isinstance(sample, Mapping)
            and not any(
                has_attribute(sample, path[0]) for paths in all_paths.values() for path in paths
            )
            and export_model(sample) is not MISSING
        )
        fixed = not self.exported and has_fixed_attributes(type(sample))
        self.fixed = fixed
        fields = []
        for name, paths in all_paths.items():
            if fixed:
                paths = tuple(p for p in paths if has_attribute(sample, p[0]))
            fields.append((name, paths))
        self.fields: tuple[tuple[str, tuple[tuple[str, ...], ...]], ...] = tuple(fields)

    def read(self, entry: Any) -> dict[str, Any]:
        """Read the raw value of every field of ``entry`` (``MISSING`` when absent)."""
        source = export_model(entry) if self.exported else entry
        return {name: first_present(source, paths) for name, paths in self.fields}


class PlanCache:
    """Entry plans by entry class, built once per class."""

    def __init__(self, table: Mapping[str, tuple[str, ...]]) -> None:
        self._table = table
        self._plans: dict[type, EntryPlan] = {}
        self._mapping_plan: EntryPlan | None = None

    def plan_for(self, entry: Any) -> EntryPlan:
        """Return the plan for the class of ``entry``."""
        cls = type(entry)
        plan = self._plans.get(cls)
        if plan is None:
            plan = EntryPlan(entry, self._table)
            if len(self._plans) < 256:
                self._plans[cls] = plan
        return plan


def has_fixed_attributes(cls: type) -> bool:
    """Return whether every instance of ``cls`` has the same attributes (a dataclass, slots, pydantic)."""
    if issubclass(cls, Mapping):
        return False
    if is_dataclass(cls) or hasattr(cls, "model_fields"):
        return True
    # A class whose instances have no __dict__ can hold only its slots.
    return not any("__dict__" in vars(klass) for klass in cls.__mro__ if klass is not object)


def has_attribute(obj: Any, name: str) -> bool:
    """Return whether ``obj`` or its class has the attribute ``name``."""
    # The class goes first: a property that raises on the sample instance (a
    # session not started yet) must not drop the path for every later instance.
    if hasattr(type(obj), name):
        return True
    try:
        return getattr(obj, name, MISSING) is not MISSING
    except Exception:
        return False


# --- Values --------------------------------------------------------------------


def read_count(value: Any, field: str, report: ValueReport, default: int = 0) -> int:
    """Read a non-negative integer count up to ``INT64_MAX``.  Anything else takes ``default``."""
    if type(value) is int:
        if 0 <= value <= INT64_MAX:
            return value
        report.invalid(field, value, "must be between 0 and 2**63 - 1")
        return default
    if value is MISSING or value is None:
        return default
    if isinstance(value, float):
        if math.isfinite(value) and 0 <= value <= INT64_MAX:
            return int(value)
        report.invalid(field, value, "must be a finite number between 0 and 2**63 - 1")
        return default
    if isinstance(value, int) and not isinstance(value, bool):
        return read_count(int(value), field, report, default)
    report.invalid(field, value, "must be an integer")
    return default


def read_number(value: Any, field: str, report: ValueReport, default: float = 0) -> float:
    """Read a finite, non-negative number, keeping ints (up to ``INT64_MAX``) as ints."""
    if type(value) is int:
        if 0 <= value <= INT64_MAX:
            return value
        report.invalid(field, value, "must be between 0 and 2**63 - 1")
        return default
    if value is MISSING or value is None:
        return default
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value) if not isinstance(value, int) else int(value)
        if math.isfinite(number) and 0 <= number <= INT64_MAX:
            return number
        report.invalid(field, value, "must be a finite, non-negative number")
        return default
    report.invalid(field, value, "must be a number")
    return default


def read_optional_number(value: Any, field: str, report: ValueReport) -> float | None:
    """Read a finite number or None (monotonic-clock values may be any sign)."""
    if value is MISSING or value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # an int beyond the float range
            number = math.inf
        if math.isfinite(number):
            return number
        report.invalid(field, value, "must be finite")
        return None
    report.invalid(field, value, "must be a number")
    return None


def read_flag(value: Any, field: str, report: ValueReport) -> bool:
    """Read a boolean; 0 and 1 count as booleans too."""
    if value is True or value is False:
        return value
    if value is MISSING or value is None:
        return False
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    report.invalid(field, value, "must be a boolean")
    return False


def valid_text(text: str) -> str:
    """Return ``text`` with each lone surrogate replaced by U+FFFD.

    Surrogates come from ``os.fsdecode()`` of undecodable file names and from
    UTF-16 data.  UTF-8 encoders, such as orjson or a UTF-8 stdout, reject them.
    """
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)
    return text


def read_text(value: Any, field: str, report: ValueReport) -> str | None:
    """Read an optional string; numbers, paths and exceptions become strings.

    The result is always valid Unicode (see :func:`valid_text`).
    """
    if type(value) is str:
        return valid_text(value)
    if value is MISSING or value is None:
        return None
    if isinstance(value, str):
        return valid_text(str(value))
    if isinstance(value, PathLike):
        try:
            path = fspath(value)
        except Exception:
            path = None
        if isinstance(path, str):
            return valid_text(path)
    if isinstance(value, BaseException):
        try:
            return valid_text(f"{type(value).__name__}: {value}")
        except Exception:  # the host exception's __str__ raised
            return type(value).__name__
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return str(value)
        except ValueError:  # an int past sys.get_int_max_str_digits() digits
            report.invalid(field, value, "must be a string or a printable number")
            return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    report.invalid(field, value, "must be a string")
    return None


def format_datetime(value: Any) -> str | None:
    """Format a date-time value as ISO 8601 UTC ending in ``Z``.

    Accepts aware datetimes (converted to UTC), naive datetimes (taken as UTC),
    ``date`` values, ISO 8601 strings and Unix epoch numbers in seconds or
    milliseconds.  Returns None for None and for values that are not times.
    """
    if isinstance(value, _dt.datetime):
        return _format_utc(value)
    if value is None or value is MISSING or isinstance(value, bool):
        return None
    if isinstance(value, str):
        return _format_iso_string(value)
    if isinstance(value, (int, float)):
        return _format_epoch(value)
    if isinstance(value, _dt.date):
        return _format_utc(_dt.datetime(value.year, value.month, value.day))
    return None


def iso_utc_text(moment: _dt.datetime) -> str:
    """Format a naive UTC datetime as ISO 8601 ending in ``Z``.

    The fraction has the fewest digits that keep the value exact: none, 3 or
    6.  :func:`format_datetime` returns this text unchanged when it reads it
    back, so snapshots survive a ``to_dict()`` and ``from_dict()`` round trip.
    """
    microsecond = moment.microsecond
    if microsecond == 0:
        timespec = "seconds"
    elif microsecond % 1000 == 0:
        timespec = "milliseconds"
    else:
        timespec = "microseconds"
    return moment.isoformat(timespec=timespec) + "Z"


# Entries keep their start time for their whole life, so the same datetime is
# formatted on every snapshot: the last few thousand results are kept.  Aware
# datetimes with the same tzinfo compare equal by wall time alone, even across a
# DST fall-back where one wall time is two instants, so the UTC offset is part
# of the key.  Naive and aware datetimes never compare equal.
_ISO_CACHE: dict[tuple[_dt.datetime, _dt.timedelta | None], str] = {}
_ISO_CACHE_MAX: Final = 1024


def _format_utc(value: _dt.datetime) -> str | None:
    try:
        offset = value.utcoffset()
        key = (value, offset)
        cached = _ISO_CACHE.get(key)
        if cached is not None:
            return cached
        value_utc = value.replace(tzinfo=None)
        if offset is not None:
            value_utc -= offset
    except (OverflowError, ValueError, TypeError):
        # Out of range once in UTC (year 1 east of UTC, year 9999 west of it),
        # or a tzinfo whose utcoffset() is invalid.
        return None
    text = iso_utc_text(value_utc)
    if len(_ISO_CACHE) >= _ISO_CACHE_MAX:
        _ISO_CACHE.clear()
    _ISO_CACHE[key] = text
    return text


def _format_iso_string(text: str) -> str | None:
    candidate = text.strip()
    if not candidate or len(candidate) > 64:
        return None
    if candidate[-1] in "zZ":
        candidate = candidate[:-1] + "+00:00"
    try:
        parsed = _dt.datetime.fromisoformat(candidate)
    except ValueError:
        return None
    return _format_utc(parsed)


def _format_epoch(value: float) -> str | None:
    try:
        seconds = float(value)
    except OverflowError:  # an int beyond the float range
        return None
    if not math.isfinite(seconds):
        return None
    if abs(seconds) >= _EPOCH_MS_THRESHOLD:
        seconds /= 1000.0
    try:
        moment = _dt.datetime.fromtimestamp(seconds, _dt.timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None
    return _format_utc(moment)


def read_time(value: Any, field: str, report: ValueReport) -> str | None:
    """Read a wall-clock time as ISO 8601 UTC, or None when absent or invalid.

    The empty string counts as absent, because it is ``RunningEntry.started_at``'s default.
    """
    if value is MISSING or value is None or (isinstance(value, str) and not value):
        return None
    text = format_datetime(value)
    if text is None:
        report.invalid(field, value, "must be a datetime, an ISO 8601 string or Unix seconds")
    return text


def plain_copy(value: Any, field: str, report: ValueReport, depth: int = 0) -> Any:
    """Copy free-form foreign data into JSON-compatible dicts, lists and scalars.

    Mappings get string keys, sequences become lists, datetimes become ISO 8601
    strings, non-finite floats and integers past 64 bits become None, strings
    lose lone surrogates (see :func:`valid_text`), and anything else becomes
    its ``str()``.  Nesting deeper than 12 levels or containers of more than
    1000 items are cut.  Each value dropped or cut is counted as invalid.
    """
    kind = type(value)
    if value is None or kind is bool:
        return value
    if kind is str:
        return valid_text(value)
    if kind is float and math.isfinite(value):
        return value
    if kind is int and value.bit_length() <= 64:
        return value
    if kind is dict and depth < _PLAIN_MAX_DEPTH and len(value) <= _PLAIN_MAX_ITEMS:
        return {
            (k if type(k) is str and k.isascii() else key_text(k)): plain_copy(v, field, report, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, str):
        return valid_text(str(value))
    if isinstance(value, int):
        if value.bit_length() <= 64:
            return int(value)
        report.invalid(field, value, "must fit in 64 bits")
        return None
    if isinstance(value, float):
        if math.isfinite(value):
            return float(value)
        report.invalid(field, value, "must be a finite number")
        return None
    if depth >= _PLAIN_MAX_DEPTH:
        report.invalid(field, value, f"must nest at most {_PLAIN_MAX_DEPTH} levels")
        return None
    if isinstance(value, Mapping):
        items = list(value.items())
        if len(items) > _PLAIN_MAX_ITEMS:
            report.invalid(field, value, f"must hold at most {_PLAIN_MAX_ITEMS} items")
            items = items[:_PLAIN_MAX_ITEMS]
        return {key_text(k): plain_copy(v, field, report, depth + 1) for k, v in items}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = list(value)
        if len(items) > _PLAIN_MAX_ITEMS:
            report.invalid(field, value, f"must hold at most {_PLAIN_MAX_ITEMS} items")
            items = items[:_PLAIN_MAX_ITEMS]
        return [plain_copy(v, field, report, depth + 1) for v in items]
    if isinstance(value, (_dt.datetime, _dt.date)):
        return format_datetime(value)
    exported = export_model(value)
    if exported is not MISSING:
        return plain_copy(exported, field, report, depth + 1)
    return read_text(value, field, report)


def key_text(key: Any) -> str:
    """Return a mapping key as valid text, or its type name if it has no printable form."""
    if type(key) is not str:
        try:
            key = str(key)
        except Exception:  # a huge int, or a host object whose __str__ raised
            return f"<{type(key).__name__}>"
    return valid_text(key)


def export_model(value: Any) -> Any:
    """Return ``value.model_dump()`` or ``value.to_dict()`` if it offers one, else ``MISSING``."""
    for method_name in ("model_dump", "to_dict", "dict"):
        method = getattr(type(value), method_name, None)
        if callable(method):
            try:
                exported = getattr(value, method_name)()
            except Exception:
                continue
            if isinstance(exported, Mapping):
                return exported
    return MISSING


_SPLIT_CACHE: dict[tuple[str, ...], tuple[tuple[str, ...], ...]] = {}


def read_state_value(state: Any, names: tuple[str, ...]) -> Any:
    """Return the first of the state's attributes ``names`` that is present."""
    paths = _SPLIT_CACHE.get(names)
    if paths is None:
        paths = _SPLIT_CACHE[names] = split_paths(names)
    return first_present(state, paths)


def items_of(container: Any, field: str, report: ValueReport) -> list[tuple[Any, Any]]:
    """List a map's ``(key, entry)`` pairs, or a sequence's ``(None, entry)`` pairs.

    The host may change the container from another thread while it is read, so
    the copy is retried a few times before the field is given up.
    """
    if container is MISSING or container is None:
        return []
    for _ in range(3):
        try:
            if isinstance(container, Mapping):
                return list(container.items())
            if isinstance(container, (list, tuple, set, frozenset)):
                return [(None, entry) for entry in list(container)]
            break
        except RuntimeError:  # changed size during iteration
            continue
    else:
        report.invalid(field, container, "kept changing while it was read")
        return []
    report.invalid(field, container, "must be a mapping or a list")
    return []


def count_of(container: Any, field: str, report: ValueReport) -> int:
    """Count the members of a set, list or mapping, or read a plain count."""
    if container is MISSING or container is None:
        return 0
    if isinstance(container, (set, frozenset, list, tuple, Mapping)):
        return len(container)
    return read_count(container, field, report)


Reader = Callable[[Any, str, ValueReport], Any]
