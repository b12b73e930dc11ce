"""Polling a Symphony orchestrator's ``GET /api/v1/state`` and recording each body.

The bridge turns an orchestrator that only serves the HTTP state API into
OpenTelemetry data: each good body becomes a snapshot recorded by an
:class:`~symphony_otel.recorder.OTelSnapshotGenerator`, inside a
``symphony.bridge.scrape`` CLIENT span, so the ``symphony.snapshot`` event lands
in the span of the request that fetched it.  Failed scrapes never stop it: they
are counted in ``symphony.bridge.scrape.errors`` by ``error.type``, shown in
``symphony.bridge.up`` and retried with capped exponential backoff.

Usage::

    import threading
    from symphony_otel import OTelSnapshotGenerator
    from symphony_otel.bridge import Bridge
    from symphony_otel.pipeline import build_pipeline

    pipeline = build_pipeline()
    generator = OTelSnapshotGenerator(
        meter_provider=pipeline.meter_provider,
        tracer_provider=pipeline.tracer_provider,
        logger_provider=pipeline.logger_provider,
    )
    bridge = Bridge(
        "http://127.0.0.1:4000",
        generator,
        tracer_provider=pipeline.tracer_provider,
        meter_provider=pipeline.meter_provider,
    )
    stop = threading.Event()      # set it from a signal handler or another thread
    bridge.run(stop)
    pipeline.shutdown(timeout=5.0)
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import logging
import random
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import SpanKind, Status, StatusCode

from symphony_otel._reading import ValueReport
from symphony_otel.recorder import instruments
from symphony_otel.recorder.generator import (
    ATTR_ORCHESTRATOR_NAME,
    INSTRUMENTATION_SCOPE,
    OTelSnapshotGenerator,
)
from symphony_otel.snapshot import SystemSnapshot
from symphony_otel.version import __version__

__all__ = [
    "Bridge",
    "DEFAULT_INTERVAL",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_TIMEOUT",
    "ERROR_TYPES",
    "SCRAPE_SPAN_NAME",
    "STATE_PATH",
    "ScrapeError",
    "ScrapeResult",
    "read_state_body",
    "redact_url",
    "state_url",
]

_logger = logging.getLogger(__name__)

STATE_PATH: Final = "/api/v1/state"
SCRAPE_SPAN_NAME: Final = "symphony.bridge.scrape"

DEFAULT_INTERVAL: Final = 5.0
DEFAULT_TIMEOUT: Final = 5.0
DEFAULT_MAX_BODY_BYTES: Final = 8 * 1024 * 1024

# Backoff after failed scrapes: the interval doubles per failure, up to eight
# intervals or 60 s, whichever is shorter, but never below one interval.
BACKOFF_MAX_INTERVALS: Final = 8
BACKOFF_MAX_SECONDS: Final = 60.0
# Each backoff delay is shortened by up to this fraction, so that several
# bridges that lost the same orchestrator do not retry in lockstep.
BACKOFF_JITTER: Final = 0.2

ERROR_CONNECTION_REFUSED: Final = "connection_refused"
ERROR_TIMEOUT: Final = "timeout"
ERROR_SNAPSHOT_TIMEOUT: Final = "snapshot_timeout"
ERROR_SNAPSHOT_UNAVAILABLE: Final = "snapshot_unavailable"
ERROR_INVALID_JSON: Final = "invalid_json"
ERROR_BODY_TOO_LARGE: Final = "body_too_large"
ERROR_INVALID_BODY: Final = "invalid_body"
ERROR_CONNECTION_ERROR: Final = "connection_error"

ERROR_TYPES: Final = frozenset(
    {
        ERROR_CONNECTION_REFUSED,
        ERROR_TIMEOUT,
        ERROR_SNAPSHOT_TIMEOUT,
        ERROR_SNAPSHOT_UNAVAILABLE,
        ERROR_INVALID_JSON,
        ERROR_BODY_TOO_LARGE,
        ERROR_INVALID_BODY,
        ERROR_CONNECTION_ERROR,
    }
)
"""The values of ``error.type`` besides ``http_<status>`` for a status other than 200."""

_ENVELOPE_ERRORS: Final = frozenset({ERROR_SNAPSHOT_TIMEOUT, ERROR_SNAPSHOT_UNAVAILABLE})
_READ_CHUNK: Final = 64 * 1024
_REASON_TEXT_LIMIT: Final = 200
# How often an in-flight request checks the stop event.
_STOP_CHECK_INTERVAL: Final = 0.1


class ScrapeError(Exception):
    """A scrape that produced no snapshot.

    Attributes:
        error_type: The ``error.type`` value: one of :data:`ERROR_TYPES` or
            ``http_<status>``.
        reason: What went wrong, for people.
        status_code: The HTTP status of the response, if one arrived.
    """

    def __init__(self, error_type: str, reason: str, status_code: int | None = None) -> None:
        super().__init__(f"{reason} ({error_type})")
        self.error_type = error_type
        self.reason = reason
        self.status_code = status_code


class _Stopped(Exception):
    """The stop event was set while a request was in flight."""


@dataclass(frozen=True)
class ScrapeResult:
    """The outcome of one poll.

    Attributes:
        snapshot: The recorded snapshot, or None when the scrape failed.
        error_type: The ``error.type`` of a failed scrape, else None.
        reason: What went wrong, else None.
        status_code: The HTTP status, if a response arrived.
        duration: Seconds the scrape took.
        consecutive_failures: Failed scrapes in a row, this one included.
        stopped: Whether the stop event cut the request short; such a poll
            is neither a success nor a failure.
    """

    snapshot: SystemSnapshot | None
    error_type: str | None
    reason: str | None
    status_code: int | None
    duration: float
    consecutive_failures: int
    stopped: bool = False

    @property
    def ok(self) -> bool:
        """Whether the scrape produced a snapshot."""
        return self.snapshot is not None


# --- URLs -----------------------------------------------------------------------


def state_url(url: str) -> str:
    """Return the state API address for a base address or a full URL.

    ``/api/v1/state`` is appended when the path is empty or ``/``; any other
    path is kept as given.  An address without a scheme gets ``http://``.

    Raises:
        ValueError: If the scheme is not http or https, the host is missing or
            the port is invalid.
    """
    text = url.strip()
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    redacted = redact_url(text)
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError(f"the state URL must start with http:// or https://, got {redacted!r}")
    if not parts.hostname:
        raise ValueError(f"the state URL has no host, got {redacted!r}")
    try:
        _ = parts.port  # urlsplit checks the port only when it is read
    except ValueError:
        raise ValueError(f"the state URL has an invalid port, got {redacted!r}") from None
    path = parts.path if parts.path not in ("", "/") else STATE_PATH
    return urlunsplit((parts.scheme.lower(), parts.netloc, path, parts.query, ""))


def redact_url(url: str) -> str:
    """Return ``url`` with a user name and password replaced by ``REDACTED``.

    The OpenTelemetry semantic conventions ask for this form in ``url.full``.
    """
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    netloc = "REDACTED:REDACTED@" + host if parts.password is not None else "REDACTED@" + host
    return urlunsplit(parts._replace(netloc=netloc))


# --- Bodies ---------------------------------------------------------------------


def read_state_body(data: bytes, *, report: ValueReport | None = None) -> SystemSnapshot:
    """Parse a ``/api/v1/state`` body into a snapshot.

    A state is a JSON object with a ``running`` or ``retrying`` list, as in the
    bodies of the Elixir reference, of the Python ports and of
    :meth:`SystemSnapshot.to_dict`.

    Args:
        data: The body as bytes (UTF-8, UTF-16 or UTF-32 JSON).
        report: Where invalid values inside the state are counted.

    Returns:
        The snapshot.

    Raises:
        ScrapeError: With ``invalid_json`` when the body is not JSON.  With
            ``snapshot_timeout`` or ``snapshot_unavailable`` for the error
            envelope that an orchestrator returns with status 200 when its
            snapshot failed.  With ``invalid_body`` for any other JSON that is
            not a state, such as the envelope of a 404 or an issue's detail.
    """
    try:
        body = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise ScrapeError(ERROR_INVALID_JSON, f"the body is not valid JSON ({_describe(exc)})") from None
    if not isinstance(body, Mapping):
        raise ScrapeError(
            ERROR_INVALID_BODY,
            f"the body is a JSON {_json_type(body)}, not an object with running and retrying lists",
        )
    envelope = body.get("error")
    if "running" not in body and isinstance(envelope, Mapping):
        code = envelope.get("code")
        message = envelope.get("message")
        detail = f"code {_short(code)}" + (f", message {_short(message)}" if message is not None else "")
        error_type = code if code in _ENVELOPE_ERRORS else ERROR_INVALID_BODY
        raise ScrapeError(error_type, f"the body is an error envelope ({detail}), not a state")
    if not isinstance(body.get("running"), list) and not isinstance(body.get("retrying"), list):
        keys = ", ".join(sorted(str(key) for key in body)[:8]) or "none"
        raise ScrapeError(
            ERROR_INVALID_BODY,
            f"the JSON object has neither a running nor a retrying list (keys: {keys}), so it is not a state",
        )
    return SystemSnapshot.from_dict(body, report=report)


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"


def _short(value: Any) -> str:
    text = repr(value)
    if len(text) > _REASON_TEXT_LIMIT:
        text = text[:_REASON_TEXT_LIMIT] + "..."
    return text


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if len(text) > _REASON_TEXT_LIMIT:
        text = text[:_REASON_TEXT_LIMIT] + "..."
    return text


# --- The bridge -----------------------------------------------------------------


class Bridge:
    """Polls one state API and records every good body through a generator.

    Each poll runs inside a ``symphony.bridge.scrape`` span of kind CLIENT with
    ``url.full`` (credentials redacted), ``http.response.status_code`` when a
    response arrived, and ``error.type`` when the scrape failed.  A good body is
    handed to ``generator.record`` while that span is current.  After a failed
    scrape the last good snapshot is not recorded again, so its level gauges go
    quiet by the generator's staleness rule.

    The bridge registers ``symphony.bridge.up`` and
    ``symphony.bridge.scrape.errors`` on ``meter_provider``, in the generator's
    instrumentation scope.  Create one bridge per generator.

    ``poll_once`` and ``run`` are meant for one thread at a time.

    Args:
        url: The orchestrator's base address or the full state URL; see
            :func:`state_url`.  A user name and password in it are sent as
            HTTP basic authentication and never logged.
        generator: Records each snapshot; its value report counts the invalid
            values of the bodies.
        tracer_provider: Where the scrape spans go; the global one when None.
        meter_provider: Where the bridge's instruments live; the global one
            when None.  Use the generator's.
        interval: Seconds between the starts of two polls while they succeed.
        timeout: Seconds one request may take in total, from connecting to
            the last byte of the body.
        max_body_bytes: Largest body accepted, in bytes.
        rng: Source of the backoff jitter; a new ``random.Random()`` when None.

    Raises:
        ValueError: If the URL is invalid or a number is not positive.
    """

    def __init__(
        self,
        url: str,
        generator: OTelSnapshotGenerator,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        interval: float = DEFAULT_INTERVAL,
        timeout: float = DEFAULT_TIMEOUT,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        rng: random.Random | None = None,
    ) -> None:
        for name, value in (("interval", interval), ("timeout", timeout)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        if isinstance(max_body_bytes, bool) or not isinstance(max_body_bytes, int) or max_body_bytes < 1:
            raise ValueError(f"max_body_bytes must be a positive integer, got {max_body_bytes!r}")
        self.url = state_url(url)
        self.display_url = redact_url(self.url)
        self.interval = float(interval)
        self.timeout = float(timeout)
        self.max_body_bytes = max_body_bytes
        self.max_backoff = max(self.interval, min(BACKOFF_MAX_INTERVALS * self.interval, BACKOFF_MAX_SECONDS))
        self._target = _RequestTarget.from_url(self.url)
        self._generator = generator
        self._rng = rng or random.Random()

        orchestrator_name = generator.settings.orchestrator_name
        self._base_attributes: dict[str, str] = (
            {ATTR_ORCHESTRATOR_NAME: orchestrator_name} if orchestrator_name else {}
        )
        scope_attributes = dict(self._base_attributes) or None
        self._tracer = (tracer_provider or trace.get_tracer_provider()).get_tracer(
            INSTRUMENTATION_SCOPE, __version__, attributes=scope_attributes
        )
        meter = (meter_provider or metrics.get_meter_provider()).get_meter(
            INSTRUMENTATION_SCOPE, __version__, attributes=scope_attributes
        )
        # The callbacks read these on the metric reader's thread; each is
        # replaced whole, never changed in place.
        self._up: int | None = None
        self._error_counts: Mapping[str, int] = {}
        self._instruments = [
            instruments.create_instrument(meter, instruments.BRIDGE_UP, self._observe_up),
            instruments.create_instrument(meter, instruments.BRIDGE_SCRAPE_ERRORS, self._observe_errors),
        ]

        self.consecutive_failures = 0
        self._streak_started: float | None = None
        self._callback_failed = False

    # --- Public API ------------------------------------------------------------

    @property
    def up(self) -> int | None:
        """1 after a good scrape, 0 after a failed one, None before the first."""
        return self._up

    def error_counts(self) -> dict[str, int]:
        """Return the failed scrapes since start, by ``error.type``."""
        return dict(self._error_counts)

    def poll_once(self, stop_event: threading.Event | None = None) -> ScrapeResult:
        """Fetch the state once and record it, or count the failure.

        Connection, HTTP and body failures become a result with an
        ``error_type``; none of them is raised.

        Args:
            stop_event: When set during the request, the request is abandoned
                and the result has ``stopped=True``.

        Returns:
            What happened.
        """
        started = time.monotonic()
        attributes: dict[str, Any] = {
            "url.full": self.display_url,
            "http.request.method": "GET",
            "server.address": self._target.host,
            "server.port": self._target.port,
        }
        with self._tracer.start_as_current_span(
            SCRAPE_SPAN_NAME,
            kind=SpanKind.CLIENT,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            status_code: int | None = None
            try:
                body = self._fetch(stop_event)
                status_code = 200
                span.set_attribute("http.response.status_code", status_code)
                snapshot = read_state_body(body, report=self._generator.value_report)
            except _Stopped:
                return ScrapeResult(
                    None, None, "stopped", None, time.monotonic() - started, self.consecutive_failures, True
                )
            except ScrapeError as error:
                if error.status_code is not None:
                    status_code = error.status_code
                    span.set_attribute("http.response.status_code", status_code)
                span.set_attribute(instruments.ATTR_ERROR_TYPE, error.error_type)
                span.set_status(Status(StatusCode.ERROR, error.reason))
                self._count_failure(error)
                return ScrapeResult(
                    None,
                    error.error_type,
                    error.reason,
                    status_code,
                    time.monotonic() - started,
                    self.consecutive_failures,
                )
            self._generator.record(snapshot)
        self._count_success()
        return ScrapeResult(snapshot, None, None, 200, time.monotonic() - started, 0)

    def next_delay(self) -> float:
        """Return the seconds from the start of the last poll to the next one.

        One interval while scrapes succeed; after ``n`` failures in a row,
        ``interval * 2**n`` capped at :attr:`max_backoff`, less up to 20 %
        jitter.
        """
        failures = self.consecutive_failures
        if failures == 0:
            return self.interval
        delay = min(self.interval * 2.0 ** min(failures, 32), self.max_backoff)
        return delay * (1.0 - BACKOFF_JITTER * self._rng.random())

    def run(
        self,
        stop_event: threading.Event,
        on_result: Callable[[ScrapeResult], None] | None = None,
    ) -> None:
        """Poll until ``stop_event`` is set.

        A request in flight when the event is set is abandoned within about
        0.1 s, so ``run`` returns promptly.

        Args:
            stop_event: Ends the loop when set.
            on_result: Called with every poll's result on this thread, such as
                a status line printer.  An exception from it is logged once and
                otherwise ignored.
        """
        _logger.info(
            "Polling %s every %.3g s (timeout %.3g s, body limit %d bytes)",
            self.display_url,
            self.interval,
            self.timeout,
            self.max_body_bytes,
        )
        while not stop_event.is_set():
            started = time.monotonic()
            result = self.poll_once(stop_event)
            if result.stopped:
                break
            if on_result is not None:
                self._call(on_result, result)
            stop_event.wait(max(0.0, started + self.next_delay() - time.monotonic()))

    # --- Outcomes --------------------------------------------------------------

    def _count_failure(self, error: ScrapeError) -> None:
        counts = dict(self._error_counts)
        counts[error.error_type] = counts.get(error.error_type, 0) + 1
        self._error_counts = counts
        self._up = 0
        self.consecutive_failures += 1
        if self.consecutive_failures == 1:
            self._streak_started = time.monotonic()
            _logger.warning(
                "Scraping %s failed: %s (error.type %s). Retrying with backoff of up to %.3g s; "
                "further failures are logged at DEBUG until a scrape succeeds.",
                self.display_url,
                error.reason,
                error.error_type,
                self.max_backoff,
            )
        else:
            _logger.debug(
                "Scraping %s failed again (%d in a row): %s (error.type %s)",
                self.display_url,
                self.consecutive_failures,
                error.reason,
                error.error_type,
            )

    def _count_success(self) -> None:
        if self.consecutive_failures:
            lasted = time.monotonic() - (self._streak_started or time.monotonic())
            _logger.warning(
                "Scraping %s works again after %d failed scrapes over %.1f s.",
                self.display_url,
                self.consecutive_failures,
                lasted,
            )
        self.consecutive_failures = 0
        self._streak_started = None
        self._up = 1

    def _call(self, on_result: Callable[[ScrapeResult], None], result: ScrapeResult) -> None:
        try:
            on_result(result)
        except Exception:  # a status printer must not stop the bridge
            if not self._callback_failed:
                self._callback_failed = True
                _logger.warning(
                    "The scrape result callback raised; the bridge goes on, and later errors "
                    "of the callback are not logged.",
                    exc_info=True,
                )

    # --- Instruments -----------------------------------------------------------

    def _observe_up(self, options: CallbackOptions) -> Iterable[Observation]:
        up = self._up
        return [] if up is None else [Observation(up, self._base_attributes)]

    def _observe_errors(self, options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(count, {**self._base_attributes, instruments.ATTR_ERROR_TYPE: error_type})
            for error_type, count in self._error_counts.items()
        ]

    # --- HTTP ------------------------------------------------------------------

    def _fetch(self, stop_event: threading.Event | None) -> bytes:
        """Return the body of a 200 response, or raise ScrapeError or _Stopped."""
        target = self._target
        deadline = time.monotonic() + self.timeout
        connection = target.connection(self.timeout)
        watchdog = _Watchdog(connection, deadline, stop_event)
        watchdog.start()
        try:
            try:
                connection.connect()
                if watchdog.reason is not None:
                    # The deadline or the stop came while connecting, when the
                    # watchdog had no socket to shut down yet.
                    watchdog.finish()
                    raise self._cut_short(watchdog)
                connection.request("GET", target.path, headers=target.headers)
                response = connection.getresponse()
                if response.status != 200:
                    raise ScrapeError(
                        f"http_{response.status}",
                        f"the server returned HTTP {response.status} {response.reason}".rstrip(),
                        response.status,
                    )
                body = self._read_body(response, deadline)
            except (OSError, http.client.HTTPException, ValueError) as exc:
                # ValueError covers a host name that IDNA cannot encode.
                if watchdog.finish():
                    raise self._cut_short(watchdog) from None
                raise _transport_error(exc) from None
            except ScrapeError:
                if watchdog.finish():
                    raise self._cut_short(watchdog) from None
                raise
            # The watchdog's shutdown makes a body without a length end early
            # but cleanly, so a complete-looking body still needs this check.
            if watchdog.finish():
                raise self._cut_short(watchdog)
            return body
        finally:
            watchdog.finish()
            connection.close()

    def _read_body(self, response: http.client.HTTPResponse, deadline: float) -> bytes:
        limit = self.max_body_bytes
        declared = response.getheader("Content-Length")
        if declared is not None and declared.strip().isdigit() and int(declared) > limit:
            raise ScrapeError(
                ERROR_BODY_TOO_LARGE,
                f"the body of {int(declared)} bytes is over the limit of {limit} bytes",
                200,
            )
        chunks: list[bytes] = []
        size = 0
        while True:
            if time.monotonic() >= deadline:
                raise ScrapeError(ERROR_TIMEOUT, f"the response took more than {self.timeout:.3g} s", 200)
            chunk = response.read1(_READ_CHUNK)
            if not chunk:
                break
            size += len(chunk)
            if size > limit:
                raise ScrapeError(ERROR_BODY_TOO_LARGE, f"the body is over the limit of {limit} bytes", 200)
            chunks.append(chunk)
        return b"".join(chunks)

    def _cut_short(self, watchdog: _Watchdog) -> Exception:
        if watchdog.reason == "stopped":
            return _Stopped()
        return ScrapeError(ERROR_TIMEOUT, f"the request took more than {self.timeout:.3g} s")


def _transport_error(exc: BaseException) -> ScrapeError:
    if isinstance(exc, ConnectionRefusedError):
        return ScrapeError(ERROR_CONNECTION_REFUSED, "the connection was refused")
    if isinstance(exc, TimeoutError):  # socket.timeout is an alias of it since Python 3.10
        return ScrapeError(ERROR_TIMEOUT, f"the request timed out ({_describe(exc)})")
    return ScrapeError(ERROR_CONNECTION_ERROR, f"{type(exc).__name__}: {_describe(exc)}")


@dataclass(frozen=True)
class _RequestTarget:
    """The host, port, path and headers of the state request, parsed once from the URL."""

    https: bool
    host: str
    port: int
    path: str
    headers: Mapping[str, str]

    @classmethod
    def from_url(cls, url: str) -> _RequestTarget:
        parts: SplitResult = urlsplit(url)
        https = parts.scheme == "https"
        headers = {
            "Accept": "application/json",
            "User-Agent": f"symphony-otel/{__version__}",
            "Connection": "close",
        }
        if parts.username is not None or parts.password is not None:
            user = unquote(parts.username or "")
            password = unquote(parts.password or "")
            token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            headers["Authorization"] = f"Basic {token}"
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        return cls(
            https=https,
            host=parts.hostname or "",
            port=parts.port or (443 if https else 80),
            path=path,
            headers=headers,
        )

    def connection(self, timeout: float) -> http.client.HTTPConnection:
        if self.https:
            return http.client.HTTPSConnection(self.host, self.port, timeout=timeout)
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)


class _Watchdog:
    """Shuts a request's socket down at its deadline, or when the stop event is set.

    Socket timeouts bound each read, not the whole request: a server that sends
    one byte a second would hold a plain read loop for ever.  Shutting the
    socket down from this thread makes the blocked read return at once.
    """

    def __init__(
        self,
        connection: http.client.HTTPConnection,
        deadline: float,
        stop_event: threading.Event | None,
    ) -> None:
        self._connection = connection
        self._deadline = deadline
        self._stop_event = stop_event
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._finished = False
        self.reason: str | None = None

    def start(self) -> None:
        threading.Thread(target=self._watch, name="symphony-otel-scrape-deadline", daemon=True).start()

    def finish(self) -> bool:
        """End the watch and return whether it cut the request short."""
        with self._lock:
            self._finished = True
        self._done.set()
        return self.reason is not None

    def _watch(self) -> None:
        # Bounded by the deadline: every pass waits, and the last one aborts.
        while True:
            remaining = self._deadline - time.monotonic()
            if remaining <= 0:
                self._abort("timeout")
                return
            wait = remaining if self._stop_event is None else min(remaining, _STOP_CHECK_INTERVAL)
            if self._done.wait(wait):
                return
            if self._stop_event is not None and self._stop_event.is_set():
                self._abort("stopped")
                return

    def _abort(self, reason: str) -> None:
        with self._lock:
            if self._finished:
                return
            self.reason = reason
            sock = self._connection.sock
            if sock is None:
                # Still connecting: the connect timeout bounds that step, and
                # the request is not sent once the connection is up.
                return
            # The plain socket's shutdown, also for TLS: SSLSocket.shutdown
            # would tear down the TLS state under the reading thread.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
