"""Tests of the ``symphony.snapshot`` payload: encoding, valid UTF-8 and JSON, the size limit, event attributes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.sdk.trace import SpanLimits, TracerProvider

from symphony_otel.recorder import events
from symphony_otel.recorder.events import (
    Payload,
    PayloadEncoder,
    attribute_length_limit,
    event_attributes,
)
from symphony_otel.recorder.redaction import Redactor
from symphony_otel.snapshot import SystemSnapshot
from tests.metrics_helpers import (
    ELIXIR_STATE_FIXTURES,
    FIXTURE_15,
    Telemetry,
    load_snapshot,
    retry,
    snapshot,
    worker,
)


@pytest.fixture(params=[True, False], ids=["orjson", "json"])
def use_orjson(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.fixture
def no_attribute_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", raising=False)
    monkeypatch.delenv("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", raising=False)


def encoder(limit: int = 32 * 1024, *, use_orjson: bool = True) -> PayloadEncoder:
    return PayloadEncoder(limit, Redactor(), use_orjson=use_orjson)


def decoded(payload: Payload) -> dict[str, Any]:
    data = payload.text.encode("utf-8")
    assert len(data) == payload.size
    return json.loads(data)


def many_rows(count: int, text: str = "agent exited: port_exit 3") -> SystemSnapshot:
    return snapshot(
        running=[worker(f"FAKE-{n}", input_tokens=n, turns=1) for n in range(count)],
        retrying=[retry(f"FAKE-{1000 + n}", attempt=n, error=f"{text} #{n}") for n in range(count)],
    )


# --- Encoding ------------------------------------------------------------------------


@pytest.mark.parametrize("fixture", ELIXIR_STATE_FIXTURES)
def test_encode_fixture_payload_is_to_dict(fixture: str, use_orjson: bool) -> None:
    snap = load_snapshot(fixture)

    payload = encoder(use_orjson=use_orjson).encode(snap)

    assert decoded(payload) == snap.to_dict()
    assert payload.dropped_rows == 0
    assert payload.truncated is False


def test_encode_fixture_15_same_bytes_both_paths() -> None:
    snap = load_snapshot(FIXTURE_15)

    fast = encoder(use_orjson=True).encode(snap)
    plain = encoder(use_orjson=False).encode(snap)

    assert fast.text == plain.text
    assert fast.size == 4329


def test_encoder_path_orjson_or_json(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    class CountingOrjson:
        @staticmethod
        def dumps(value: Any) -> bytes:
            calls.append(1)
            return orjson.dumps(value)

    monkeypatch.setattr(events, "_orjson", CountingOrjson)
    snap = load_snapshot(FIXTURE_15)

    encoder(use_orjson=False).encode(snap)
    assert calls == []
    fast = encoder(use_orjson=True)
    fast.encode(snap)
    # Each row, then the rest of the payload.
    rows = len(snap.running) + len(snap.retrying)
    assert rows == 6
    assert len(calls) == rows + 1
    # The rows are cached by their values: encoding the same snapshot again
    # encodes only the rest.
    fast.encode(snap)
    assert len(calls) == rows + 2


def test_encode_lone_surrogates_replaced(use_orjson: bool) -> None:
    snap = snapshot(retrying=[retry("FAKE-1", error="bad \ud800 byte and \udfff end")])

    payload = encoder(use_orjson=use_orjson).encode(snap)

    assert decoded(payload)["retrying"][0]["error"] == "bad \ufffd byte and \ufffd end"


def test_encode_surrogate_pair_becomes_character(use_orjson: bool) -> None:
    snap = snapshot(
        retrying=[retry("FAKE-1", error="rocket \ud83d\ude80 and lone \ud800")],
    )

    payload = encoder(use_orjson=use_orjson).encode(snap)

    assert decoded(payload)["retrying"][0]["error"] == "rocket \U0001f680 and lone \ufffd"


def test_encode_control_characters_escaped(use_orjson: bool) -> None:
    text = "nul\x00 bell\x07 esc\x1b del\x7f tab\t newline\n quote\" backslash\\"
    snap = snapshot(retrying=[retry("FAKE-1", error=text)])

    payload = encoder(use_orjson=use_orjson).encode(snap)

    assert decoded(payload)["retrying"][0]["error"] == text
    assert "\x00" not in payload.text
    assert "\x1b" not in payload.text
    assert "\n" not in payload.text


def test_encode_non_ascii_stays_readable(use_orjson: bool) -> None:
    text = "Grüße aus Zürich — 東京 🚀"
    snap = snapshot(retrying=[retry("FAKE-1", error=text)], rate_limits={"plan": "Größe"})

    payload = encoder(use_orjson=use_orjson).encode(snap)

    assert text in payload.text
    assert "Größe" in payload.text
    assert "\\u" not in payload.text


def test_encode_non_finite_floats_become_null(use_orjson: bool) -> None:
    snap = snapshot(
        rate_limits={"primary": {"used_percent": float("nan"), "resets_at": float("inf")}, "low": float("-inf")},
        next_poll_due_at_ms=float("nan"),
    )

    payload = decoded(encoder(use_orjson=use_orjson).encode(snap))

    assert payload["rate_limits"] == {"primary": {"used_percent": None, "resets_at": None}, "low": None}
    assert payload["next_poll_due_at_ms"] is None


def test_encode_huge_ints(use_orjson: bool) -> None:
    snap = snapshot(
        rate_limits={"big": 2**70, "negative": -(2**70), "u64": 2**64 - 1, "enormous": 10**5000},
        completed_count=2**65,
    )

    payload = decoded(encoder(use_orjson=use_orjson).encode(snap))

    assert payload["rate_limits"] == {"big": 2**70, "negative": -(2**70), "u64": 2**64 - 1, "enormous": None}
    assert payload["completed_count"] == 2**65


def test_encode_non_string_keys_become_strings(use_orjson: bool) -> None:
    snap = snapshot(rate_limits={1: "one", "2": {3: None}})

    payload = decoded(encoder(use_orjson=use_orjson).encode(snap))

    assert payload["rate_limits"] == {"1": "one", "2": {"3": None}}


# --- Size limit -----------------------------------------------------------------------


def test_limit_drops_retrying_rows_first(use_orjson: bool) -> None:
    snap = many_rows(40)
    full = decoded(encoder(10**6, use_orjson=use_orjson).encode(snap))

    payload = encoder(4096, use_orjson=use_orjson).encode(snap)
    body = decoded(payload)

    assert payload.size <= 4096
    assert payload.truncated is True
    kept_running, kept_retrying = len(body["running"]), len(body["retrying"])
    assert kept_retrying == 0
    assert 0 < kept_running < 40
    assert body["running"] == full["running"][:kept_running]
    assert body["dropped_rows"] == {"running": 40 - kept_running, "retrying": 40}
    assert payload.dropped_rows == 80 - kept_running


def test_limit_keeps_running_drops_some_retrying(use_orjson: bool) -> None:
    snap = many_rows(20)
    unlimited = encoder(10**6, use_orjson=use_orjson).encode(snap)
    full = decoded(unlimited)
    limit = unlimited.size - 500

    payload = encoder(limit, use_orjson=use_orjson).encode(snap)
    body = decoded(payload)

    assert payload.size <= limit
    assert body["running"] == full["running"]
    kept_retrying = len(body["retrying"])
    assert 0 < kept_retrying < 20
    assert body["retrying"] == full["retrying"][:kept_retrying]
    assert body["dropped_rows"] == {"running": 0, "retrying": 20 - kept_retrying}
    assert payload.dropped_rows == 20 - kept_retrying


def test_limit_keeps_most_rows_that_fit(use_orjson: bool) -> None:
    snap = many_rows(30)
    payload = encoder(6000, use_orjson=use_orjson).encode(snap)
    kept_rows = 60 - payload.dropped_rows

    # One more row would not have fitted.
    body = decoded(payload)
    rows = snap.to_dict()
    bigger = dict(body, running=rows["running"][: kept_rows + 1])
    bigger["dropped_rows"] = {"running": 30 - (kept_rows + 1), "retrying": 30}
    assert len(json.dumps(bigger, ensure_ascii=False, separators=(",", ":")).encode()) > 6000


def test_limit_exact_size_not_truncated(use_orjson: bool) -> None:
    snap = load_snapshot(FIXTURE_15)

    at_limit = encoder(4329, use_orjson=use_orjson).encode(snap)
    below = encoder(4328, use_orjson=use_orjson).encode(snap)

    assert (at_limit.size, at_limit.truncated, at_limit.dropped_rows) == (4329, False, 0)
    assert below.truncated is True
    assert below.size <= 4328
    assert below.dropped_rows == 1
    assert decoded(below)["dropped_rows"] == {"running": 0, "retrying": 1}


def test_limit_multibyte_rows_never_cut(use_orjson: bool) -> None:
    error = "Zustand geändert — 東京の状態 🚀 " * 20
    snap = many_rows(25, text=error)

    payload = encoder(3000, use_orjson=use_orjson).encode(snap)
    body = decoded(payload)

    assert payload.size <= 3000
    for row in body["retrying"]:
        assert row["error"].startswith(error)
    assert len(body["running"]) + len(body["retrying"]) == 50 - payload.dropped_rows


def test_limit_without_rows_drops_rate_limits(use_orjson: bool) -> None:
    snap = snapshot(rate_limits={"note": "x" * 2000})

    payload = encoder(512, use_orjson=use_orjson).encode(snap)
    body = decoded(payload)

    assert payload.size <= 512
    assert payload.truncated is True
    assert payload.dropped_rows == 0
    assert body["rate_limits"] is None
    assert body["dropped_rows"] == {"running": 0, "retrying": 0}
    assert body["codex_totals"] == snap.codex_totals


def test_limit_tiny_keeps_generated_at_only(use_orjson: bool) -> None:
    snap = many_rows(3)

    payload = encoder(100, use_orjson=use_orjson).encode(snap)

    assert payload.size <= 100
    assert decoded(payload) == {
        "generated_at": "2026-12-04T19:34:01Z",
        "dropped_rows": {"running": 3, "retrying": 3},
    }
    assert payload.dropped_rows == 6


ROW_TEXT = st.text(max_size=60) | st.sampled_from(["\ud800", "a\udfffb", "😀" * 10, "\x00\x1f"])


@given(
    running=st.lists(st.tuples(ROW_TEXT, st.integers(min_value=0, max_value=2**70)), max_size=25),
    errors=st.lists(ROW_TEXT, max_size=25),
    limit=st.integers(min_value=256, max_value=6000),
    use_orjson=st.booleans(),
)
def test_limit_property_valid_prefix_within_limit(
    running: list[tuple[str, int]], errors: list[str], limit: int, use_orjson: bool
) -> None:
    snap = snapshot(
        running=[worker(text, input_tokens=tokens) for text, tokens in running],
        retrying=[retry(f"R-{n}", error=text) for n, text in enumerate(errors)],
    )
    full = decoded(encoder(10**7, use_orjson=use_orjson).encode(snap))

    payload = encoder(limit, use_orjson=use_orjson).encode(snap)
    body = decoded(payload)

    assert payload.size <= limit
    kept_running = len(body.get("running", []))
    kept_retrying = len(body.get("retrying", []))
    assert body.get("running", []) == full["running"][:kept_running]
    assert body.get("retrying", []) == full["retrying"][:kept_retrying]
    assert kept_retrying == 0 or kept_running == len(running)
    assert payload.dropped_rows == len(running) + len(errors) - kept_running - kept_retrying
    if payload.truncated:
        assert body["dropped_rows"] == {
            "running": len(running) - kept_running,
            "retrying": len(errors) - kept_retrying,
        }
    else:
        assert body == full


# --- Attribute length limits ------------------------------------------------------------


def test_attribute_limit_from_environment(monkeypatch: pytest.MonkeyPatch, no_attribute_limit: None) -> None:
    assert attribute_length_limit() is None

    monkeypatch.setenv("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "2048")

    assert attribute_length_limit() == 2048
    assert attribute_length_limit(object()) == 2048


def test_attribute_limit_from_span_limits(no_attribute_limit: None) -> None:
    provider = TracerProvider(span_limits=SpanLimits(max_attribute_length=1500))

    assert attribute_length_limit(provider) == 1500
    assert attribute_length_limit(TracerProvider()) is None


def test_attribute_limit_lower_env_wins(monkeypatch: pytest.MonkeyPatch, no_attribute_limit: None) -> None:
    monkeypatch.setenv("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "1000")
    telemetry = Telemetry()
    generator = telemetry.generator()

    generator.record(load_snapshot(FIXTURE_15))

    assert generator.payload_limit == 1000
    (event,) = telemetry.spans()[0].events
    text = event.attributes["symphony.snapshot.json"]
    assert len(text.encode()) <= 1000
    assert json.loads(text)["dropped_rows"] == {"running": 2, "retrying": 3}
    assert event.attributes["symphony.snapshot.dropped_rows"] == 5
    assert event.attributes["symphony.snapshot.truncated"] is True
    generator.close()


def test_attribute_limit_span_limits_win(no_attribute_limit: None) -> None:
    telemetry = Telemetry(span_limits=SpanLimits(max_attribute_length=2000))
    generator = telemetry.generator(payload_limit=4096)

    generator.record(load_snapshot(FIXTURE_15))

    assert generator.payload_limit == 2000
    (event,) = telemetry.spans()[0].events
    body = json.loads(event.attributes["symphony.snapshot.json"])
    assert len(event.attributes["symphony.snapshot.json"].encode()) <= 2000
    assert len(body["running"]) == 3
    generator.close()


def test_attribute_limit_higher_keeps_payload_limit(
    monkeypatch: pytest.MonkeyPatch, no_attribute_limit: None
) -> None:
    monkeypatch.setenv("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "100000")
    generator = Telemetry().generator()

    assert generator.payload_limit == 32 * 1024
    generator.close()


# --- Event attributes ---------------------------------------------------------------------


def test_event_attributes_fixture_15() -> None:
    snap = load_snapshot(FIXTURE_15)
    payload = encoder().encode(snap)

    attributes = event_attributes(snap, payload)

    assert attributes == {
        "symphony.snapshot.json": payload.text,
        "symphony.snapshot.truncated": False,
        "symphony.snapshot.dropped_rows": 0,
        "symphony.workers.running": 3,
        "symphony.retry_queue.size": 3,
        "symphony.issues.completed": 0,
        "symphony.tokens.input": 259485,
        "symphony.tokens.output": 40334,
    }


def test_event_attributes_ints_fit_int64() -> None:
    snap = snapshot(
        completed_count=2**70,
        codex_totals={"input_tokens": 2**64, "output_tokens": 5, "total_tokens": 0, "seconds_running": 0},
    )

    attributes = event_attributes(snap, encoder().encode(snap))

    assert attributes["symphony.issues.completed"] == 2**63 - 1
    assert attributes["symphony.tokens.input"] == 2**63 - 1
    assert attributes["symphony.tokens.output"] == 5


@pytest.fixture
def fixture_15_rows() -> Iterator[SystemSnapshot]:
    yield load_snapshot(FIXTURE_15)


def test_event_attributes_truncated_counts(fixture_15_rows: SystemSnapshot) -> None:
    payload = encoder(1200).encode(fixture_15_rows)

    attributes = event_attributes(fixture_15_rows, payload)

    assert attributes["symphony.snapshot.truncated"] is True
    assert attributes["symphony.snapshot.dropped_rows"] == payload.dropped_rows
    assert payload.dropped_rows == 6 - len(decoded(payload)["running"]) - len(decoded(payload)["retrying"])
    assert attributes["symphony.workers.running"] == 3
