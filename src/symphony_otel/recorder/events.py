"""The ``symphony.snapshot`` event: payload encoding, size limit, span and log event.

The payload is the snapshot's ``to_dict()`` with every string scrubbed of
secrets.  It is always valid JSON in valid UTF-8: lone surrogates become
U+FFFD, non-finite floats and integers too long to print in decimal become
null, and non-ASCII text stays readable.  A payload over the byte limit loses
rows from the end of the retry queue, then from the end of the running list.
It records how many it lost in ``dropped_rows``, and no string is ever cut.  When
even the payload without rows is too large, ``rate_limits`` goes too, and as a
last resort only ``generated_at`` and ``dropped_rows`` remain.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable
from typing import Any, Final, NamedTuple

from symphony_otel.recorder.redaction import Redactor
from symphony_otel.recorder.reuse import MISS, LatestResult
from symphony_otel.snapshot import Origins, SystemSnapshot

try:  # orjson is several times faster; the json module gives the same bytes' meaning.
    import orjson as _orjson
except ImportError:  # pragma: no cover - exercised by forcing the fallback in tests
    _orjson = None

__all__ = [
    "EVENT_NAME",
    "Payload",
    "PayloadEncoder",
    "attribute_length_limit",
    "event_attributes",
]

_logger = logging.getLogger(__name__)

EVENT_NAME: Final = "symphony.snapshot"
ATTR_JSON: Final = "symphony.snapshot.json"
ATTR_TRUNCATED: Final = "symphony.snapshot.truncated"
ATTR_DROPPED_ROWS: Final = "symphony.snapshot.dropped_rows"

_LOCATION_FIELDS: Final = ("worker_host", "workspace_path")
# A row typically encodes to 150 to 400 bytes and contains about six strings.  Past
# the limit at this size, a payload is built row by row up to the limit.
_TYPICAL_ROW_BYTES: Final = 256
_STRINGS_PER_ROW: Final = 6
_MAX_DEPTH: Final = 16
_NO_ORIGINS: Final = (None, None, None)
# Running rows change with every turn, so the row cache is kept small: twice
# the rows of the latest snapshot, and at least this many.
_MIN_ROWS_GENERATION: Final = 64
_MINIMAL_PAYLOAD: Final = b"{}"


class Payload(NamedTuple):
    """One encoded snapshot payload, a named tuple because one is made per snapshot.

    Attributes:
        text: The JSON text.
        size: Its size in UTF-8 bytes.
        dropped_rows: Rows left out to stay within the limit.
        truncated: Whether anything was left out: rows, or other fields of a
            snapshot that does not fit even without its rows.
    """

    text: str
    size: int
    dropped_rows: int
    truncated: bool = False


def attribute_length_limit(tracer_provider: Any = None) -> int | None:
    """Return the SDK's limit on event attribute values, in characters, if any.

    Reads the limit of an SDK ``TracerProvider`` when one is given, else
    ``OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT``.
    """
    limits = getattr(tracer_provider, "_span_limits", None)
    configured = getattr(limits, "max_attribute_length", None)
    if isinstance(configured, int) and configured >= 0:
        return configured
    raw = os.environ.get("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "").strip()
    if raw.isdigit():
        return int(raw)
    return None


class PayloadEncoder:
    """Encodes snapshots into payloads that fit a byte limit.

    Args:
        limit: Maximum payload size in bytes.
        redactor: Scrubs each string of the payload.
        redact_locations: Whether ``worker_host`` and ``workspace_path`` become null.
        use_orjson: Whether to use orjson when it is installed.
    """

    def __init__(
        self,
        limit: int,
        redactor: Redactor,
        *,
        redact_locations: bool = False,
        use_orjson: bool = True,
    ) -> None:
        self.limit = limit
        self._redactor = redactor
        # Scrubbed rows by their values, in two generations like the redactor's cache.
        self._rows_current: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._rows_previous: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._rows_generation_size = _MIN_ROWS_GENERATION
        # Encoded rows by their values, in two generations like the scrubbed rows.
        self._encoded_current: dict[tuple[Any, ...], bytes] = {}
        self._encoded_previous: dict[tuple[Any, ...], bytes] = {}
        # The latest row origins (running, retrying) and their encoded rows.
        self._latest_lists: list[tuple[list[dict[str, Any]], list[bytes]] | None] = [None, None]
        # The latest rate limits and their scrubbed copy.
        self._rate_limits_latest = LatestResult()
        self._redact_locations = redact_locations
        self._dumps: Callable[[Any], bytes] = (
            _dumps_orjson if use_orjson and _orjson is not None else _dumps_json
        )

    def encode(self, snapshot: SystemSnapshot, origins: Origins | None = None) -> Payload:
        """Build, scrub and encode the payload of ``snapshot``.

        Args:
            snapshot: The snapshot.
            origins: What the generator copied the snapshot's rows and rate
                limits from, as ``SnapshotGenerator._generate`` returns them.
                While one is the same object as for the previous snapshot, its
                part of the payload is the same, and its scrubbed or encoded
                form is reused without looking up each row or comparing values.
        """
        rows = len(snapshot.running) + len(snapshot.retrying)
        self._redactor.expect(rows * _STRINGS_PER_ROW)
        self._rows_generation_size = max(_MIN_ROWS_GENERATION, 2 * rows)
        if rows * _TYPICAL_ROW_BYTES > self.limit:
            # Far more rows than can fit: encode row by row and stop at the
            # limit, instead of encoding (and scrubbing) rows that are dropped.
            return self._encode_until_full(snapshot, origins)
        running_origin, retry_origin, rate_limits_origin = origins if origins is not None else _NO_ORIGINS
        data = self._joined(
            self._tail(snapshot, rate_limits_origin),
            self._encoded_list(snapshot.running, running_origin, 0),
            self._encoded_list(snapshot.retrying, retry_origin, 1),
        )
        if len(data) <= self.limit:
            return Payload(data.decode("utf-8"), len(data), 0)
        payload = self.build(snapshot)
        data, dropped = self._shrink(payload, len(data))
        return Payload(data.decode("utf-8"), len(data), dropped, truncated=True)

    def _joined(self, tail: dict[str, Any], running: list[bytes], retrying: list[bytes]) -> bytes:
        """Return the JSON of the payload: the encoded rows, then the fields of ``tail``.

        The bytes are those of encoding the whole payload at once: both
        encoders write compact JSON, and the row lists come first.  Each
        encoded row starts with its comma, which the first row of a list drops;
        so the payload is copied once, in one join.
        """
        rest = self._encode(tail)
        pieces = [b'{"running":[']
        for rows, closing in ((running, b'],"retrying":['), (retrying, b"],")):
            if rows:
                pieces.append(rows[0][1:])
                pieces += rows[1:]
            pieces.append(closing)
        pieces.append(rest[1:])
        return b"".join(pieces)

    def _encoded_list(
        self, rows: list[dict[str, Any]], origin: list[dict[str, Any]] | None, index: int
    ) -> list[bytes]:
        """Return ``_encoded_rows(rows)``, reused while ``origin`` is the same list as before."""
        if origin is None:
            return self._encoded_rows(rows)
        latest = self._latest_lists[index]
        if latest is not None and latest[0] is origin and len(latest[1]) == len(rows):
            return latest[1]  # complete (_rows_within keeps a part of the rows)
        encoded = self._encoded_rows(rows)
        # Holding the origin keeps its id from being reused by another list.
        self._latest_lists[index] = (origin, encoded)
        return encoded

    def _encoded_rows(self, rows: list[dict[str, Any]]) -> list[bytes]:
        """Return a comma and the JSON of each row scrubbed, cached by the row's values.

        A row that is the same as in the previous snapshot is neither scrubbed
        nor encoded again, because its bytes are reused.
        """
        current = self._encoded_current
        scrubbing = self._redactor.active or self._redact_locations
        encoded_rows = []
        for row in rows:
            key = tuple(row.values())
            try:
                encoded = current.get(key)
            except TypeError:  # a row built by hand with a list or dict in it
                encoded_rows.append(b"," + self._encode(self._scrub_row(dict(row))))
                continue
            if encoded is None:
                encoded = self._encoded_previous.get(key)
                if encoded is None:
                    # Scrubbed directly: the scrubbed-row cache would miss on the same key.
                    scrubbed = self._scrub_row(dict(row)) if scrubbing else row
                    encoded = b"," + self._encode(scrubbed)
                if len(current) >= self._rows_generation_size:
                    self._encoded_previous = current
                    current = self._encoded_current = {}
                current[key] = encoded
            encoded_rows.append(encoded)
        return encoded_rows

    def build(self, snapshot: SystemSnapshot) -> dict[str, Any]:
        """Return the scrubbed ``to_dict()`` payload of ``snapshot``."""
        payload = self._head(snapshot)
        payload["running"] = self._scrubbed_rows(snapshot.running)
        payload["retrying"] = self._scrubbed_rows(snapshot.retrying)
        return payload

    def _scrubbed_rows(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Return the scrubbed copy of each row, cached by the row's values.

        Between two snapshots most rows are the same (a turn takes minutes and
        retry entries wait), so a row is scrubbed once and its copy reused.
        The copies are never changed after they are made.
        """
        if not self._redactor.active and not self._redact_locations:
            return rows
        current = self._rows_current
        scrubbed_rows = []
        for row in rows:
            key = tuple(row.values())
            try:
                scrubbed = current.get(key)
            except TypeError:  # a row built by hand with a list or dict in it
                scrubbed_rows.append(self._scrub_row(dict(row)))
                continue
            if scrubbed is None:
                scrubbed = self._rows_previous.get(key)
                if scrubbed is None:
                    scrubbed = self._scrub_row(dict(row))
                if len(current) >= self._rows_generation_size:
                    self._rows_previous = current
                    current = self._rows_current = {}
                current[key] = scrubbed
            scrubbed_rows.append(scrubbed)
        return scrubbed_rows

    def _head(self, snapshot: SystemSnapshot) -> dict[str, Any]:
        """Return the payload with empty row lists, in ``to_dict()`` order."""
        head: dict[str, Any] = {"running": [], "retrying": []}
        head.update(self._tail(snapshot))
        head["codex_totals"] = dict(snapshot.codex_totals)
        return head

    def _tail(self, snapshot: SystemSnapshot, rate_limits_origin: object | None = None) -> dict[str, Any]:
        """Return the payload's fields after the rows, sharing ``codex_totals`` with the snapshot."""
        rate_limits = snapshot.rate_limits
        return {
            "completed_count": snapshot.completed_count,
            "codex_totals": snapshot.codex_totals,
            "rate_limits": None
            if rate_limits is None
            else self._scrubbed_rate_limits(rate_limits, rate_limits_origin),
            "poll_interval_ms": snapshot.poll_interval_ms,
            "max_concurrent_agents": snapshot.max_concurrent_agents,
            "poll_check_in_progress": snapshot.poll_check_in_progress,
            "next_poll_due_at_ms": snapshot.next_poll_due_at_ms,
            "generated_at": snapshot.generated_at,
        }

    def _scrubbed_rate_limits(self, rate_limits: Any, origin: object | None = None) -> Any:
        """Return the scrubbed copy of ``rate_limits``, reused while they equal the previous ones.

        The copy is shared by the payloads built meanwhile, so it is never
        changed.  ``origin`` (see :meth:`encode`) saves the comparison.
        """
        scrubbed = self._rate_limits_latest.get(rate_limits, origin)
        if scrubbed is MISS:
            scrubbed = self._scrub_value(rate_limits)
            self._rate_limits_latest.remember(rate_limits, scrubbed, origin)
        return scrubbed

    def _encode_until_full(self, snapshot: SystemSnapshot, origins: Origins | None = None) -> Payload:
        running_origin, retry_origin, rate_limits_origin = origins if origins is not None else _NO_ORIGINS
        tail = self._tail(snapshot, rate_limits_origin)
        # No count of dropped_rows has more digits than the number of rows.
        widest = dict(
            tail, dropped_rows={"running": len(snapshot.running), "retrying": len(snapshot.retrying)}
        )
        budget = self.limit - len(self._joined(widest, [], []))
        running, used = self._rows_within(snapshot.running, running_origin, 0, budget)
        retrying: list[bytes] = []
        if len(running) == len(snapshot.running):  # the rows kept are a prefix of both lists
            retrying, used = self._rows_within(snapshot.retrying, retry_origin, 1, budget - used)

        dropped = len(snapshot.running) + len(snapshot.retrying) - len(running) - len(retrying)
        if dropped:
            tail["dropped_rows"] = _dropped_rows(
                snapshot.running, snapshot.retrying, len(running), len(retrying)
            )
        data = self._joined(tail, running, retrying)
        if budget < 0 or len(data) > self.limit:
            # The rest of the payload alone is over the limit: the slow path
            # leaves out the rate limits too, or keeps only generated_at.
            payload = self.build(snapshot)
            data, dropped = self._shrink(payload, len(self._encode(payload)))
            return Payload(data.decode("utf-8"), len(data), dropped, truncated=True)
        return Payload(data.decode("utf-8"), len(data), dropped, truncated=dropped > 0)

    def _rows_within(
        self,
        rows: list[dict[str, Any]],
        origin: list[dict[str, Any]] | None,
        index: int,
        budget: int,
    ) -> tuple[list[bytes], int]:
        """Return the encoded rows from the start of ``rows`` that fit in ``budget`` bytes, and their size.

        Rows past the first that does not fit are neither scrubbed nor encoded.
        The encoded rows are kept for ``origin`` (see :meth:`encode`), so that
        the next snapshot with the same rows reads them from there.
        """
        latest = self._latest_lists[index] if origin is not None else None
        cached: list[bytes] = latest[1] if latest is not None and latest[0] is origin else []
        known = cached
        fitting: list[bytes] = []
        used = 0
        for position, row in enumerate(rows):
            if used >= budget:
                break
            if position < len(known):
                encoded = known[position]
            else:
                if known is cached:  # the cached list is shared: extend a copy
                    known = list(cached)
                encoded = self._encoded_rows([row])[0]
                known.append(encoded)
            if used + len(encoded) > budget:  # its comma counts too
                break
            fitting.append(encoded)
            used += len(encoded)
        if origin is not None and known is not cached:
            self._latest_lists[index] = (origin, known)
        return fitting, used

    def _scrub_row(self, row: dict[str, Any]) -> dict[str, Any]:
        redactor = self._redactor
        if redactor.active:
            redactor.scrub_row(row)
        if self._redact_locations:
            for key in _LOCATION_FIELDS:
                if key in row:
                    row[key] = None
        return row

    def redact(self, text: str) -> str:
        """Return ``text`` scrubbed as the strings of the payload are."""
        return self._redactor(text) if self._redactor.active else text

    def redact_all(self, texts: list[str]) -> list[str]:
        """Return each of ``texts`` scrubbed as the strings of the payload are."""
        return self._redactor.scrub_texts(texts) if self._redactor.active else texts

    def _scrub_value(self, value: Any, depth: int = 0) -> Any:
        """Copy JSON-compatible ``value`` with every string scrubbed.

        Levels past the 16th become null: snapshots from ``generate`` nest at
        most 12, but one built by hand may nest deeper than the JSON encoders
        and the Python stack allow.
        """
        if isinstance(value, str):
            return self.redact(value)
        if depth >= _MAX_DEPTH:
            return None if isinstance(value, (dict, list, tuple)) else value
        if isinstance(value, dict):
            return {self._scrub_value(k, depth + 1): self._scrub_value(v, depth + 1) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self._scrub_value(item, depth + 1) for item in value]
        return value

    def _encode(self, payload: dict[str, Any]) -> bytes:
        try:
            return self._dumps(payload)
        except (TypeError, ValueError, OverflowError, UnicodeError):
            # Lone surrogates, non-finite floats or ints past 64 bits: repair the
            # payload and encode it with the json module, which encodes
            # integers of any size.
            return _dumps_json(_repair(payload))

    def _shrink(self, payload: dict[str, Any], full_size: int) -> tuple[bytes, int]:
        running: list[Any] = payload["running"]
        retrying: list[Any] = payload["retrying"]
        total = len(running) + len(retrying)

        def with_rows(kept: int) -> bytes:
            kept_running = min(kept, len(running))
            kept_retrying = kept - kept_running
            trimmed = dict(payload)
            trimmed["running"] = running[:kept_running]
            trimmed["retrying"] = retrying[:kept_retrying]
            trimmed["dropped_rows"] = _dropped_rows(running, retrying, kept_running, kept_retrying)
            return self._encode(trimmed)

        # Binary search for the most rows that fit, starting from a size estimate.
        low, high = 0, total - 1
        estimate = int(total * self.limit / full_size)
        best: bytes | None = None
        best_kept = 0
        probe = min(max(estimate, 0), high)
        while low <= high:
            data = with_rows(probe)
            if len(data) <= self.limit:
                best, best_kept = data, probe
                low = probe + 1
            else:
                high = probe - 1
            probe = (low + high) // 2
        if best is not None:
            return best, total - best_kept
        return self._minimal(payload), total

    def _minimal(self, payload: dict[str, Any]) -> bytes:
        """Return the payload with no rows and no rate limits, or less if that is still too large."""
        dropped_rows = _dropped_rows(payload["running"], payload["retrying"], 0, 0)
        smaller = dict(payload, running=[], retrying=[], rate_limits=None, dropped_rows=dropped_rows)
        data = self._encode(smaller)
        if len(data) <= self.limit:
            return data
        bare = {"generated_at": payload["generated_at"], "dropped_rows": dropped_rows}
        data = self._encode(bare)
        return data if len(data) <= self.limit else _MINIMAL_PAYLOAD


