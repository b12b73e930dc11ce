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
from dataclasses import dataclass, field
from typing import Any, Final

from symphony_otel.snapshot import SystemSnapshot

__all__ = ["MonotonicTotals", "RateLimitWindow", "SnapshotView", "parse_rate_limits"]

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
    if not isinstance(payload, Mapping):
        return RateLimits()
    windows: list[RateLimitWindow] = []
    credits: list[tuple[str, float]] = []
    _read_limit(payload, None, now, windows, credits, depth=0)
    return RateLimits(tuple(windows), tuple(credits))


def _read_limit(
    payload: Mapping[str, Any],
    parent_id: str | None,
    now: float,
    windows: list[RateLimitWindow],
    credits: list[tuple[str, float]],
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
            windows.append(_read_window(limit_id, str(key), inner, now))
        else:
            nested.append((str(key), value))
    if depth == 0 and not windows and not credits:
        for key, value in nested:
            _read_limit(value, key, now, windows, credits, depth + 1)


def _read_window(limit_id: str, name: str, inner: Mapping[str, Any], now: float) -> RateLimitWindow:
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
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def advance(self, values: Mapping[str, float]) -> dict[str, float]:
        """Add the growth since the previous values and return the totals."""
        with self._lock:
            for name, value in values.items():
                # Only a snapshot built by hand can hold a negative or
                # non-finite total; it counts as zero.
                if not (isinstance(value, int) or math.isfinite(value)) or value < 0:
                    value = 0
                previous = self._previous.get(name)
                if previous is None:
                    self._totals[name] = value
                elif value >= previous:
                    self._totals[name] += value - previous
                else:
                    self._totals[name] += value
                self._previous[name] = value
            return dict(self._totals)

    def add(self, name: str, amount: float) -> dict[str, float]:
        """Add ``amount`` to the total ``name`` and return the totals."""
        with self._lock:
            self._totals[name] = self._totals.get(name, 0) + amount
            return dict(self._totals)


@dataclass(frozen=True)
class SnapshotView:
    """Everything the callbacks read about one snapshot.

    Attributes:
        snapshot: The snapshot.
        recorded_at: When it was recorded, on ``time.monotonic()``.
        stale_after: Seconds after ``recorded_at`` when the level gauges stop.
        rate_limits: The parsed rate limits.
        totals: Monotonic cumulative totals: ``input_tokens``,
            ``output_tokens``, ``seconds_running``, ``completed``.
    """

    snapshot: SystemSnapshot
    recorded_at: float
    stale_after: float
    rate_limits: RateLimits
    totals: Mapping[str, float]

    def is_fresh(self, now: float | None = None) -> bool:
        """Return whether the snapshot is recent enough for the level gauges."""
        current = time.monotonic() if now is None else now
        return current - self.recorded_at <= self.stale_after
