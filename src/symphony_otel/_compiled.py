"""Compiled row readers: the fast path of ``SnapshotGenerator.generate``.

For a class of entries with a fixed set of attributes (a dataclass, a slotted
class, a pydantic model), this module writes and compiles one Python function
that reads every entry of that class with plain attribute loads and exact
type checks, much as a hand-written dict comprehension would.  An entry
that is not of that class, or whose values are not the plain types of a valid
row (a ``str`` in ASCII, an ``int`` count in range, a ``datetime``), goes to
the lenient reader of :mod:`symphony_otel._reading` instead, so the two paths
always build the same row.

Each reader remembers, by issue id, the values it read from each entry and
the row it built from them.  When an entry's values compare equal to the
remembered ones, the row is copied instead of checked again, because most
entries of a snapshot are the same as in the previous one.  Equal values make the same row, with one
exception: a value that compares equal to a remembered count but is not an
``int`` (``True`` for 1, ``2.0`` for 2) is recorded as that count, where a
fresh read would convert it or count it as invalid.

The generated source uses only names from this package's own tables, never
text taken from the host's objects.
"""

from __future__ import annotations

import datetime as _dt
import operator
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any, Final

from symphony_otel import _reading

__all__ = [
    "STATE_GROUPS",
    "RowsReader",
    "compile_rows_reader",
    "compile_state_reader",
    "compile_totals_reader",
]

Rows = list[dict[str, Any]]
# Returns the rows, and the reader's own unchanging copies of them when every row
# took the fast path (the same list object again when no entry changed).
RowsReader = Callable[[Collection[tuple[Any, Any]], Iterable[Any]], tuple[Rows, 'Rows | None']]
SlowRow = Callable[[Any, Any], dict[str, Any]]

# The check and conversion of each field of a row on the fast path.
_TEXT, _OPTIONAL_TEXT, _COUNT, _TIME = "text", "optional text", "count", "time"

RUNNING_KINDS: Final[Mapping[str, str]] = {
    "issue_id": _TEXT,
    "identifier": _TEXT,
    "turn_count": _COUNT,
    "codex_total_tokens": _COUNT,
    "last_codex_event": _OPTIONAL_TEXT,
    "started_at": _TIME,
    "session_id": _OPTIONAL_TEXT,
    "codex_input_tokens": _COUNT,
    "codex_output_tokens": _COUNT,
    "worker_host": _OPTIONAL_TEXT,
    "workspace_path": _OPTIONAL_TEXT,
}

RETRY_KINDS: Final[Mapping[str, str]] = {
    "issue_id": _TEXT,
    "identifier": _TEXT,
    "attempt": _COUNT,
    "delay_type": _TEXT,
    "error": _OPTIONAL_TEXT,
    "worker_host": _OPTIONAL_TEXT,
    "workspace_path": _OPTIONAL_TEXT,
}

