"""OTelSnapshotGenerator: every snapshot as observable instruments and an event.

Usage::

    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider
    from symphony_otel import OTelSnapshotGenerator

    generator = OTelSnapshotGenerator(
        meter_provider=meter_provider,      # your pipeline's providers;
        tracer_provider=tracer_provider,    # the global ones when omitted
    )
    snapshot = generator.generate(orchestrator.state)  # records it, too

``generate`` runs on the host's thread: it builds the snapshot, encodes the
payload, adds the event, and swaps in the view that the instrument callbacks
read on the metric reader's thread.  Export happens on the SDK's own threads.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any, Final

from opentelemetry import _logs, metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation

from symphony_otel.recorder import instruments
from symphony_otel.recorder.events import (
    EVENT_NAME,
    PayloadEncoder,
    attribute_length_limit,
    event_attributes,
)
from symphony_otel.recorder.redaction import Redactor
from symphony_otel.recorder.view import MonotonicTotals, RateLimitReader, SnapshotView
from symphony_otel.settings import RecorderSettings
from symphony_otel.snapshot import Origins, SnapshotGenerator, SystemSnapshot
from symphony_otel.version import __version__

__all__ = ["ATTR_ORCHESTRATOR_NAME", "INSTRUMENTATION_SCOPE", "OTelSnapshotGenerator"]

_logger = logging.getLogger(__name__)

INSTRUMENTATION_SCOPE: Final = "symphony_otel"
ATTR_ORCHESTRATOR_NAME: Final = "symphony.orchestrator.name"
SPAN_NAME: Final = "symphony.snapshot"
_INTERNAL: Final = trace.SpanKind.INTERNAL

_ERROR_LOG_INTERVAL: Final = 60.0
# The SDK's default cardinality limit per instrument (opentelemetry-sdk 1.45).
SDK_CARDINALITY_LIMIT: Final = 2000


class _Registration:
    """The instruments of one orchestrator name on one MeterProvider, and their owner.

    For a scope that registers an instrument name a second time, the SDK
    (opentelemetry-sdk 1.45) returns the first instrument and drops the new
    callbacks.  So the instruments are created once per name and provider, and
    their callbacks report for the generator that owns the registration now.
    The owner is None after ``close()``, until a new generator with that name
    takes the registration over.
    """

    __slots__ = ("instruments", "owner")

    def __init__(self) -> None:
        self.owner: OTelSnapshotGenerator | None = None
        self.instruments: list[Any] = []


# Registrations by MeterProvider and orchestrator name, so that a second open
# generator on one provider with the same name is caught instead of silently
# losing its callbacks.
_registry_lock = threading.Lock()
_registry: weakref.WeakKeyDictionary[Any, dict[str | None, _Registration]] = weakref.WeakKeyDictionary()
_registry_by_id: dict[int, dict[str | None, _Registration]] = {}


class OTelSnapshotGenerator(SnapshotGenerator):
    """A :class:`SnapshotGenerator` that records every snapshot it generates.

    Each snapshot becomes the value of observable gauges and counters (read by
    the MeterProvider's readers) and a ``symphony.snapshot`` event carrying its
    JSON, on the current span when it is recording, else on a short span of its
    own.  With ``event_mode="log"`` or ``"both"`` the event also goes through
    the Logs API.

    Recording never raises into the host: a failure is counted in
    ``symphony.snapshot.record_errors`` and logged at most once a minute.

    Args:
        meter_provider: Where the instruments live; the global one when None.
        tracer_provider: Where the spans go; the global one when None.
        logger_provider: Where log events go; the global one when None.
        orchestrator_name: Added to every data point as
            ``symphony.orchestrator.name``.  Required to tell generators apart
            when several share one MeterProvider.  Falls back to
            ``SYMPHONY_OTEL_ORCHESTRATOR_NAME``.
        payload_limit: Maximum payload size in bytes; falls back to
            ``SYMPHONY_OTEL_PAYLOAD_LIMIT``, default 32768.
        event_mode: ``span``, ``log`` or ``both``; falls back to
            ``SYMPHONY_OTEL_EVENT_MODE``, default ``span``.
        worker_series_limit: Workers with series of their own; falls back to
            ``SYMPHONY_OTEL_WORKER_SERIES_LIMIT``, default 100.
        stale_after: Seconds without a snapshot before the level gauges go
            quiet; falls back to ``SYMPHONY_OTEL_STALE_AFTER``, default three
            poll intervals and at least 60.
        redact_locations: Null ``workspace_path`` and ``worker_host`` in the
            payload; falls back to ``SYMPHONY_OTEL_REDACT_LOCATIONS``.
        redact_secrets: Run the built-in secret patterns; falls back to
            ``SYMPHONY_OTEL_REDACT_SECRETS``, default True.
        redaction_hook: The host's own redaction, applied to every string of
            the payload after the built-in patterns.
        cardinality_limit: The MeterProvider's cardinality limit per
            instrument: 2000 unless a View sets ``aggregation_cardinality_limit``.
            The Python SDK keeps every attribute set an observable instrument
            ever reported, so over the process's life at most
            ``(cardinality_limit - 2) // 2`` issues get series of their own in
            ``symphony.worker.*``; later ones share the overflow series.

    Raises:
        ValueError: If a setting is invalid, or if another open generator with
            the same ``orchestrator_name`` already records on ``meter_provider``.
    """

    def __init__(
        self,
        *,
        meter_provider: metrics.MeterProvider | None = None,
        tracer_provider: trace.TracerProvider | None = None,
        logger_provider: _logs.LoggerProvider | None = None,
        orchestrator_name: str | None = None,
        payload_limit: int | None = None,
        event_mode: str | None = None,
        worker_series_limit: int | None = None,
        stale_after: float | None = None,
        redact_locations: bool | None = None,
        redact_secrets: bool | None = None,
        redaction_hook: Callable[[str], str] | None = None,
        cardinality_limit: int = SDK_CARDINALITY_LIMIT,
    ) -> None:
        super().__init__()
        if isinstance(cardinality_limit, bool) or not isinstance(cardinality_limit, int) or cardinality_limit < 4:
            raise ValueError(f"cardinality_limit must be an integer of at least 4, got {cardinality_limit!r}")
        self.settings = RecorderSettings.resolve(
            payload_limit=payload_limit,
            event_mode=event_mode,
            worker_series_limit=worker_series_limit,
            stale_after=stale_after,
            redact_locations=redact_locations,
            redact_secrets=redact_secrets,
            orchestrator_name=orchestrator_name,
        )
        self._meter_provider = meter_provider or metrics.get_meter_provider()
        self._closed = False
        name = self.settings.orchestrator_name
        self._base_attributes = {ATTR_ORCHESTRATOR_NAME: name} if name else {}
        scope_attributes = dict(self._base_attributes) or None

        self._tracer = (tracer_provider or trace.get_tracer_provider()).get_tracer(
            INSTRUMENTATION_SCOPE, __version__, attributes=scope_attributes
        )
        self._event_logger = (logger_provider or _logs.get_logger_provider()).get_logger(
            INSTRUMENTATION_SCOPE, __version__, attributes=scope_attributes
        )
        limit = self.settings.payload_limit
        sdk_limit = attribute_length_limit(tracer_provider or trace.get_tracer_provider())
        if sdk_limit is not None and sdk_limit < limit:
            limit = sdk_limit
        self.payload_limit = limit
        self._encoder = PayloadEncoder(
            limit,
            Redactor(redaction_hook, scrub_secrets=self.settings.redact_secrets),
            redact_locations=self.settings.redact_locations,
        )
        self._rate_limit_reader = RateLimitReader(self._encoder.redact)
        # The staleness threshold of the latest settings and poll interval.
        self._stale_after: tuple[Any, Any, float] = (None, None, 0.0)
        # Advanced only under self._record_lock, which makes the totals' own lock redundant.
        self._totals = MonotonicTotals(_lock=contextlib.nullcontext())
        # The latest snapshot's totals, completed count and cumulative totals.
        self._latest_totals: tuple[dict[str, Any], int, dict[str, float]] | None = None
        self._own = MonotonicTotals()  # the recorder's own counters
        self._own_totals: dict[str, float] = {}
        self._view: SnapshotView | None = None
        # Held while the totals advance and the view is swapped in, so that the
        # latest view always carries the highest totals.
        self._record_lock = threading.Lock()
        self._tickets = itertools.count(1)
        self._latest_ticket = 0
        self._pinned = threading.local()
        self._last_error_log = float("-inf")
        self._error_lock = threading.Lock()
        self._overflow_warned = False
        # symphony.worker.tokens reports two series per issue, plus two overflow series.
        self._series_budget = instruments.SeriesBudget((cardinality_limit - 2) // 2)
        self._budget_warned = False

        self._registration = self._claim_registration()
        try:
            if not self._registration.instruments:
                self._registration.instruments = self._create_instruments(scope_attributes)
        except BaseException:
            self._release_registration()
            raise
        self._instruments = self._registration.instruments

    # --- Public API ------------------------------------------------------------

    def generate(self, state: Any) -> SystemSnapshot:
        """Generate a system snapshot from the orchestrator state and record it.

        Returns:
            The same :class:`SystemSnapshot` that the base class returns.

        Raises:
            TypeError: If ``state`` is None or has none of the state's
                attributes.  Nothing else is raised: recording failures are
                counted and logged.
        """
        # The ticket is taken before the state is read, so that of two threads
        # the one that read the state later also wins in the recorded view.
        ticket = next(self._tickets)
        snapshot, origins = self._generate(state)
        self._record_safely(snapshot, ticket, origins)
        return snapshot

    def record(self, snapshot: SystemSnapshot) -> None:
        """Record a snapshot built elsewhere, such as one read from an HTTP API.

        Never raises.
        """
        self._record_safely(snapshot, next(self._tickets))

    def _record_safely(
        self, snapshot: SystemSnapshot, ticket: int, origins: Origins | None = None
    ) -> None:
        if self._closed:
            return
        try:
            self._record(snapshot, ticket, origins)
        except Exception as exc:  # never break the host over its observability
            self._own_totals = self._own.add("record_errors", 1)
            self._log_record_error(exc)

    def redacted_dict(self, snapshot: SystemSnapshot) -> dict[str, Any]:
        """Return ``snapshot.to_dict()`` scrubbed as the event payload is, with no size limit.

        ``to_dict()`` itself is the host's own data and is never scrubbed; use
        this for output that leaves the process another way, such as a log.
        """
        payload = self._encoder.build(snapshot)
        payload["running"] = [dict(row) for row in payload["running"]]
        payload["retrying"] = [dict(row) for row in payload["retrying"]]
        # The encoder shares its scrubbed rate limits between payloads.
        payload["rate_limits"] = copy.deepcopy(payload["rate_limits"])
        return payload

    def close(self) -> None:
        """Stop reporting and free this generator's place on its MeterProvider.

        The instruments stay registered with the SDK (it cannot remove them) and
        report nothing until a new generator with the same ``orchestrator_name``
        on the same MeterProvider takes them over.
        """
        if self._closed:
            return
        self._closed = True
        self._view = None
        self._release_registration()

    @property
    def latest(self) -> SnapshotView | None:
        """The view of the latest recorded snapshot, or None before the first."""
        return self._view

    # --- Recording -------------------------------------------------------------

    def _record(self, snapshot: SystemSnapshot, ticket: int, origins: Origins | None) -> None:
        rate_limits = self._rate_limit_reader.read(
            snapshot.rate_limits, origin=origins[2] if origins is not None else None
        )
        settings = self.settings
        interval = snapshot.poll_interval_ms
        stale = self._stale_after
        if stale[0] is not settings or stale[1] != interval:
            stale = self._stale_after = (settings, interval, settings.stale_after_for(interval))
        stale_after = stale[2]
        with self._record_lock:
            # A snapshot read before the one recorded last is older: its event
            # is still sent, but it must not take the view back in time, nor
            # look like a restart to the counters.
            if ticket > self._latest_ticket:
                self._latest_ticket = ticket
                self._view = SnapshotView(
                    snapshot, time.monotonic(), stale_after, rate_limits, self._advance_totals(snapshot)
                )
        if len(snapshot.running) > settings.worker_series_limit and not self._overflow_warned:
            self._overflow_warned = True
            _logger.warning(
                "%d workers run, more than the worker series limit of %d; the others share "
                "one overflow series (otel.metric.overflow=true). Raise worker_series_limit "
                "(SYMPHONY_OTEL_WORKER_SERIES_LIMIT) to give each its own.",
                len(snapshot.running),
                self.settings.worker_series_limit,
            )
        self._emit_event(snapshot, origins)

    def _advance_totals(self, snapshot: SystemSnapshot) -> dict[str, float]:
        """Advance the monotonic totals to ``snapshot``'s.  The caller holds ``_record_lock``."""
        totals = snapshot.codex_totals
        completed = snapshot.completed_count
        latest = self._latest_totals
        if latest is not None and completed == latest[1] and totals == latest[0]:
            return latest[2]  # no growth since the previous snapshot
        cumulative = self._totals.advance(
            {
                "input_tokens": totals.get("input_tokens", 0),
                "output_tokens": totals.get("output_tokens", 0),
                "seconds_running": totals.get("seconds_running", 0),
                "completed": completed,
            }
        )
        self._latest_totals = (dict(totals), completed, cumulative)
        return cumulative

    def _emit_event(self, snapshot: SystemSnapshot, origins: Origins | None) -> None:
        payload = self._encoder.encode(snapshot, origins)
        if payload.dropped_rows:
            self._own_totals = self._own.add("dropped_rows", payload.dropped_rows)
        attributes = event_attributes(snapshot, payload)
        mode = self.settings.event_mode
        current = trace.get_current_span()
        if current.is_recording():
            self._add_event(current, attributes, mode)
            return
        span = self._tracer.start_span(SPAN_NAME, kind=_INTERNAL)
        try:
            if mode == "span":
                span.add_event(EVENT_NAME, attributes)
            else:
                self._add_event(span, attributes, mode)
        finally:
            span.end()

    def _add_event(self, span: trace.Span, attributes: dict[str, Any], mode: str) -> None:
        if mode in ("span", "both"):
            span.add_event(EVENT_NAME, attributes)
        if mode in ("log", "both"):
            self._event_logger.emit(
                event_name=EVENT_NAME,
                attributes=attributes,
                context=trace.set_span_in_context(span),
                severity_number=_logs.SeverityNumber.INFO,
            )

    def _log_record_error(self, exc: Exception, instrument: str | None = None) -> None:
        now = time.monotonic()
        with self._error_lock:
            if now - self._last_error_log < _ERROR_LOG_INTERVAL:
                return
            self._last_error_log = now
        if instrument is None:
            _logger.warning(
                "Recording a snapshot failed (%s); the host got the snapshot, but its event "
                "or metrics may be missing. Counted in symphony.snapshot.record_errors; "
                "this message repeats at most once a minute.",
                type(exc).__name__,
                exc_info=_logger.isEnabledFor(logging.DEBUG),
            )
            return
        _logger.warning(
            "The callback of %s failed (%s) and reported nothing for this collection. "
            "Counted in symphony.snapshot.record_errors; this message repeats at most "
            "once a minute.",
            instrument,
            type(exc).__name__,
            exc_info=_logger.isEnabledFor(logging.DEBUG),
        )

    # --- Instruments -----------------------------------------------------------

    def _claim_registration(self) -> _Registration:
        name = self.settings.orchestrator_name
        with _registry_lock:
            registrations = _registrations_for(self._meter_provider)
            registration = registrations.get(name)
            if registration is not None and registration.owner is not None:
                raise ValueError(
                    "another OTelSnapshotGenerator already records on this MeterProvider"
                    + (f" with orchestrator_name {name!r}" if name else "")
                    + "; give each generator its own orchestrator_name, or close() the "
                    "first one before creating another"
                )
            if registration is None:
                registration = registrations[name] = _Registration()
            registration.owner = self
            return registration

    def _release_registration(self) -> None:
        with _registry_lock:
            if self._registration.owner is self:
                self._registration.owner = None

    def _create_instruments(self, scope_attributes: dict[str, Any] | None) -> list[Any]:
        meter = self._meter_provider.get_meter(
            INSTRUMENTATION_SCOPE, __version__, attributes=scope_attributes
        )
        specs = instruments.INSTRUMENT_SPECS
        return [
            instruments.create_instrument(
                meter, spec, _make_callback(self._registration, spec, index, len(specs))
            )
            for index, spec in enumerate(specs)
        ]

    def _observe(
        self, compute: instruments.ViewCallback, name: str, first: bool, last: bool
    ) -> list[Observation]:
        pinned = self._pinned
        try:
            # The SDK runs the callbacks of one collection in registration
            # order on one thread: the first pins the view and the last lets
            # it go, so one export never mixes two snapshots.
            if first:
                pinned.active = True
                pinned.view = self._view
                pinned.context = None
            view = pinned.view if getattr(pinned, "active", False) else self._view
            if view is None or self._closed:
                return []
            return compute(view, self._context(view))
        except Exception as exc:  # a callback must never raise into the SDK
            self._own_totals = self._own.add("record_errors", 1)
            self._log_record_error(exc, name)
            return []
        finally:
            if last:
                pinned.active = False
                pinned.view = None
                pinned.context = None

    def _context(self, view: SnapshotView) -> instruments.CallbackContext:
        context = getattr(self._pinned, "context", None)
        if context is not None and context[0] is view:
            return context[1]
        now = time.monotonic()
        built = instruments.CallbackContext(
            base=self._base_attributes,
            monotonic_now=now,
            wall_now=time.time(),
            fresh=view.is_fresh(now),
            worker_series_limit=self.settings.worker_series_limit,
            invalid_counts=self.value_report.counts(),
            counters=self._own_totals,
            series_budget=self._series_budget,
            redact=self._encoder.redact_all,
        )
        if self._series_budget.full and not self._budget_warned:
            self._budget_warned = True
            _logger.warning(
                "%d issues have had series of their own in symphony.worker.*, the most the "
                "MeterProvider's cardinality limit allows over the life of the process; "
                "workers of new issues share the overflow series (otel.metric.overflow=true). "
                "Raise the limit with a View's aggregation_cardinality_limit and pass it as "
                "cardinality_limit.",
                self._series_budget.capacity,
            )
        self._pinned.context = (view, built)
        return built


def _make_callback(
    registration: _Registration, spec: instruments.InstrumentSpec, index: int, count: int
) -> Callable[[CallbackOptions], Iterable[Observation]]:
    compute = instruments.CALLBACKS[spec.name]
    first, last = index == 0, index == count - 1

    def callback(options: CallbackOptions) -> Iterable[Observation]:
        owner = registration.owner
        if owner is None:
            return []
        return owner._observe(compute, spec.name, first, last)

    callback.__name__ = f"observe_{spec.name.replace('.', '_')}"
    return callback


def _registrations_for(provider: Any) -> dict[str | None, _Registration]:
    try:
        return _registry.setdefault(provider, {})
    except TypeError:  # a provider that cannot be weakly referenced
        return _registry_by_id.setdefault(id(provider), {})
