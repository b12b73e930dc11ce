"""Concurrency: host threads call ``generate()`` while a metric reader collects every few milliseconds.

Each state is internally consistent (N running, N retrying, N completed, N
turns per worker), so a collection or an event that mixes two snapshots shows
as numbers that disagree.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from .conftest import InMemoryRecorder, consistent_state, in_memory_recorder

WRITERS = 6
CALLS_PER_WRITER = 1000
MAX_SIZE = 8
COLLECT_EVERY_S = 0.002
TIME_LIMIT_S = 60.0
# Threads switch every 5 ms by default; switching every 10 us lets a writer
# run between two callbacks of one collection far more often.
SWITCH_INTERVAL_S = 1e-5


@pytest.fixture(autouse=True)
def frequent_thread_switches() -> Iterator[None]:
    previous = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


def points_by_name(recorder: InMemoryRecorder) -> dict[str, list[tuple[dict[str, Any], Any]]]:
    data = recorder.reader.get_metrics_data()
    found: dict[str, list[tuple[dict[str, Any], Any]]] = {}
    for resource_metrics in data.resource_metrics if data else ():
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                found[metric.name] = [(dict(point.attributes), point.value) for point in metric.data.data_points]
    return found


def torn_parts(points: dict[str, list[tuple[dict[str, Any], Any]]]) -> list[str]:
    """Describe every way in which one collection mixes snapshots of different sizes."""
    if "symphony.workers.running" not in points:
        return []
    running = points["symphony.workers.running"][0][1]
    problems = []
    retrying = points["symphony.retry_queue.size"][0][1]
    if retrying != running:
        problems.append(f"retry_queue.size {retrying} with workers.running {running}")
    turns = points.get("symphony.worker.turns", [])
    if len(turns) != running:
        problems.append(f"{len(turns)} worker.turns series with workers.running {running}")
    if any(value != running for _attributes, value in turns):
        problems.append(f"worker.turns values {[value for _a, value in turns]} with workers.running {running}")
    tokens = points.get("symphony.worker.tokens", [])
    if any(value != running for _attributes, value in tokens):
        problems.append(f"worker.tokens values {[value for _a, value in tokens]} with workers.running {running}")
    return problems


def run_threads(targets: list[threading.Thread], stop: threading.Event) -> None:
    for thread in targets:
        thread.start()
    deadline = time.monotonic() + TIME_LIMIT_S
    for thread in targets:
        thread.join(max(deadline - time.monotonic(), 0.0))
    stop.set()
    assert not any(thread.is_alive() for thread in targets), f"threads still running after {TIME_LIMIT_S} s"


def test_concurrent_generate_consistent_collections() -> None:
    recorder = in_memory_recorder()
    errors: list[BaseException] = []
    torn: list[str] = []
    collections = Counter[str]()
    stop = threading.Event()
    states = [consistent_state(size) for size in range(MAX_SIZE + 1)]

    def write(seed: int) -> None:
        chooser = random.Random(seed)
        try:
            for _ in range(CALLS_PER_WRITER):
                recorder.generator.generate(states[chooser.randrange(len(states))])
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    def read() -> None:
        try:
            while not stop.is_set():
                problems = torn_parts(points_by_name(recorder))
                torn.extend(problems)
                collections["total"] += 1
                time.sleep(COLLECT_EVERY_S)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    reader = threading.Thread(target=read, name="collector")
    reader.start()
    try:
        run_threads([threading.Thread(target=write, args=(seed,)) for seed in range(WRITERS)], stop)
    finally:
        stop.set()
        reader.join(timeout=10.0)

    try:
        assert errors == []
        assert torn == []
        assert collections["total"] >= 10
        events = [
            event
            for span in recorder.spans.get_finished_spans()
            for event in span.events
            if event.name == "symphony.snapshot"
        ]
        assert len(events) == WRITERS * CALLS_PER_WRITER
        for event in events:
            payload = json.loads(event.attributes["symphony.snapshot.json"])
            size = payload["completed_count"]
            assert len(payload["running"]) == len(payload["retrying"]) == size
            assert event.attributes["symphony.workers.running"] == size
    finally:
        recorder.close()


def test_concurrent_generate_distinct_states_counted_once() -> None:
    # Every thread records its own orchestrator (its own generator); the
    # totals of each must end at that orchestrator's last values.
    recorders = [in_memory_recorder(orchestrator_name=f"orchestrator-{index}") for index in range(WRITERS)]
    errors: list[BaseException] = []
    stop = threading.Event()

    def write(recorder: InMemoryRecorder) -> None:
        try:
            for size in range(1, CALLS_PER_WRITER + 1):
                recorder.generator.generate(consistent_state(size % (MAX_SIZE + 1) or 1))
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    try:
        run_threads([threading.Thread(target=write, args=(recorder,)) for recorder in recorders], stop)
        assert errors == []
        for recorder in recorders:
            events = [event for span in recorder.spans.get_finished_spans() for event in span.events]
            assert len(events) == CALLS_PER_WRITER
            assert points_by_name(recorder)["symphony.workers.running"][0][1] == CALLS_PER_WRITER % (MAX_SIZE + 1)
    finally:
        for recorder in recorders:
            recorder.close()


class GrowingState:
    """An orchestrator state that another thread changes while snapshots are taken.

    ``completed`` and the token totals only grow, as in a real orchestrator
    between restarts.
    """

    def __init__(self) -> None:
        self.running: dict[str, Any] = {}
        self.completed: frozenset[int] = frozenset()
        self.codex_totals = {"input_tokens": 0, "output_tokens": 0, "seconds_running": 0.0}
        self.poll_interval_ms = 1000

    def advance(self, step: int) -> None:
        self.completed = self.completed | {step}
        self.codex_totals = {"input_tokens": step, "output_tokens": 2 * step, "seconds_running": float(step)}


def test_concurrent_generate_counters_end_at_last_totals() -> None:
    recorder = in_memory_recorder()
    state = GrowingState()
    errors: list[BaseException] = []
    stop = threading.Event()
    steps = 5000

    def mutate() -> None:
        for step in range(1, steps + 1):
            state.advance(step)

    def write() -> None:
        try:
            while not stop.is_set():
                recorder.generator.generate(state)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    writers = [threading.Thread(target=write) for _ in range(WRITERS)]
    for writer in writers:
        writer.start()
    try:
        run_threads([threading.Thread(target=mutate)], stop)
    finally:
        stop.set()
        for writer in writers:
            writer.join(timeout=10.0)
    recorder.generator.generate(state)

    try:
        assert errors == []
        points = points_by_name(recorder)
        assert points["symphony.issues.completed"] == [({}, steps)]
        assert {attributes["gen_ai.token.type"]: value for attributes, value in points["symphony.tokens"]} == {
            "input": steps,
            "output": 2 * steps,
        }
    finally:
        recorder.close()


@dataclasses.dataclass(eq=False)
class PortRunningEntry:
    """A running entry as a Python port keeps it, which the compiled readers read."""

    issue_id: str
    identifier: str
    turn_count: int
    codex_input_tokens: int
    codex_output_tokens: int
    codex_total_tokens: int
    started_at: dt.datetime
    last_codex_event: str


@dataclasses.dataclass(eq=False)
class PortRetryEntry:
    issue_id: str
    identifier: str
    attempt: int
    error: str


@dataclasses.dataclass(eq=False)
class PortState:
    running: dict[str, PortRunningEntry]
    retry_attempts: dict[str, PortRetryEntry]
    codex_rate_limits: dict[str, Any]
    poll_interval_ms: int = 30_000


STARTED = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.timezone.utc)


def port_state(writer: int) -> PortState:
    running = {
        f"w{writer}-{index}": PortRunningEntry(
            f"w{writer}-{index}", f"W{writer}-{index}", 1, 10, 5, 15, STARTED, "turn/started"
        )
        for index in range(3)
    }
    retrying = {
        f"w{writer}-r{index}": PortRetryEntry(f"w{writer}-r{index}", f"R{writer}-{index}", 2, "exit 1")
        for index in range(2)
    }
    return PortState(running, retrying, {"primary": {"used_percent": 10.0}})


def expected_rows(state: PortState) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    running = [
        {
            "issue_id": entry.issue_id,
            "identifier": entry.identifier,
            "turn_count": entry.turn_count,
            "codex_total_tokens": entry.codex_total_tokens,
            "last_codex_event": entry.last_codex_event,
            "started_at": "2026-05-01T12:00:00Z",
            "session_id": None,
            "codex_input_tokens": entry.codex_input_tokens,
            "codex_output_tokens": entry.codex_output_tokens,
            "worker_host": None,
            "workspace_path": None,
        }
        for entry in state.running.values()
    ]
    retrying = [
        {
            "issue_id": entry.issue_id,
            "identifier": entry.identifier,
            "attempt": entry.attempt,
            "delay_type": "failure",
            "error": entry.error,
            "worker_host": None,
            "workspace_path": None,
        }
        for entry in state.retry_attempts.values()
    ]
    return running, retrying


def test_concurrent_reused_rows_per_state() -> None:
    # One generator, one state per thread, all of the same classes: the threads
    # share the compiled readers and their remembered rows, and each changes
    # its own entries between calls.  Every snapshot and every payload must be
    # its own state's, as it was at that call.
    recorder = in_memory_recorder(payload_limit=1 << 20)
    errors: list[BaseException] = []
    recorded: dict[int, list[dict[str, Any]]] = {writer: [] for writer in range(WRITERS)}
    stop = threading.Event()

    def write(writer: int) -> None:
        chooser = random.Random(writer)
        state = port_state(writer)
        try:
            for _ in range(300):
                change = chooser.randrange(4)
                entry = state.running[f"w{writer}-{chooser.randrange(3)}"]
                if change == 0:
                    entry.codex_input_tokens += 7
                    entry.codex_total_tokens += 7
                elif change == 1:
                    entry.last_codex_event = f"item/{chooser.randrange(3)}"
                elif change == 2:
                    state.codex_rate_limits["primary"]["used_percent"] = float(chooser.randrange(100))
                snapshot = recorder.generator.generate(state)
                assert (snapshot.running, snapshot.retrying) == expected_rows(state)
                assert snapshot.rate_limits == state.codex_rate_limits
                recorded[writer].append(snapshot.to_dict())
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    try:
        run_threads([threading.Thread(target=write, args=(writer,)) for writer in range(WRITERS)], stop)
        assert errors == []
        payloads: dict[int, list[dict[str, Any]]] = {writer: [] for writer in range(WRITERS)}
        for span in recorder.spans.get_finished_spans():
            for event in span.events:
                payload = json.loads(event.attributes["symphony.snapshot.json"])
                payloads[int(payload["running"][0]["issue_id"][1:].split("-")[0])].append(payload)
        for writer in range(WRITERS):
            assert len(payloads[writer]) == 300
            assert payloads[writer] == recorded[writer]
    finally:
        recorder.close()
