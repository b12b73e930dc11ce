"""Tests of OTelSnapshotGenerator with the OpenTelemetry SDK and in-memory exporters."""

from __future__ import annotations

import json
import logging
import random
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import _logs, metrics, trace
from opentelemetry.metrics import ObservableCounter, ObservableGauge
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, Gauge, InMemoryMetricReader, Sum
from opentelemetry.sdk.metrics.view import View
from opentelemetry.trace import SpanKind

from symphony_otel import (
    OTelSnapshotGenerator,
    RetryEntry,
    RunningEntry,
    SnapshotGenerator,
)
from symphony_otel.recorder import generator as generator_module
from symphony_otel.recorder import instruments
from symphony_otel.recorder.instruments import ATTR_OVERFLOW, INSTRUMENT_SPECS
from tests.metrics_helpers import (
    FIXTURE_15,
    FIXTURE_18,
    OrchestratorState,
    Point,
    Telemetry,
    TokenTotals,
    collect,
    fixtures_dir,
    load_body,
    load_snapshot,
    metrics_of,
    only,
    point,
    snapshot,
    state_of,
    without,
    worker,
)

LEVEL_GAUGES = {spec.name for spec in INSTRUMENT_SPECS if spec.kind == "gauge"} - {"symphony.snapshot.age"}
# 1515 s before fixture 15's primary window resets at 1796416439.
WALL_NOW = 1796414924.0

FIXTURE_15_POINTS: dict[Point, Any] = {
    point("symphony.workers.running"): 3,
    point("symphony.workers.limit"): 10,
    point("symphony.workers.overflow"): 0,
    point("symphony.retry_queue.size"): 3,
    point("symphony.poll.interval"): 30.0,
    point("symphony.poll.in_progress"): 0,
    point("symphony.snapshot.age"): 2.5,
    point("symphony.rate_limit.utilization", {"symphony.rate_limit.window": "primary", "symphony.rate_limit.id": "codex"}): 0.3,
    point("symphony.rate_limit.utilization", {"symphony.rate_limit.window": "secondary", "symphony.rate_limit.id": "codex"}): 0.075,
    point("symphony.rate_limit.reset", {"symphony.rate_limit.window": "primary", "symphony.rate_limit.id": "codex"}): 1515.0,
    point("symphony.rate_limit.reset", {"symphony.rate_limit.window": "secondary", "symphony.rate_limit.id": "codex"}): 257115.0,
    point("symphony.worker.tokens", {"symphony.issue.identifier": "FAKE-101", "gen_ai.token.type": "input"}): 69461,
    point("symphony.worker.tokens", {"symphony.issue.identifier": "FAKE-101", "gen_ai.token.type": "output"}): 10686,
    point("symphony.worker.tokens", {"symphony.issue.identifier": "FAKE-102", "gen_ai.token.type": "input"}): 65654,
    point("symphony.worker.tokens", {"symphony.issue.identifier": "FAKE-102", "gen_ai.token.type": "output"}): 10122,
    point("symphony.worker.tokens", {"symphony.issue.identifier": "FAKE-103", "gen_ai.token.type": "input"}): 70962,
    point("symphony.worker.tokens", {"symphony.issue.identifier": "FAKE-103", "gen_ai.token.type": "output"}): 11658,
    point("symphony.worker.turns", {"symphony.issue.identifier": "FAKE-101"}): 2,
    point("symphony.worker.turns", {"symphony.issue.identifier": "FAKE-102"}): 2,
    point("symphony.worker.turns", {"symphony.issue.identifier": "FAKE-103"}): 2,
    point("symphony.tokens", {"gen_ai.token.type": "input"}): 259485,
    point("symphony.tokens", {"gen_ai.token.type": "output"}): 40334,
    point("symphony.agent.runtime"): 37,
    point("symphony.issues.completed"): 0,
    point("symphony.snapshot.payload.dropped_rows"): 0,
    point("symphony.snapshot.record_errors"): 0,
}


class FakeClock:
    """Stands in for the ``time`` module inside the generator module."""

    def __init__(self) -> None:
        self.now = 500.0
        self.wall = WALL_NOW

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.wall


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(generator_module, "time", fake)
    return fake


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    pipeline = Telemetry()
    yield pipeline
    pipeline.shutdown()


def names_of(points: dict[Point, Any]) -> set[str]:
    return {name for name, _attributes in points}


