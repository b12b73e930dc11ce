"""Reuse of a result computed from the previous snapshot's value while the value stays the same."""

from __future__ import annotations

import copy
from typing import Any, Final

__all__ = ["MISS", "LatestResult"]

MISS: Final = object()


class LatestResult:
    """The result computed for the latest value, for reuse while new values equal it.

    A value is compared by its origin when the caller has one: an object that
    is the same object again while the value does not change, as
    ``SnapshotGenerator._generate`` returns them.  Otherwise it is compared
    with a copy of the latest value by Python's equality.  The result itself is shared by
    every caller that gets it, so it must not be changed.
    """

    __slots__ = ("_latest",)

    def __init__(self) -> None:
        self._latest: tuple[Any, Any, object | None] | None = None

    def get(self, value: Any, origin: object | None = None) -> Any:
        """Return the result remembered for ``value``, or ``MISS``."""
        latest = self._latest
        if latest is None:
            return MISS
        if origin is not None and latest[2] is origin:
            return latest[1]
        try:
            if value == latest[0]:
                return latest[1]
        except Exception:  # a value's __eq__ raised (hand-built snapshots only)
            pass
        return MISS

    def remember(self, value: Any, result: Any, origin: object | None = None) -> None:
        """Remember ``result`` for ``value``, or nothing when ``value`` cannot be copied.

        The copy is needed because the caller's value (a snapshot's dict) may
        change afterwards.  Holding the origin keeps its id from being reused.
        """
        try:
            self._latest = (copy.deepcopy(value), result, origin)
        except Exception:  # a value that cannot be copied: compute every time
            self._latest = None

    def forget(self) -> None:
        """Drop the remembered result."""
        self._latest = None
