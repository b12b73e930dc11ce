"""Compiled row readers: the fast path of ``SnapshotGenerator.generate``.

For a class of entries with a fixed set of attributes (a dataclass, a slotted
class, a pydantic model), this module writes and compiles one Python function
that reads every entry of that class with plain attribute loads and exact type
checks, much as a hand-written dict comprehension would.  An entry that is not
of that class, or whose values are not the plain types of a valid row (a
``str`` in ASCII, an ``int`` count in range, a ``datetime``), goes to the
lenient reader of :mod:`symphony_otel._reading` instead, so the two paths
always build the same row.

The generated source uses only names from this package's own tables, never
text taken from the host's objects.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Mapping
from typing import Any, Final

from symphony_otel import _reading

__all__ = ["RowsReader", "compile_rows_reader"]

RowsReader = Callable[[list[tuple[Any, Any]]], list[dict[str, Any]]]
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

# Formatted start times by the identity of their datetime.  Each value keeps its
# datetime alive, so an id is never reused while its entry is here.  The cache
# is emptied when it contains twice the rows of the latest snapshot (and at least
# 256), so the datetimes of finished workers do not pile up.
_TIME_BY_ID: dict[int, tuple[_dt.datetime, str]] = {}
_time_cache_limit = 256


def size_time_cache(rows: int) -> None:
    """Size the start-time cache for snapshots of about ``rows`` rows."""
    global _time_cache_limit
    _time_cache_limit = max(256, 2 * rows)


def _utc_text(value: _dt.datetime) -> str | None:
    text = _reading.format_datetime(value)
    if text is not None:
        if len(_TIME_BY_ID) >= _time_cache_limit:
            _TIME_BY_ID.clear()
        _TIME_BY_ID[id(value)] = (value, text)
    return text


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
        "def read_rows(items):",
        "    rows = []",
        "    append = rows.append",
        "    for key, e in items:",
        "        if type(e) is not cls:",
        "            append(slow_row(e, key))",
        "            continue",
        "        try:",
    ]
    checks: list[str] = []
    values: dict[str, str] = {}
    for index, name in enumerate(kinds):
        candidates = paths.get(name, ())
        if not candidates:
            values[name] = _default(name)
            continue
        variable = f"v{index}"
        lines.append(f"            {variable} = e.{'.'.join(candidates[0])}")
        checks.append(_check(kinds[name], variable, more=len(candidates) > 1))
        values[name] = variable
    lines += [
        "        except Exception:",
        "            append(slow_row(e, key))",
        "            continue",
        "        if not (" + " and ".join(checks or ["True"]) + "):",
        "            append(slow_row(e, key))",
        "            continue",
    ]
    for name, kind in kinds.items():
        if kind == _TIME and values[name].startswith("v"):
            lines += _time_lines(values[name])
            values[name] = f"text_{values[name]}"
    if values.get("codex_total_tokens") == "None":
        values["codex_total_tokens"] = (
            f"{values['codex_input_tokens']} + {values['codex_output_tokens']}"
        )
    if values.get("delay_type") == "None":
        values["delay_type"] = f"'continuation' if {values['error']} is None else 'failure'"
    row = ", ".join(f"{name!r}: {values[name]}" for name in kinds)
    lines += ["        append({" + row + "})", "    return rows"]

    namespace: dict[str, Any] = {
        "cls": type(sample),
        "slow_row": slow_row,
        "str": str,
        "int": int,
        "datetime": _dt.datetime,
        "INT64_MAX": _reading.INT64_MAX,
        "time_by_id": _TIME_BY_ID,
        "utc_text": _utc_text,
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
        f"        hit = time_by_id.get(id({variable}))",
        f"        if hit is not None and hit[0] is {variable}:",
        f"            text_{variable} = hit[1]",
        "        else:",
        f"            text_{variable} = utc_text({variable})",
        f"            if text_{variable} is None:",
        "                append(slow_row(e, key))",
        "                continue",
    ]