def event_attributes(snapshot: SystemSnapshot, payload: Payload) -> dict[str, Any]:
    """Return the attributes of the ``symphony.snapshot`` event."""
    totals = snapshot.codex_totals
    completed = snapshot.completed_count
    input_tokens = totals.get("input_tokens", 0)
    output_tokens = totals.get("output_tokens", 0)
    return {
        ATTR_JSON: payload.text,
        ATTR_TRUNCATED: payload.truncated,
        ATTR_DROPPED_ROWS: payload.dropped_rows,
        "symphony.workers.running": len(snapshot.running),
        "symphony.retry_queue.size": len(snapshot.retrying),
        # A generated snapshot has counts in range, so only hand-built ones need the clamp.
        "symphony.issues.completed": completed
        if type(completed) is int and 0 <= completed <= _INT64_MAX
        else _attribute_int(completed),
        "symphony.tokens.input": input_tokens
        if type(input_tokens) is int and 0 <= input_tokens <= _INT64_MAX
        else _attribute_int(input_tokens),
        "symphony.tokens.output": output_tokens
        if type(output_tokens) is int and 0 <= output_tokens <= _INT64_MAX
        else _attribute_int(output_tokens),
    }


_INT64_MAX: Final = 2**63 - 1


def _attribute_int(value: Any) -> int:
    # OTLP carries attribute integers as int64.
    if isinstance(value, int):
        return min(max(value, 0), _INT64_MAX)
    return 0


def _dropped_rows(
    running: list[Any], retrying: list[Any], kept_running: int, kept_retrying: int
) -> dict[str, int]:
    return {"running": len(running) - kept_running, "retrying": len(retrying) - kept_retrying}


def _dumps_orjson(payload: Any) -> bytes:
    assert _orjson is not None
    return _orjson.dumps(payload)


def _dumps_json(payload: Any) -> bytes:
    return json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode(
        "utf-8"
    )


def _repair(value: Any) -> Any:
    """Copy ``value`` with strings made valid UTF-8, and non-finite floats and integers too long to print as None."""
    if isinstance(value, str):
        return _valid_text(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        try:
            str(value)
        except ValueError:  # more digits than sys.get_int_max_str_digits() allows
            return None
        return value
    if isinstance(value, dict):
        return {_valid_text(str(k)): _repair(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_repair(item) for item in value]
    if value is None or isinstance(value, (bool, int)):
        return value
    return _valid_text(str(value))


def _valid_text(text: str) -> str:
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        # Pairs of surrogates become the character they encode; lone ones U+FFFD.
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
