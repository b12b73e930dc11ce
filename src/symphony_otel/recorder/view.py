"""The immutable view of the latest snapshot that instrument callbacks read.

``OTelSnapshotGenerator.generate`` builds one :class:`SnapshotView` per snapshot
and swaps it in with a single assignment, so a callback always reads one whole
snapshot.  Everything a callback needs that is not a plain field (rate-limit
windows, per-worker series, counter totals that survive an orchestrator
restart) is worked out here.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Final

from symphony_otel.recorder.reuse import MISS, LatestResult
from symphony_otel.snapshot import SystemSnapshot

__all__ = [
    "MonotonicTotals",
    "RateLimitReader",
    "RateLimitWindow",
    "SnapshotView",
    "parse_rate_limits",
]

DEFAULT_RATE_LIMIT_ID: Final = "default"

_WINDOW_KEYS: Final = frozenset(
    {"usedpercent", "remaining", "limit", "windowminutes", "resetsat", "resetsinseconds", "resetinseconds"}
)


def _normalized(key: Any) -> str:
    return str(key).replace("_", "").replace("-", "").lower()


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


@dataclass(frozen=True)
class RateLimitWindow:
    """One rate-limit window.

    Attributes:
        limit_id: The limit's id (``symphony.rate_limit.id``).
        window: The window's name, such as ``primary`` or ``secondary``.
        utilization: Used fraction, 0 to 1 (may pass 1 when over the limit).
        resets_at: When the window resets, in Unix seconds.
    """

    limit_id: str
    window: str
    utilization: float | None
    resets_at: float | None


@dataclass(frozen=True)
class RateLimits:
    """Rate-limit readings taken from one snapshot's ``rate_limits``."""

    windows: tuple[RateLimitWindow, ...] = ()
    credits: tuple[tuple[str, float], ...] = ()

    def redacted(self, redact: Callable[[str], str]) -> RateLimits:
        """Return these readings with the limit ids and window names scrubbed.

        They become metric attributes, which leave the process like the payload.
        """
        if not self.windows and not self.credits:
            return self
        return RateLimits(
            tuple(
                RateLimitWindow(redact(w.limit_id), redact(w.window), w.utilization, w.resets_at)
                for w in self.windows
            ),
            tuple((redact(limit_id), balance) for limit_id, balance in self.credits),
        )


def parse_rate_limits(payload: Mapping[str, Any] | None, now: float) -> RateLimits:
    """Read rate-limit windows and credit balances from an agent's payload.

    Two shapes are read, with snake_case or camelCase keys: windows with
    ``used_percent``, ``window_minutes`` and ``resets_at`` (Unix seconds) or
    ``resets_in_seconds``; and older windows with ``remaining``, ``limit`` and
    ``reset_in_seconds``.  A map of limits keyed by limit id is read too.
    Absent or unreadable values are skipped; this function never raises.

    Args:
        payload: The snapshot's ``rate_limits``.
        now: The current time in Unix seconds, for relative reset times.
    """
    return _parse(payload, now)[0]


def _parse(payload: Mapping[str, Any] | None, now: float) -> tuple[RateLimits, bool]:
    """Parse ``payload``, and return whether a reset time in it was relative to ``now``."""
    if not isinstance(payload, Mapping):
        return RateLimits(), False
    windows: list[RateLimitWindow] = []
    credits: list[tuple[str, float]] = []
    relative: list[bool] = []
    _read_limit(payload, None, now, windows, credits, relative, depth=0)
    return RateLimits(tuple(windows), tuple(credits)), bool(relative)


class RateLimitReader:
    """Parses and scrubs each snapshot's rate limits, reusing the result while they stay equal.

    The agent reports new limits a few times a minute, while a snapshot may be
    taken many times a second.  A payload with a relative reset time
    (``resets_in_seconds``) is parsed every time, because its reset moves
    with the clock.
    """

    def __init__(self, redact: Callable[[str], str]) -> None:
        self._redact = redact
        self._latest = LatestResult()

    def read(
        self, payload: Mapping[str, Any] | None, now: float | None = None, origin: object | None = None
    ) -> RateLimits:
        """Return the scrubbed readings of ``payload`` at Unix time ``now`` (the current time when None).

        ``origin`` is an object that represents the payload's content, the same
        object again while the content does not change (as
        ``SnapshotGenerator._generate`` returns it).  It saves comparing the
        payload with the previous one.
        """
        parsed = self._latest.get(payload, origin)
        if parsed is not MISS:
            return parsed
        parsed, relative = _parse(payload, time.time() if now is None else now)
        parsed = parsed.redacted(self._redact)
        if relative:
            self._latest.forget()
        else:
            self._latest.remember(payload, parsed, origin)
        return parsed