def totals_state(input_tokens: int, output_tokens: int, seconds: float, completed: int) -> OrchestratorState:
    return OrchestratorState(
        codex_totals=TokenTotals(input_tokens, output_tokens, input_tokens + output_tokens, seconds),
        completed={f"id-{n}" for n in range(completed)},
    )


# --- generate() and the providers ------------------------------------------------------


def test_generate_returns_base_class_snapshot(telemetry: Telemetry) -> None:
    state = state_of(load_body(FIXTURE_15))
    generator = telemetry.generator()

    recorded = generator.generate(state)
    plain = SnapshotGenerator().generate(state)

    assert type(recorded) is type(plain)
    ours, theirs = recorded.to_dict(), plain.to_dict()
    ours.pop("generated_at")
    theirs.pop("generated_at")
    assert ours == theirs
    assert generator.latest is not None
    assert generator.latest.snapshot is recorded


def test_generate_fixture_15_every_metric(telemetry: Telemetry, clock: FakeClock) -> None:
    generator = telemetry.generator()

    generator.generate(state_of(load_body(FIXTURE_15)))
    clock.now += 2.5

    assert telemetry.collect() == FIXTURE_15_POINTS


def test_record_fixture_15_body(telemetry: Telemetry, clock: FakeClock) -> None:
    generator = telemetry.generator(orchestrator_name="elixir")

    generator.record(load_snapshot(FIXTURE_15))
    clock.now += 2.5

    # The body carries neither the poll interval nor the concurrency limit.
    expected = without(FIXTURE_15_POINTS, "symphony.workers.limit", "symphony.poll.interval")
    named = {
        point(name, {**dict(attributes), "symphony.orchestrator.name": "elixir"}): value
        for (name, attributes), value in expected.items()
    }
    assert telemetry.collect() == named


def test_generate_invalid_state_raises_type_error(telemetry: Telemetry) -> None:
    generator = telemetry.generator()

    with pytest.raises(TypeError):
        generator.generate(None)

    assert generator.latest is None


def test_generate_counts_invalid_values(telemetry: Telemetry) -> None:
    state = OrchestratorState()
    state.running["id-1"] = RunningEntry(issue_id="id-1", identifier="FAKE-1", turn_count="many")  # type: ignore[arg-type]
    generator = telemetry.generator()

    generator.generate(state)

    points = telemetry.collect()
    assert only(points, "symphony.snapshot.invalid_values") == {
        frozenset({("symphony.snapshot.field", "turn_count")}): 1
    }
    assert points[point("symphony.worker.turns", {"symphony.issue.identifier": "FAKE-1"})] == 0


def test_instruments_all_observable(telemetry: Telemetry) -> None:
    generator = telemetry.generator()
    generator.record(load_snapshot(FIXTURE_15))

    assert len(generator._instruments) == len(INSTRUMENT_SPECS)
    for instrument, spec in zip(generator._instruments, INSTRUMENT_SPECS):
        expected_type = ObservableCounter if spec.kind == "counter" else ObservableGauge
        assert isinstance(instrument, expected_type), spec.name


def test_exported_kinds_units_descriptions(telemetry: Telemetry) -> None:
    generator = telemetry.generator()
    generator.record(load_snapshot(FIXTURE_15))
    generator.value_report.invalid("turn_count", "many", "must be an integer")
    rate_limits = dict(load_body(FIXTURE_15)["rate_limits"], credits={"balance": 3})
    generator.record(snapshot(rate_limits=rate_limits, running=[worker("FAKE-1")]))

    exported = metrics_of(telemetry.reader.get_metrics_data())

    assert set(exported) == {spec.name for spec in INSTRUMENT_SPECS}
    for spec in INSTRUMENT_SPECS:
        metric = exported[spec.name]
        assert (metric.unit, metric.description) == (spec.unit, spec.description)
        if spec.kind == "counter":
            assert isinstance(metric.data, Sum), spec.name
            assert metric.data.is_monotonic is True
            assert metric.data.aggregation_temporality == AggregationTemporality.CUMULATIVE
        else:
            assert isinstance(metric.data, Gauge), spec.name


def test_explicit_providers_get_everything(telemetry: Telemetry) -> None:
    generator = telemetry.generator(event_mode="both")

    generator.record(load_snapshot(FIXTURE_15))

    assert telemetry.collect()[point("symphony.workers.running")] == 3
    assert [span.name for span in telemetry.spans()] == ["symphony.snapshot"]
    assert [record.log_record.event_name for record in telemetry.logs()] == ["symphony.snapshot"]