def compile_rows_reader(
    sample: Any, plan: _reading.EntryPlan, kinds: Mapping[str, str], slow_row: SlowRow
) -> RowsReader | None:
    """Compile a reader of ``(key, entry)`` pairs for the class of ``sample``.

    Args:
        sample: An entry of the class.
        plan: The class's plan; only a plan with fixed attributes compiles.
        kinds: How each field is checked (``RUNNING_KINDS`` or ``RETRY_KINDS``).
        slow_row: The lenient reader of one entry, for every entry that the
            fast path does not take.

    Returns:
        The reader, or None when the class has no fast path.
    """
    if not plan.fixed or plan.exported:
        return None
    paths = dict(plan.fields)
    if not paths.get("issue_id") or not paths.get("identifier"):
        return None  # the identity comes from the map key: the lenient path
    lines = [
        "def read_rows(items, entries, *, cls=cls, cache=cache, latest=latest,",
        "              type=type, slow_row=slow_row, copy_row=dict.copy):",
        "    last = latest[0]",
        "    previous = last[0]",
        "    if previous is not None and len(previous) == len(items):",
        "        try:",
        "            for e, values in zip(entries, previous):",
        "                if type(e) is not cls or VALUES != values:",
        "                    break",
        "            else:",
        "                return list(map(copy_row, last[1])), last[1]",
        "        except Exception:",
        "            pass",
        "    rows = []",
        "    append = rows.append",
        "    seen = []",
        "    own_rows = []",
        "    cache_get = cache.get",
        "    bound = 2 * len(items) + 256",
        "    if len(cache) > bound:",
        "        cache.clear()",
        "    if len(time_by_id) > bound:",
        "        time_by_id.clear()",
        "    for key, e in items:",
        "        if type(e) is not cls:",
        "            append(slow_row(e, key))",
        "            own_rows = None",
        "            continue",
        "        try:",
        "            values = VALUES",
        "            hit = cache_get(values[0])",
        "            if hit is not None:",
        "                if hit[0] == values:",
        "                    row = hit[1]",
        "                    append(row.copy())",
        "                    if own_rows is not None:",
        "                        seen.append(values)",
        "                        own_rows.append(row)",
        "                    continue",
        "                cached = hit[0]",
        "        except Exception:",
        "            append(slow_row(e, key))",
        "            own_rows = None",
        "            continue",
    ]
    checks: list[str] = []
    count_checks: list[str] = []
    same: list[str] = []  # conditions under which a field is still the remembered object
    values: dict[str, str] = {}
    dotted: list[str] = []
    for name in kinds:
        candidates = paths.get(name, ())
        if not candidates:
            values[name] = _default(name)
            continue
        variable = f"v{len(dotted)}"
        dotted.append(".".join(candidates[0]))
        check = _check(kinds[name], variable, more=len(candidates) > 1)
        checks.append(check)
        if kinds[name] == _COUNT:
            count_checks.append(check)
        else:
            same.append(f"{variable} is cached[{len(dotted) - 1}]")
        values[name] = variable
    times = [name for name, kind in kinds.items() if kind == _TIME and values[name].startswith("v")]
    lines += [
        "        " + ", ".join(f"v{index}" for index in range(len(dotted))) + " = values",
        # Only counts changed since the entry was last read (a turn added
        # tokens): the other fields are the objects checked then.
        "        if hit is not None and " + " and ".join(same or ["True"]) + ":",
        "            if not (" + " and ".join(count_checks or ["True"]) + "):",
        "                append(slow_row(e, key))",
        "                own_rows = None",
        "                continue",
    ]
    lines += [f"            text_{values[name]} = hit[1][{name!r}]" for name in times]
    lines += [
        "        else:",
        "            if not (" + " and ".join(checks or ["True"]) + "):",
        "                append(slow_row(e, key))",
        "                own_rows = None",
        "                continue",
    ]
    for name in times:
        lines += _time_lines(values[name])
        values[name] = f"text_{values[name]}"
    if values.get("codex_total_tokens") == "None":
        values["codex_total_tokens"] = (
            f"{values['codex_input_tokens']} + {values['codex_output_tokens']}"
        )
    if values.get("delay_type") == "None":
        values["delay_type"] = f"'continuation' if {values['error']} is None else 'failure'"
    row = ", ".join(f"{name!r}: {values[name]}" for name in kinds)
    # Only strings, ints, datetimes and None: the garbage collector stops
    # tracking such tuples, so the remembered values cost its passes nothing.
    loads = "(" + ", ".join(f"e.{path}" for path in dotted) + ",)"
    lines = [line.replace("VALUES", loads) for line in lines]
    lines += [
        "        row = {" + row + "}",
        "        cache[values[0]] = (values, row)",
        "        append(row.copy())",
        "        if own_rows is not None:",
        "            seen.append(values)",
        "            own_rows.append(row)",
        "    latest[0] = (None, None) if own_rows is None else (seen, own_rows)",
        "    return rows, own_rows",
    ]

    namespace: dict[str, Any] = {
        "cls": type(sample),
        "slow_row": slow_row,
        "str": str,
        "int": int,
        "datetime": _dt.datetime,
        "INT64_MAX": _reading.INT64_MAX,
        # Formatted start times by the identity of their datetime, for entries
        # whose counts changed.  Each value keeps its datetime alive, so an id
        # is never reused while its entry is here.
        "time_by_id": {},
        "format_datetime": _reading.format_datetime,
        "cache": {},
        # The values and rows of the latest call when all its rows took the
        # fast path: a list of values equal to them means the same rows.  One
        # tuple, swapped whole, so that threads never mix two calls.
        "latest": [(None, None)],
        "type": type,
    }
    exec(compile("\n".join(lines), f"<symphony_otel rows of {type(sample).__qualname__}>", "exec"), namespace)
    reader: RowsReader = namespace["read_rows"]
    return reader


def _default(name: str) -> str:
    # None marks the fields that are computed from others below.
    if name in ("codex_total_tokens", "delay_type"):
        return "None"
    if name in ("turn_count", "codex_input_tokens", "codex_output_tokens", "attempt"):
        return "0"
    if name == "started_at":
        return "''"
    return "None"