def _read_limit(
    payload: Mapping[str, Any],
    parent_id: str | None,
    now: float,
    windows: list[RateLimitWindow],
    credits: list[tuple[str, float]],
    relative: list[bool],
    depth: int,
) -> None:
    keys = {_normalized(key): key for key in payload}
    limit_id = parent_id
    for name in ("limitid", "id"):
        if name in keys and isinstance(payload[keys[name]], (str, int)):
            limit_id = str(payload[keys[name]])
            break
    limit_id = limit_id or DEFAULT_RATE_LIMIT_ID
    nested: list[tuple[str, Mapping[str, Any]]] = []
    for key, value in payload.items():
        if not isinstance(value, Mapping):
            continue
        inner = {_normalized(k): v for k, v in value.items()}
        if _normalized(key) == "credits":
            balance = _number(inner.get("balance"))
            if balance is not None:
                credits.append((limit_id, balance))
        elif _WINDOW_KEYS & inner.keys():
            windows.append(_read_window(limit_id, str(key), inner, now, relative))
        else:
            nested.append((str(key), value))
    if depth == 0 and not windows and not credits:
        for key, value in nested:
            _read_limit(value, key, now, windows, credits, relative, depth + 1)


def _read_window(
    limit_id: str, name: str, inner: Mapping[str, Any], now: float, relative: list[bool]
) -> RateLimitWindow:
    utilization = None
    used_percent = _number(inner.get("usedpercent"))
    if used_percent is not None:
        utilization = max(used_percent, 0.0) / 100.0
    else:
        limit = _number(inner.get("limit"))
        remaining = _number(inner.get("remaining"))
        if limit is not None and remaining is not None and limit > 0:
            utilization = max(limit - remaining, 0.0) / limit
    resets_at = _number(inner.get("resetsat"))
    if resets_at is not None and resets_at > 1e11:
        resets_at /= 1000.0  # milliseconds
    if resets_at is None:
        resets_in = _number(inner.get("resetsinseconds"))
        if resets_in is None:
            resets_in = _number(inner.get("resetinseconds"))
        if resets_in is not None:
            resets_at = now + max(resets_in, 0.0)
            relative.append(True)
    return RateLimitWindow(limit_id, name, utilization, resets_at)


@dataclass
class MonotonicTotals:
    """Cumulative totals that stay monotonic across orchestrator restarts.

    The orchestrator's totals start again from zero when it restarts.  A value
    lower than the previous one is therefore growth from zero, and is added to
    the running total instead of making it go down.
    """

    _previous: dict[str, float] = field(default_factory=dict)
    _totals: dict[str, float] = field(default_factory=dict)
    _lock: AbstractContextManager[Any] = field(default_factory=threading.Lock)
    # The totals that advance() returned last.  Callers only read them, so the
    # same dict is returned again while the values do not change.
    _latest: dict[str, float] | None = None

    def advance(self, values: Mapping[str, float]) -> dict[str, float]:
        """Add the growth since the previous values and return the totals (do not change them)."""
        with self._lock:
            previous_values = self._previous
            latest = self._latest
            if latest is not None and values == previous_values:
                return latest  # no growth: the totals are those returned last
            totals = self._totals
            for name, value in values.items():
                # Only a snapshot built by hand can hold a negative or
                # non-finite total; it counts as zero.
                if (type(value) is not int and not (isinstance(value, int) or math.isfinite(value))) or value < 0:
                    value = 0
                previous = previous_values.get(name)
                if previous is None:
                    totals[name] = value
                elif value >= previous:
                    totals[name] += value - previous
                else:
                    totals[name] += value
                previous_values[name] = value
            latest = self._latest = totals.copy()
            return latest

    def add(self, name: str, amount: float) -> dict[str, float]:
        """Add ``amount`` to the total ``name`` and return the totals."""
        with self._lock:
            self._totals[name] = self._totals.get(name, 0) + amount
            self._latest = None
            return dict(self._totals)


class SnapshotView:
    """Everything the callbacks read about one snapshot.

    A view is never changed after it is made (a plain class with slots rather
    than a frozen dataclass, whose ``__init__`` costs several times more, on
    every snapshot).

    Attributes:
        snapshot: The snapshot.
        recorded_at: When it was recorded, on ``time.monotonic()``.
        stale_after: Seconds after ``recorded_at`` when the level gauges stop.
        rate_limits: The parsed rate limits.
        totals: Monotonic cumulative totals: ``input_tokens``,
            ``output_tokens``, ``seconds_running``, ``completed``.
    """

    __slots__ = ("rate_limits", "recorded_at", "snapshot", "stale_after", "totals")

    def __init__(
        self,
        snapshot: SystemSnapshot,
        recorded_at: float,
        stale_after: float,
        rate_limits: RateLimits,
        totals: Mapping[str, float],
    ) -> None:
        self.snapshot = snapshot
        self.recorded_at = recorded_at
        self.stale_after = stale_after
        self.rate_limits = rate_limits
        self.totals = totals

    def is_fresh(self, now: float | None = None) -> bool:
        """Return whether the snapshot is recent enough for the level gauges."""
        current = time.monotonic() if now is None else now
        return current - self.recorded_at <= self.stale_after