def test_never_installs_global_providers(telemetry: Telemetry) -> None:
    before = (metrics.get_meter_provider(), trace.get_tracer_provider(), _logs.get_logger_provider())

    with_globals = OTelSnapshotGenerator(orchestrator_name="globals-untouched", event_mode="both")
    with_globals.record(load_snapshot(FIXTURE_15))
    explicit = telemetry.generator(event_mode="both")
    explicit.record(load_snapshot(FIXTURE_15))

    after = (metrics.get_meter_provider(), trace.get_tracer_provider(), _logs.get_logger_provider())
    assert all(first is second for first, second in zip(before, after))
    with_globals.close()


GLOBAL_PROVIDERS_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from opentelemetry import _logs, metrics, trace
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from symphony_otel import OTelSnapshotGenerator, SystemSnapshot

    with open(sys.argv[1], encoding="utf-8") as handle:
        snapshot = SystemSnapshot.from_dict(json.load(handle))
    # Created before the host installs its providers, as at import time.
    early = OTelSnapshotGenerator(orchestrator_name="early", event_mode="both")
    reader = InMemoryMetricReader()
    spans = InMemorySpanExporter()
    logs = InMemoryLogRecordExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    trace.set_tracer_provider(tracer_provider)
    _logs.set_logger_provider(logger_provider)
    late = OTelSnapshotGenerator(orchestrator_name="late", event_mode="both")
    early.record(snapshot)
    late.record(snapshot)

    running = {}
    for resource_metrics in reader.get_metrics_data().resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                if metric.name == "symphony.workers.running":
                    for data_point in metric.data.data_points:
                        running[data_point.attributes["symphony.orchestrator.name"]] = data_point.value
    print(json.dumps({
        "running": running,
        "span_events": sorted(
            (span.instrumentation_scope.attributes["symphony.orchestrator.name"], event.name)
            for span in spans.get_finished_spans() for event in span.events
        ),
        "log_events": [record.log_record.event_name for record in logs.get_finished_logs()],
    }))
    """
)


def test_global_providers_used_when_omitted(tmp_path: Path) -> None:
    script = tmp_path / "global_providers.py"
    script.write_text(GLOBAL_PROVIDERS_SCRIPT, encoding="utf-8")
    fixture = fixtures_dir() / "symphony-elixir" / FIXTURE_15

    result = subprocess.run(
        [sys.executable, str(script), str(fixture)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    assert output["running"] == {"early": 3, "late": 3}
    assert output["span_events"] == [["early", "symphony.snapshot"], ["late", "symphony.snapshot"]]
    assert output["log_events"] == ["symphony.snapshot", "symphony.snapshot"]


# --- Counters, workers, staleness --------------------------------------------------------


def test_counter_reset_keeps_growing(telemetry: Telemetry) -> None:
    generator = telemetry.generator()
    seen = []

    for state in (
        totals_state(100, 10, 30, 2),
        totals_state(150, 15, 40, 3),
        totals_state(30, 5, 4, 0),  # the orchestrator restarted
        totals_state(40, 6, 9, 1),
    ):
        generator.generate(state)
        points = telemetry.collect()
        seen.append(
            (
                points[point("symphony.tokens", {"gen_ai.token.type": "input"})],
                points[point("symphony.tokens", {"gen_ai.token.type": "output"})],
                points[point("symphony.agent.runtime")],
                points[point("symphony.issues.completed")],
            )
        )

    assert seen == [(100, 10, 30, 2), (150, 15, 40, 3), (180, 20, 44, 3), (190, 21, 49, 4)]


def test_worker_leaves_next_export(telemetry: Telemetry) -> None:
    generator = telemetry.generator()

    generator.record(load_snapshot(FIXTURE_15))
    first = telemetry.collect()
    generator.record(load_snapshot(FIXTURE_18))
    second = telemetry.collect()

    assert only(first, "symphony.worker.turns") == {
        frozenset({("symphony.issue.identifier", "FAKE-101")}): 2,
        frozenset({("symphony.issue.identifier", "FAKE-102")}): 2,
        frozenset({("symphony.issue.identifier", "FAKE-103")}): 2,
    }
    assert only(second, "symphony.worker.turns") == {
        frozenset({("symphony.issue.identifier", "FAKE-101")}): 3,
        frozenset({("symphony.issue.identifier", "FAKE-102")}): 3,
    }
    assert only(second, "symphony.worker.tokens") == {
        frozenset({("symphony.issue.identifier", "FAKE-101"), ("gen_ai.token.type", "input")}): 162424,
        frozenset({("symphony.issue.identifier", "FAKE-101"), ("gen_ai.token.type", "output")}): 21260,
        frozenset({("symphony.issue.identifier", "FAKE-102"), ("gen_ai.token.type", "input")}): 165578,
        frozenset({("symphony.issue.identifier", "FAKE-102"), ("gen_ai.token.type", "output")}): 25366,
    }
    assert second[point("symphony.workers.running")] == 2
    assert second[point("symphony.retry_queue.size")] == 4


def test_worker_series_default_limit_100(telemetry: Telemetry, caplog: pytest.LogCaptureFixture) -> None:
    generator = telemetry.generator()
    rows = [worker(f"W-{n:03d}", input_tokens=n, output_tokens=1, turns=1) for n in range(150)]

    with caplog.at_level(logging.WARNING, logger="symphony_otel.recorder.generator"):
        generator.record(snapshot(running=rows))
        generator.record(snapshot(running=rows))
    points = telemetry.collect()

    turns = only(points, "symphony.worker.turns")
    assert len(turns) == 101
    assert turns[frozenset({(ATTR_OVERFLOW, True)})] == 50
    tokens = only(points, "symphony.worker.tokens")
    assert tokens[frozenset({(ATTR_OVERFLOW, True), ("gen_ai.token.type", "input")})] == sum(range(100, 150))
    assert tokens[frozenset({(ATTR_OVERFLOW, True), ("gen_ai.token.type", "output")})] == 50
    assert frozenset({("symphony.issue.identifier", "W-099"), ("gen_ai.token.type", "input")}) in tokens
    assert frozenset({("symphony.issue.identifier", "W-100"), ("gen_ai.token.type", "input")}) not in tokens
    assert points[point("symphony.workers.overflow")] == 50
    assert points[point("symphony.workers.running")] == 150
    warnings = [record for record in caplog.records if "worker series limit" in record.getMessage()]
    assert len(warnings) == 1


def test_worker_series_limit_setting(telemetry: Telemetry) -> None:
    generator = telemetry.generator(worker_series_limit=2)

    generator.record(load_snapshot(FIXTURE_15))
    points = telemetry.collect()

    assert only(points, "symphony.worker.turns") == {
        frozenset({("symphony.issue.identifier", "FAKE-101")}): 2,
        frozenset({("symphony.issue.identifier", "FAKE-102")}): 2,
        frozenset({(ATTR_OVERFLOW, True)}): 2,
    }
    assert points[point("symphony.workers.overflow")] == 1


def test_stale_snapshot_silences_level_gauges(telemetry: Telemetry) -> None:
    generator = telemetry.generator(stale_after=0.05)
    generator.record(load_snapshot(FIXTURE_15))
    assert LEVEL_GAUGES & names_of(telemetry.collect())

    time.sleep(0.15)
    stale = telemetry.collect()

    assert names_of(stale) == {
        "symphony.snapshot.age",
        "symphony.tokens",
        "symphony.agent.runtime",
        "symphony.issues.completed",
        "symphony.snapshot.payload.dropped_rows",
        "symphony.snapshot.record_errors",
    }
    assert 0.15 <= stale[point("symphony.snapshot.age")] < 10
    assert stale[point("symphony.tokens", {"gen_ai.token.type": "input"})] == 259485

    generator.record(load_snapshot(FIXTURE_15))
    assert telemetry.collect()[point("symphony.workers.running")] == 3


def test_stale_after_default_three_poll_intervals(telemetry: Telemetry, clock: FakeClock) -> None:
    generator = telemetry.generator()
    generator.generate(OrchestratorState(poll_interval_ms=40_000))

    clock.now += 120.0
    assert telemetry.collect()[point("symphony.workers.running")] == 0
    clock.now += 0.5
    late = telemetry.collect()

    assert point("symphony.workers.running") not in late
    assert late[point("symphony.snapshot.age")] == 120.5


def test_stale_after_default_floor_60(telemetry: Telemetry, clock: FakeClock) -> None:
    generator = telemetry.generator()
    generator.generate(OrchestratorState(poll_interval_ms=1_000))

    clock.now += 59.0
    assert point("symphony.poll.interval") in telemetry.collect()
    clock.now += 2.0

    assert point("symphony.poll.interval") not in telemetry.collect()


# --- Readers, callbacks and several generators --------------------------------------------------


def test_two_readers_both_get_values(monkeypatch: pytest.MonkeyPatch, clock: FakeClock) -> None:
    calls: dict[str, int] = {}

    def counting(name: str, compute: instruments.ViewCallback) -> instruments.ViewCallback:
        def wrapper(view: Any, ctx: Any) -> Any:
            calls[name] = calls.get(name, 0) + 1
            return compute(view, ctx)

        return wrapper

    for name, compute in list(instruments.CALLBACKS.items()):
        monkeypatch.setitem(instruments.CALLBACKS, name, counting(name, compute))  # type: ignore[arg-type]
    pipeline = Telemetry(readers=2)
    generator = pipeline.generator()
    generator.record(load_snapshot(FIXTURE_15))

    first = collect(pipeline.readers[0])
    second = collect(pipeline.readers[1])

    assert first == second
    assert without(first, "symphony.workers.limit", "symphony.poll.interval") == without(
        FIXTURE_15_POINTS, "symphony.workers.limit", "symphony.poll.interval", "symphony.snapshot.age"
    ) | {point("symphony.snapshot.age"): 0.0}
    assert calls == {spec.name: 2 for spec in INSTRUMENT_SPECS}
    pipeline.shutdown()


def test_same_name_second_generator_raises(telemetry: Telemetry) -> None:
    first = telemetry.generator(orchestrator_name="main")

    with pytest.raises(ValueError, match="already records on this MeterProvider with orchestrator_name 'main'"):
        telemetry.generator(orchestrator_name="main")
    first.close()


def test_no_name_second_generator_raises(telemetry: Telemetry) -> None:
    telemetry.generator()

    with pytest.raises(ValueError, match="give each generator its own orchestrator_name"):
        telemetry.generator()


def test_distinct_names_both_exported(telemetry: Telemetry) -> None:
    east = telemetry.generator(orchestrator_name="east")
    west = telemetry.generator(orchestrator_name="west")

    east.record(load_snapshot(FIXTURE_15))
    west.record(load_snapshot(FIXTURE_18))
    points = telemetry.collect()

    assert only(points, "symphony.workers.running") == {
        frozenset({("symphony.orchestrator.name", "east")}): 3,
        frozenset({("symphony.orchestrator.name", "west")}): 2,
    }
    assert only(points, "symphony.tokens") == {
        frozenset({("symphony.orchestrator.name", "east"), ("gen_ai.token.type", "input")}): 259485,
        frozenset({("symphony.orchestrator.name", "east"), ("gen_ai.token.type", "output")}): 40334,
        frozenset({("symphony.orchestrator.name", "west"), ("gen_ai.token.type", "input")}): 1091640,
        frozenset({("symphony.orchestrator.name", "west"), ("gen_ai.token.type", "output")}): 167773,
    }
    for name, attributes in points:
        assert "symphony.orchestrator.name" in dict(attributes), name


def test_named_and_unnamed_share_provider(telemetry: Telemetry) -> None:
    unnamed = telemetry.generator()
    named = telemetry.generator(orchestrator_name="east")

    unnamed.record(load_snapshot(FIXTURE_15))
    named.record(load_snapshot(FIXTURE_18))

    assert only(telemetry.collect(), "symphony.workers.running") == {
        frozenset(): 3,
        frozenset({("symphony.orchestrator.name", "east")}): 2,
    }


def test_close_frees_name_for_new_generator(telemetry: Telemetry) -> None:
    old = telemetry.generator(orchestrator_name="main")
    old.record(load_snapshot(FIXTURE_15))
    old.close()
    assert telemetry.collect() == {}

    new = telemetry.generator(orchestrator_name="main")
    new.record(load_snapshot(FIXTURE_18))
    old.record(load_snapshot(FIXTURE_15))

    points = telemetry.collect()
    assert only(points, "symphony.workers.running") == {frozenset({("symphony.orchestrator.name", "main")}): 2}
    assert points[point("symphony.tokens", {"symphony.orchestrator.name": "main", "gen_ai.token.type": "input"})] == 1091640


def test_close_twice_keeps_new_owner(telemetry: Telemetry) -> None:
    old = telemetry.generator()
    old.close()
    new = telemetry.generator()
    new.record(load_snapshot(FIXTURE_15))

    old.close()

    assert telemetry.collect()[point("symphony.workers.running")] == 3
    with pytest.raises(ValueError):
        telemetry.generator()


def test_callback_failure_contained(telemetry: Telemetry, caplog: pytest.LogCaptureFixture) -> None:
    generator = telemetry.generator()
    broken = snapshot()
    broken.running.append({"identifier": "FAKE-1"})  # a row without its token counts

    generator.record(broken)
    with caplog.at_level(logging.WARNING):
        first = telemetry.collect()
        second = telemetry.collect()

    assert first[point("symphony.workers.running")] == 1
    assert first[point("symphony.retry_queue.size")] == 0
    assert not {"symphony.worker.tokens", "symphony.worker.turns", "symphony.workers.overflow"} & names_of(first)
    # The errors of one collection are reported by the next.
    assert second[point("symphony.snapshot.record_errors")] == 3
    assert not [record for record in caplog.records if record.name.startswith("opentelemetry")]
    ours = [record for record in caplog.records if record.name == "symphony_otel.recorder.generator"]
    assert len(ours) == 1
    assert "callback of symphony.workers.overflow failed (KeyError)" in ours[0].getMessage()


# --- The snapshot event --------------------------------------------------------------------------


def test_event_on_short_span_when_no_current(telemetry: Telemetry) -> None:
    generator = telemetry.generator()
    snap = load_snapshot(FIXTURE_15)

    generator.record(snap)

    (span,) = telemetry.spans()
    assert span.name == "symphony.snapshot"
    assert span.kind == SpanKind.INTERNAL
    assert span.instrumentation_scope.name == "symphony_otel"
    (event,) = span.events
    assert event.name == "symphony.snapshot"
    attributes = dict(event.attributes)
    assert json.loads(attributes.pop("symphony.snapshot.json")) == snap.to_dict()
    assert attributes == {
        "symphony.snapshot.truncated": False,
        "symphony.snapshot.dropped_rows": 0,
        "symphony.workers.running": 3,
        "symphony.retry_queue.size": 3,
        "symphony.issues.completed": 0,
        "symphony.tokens.input": 259485,
        "symphony.tokens.output": 40334,
    }


def test_event_on_current_recording_span(telemetry: Telemetry) -> None:
    generator = telemetry.generator()
    tracer = telemetry.tracer_provider.get_tracer("host")

    with tracer.start_as_current_span("orchestrator.tick"):
        generator.record(load_snapshot(FIXTURE_15))

    (span,) = telemetry.spans()
    assert span.name == "orchestrator.tick"
    assert [event.name for event in span.events] == ["symphony.snapshot"]


def test_event_short_span_under_non_recording_span(telemetry: Telemetry) -> None:
    generator = telemetry.generator()
    parent = trace.NonRecordingSpan(
        trace.SpanContext(trace_id=0x1234, span_id=0x5678, is_remote=True, trace_flags=trace.TraceFlags(0))
    )

    with trace.use_span(parent):
        generator.record(load_snapshot(FIXTURE_15))

    assert telemetry.spans() == ()  # the sampler follows the unsampled parent
    assert telemetry.collect()[point("symphony.snapshot.record_errors")] == 0


def test_event_payload_dropped_rows_counted(telemetry: Telemetry) -> None:
    generator = telemetry.generator(payload_limit=1024)
    snap = load_snapshot(FIXTURE_15)

    generator.record(snap)
    generator.record(snap)

    events = [span.events[0] for span in telemetry.spans()]
    dropped = [event.attributes["symphony.snapshot.dropped_rows"] for event in events]
    assert dropped[0] == dropped[1] > 0
    assert all(event.attributes["symphony.snapshot.truncated"] is True for event in events)
    assert all(len(event.attributes["symphony.snapshot.json"].encode()) <= 1024 for event in events)
    assert telemetry.collect()[point("symphony.snapshot.payload.dropped_rows")] == 2 * dropped[0]


def test_event_mode_log_only(telemetry: Telemetry) -> None:
    generator = telemetry.generator(event_mode="log")

    generator.record(load_snapshot(FIXTURE_15))

    (span,) = telemetry.spans()
    assert span.events == ()
    (record,) = telemetry.logs()
    log = record.log_record
    assert log.event_name == "symphony.snapshot"
    assert log.trace_id == span.context.trace_id
    assert log.span_id == span.context.span_id
    assert record.instrumentation_scope.name == "symphony_otel"
    assert log.attributes["symphony.workers.running"] == 3
    assert json.loads(log.attributes["symphony.snapshot.json"]) == load_snapshot(FIXTURE_15).to_dict()


def test_event_mode_both_same_attributes(telemetry: Telemetry) -> None:
    generator = telemetry.generator(event_mode="both")
    tracer = telemetry.tracer_provider.get_tracer("host")

    with tracer.start_as_current_span("orchestrator.tick") as host:
        generator.record(load_snapshot(FIXTURE_15))

    (span,) = telemetry.spans()
    (event,) = span.events
    (record,) = telemetry.logs()
    assert dict(record.log_record.attributes) == dict(event.attributes)
    assert record.log_record.span_id == host.get_span_context().span_id
    assert record.log_record.trace_id == host.get_span_context().trace_id


def test_event_mode_span_no_logs(telemetry: Telemetry) -> None:
    generator = telemetry.generator(event_mode="span")

    generator.record(load_snapshot(FIXTURE_15))

    assert telemetry.logs() == ()
    assert len(telemetry.spans()[0].events) == 1


# --- Failures never reach the host -------------------------------------------------------------


def test_encoder_failure_contained(
    telemetry: Telemetry, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    generator = telemetry.generator()

    def broken_encode(snapshot: Any, origins: Any = None) -> Any:
        raise RuntimeError("encoder broke")

    monkeypatch.setattr(generator._encoder, "encode", broken_encode)
    state = state_of(load_body(FIXTURE_15))
    logged = []

    with caplog.at_level(logging.WARNING, logger="symphony_otel.recorder.generator"):
        for step in (0.0, 30.0, 31.0, 0.5):  # failures at 0 s, 30 s, 61 s and 61.5 s
            clock.now += step
            returned = generator.generate(state)
            assert returned.to_dict()["codex_totals"]["input_tokens"] == 259485
            logged.append(len(caplog.records))

    assert logged == [1, 1, 2, 2]
    assert "Recording a snapshot failed (RuntimeError)" in caplog.records[0].getMessage()
    assert "encoder broke" not in caplog.records[0].getMessage()
    points = telemetry.collect()
    assert points[point("symphony.snapshot.record_errors")] == 4
    # The metrics were swapped in before the event failed.
    assert points[point("symphony.workers.running")] == 3
    assert telemetry.spans() == ()


def test_tracer_failure_contained(telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch) -> None:
    generator = telemetry.generator()

    def broken_span(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("tracer broke")

    monkeypatch.setattr(generator._tracer, "start_span", broken_span)

    generator.record(load_snapshot(FIXTURE_15))

    assert telemetry.collect()[point("symphony.snapshot.record_errors")] == 1


def test_closed_generator_records_nothing(telemetry: Telemetry) -> None:
    generator = telemetry.generator()
    generator.close()

    returned = generator.generate(state_of(load_body(FIXTURE_15)))

    assert len(returned.running) == 3
    assert telemetry.collect() == {}
    assert telemetry.spans() == ()


# --- Threads --------------------------------------------------------------------------------------


def sized_state(size: int) -> OrchestratorState:
    """Build a state in which every level is ``size``: workers, their turns and tokens, and the retry queue."""
    state = OrchestratorState(codex_totals=TokenTotals(input_tokens=1000 * size, output_tokens=size))
    for n in range(size):
        identifier = f"S{size}-W{n}"
        state.running[identifier] = RunningEntry(
            issue_id=identifier,
            identifier=identifier,
            turn_count=size,
            codex_input_tokens=size,
            codex_output_tokens=size,
        )
        retry_id = f"S{size}-R{n}"
        state.retry_attempts[retry_id] = RetryEntry(issue_id=retry_id, identifier=retry_id, attempt=size)
    return state


def test_threads_generate_while_collecting(telemetry: Telemetry) -> None:
    generator = telemetry.generator()
    states = {size: sized_state(size) for size in range(1, 13)}
    generator.generate(states[1])
    errors: list[Exception] = []
    stop = threading.Event()

    def produce(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(100_000):
                if stop.is_set():
                    break
                generator.generate(states[rng.randint(1, 12)])
        except Exception as exc:  # reported by the main thread
            errors.append(exc)

    # Switching threads every few microseconds lets a generate() land between
    # two callbacks of one collection.
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    producers = [threading.Thread(target=produce, args=(seed,)) for seed in range(4)]
    for thread in producers:
        thread.start()
    collections = 0
    sizes_seen: set[int] = set()
    previous_input = 0
    deadline = time.monotonic() + 0.6
    try:
        while time.monotonic() < deadline and collections < 2000:
            points = telemetry.collect()
            size = points[point("symphony.workers.running")]
            turns = only(points, "symphony.worker.turns")
            assert len(turns) == size
            assert set(turns.values()) == {size}
            assert set(only(points, "symphony.worker.tokens").values()) == {size}
            assert points[point("symphony.retry_queue.size")] == size
            assert all(identifier.startswith(f"S{size}-") for identifier in _identifiers(turns))
            current_input = points[point("symphony.tokens", {"gen_ai.token.type": "input"})]
            assert current_input >= previous_input
            previous_input = current_input
            collections += 1
            sizes_seen.add(size)
            time.sleep(0.002)
    finally:
        stop.set()
        for thread in producers:
            thread.join(timeout=10)
        sys.setswitchinterval(switch_interval)

    assert errors == []
    assert not any(thread.is_alive() for thread in producers)
    assert collections >= 5
    assert len(sizes_seen) >= 3
    assert telemetry.collect()[point("symphony.snapshot.record_errors")] == 0


def test_threads_latest_view_has_highest_totals(telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch) -> None:
    generator = telemetry.generator()
    entered = threading.Event()
    release = threading.Event()
    real_view = generator_module.SnapshotView

    def slow_view(*args: Any, **fields: Any) -> Any:
        # The first generate() stalls between advancing the totals and swapping in its view.
        snapshot = args[0] if args else fields["snapshot"]
        if snapshot.codex_totals["input_tokens"] == 100:
            entered.set()
            release.wait(timeout=2)
        return real_view(*args, **fields)

    monkeypatch.setattr(generator_module, "SnapshotView", slow_view)
    first = threading.Thread(target=generator.generate, args=(totals_state(100, 0, 0, 0),))
    second = threading.Thread(target=generator.generate, args=(totals_state(250, 0, 0, 0),))

    first.start()
    assert entered.wait(timeout=2)
    second.start()
    second.join(timeout=0.3)
    release.set()
    first.join(timeout=5)
    second.join(timeout=5)

    assert generator.latest is not None
    assert generator.latest.totals["input_tokens"] == 250
    assert telemetry.collect()[point("symphony.tokens", {"gen_ai.token.type": "input"})] == 250


def _identifiers(turns: dict[frozenset[tuple[str, Any]], Any]) -> Iterator[str]:
    for attributes in turns:
        for key, value in attributes:
            if key == "symphony.issue.identifier":
                yield value


# --- Series over the life of the process ----------------------------------------------------


def test_lifetime_budget_keeps_sdk_overflow_away() -> None:
    # The SDK keeps every attribute set an observable instrument reported, so
    # with a cardinality limit of 12 only (12 - 2) // 2 = 5 issues ever get a
    # series of their own; the sixth and later share our overflow series.
    reader = InMemoryMetricReader()
    provider = MeterProvider(
        metric_readers=[reader],
        views=[View(instrument_name="symphony.*", aggregation_cardinality_limit=12)],
    )
    generator = OTelSnapshotGenerator(meter_provider=provider, cardinality_limit=12)
    for batch in range(4):
        workers = [worker(f"ENG-{batch * 2 + n}", input_tokens=10, output_tokens=1) for n in range(2)]
        generator.record(snapshot(running=workers))
        points = only(collect(reader), "symphony.worker.tokens")

    # The last batch, ENG-6 and ENG-7, came after the budget of five filled.
    overflow_input = frozenset({("otel.metric.overflow", True), ("gen_ai.token.type", "input")})
    assert points[overflow_input] == 20
    assert frozenset({("symphony.issue.identifier", "ENG-6"), ("gen_ai.token.type", "input")}) not in points
    assert all(("otel.metric.overflow", True) not in key or len(key) == 2 for key in points)
    provider.shutdown()


def test_lifetime_budget_rejects_tiny_limit() -> None:
    with pytest.raises(ValueError, match="cardinality_limit must be an integer of at least 4, got 3"):
        OTelSnapshotGenerator(meter_provider=MeterProvider(), cardinality_limit=3)


def test_redacted_dict_scrubs_a_copy(telemetry: Telemetry) -> None:
    generator = telemetry.generator()
    secret = "ghp_abcdefghijklmnopqrstuvwxyz0123456789AB"
    snap = snapshot(retrying=[{"issue_id": "id-1", "identifier": "ENG-1", "attempt": 1, "error": f"push failed: {secret}"}])

    redacted = generator.redacted_dict(snap)
    redacted["retrying"][0]["attempt"] = 99

    assert redacted["retrying"][0]["error"] == "push failed: [REDACTED]"
    assert snap.retrying[0]["error"] == f"push failed: {secret}"
    assert generator.redacted_dict(snap)["retrying"][0]["attempt"] == 1
    assert list(redacted) == list(snap.to_dict())