def _check(kind: str, variable: str, *, more: bool) -> str:
    """Return the condition under which ``variable`` is a valid value as it is.

    A None where later paths could hold the value (``more``) leaves the entry
    to the lenient reader, which tries them.
    """
    text = f"(type({variable}) is str and {variable}.isascii())"
    if kind == _TEXT:
        return text
    if kind == _OPTIONAL_TEXT:
        return text if more else f"({variable} is None or {text})"
    if kind == _COUNT:
        return f"(type({variable}) is int and 0 <= {variable} <= INT64_MAX)"
    return f"type({variable}) is datetime"


def _time_lines(variable: str) -> list[str]:
    return [
        f"            hit = time_by_id.get(id({variable}))",
        f"            if hit is not None and hit[0] is {variable}:",
        f"                text_{variable} = hit[1]",
        "            else:",
        f"                text_{variable} = format_datetime({variable})",
        f"                if text_{variable} is None:",
        "                    append(slow_row(e, key))",
        "                    own_rows = None",
        "                    continue",
        f"                time_by_id[id({variable})] = ({variable}, text_{variable})",
    ]


# The state's values that a snapshot reads, in the order a state reader returns them.
STATE_GROUPS: Final = (
    _reading.STATE_RUNNING,
    _reading.STATE_RETRYING,
    _reading.STATE_COMPLETED,
    _reading.STATE_TOTALS,
    _reading.STATE_RATE_LIMITS,
    _reading.STATE_POLL_INTERVAL,
    _reading.STATE_MAX_AGENTS,
    _reading.STATE_POLL_IN_PROGRESS,
    _reading.STATE_NEXT_POLL_DUE,
)

StateReader = Callable[[Any], tuple[Any, ...]]


def compile_state_reader(sample: Any) -> StateReader | None:
    """Compile a reader of the values of ``STATE_GROUPS`` for the class of ``sample``.

    Only a class with fixed attributes that has at most one of each group's
    paths compiles.  Where a state has several (``retry_attempts`` and
    ``retry_queue``), the one that contains the value can change from one call
    to the next, so the lenient reader decides each time.  The reader raises
    (an ``AttributeError``, or whatever a property raises) where a nested path
    is missing; the caller then reads the state leniently.

    Returns:
        The reader, returning one value per group (``MISSING`` for a group the
        class lacks), or None when the class has no fast path.
    """
    cls = type(sample)
    if isinstance(sample, Mapping) or not _reading.has_fixed_attributes(cls):
        return None
    expressions: list[str] = []
    for group in STATE_GROUPS:
        present = [path for path in _reading.split_paths(group) if _reading.has_attribute(sample, path[0])]
        if len(present) > 1:
            return None
        expressions.append("state." + ".".join(present[0]) if present else "MISSING")
    if all(expression == "MISSING" for expression in expressions):
        return None  # not a state: the lenient reader raises its TypeError
    source = "def read_state(state):\n    return (" + ", ".join(expressions) + ",)"
    namespace: dict[str, Any] = {"MISSING": _reading.MISSING}
    exec(compile(source, f"<symphony_otel state of {cls.__qualname__}>", "exec"), namespace)
    reader: StateReader = namespace["read_state"]
    return reader


TotalsReader = Callable[[Any], "dict[str, Any] | None"]


def compile_totals_reader(sample: Any) -> TotalsReader | None:
    """Compile a reader of token totals for the class of ``sample``.

    The class must have fixed attributes and all of ``TOTALS_KEYS``.  The
    reader returns the totals when every value is an ``int`` count in range
    (``seconds_running`` may also be a ``float`` in that range).  Otherwise it
    returns None, and the caller uses the lenient reader.
    """
    if isinstance(sample, Mapping) or not _reading.has_fixed_attributes(type(sample)):
        return None
    if not all(_reading.has_attribute(sample, name) for name in _reading.TOTALS_KEYS):
        return None
    getter = operator.attrgetter(*_reading.TOTALS_KEYS)
    limit = _reading.INT64_MAX

    def read_totals(totals: Any) -> dict[str, Any] | None:
        input_tokens, output_tokens, total_tokens, seconds = getter(totals)
        if (
            type(input_tokens) is int
            and 0 <= input_tokens <= limit
            and type(output_tokens) is int
            and 0 <= output_tokens <= limit
            and type(total_tokens) is int
            and 0 <= total_tokens <= limit
            and (type(seconds) is float or type(seconds) is int)
            and 0 <= seconds <= limit  # False for NaN and infinity
        ):
            return {
                "input_tokens": input_tokens,
                "output_tokens": output_tokens,
                "total_tokens": total_tokens,
                "seconds_running": seconds,
            }
        return None

    return read_totals
