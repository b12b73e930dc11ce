"""Tests of the recorder settings: defaults, ``SYMPHONY_OTEL_*`` variables, precedence and errors."""

from __future__ import annotations

from typing import Any

import pytest

from symphony_otel.settings import RecorderSettings
from tests.metrics_helpers import Telemetry

ALL_VARIABLES = (
    "SYMPHONY_OTEL_PAYLOAD_LIMIT",
    "SYMPHONY_OTEL_EVENT_MODE",
    "SYMPHONY_OTEL_WORKER_SERIES_LIMIT",
    "SYMPHONY_OTEL_STALE_AFTER",
    "SYMPHONY_OTEL_REDACT_LOCATIONS",
    "SYMPHONY_OTEL_REDACT_SECRETS",
    "SYMPHONY_OTEL_ORCHESTRATOR_NAME",
)

FULL_ENVIRONMENT = {
    "SYMPHONY_OTEL_PAYLOAD_LIMIT": "4096",
    "SYMPHONY_OTEL_EVENT_MODE": "both",
    "SYMPHONY_OTEL_WORKER_SERIES_LIMIT": "7",
    "SYMPHONY_OTEL_STALE_AFTER": "90.5",
    "SYMPHONY_OTEL_REDACT_LOCATIONS": "true",
    "SYMPHONY_OTEL_REDACT_SECRETS": "false",
    "SYMPHONY_OTEL_ORCHESTRATOR_NAME": "from-env",
}


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ALL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", raising=False)


def test_settings_defaults() -> None:
    settings = RecorderSettings.resolve(environ={})

    assert settings == RecorderSettings(
        payload_limit=32768,
        event_mode="span",
        worker_series_limit=100,
        stale_after=None,
        redact_locations=False,
        redact_secrets=True,
        orchestrator_name=None,
    )


def test_settings_from_environment() -> None:
    settings = RecorderSettings.resolve(environ=FULL_ENVIRONMENT)

    assert settings == RecorderSettings(
        payload_limit=4096,
        event_mode="both",
        worker_series_limit=7,
        stale_after=90.5,
        redact_locations=True,
        redact_secrets=False,
        orchestrator_name="from-env",
    )


def test_settings_arguments_beat_environment() -> None:
    settings = RecorderSettings.resolve(
        payload_limit=1024,
        event_mode="log",
        worker_series_limit=3,
        stale_after=5.0,
        redact_locations=False,
        redact_secrets=True,
        orchestrator_name="from-argument",
        environ=FULL_ENVIRONMENT,
    )

    assert settings == RecorderSettings(
        payload_limit=1024,
        event_mode="log",
        worker_series_limit=3,
        stale_after=5.0,
        redact_locations=False,
        redact_secrets=True,
        orchestrator_name="from-argument",
    )


def test_settings_blank_environment_means_default() -> None:
    blank = {name: "  " for name in ALL_VARIABLES}

    assert RecorderSettings.resolve(environ=blank) == RecorderSettings()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", True), ("TRUE", True), ("yes", True), (" on ", True), ("0", False), ("False", False), ("no", False), ("off", False)],
)
def test_settings_flag_spellings(raw: str, expected: bool) -> None:
    settings = RecorderSettings.resolve(environ={"SYMPHONY_OTEL_REDACT_LOCATIONS": raw})

    assert settings.redact_locations is expected


@pytest.mark.parametrize("raw", ["LOG", " Both ", "span"])
def test_settings_event_mode_case_and_space(raw: str) -> None:
    from_environment = RecorderSettings.resolve(environ={"SYMPHONY_OTEL_EVENT_MODE": raw})
    from_argument = RecorderSettings.resolve(event_mode=raw, environ={})

    assert from_environment.event_mode == raw.strip().lower()
    assert from_argument.event_mode == raw.strip().lower()


def test_settings_orchestrator_name_stripped() -> None:
    assert RecorderSettings.resolve(orchestrator_name=" east ", environ={}).orchestrator_name == "east"
    assert RecorderSettings.resolve(environ={"SYMPHONY_OTEL_ORCHESTRATOR_NAME": " west "}).orchestrator_name == "west"


def test_settings_minimums_accepted() -> None:
    settings = RecorderSettings.resolve(payload_limit=256, worker_series_limit=1, stale_after=0.05, environ={})

    assert (settings.payload_limit, settings.worker_series_limit, settings.stale_after) == (256, 1, 0.05)


def test_settings_whole_float_payload_limit() -> None:
    assert RecorderSettings.resolve(payload_limit=2048.0, environ={}).payload_limit == 2048  # type: ignore[arg-type]


def test_stale_after_default_three_polls_floor_60() -> None:
    settings = RecorderSettings.resolve(environ={})

    assert settings.stale_after_for(0) == 60.0
    assert settings.stale_after_for(5_000) == 60.0
    assert settings.stale_after_for(20_000) == 60.0
    assert settings.stale_after_for(30_000) == 90.0


def test_stale_after_setting_overrides_polls() -> None:
    settings = RecorderSettings.resolve(stale_after=0.05, environ={})

    assert settings.stale_after_for(30_000) == 0.05


