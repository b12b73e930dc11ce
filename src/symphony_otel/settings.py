"""The ``SYMPHONY_OTEL_*`` environment variables: names, parsing and defaults.

Every setting of :class:`~symphony_otel.recorder.OTelSnapshotGenerator` is
resolved in this order: the constructor argument, then the environment
variable, then the default documented here.  A value that breaks the setting's
rule raises :class:`ValueError` naming the setting, the rule and the value.

The standard ``OTEL_*`` variables (endpoints, headers, protocol, resource) are
read by :mod:`symphony_otel.pipeline` and the OpenTelemetry SDK, not here.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "DEFAULT_PAYLOAD_LIMIT",
    "DEFAULT_WORKER_SERIES_LIMIT",
    "EventMode",
    "MIN_STALE_AFTER",
    "RecorderSettings",
    "SYMPHONY_OTEL_EVENT_MODE",
    "SYMPHONY_OTEL_ORCHESTRATOR_NAME",
    "SYMPHONY_OTEL_PAYLOAD_LIMIT",
    "SYMPHONY_OTEL_REDACT_LOCATIONS",
    "SYMPHONY_OTEL_REDACT_SECRETS",
    "SYMPHONY_OTEL_STALE_AFTER",
    "SYMPHONY_OTEL_WORKER_SERIES_LIMIT",
]

EventMode = Literal["span", "log", "both"]

SYMPHONY_OTEL_PAYLOAD_LIMIT: Final = "SYMPHONY_OTEL_PAYLOAD_LIMIT"
"""Maximum size in bytes of the ``symphony.snapshot.json`` payload (default 32768,
at least 256).  When ``OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT`` is lower, that limit is
used instead."""

SYMPHONY_OTEL_EVENT_MODE: Final = "SYMPHONY_OTEL_EVENT_MODE"
"""Destination of the ``symphony.snapshot`` event: ``span`` (a span event, the
default), ``log`` (an event through the Logs API) or ``both``."""

SYMPHONY_OTEL_WORKER_SERIES_LIMIT: Final = "SYMPHONY_OTEL_WORKER_SERIES_LIMIT"
"""Maximum number of workers with series of their own in ``symphony.worker.*``
(default 100, at least 1).  Further workers share one overflow series."""

SYMPHONY_OTEL_STALE_AFTER: Final = "SYMPHONY_OTEL_STALE_AFTER"
"""Seconds without a snapshot after which the level gauges stop reporting
(default: three poll intervals, at least 60)."""

SYMPHONY_OTEL_REDACT_LOCATIONS: Final = "SYMPHONY_OTEL_REDACT_LOCATIONS"
"""``true`` to leave ``workspace_path`` and ``worker_host`` out of the payload
(they become null).  Default ``false``."""

SYMPHONY_OTEL_REDACT_SECRETS: Final = "SYMPHONY_OTEL_REDACT_SECRETS"
"""``false`` to turn off the built-in secret scrubbing.  Default ``true``."""

SYMPHONY_OTEL_ORCHESTRATOR_NAME: Final = "SYMPHONY_OTEL_ORCHESTRATOR_NAME"
"""Name of the orchestrator, added to every data point as
``symphony.orchestrator.name``; needed when several generators share one
MeterProvider.  Default: unset."""

DEFAULT_PAYLOAD_LIMIT: Final = 32 * 1024
MIN_PAYLOAD_LIMIT: Final = 256
DEFAULT_WORKER_SERIES_LIMIT: Final = 100
MIN_STALE_AFTER: Final = 60.0
STALE_AFTER_POLL_INTERVALS: Final = 3

_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})


@dataclass(frozen=True)
class RecorderSettings:
    """Resolved settings of one recorder.

    Attributes:
        payload_limit: Maximum payload size in bytes.
        event_mode: ``span``, ``log`` or ``both``.
        worker_series_limit: Workers with series of their own.
        stale_after: Seconds until the level gauges go quiet, or None for
            three poll intervals with a floor of 60 s.
        redact_locations: Whether ``workspace_path`` and ``worker_host`` are nulled.
        redact_secrets: Whether the built-in secret patterns run.
        orchestrator_name: Value of ``symphony.orchestrator.name``, or None.
    """

    payload_limit: int = DEFAULT_PAYLOAD_LIMIT
    event_mode: EventMode = "span"
    worker_series_limit: int = DEFAULT_WORKER_SERIES_LIMIT
    stale_after: float | None = None
    redact_locations: bool = False
    redact_secrets: bool = True
    orchestrator_name: str | None = None

    @classmethod
    def resolve(
        cls,
        *,
        payload_limit: int | None = None,
        event_mode: str | None = None,
        worker_series_limit: int | None = None,
        stale_after: float | None = None,
        redact_locations: bool | None = None,
        redact_secrets: bool | None = None,
        orchestrator_name: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> RecorderSettings:
        """Resolve each setting from its argument, its variable, or its default.

        Raises:
            ValueError: If a value breaks its setting's rule.
        """
        env = os.environ if environ is None else environ
        return cls(
            payload_limit=_integer(
                "payload_limit", SYMPHONY_OTEL_PAYLOAD_LIMIT, payload_limit, env,
                DEFAULT_PAYLOAD_LIMIT, MIN_PAYLOAD_LIMIT,
            ),
            event_mode=_event_mode(event_mode, env),
            worker_series_limit=_integer(
                "worker_series_limit", SYMPHONY_OTEL_WORKER_SERIES_LIMIT, worker_series_limit,
                env, DEFAULT_WORKER_SERIES_LIMIT, 1,
            ),
            stale_after=_seconds(stale_after, env),
            redact_locations=_flag(
                "redact_locations", SYMPHONY_OTEL_REDACT_LOCATIONS, redact_locations, env, False
            ),
            redact_secrets=_flag(
                "redact_secrets", SYMPHONY_OTEL_REDACT_SECRETS, redact_secrets, env, True
            ),
            orchestrator_name=_name(orchestrator_name, env),
        )

    def stale_after_for(self, poll_interval_ms: int) -> float:
        """Return the staleness threshold in seconds for a poll interval."""
        if self.stale_after is not None:
            return self.stale_after
        # A poll interval past a million years is a corrupt value, and a much
        # larger int would not even convert to float.
        interval_ms = min(max(poll_interval_ms, 0), 10**16)
        return max(MIN_STALE_AFTER, STALE_AFTER_POLL_INTERVALS * interval_ms / 1000.0)


def _setting_name(argument_name: str, variable: str, from_argument: bool) -> str:
    """Name the setting as the user gave it: the argument or the variable."""
    return argument_name if from_argument else variable


def _integer(
    argument_name: str,
    variable: str,
    value: int | None,
    env: Mapping[str, str],
    default: int,
    minimum: int,
) -> int:
    from_argument = value is not None
    raw: object = value if from_argument else env.get(variable, "").strip()
    if raw == "":
        return default
    setting = _setting_name(argument_name, variable, from_argument)
    if isinstance(raw, bool):
        raise ValueError(f"{setting} must be an integer of at least {minimum}, got {raw!r}")
    try:
        number = int(raw)  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError):  # OverflowError: int(float("inf"))
        raise ValueError(f"{setting} must be an integer of at least {minimum}, got {raw!r}") from None
    if isinstance(raw, float) and raw != number:
        raise ValueError(f"{setting} must be an integer of at least {minimum}, got {raw!r}")
    if number < minimum:
        raise ValueError(f"{setting} must be an integer of at least {minimum}, got {raw!r}")
    return number


def _seconds(value: float | None, env: Mapping[str, str]) -> float | None:
    from_argument = value is not None
    raw: object = value if from_argument else env.get(SYMPHONY_OTEL_STALE_AFTER, "").strip()
    if raw == "":
        return None
    setting = _setting_name("stale_after", SYMPHONY_OTEL_STALE_AFTER, from_argument)
    rule = "must be a positive number of seconds"
    if isinstance(raw, bool):
        raise ValueError(f"{setting} {rule}, got {raw!r}")
    try:
        seconds = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{setting} {rule}, got {raw!r}") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"{setting} {rule}, got {raw!r}")
    return seconds


def _flag(
    argument_name: str, variable: str, value: bool | None, env: Mapping[str, str], default: bool
) -> bool:
    if value is not None:
        if not isinstance(value, bool):
            raise ValueError(f"{argument_name} must be True or False, got {value!r}")
        return value
    raw = env.get(variable, "").strip().lower()
    if raw == "":
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ValueError(f"{variable} must be one of true, false, 1, 0, yes, no, on, off; got {raw!r}")


def _event_mode(value: str | None, env: Mapping[str, str]) -> EventMode:
    from_argument = value is not None
    raw = value if from_argument else env.get(SYMPHONY_OTEL_EVENT_MODE, "")
    if raw is None or (isinstance(raw, str) and raw.strip() == ""):
        return "span"
    normalized = raw.strip().lower() if isinstance(raw, str) else raw
    if normalized not in ("span", "log", "both"):
        setting = _setting_name("event_mode", SYMPHONY_OTEL_EVENT_MODE, from_argument)
        raise ValueError(f"{setting} must be one of span, log, both; got {raw!r}")
    return normalized  # type: ignore[return-value]


def _name(value: str | None, env: Mapping[str, str]) -> str | None:
    if value is not None:
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"orchestrator_name must be a non-empty string, got {value!r}")
        return value.strip()
    raw = env.get(SYMPHONY_OTEL_ORCHESTRATOR_NAME, "").strip()
    return raw or None