# (argument name, argument value) or (variable, raw text), and what the message must contain.
INVALID_ARGUMENTS: list[tuple[str, Any, str]] = [
    ("payload_limit", 255, "payload_limit must be an integer of at least 256, got 255"),
    ("payload_limit", 0, "payload_limit must be an integer of at least 256, got 0"),
    ("payload_limit", 1024.5, "payload_limit must be an integer of at least 256, got 1024.5"),
    ("payload_limit", float("inf"), "payload_limit must be an integer of at least 256, got inf"),
    ("payload_limit", True, "payload_limit must be an integer of at least 256, got True"),
    ("payload_limit", "lots", "payload_limit must be an integer of at least 256, got 'lots'"),
    ("worker_series_limit", 0, "worker_series_limit must be an integer of at least 1, got 0"),
    ("worker_series_limit", -5, "worker_series_limit must be an integer of at least 1, got -5"),
    ("event_mode", "trace", "event_mode must be one of span, log, both; got 'trace'"),
    ("stale_after", 0, "stale_after must be a positive number of seconds, got 0"),
    ("stale_after", -1.5, "stale_after must be a positive number of seconds, got -1.5"),
    ("stale_after", float("nan"), "stale_after must be a positive number of seconds, got nan"),
    ("stale_after", float("inf"), "stale_after must be a positive number of seconds, got inf"),
    ("stale_after", "soon", "stale_after must be a positive number of seconds, got 'soon'"),
    ("redact_locations", "yes", "redact_locations must be True or False, got 'yes'"),
    ("redact_secrets", 1, "redact_secrets must be True or False, got 1"),
    ("orchestrator_name", "  ", "orchestrator_name must be a non-empty string, got '  '"),
    ("orchestrator_name", 7, "orchestrator_name must be a non-empty string, got 7"),
]

INVALID_VARIABLES: list[tuple[str, str, str]] = [
    ("SYMPHONY_OTEL_PAYLOAD_LIMIT", "100", "SYMPHONY_OTEL_PAYLOAD_LIMIT must be an integer of at least 256, got '100'"),
    ("SYMPHONY_OTEL_PAYLOAD_LIMIT", "32k", "SYMPHONY_OTEL_PAYLOAD_LIMIT must be an integer of at least 256, got '32k'"),
    (
        "SYMPHONY_OTEL_WORKER_SERIES_LIMIT",
        "0",
        "SYMPHONY_OTEL_WORKER_SERIES_LIMIT must be an integer of at least 1, got '0'",
    ),
    ("SYMPHONY_OTEL_EVENT_MODE", "metrics", "SYMPHONY_OTEL_EVENT_MODE must be one of span, log, both; got 'metrics'"),
    ("SYMPHONY_OTEL_STALE_AFTER", "-3", "SYMPHONY_OTEL_STALE_AFTER must be a positive number of seconds, got '-3'"),
    ("SYMPHONY_OTEL_STALE_AFTER", "1m", "SYMPHONY_OTEL_STALE_AFTER must be a positive number of seconds, got '1m'"),
    (
        "SYMPHONY_OTEL_REDACT_LOCATIONS",
        "maybe",
        "SYMPHONY_OTEL_REDACT_LOCATIONS must be one of true, false, 1, 0, yes, no, on, off; got 'maybe'",
    ),
    (
        "SYMPHONY_OTEL_REDACT_SECRETS",
        "disabled",
        "SYMPHONY_OTEL_REDACT_SECRETS must be one of true, false, 1, 0, yes, no, on, off; got 'disabled'",
    ),
]


@pytest.mark.parametrize(("argument", "value", "message"), INVALID_ARGUMENTS)
def test_invalid_argument_names_setting_rule_value(argument: str, value: Any, message: str) -> None:
    with pytest.raises(ValueError) as failure:
        RecorderSettings.resolve(environ={}, **{argument: value})

    assert str(failure.value) == message


@pytest.mark.parametrize(("variable", "raw", "message"), INVALID_VARIABLES)
def test_invalid_variable_names_setting_rule_value(variable: str, raw: str, message: str) -> None:
    with pytest.raises(ValueError) as failure:
        RecorderSettings.resolve(environ={variable: raw})

    assert str(failure.value) == message


def test_valid_argument_hides_invalid_variable() -> None:
    settings = RecorderSettings.resolve(payload_limit=1024, environ={"SYMPHONY_OTEL_PAYLOAD_LIMIT": "tiny"})

    assert settings.payload_limit == 1024


# --- Through the generator's constructor --------------------------------------------------


def test_generator_reads_environment(monkeypatch: pytest.MonkeyPatch, clean_environment: None) -> None:
    for name, value in FULL_ENVIRONMENT.items():
        monkeypatch.setenv(name, value)

    generator = Telemetry().generator()

    assert generator.settings == RecorderSettings.resolve(environ=FULL_ENVIRONMENT)
    assert generator.payload_limit == 4096
    generator.close()


def test_generator_arguments_beat_environment(monkeypatch: pytest.MonkeyPatch, clean_environment: None) -> None:
    monkeypatch.setenv("SYMPHONY_OTEL_PAYLOAD_LIMIT", "4096")
    monkeypatch.setenv("SYMPHONY_OTEL_ORCHESTRATOR_NAME", "from-env")

    generator = Telemetry().generator(payload_limit=1024, orchestrator_name="from-argument")

    assert generator.payload_limit == 1024
    assert generator.settings.orchestrator_name == "from-argument"
    generator.close()


def test_generator_defaults(clean_environment: None) -> None:
    generator = Telemetry().generator()

    assert generator.settings == RecorderSettings()
    assert generator.payload_limit == 32768
    generator.close()


def test_generator_invalid_variable_raises(monkeypatch: pytest.MonkeyPatch, clean_environment: None) -> None:
    monkeypatch.setenv("SYMPHONY_OTEL_WORKER_SERIES_LIMIT", "none")
    telemetry = Telemetry()

    with pytest.raises(ValueError, match="SYMPHONY_OTEL_WORKER_SERIES_LIMIT must be an integer of at least 1, got 'none'"):
        telemetry.generator()

    # The failed construction left the provider free for a generator without a name.
    monkeypatch.delenv("SYMPHONY_OTEL_WORKER_SERIES_LIMIT")
    telemetry.generator().close()
