"""End-to-end tests of ``symphony-otel watch`` and ``demo`` against a real OTLP receiver.

The orchestrator is an HTTP server on 127.0.0.1 that serves the recorded Elixir
bodies; the receiver is rotel-agent (see ``tests/support/otlp_receiver.py``).
Signal handling runs the command as a subprocess, ``python -m symphony_otel``.
"""

from __future__ import annotations

import http.server
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import symphony_otel
from symphony_otel.cli import main
from tests.support.otlp_receiver import OtlpReceiver, Record

pytestmark = pytest.mark.e2e

ELIXIR = "symphony-elixir"
SEQUENCE = [
    "01_state_idle.json",
    "08_state_running3_retrying3_no_rate_limits.json",
    "15_state_3running_3retrying_rate_limits.json",
    "18_state_continuation_retry_error_null.json",
    "20_state_retry_no_available_slots.json",
]
WAIT_S = 10.0


@pytest.fixture(autouse=True)
def no_otlp_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the caller's OTEL_* settings out of the command under test."""
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)


# --- The orchestrator stand-in --------------------------------------------------------


@contextmanager
def serving(replies: list[tuple[int, bytes]]) -> Iterator[str]:
    """Serve ``(status, body)`` replies one per GET on 127.0.0.1, repeating the last; yield the base URL."""
    served = [0]
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
            with lock:
                status, body = replies[min(served[0], len(replies) - 1)]
                served[0] += 1
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextmanager
def unanswering_endpoint() -> Iterator[str]:
    """Yield an endpoint on 127.0.0.1 that accepts connections and never replies."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.05)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():  # bounded by the stop event set on exit
            try:
                connection, _address = listener.accept()
            except (TimeoutError, OSError):
                continue
            held.append(connection)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        for connection in held:
            connection.close()
        listener.close()


def elixir_body(fixtures_dir: Path, name: str) -> bytes:
    return (fixtures_dir / ELIXIR / name).read_bytes()


# --- Reading what the receiver got ----------------------------------------------------


def latest_points(receiver: OtlpReceiver) -> dict[str, dict[frozenset[tuple[str, Any]], Any]]:
    """Return the latest value of every metric point, by metric name and attribute set."""
    latest: dict[str, dict[frozenset[tuple[str, Any]], tuple[int, Any]]] = {}
    for point in receiver.metric_points():
        key = frozenset(point["attributes"].items())
        series = latest.setdefault(point["name"], {})
        previous = series.get(key)
        if previous is None or point["time_unix_nano"] >= previous[0]:
            series[key] = (point["time_unix_nano"], point["value"])
    return {name: {key: value for key, (_time, value) in series.items()} for name, series in latest.items()}


def snapshot_events(span: Record) -> list[dict[str, Any]]:
    return [event["attributes"] for event in span["events"] if event["name"] == "symphony.snapshot"]


NONE: frozenset[tuple[str, Any]] = frozenset()


def attrs(key: str, value: Any) -> frozenset[tuple[str, Any]]:
    return frozenset({(key, value)})


TOKEN_INPUT = frozenset({("gen_ai.token.type", "input")})
TOKEN_OUTPUT = frozenset({("gen_ai.token.type", "output")})


# --- watch ----------------------------------------------------------------------------


def test_watch_fixture_sequence_reaches_receiver(otlp_receiver: OtlpReceiver, fixtures_dir: Path) -> None:
    replies = [(200, elixir_body(fixtures_dir, name)) for name in SEQUENCE]
    with serving(replies) as url:
        argv = [
            "watch", url, "--interval", "0.05", "--duration", "0.6", "--quiet",
            "--otlp-endpoint", otlp_receiver.grpc_endpoint, "--protocol", "grpc",
        ]  # fmt: skip
        assert main(argv) == 0

    otlp_receiver.wait_for_metric("symphony.bridge.up", timeout=WAIT_S)
    otlp_receiver.wait_for_span("symphony.bridge.scrape", lambda span: len(otlp_receiver.spans()) >= 5, WAIT_S)

    scrapes = [span for span in otlp_receiver.spans() if span["name"] == "symphony.bridge.scrape"]
    first_five = sorted(scrapes, key=lambda span: span["start_time_unix_nano"])[:5]
    events = [snapshot_events(span) for span in first_five]
    assert all(len(found) == 1 for found in events)
    assert [found[0]["symphony.tokens.input"] for found in events] == [0, 52332, 259485, 1091640, 1231697]
    assert [found[0]["symphony.tokens.output"] for found in events] == [0, 7609, 40334, 167773, 189808]
    assert [found[0]["symphony.workers.running"] for found in events] == [0, 3, 3, 2, 3]
    assert [found[0]["symphony.retry_queue.size"] for found in events] == [0, 3, 3, 4, 3]
    for span in scrapes:
        assert span["span_kind"] == "client"
        assert span["scope"] == "symphony_otel"
        assert span["attributes"]["url.full"] == f"{url}/api/v1/state"
        assert span["attributes"]["http.response.status_code"] == 200
        assert span["status"]["code"] == "unset"
        assert span["resource"]["service.name"] == "symphony-otel"
    payload = json.loads(events[3][0]["symphony.snapshot.json"])
    assert payload["retrying"][0]["identifier"] == "FAKE-103"
    assert payload["retrying"][0]["delay_type"] == "continuation"

    points = latest_points(otlp_receiver)
    assert points["symphony.bridge.up"] == {NONE: 1}
    assert "symphony.bridge.scrape.errors" not in points
    assert points["symphony.workers.running"] == {NONE: 3}
    assert points["symphony.retry_queue.size"] == {NONE: 3}
    assert points["symphony.tokens"] == {TOKEN_INPUT: 1231697, TOKEN_OUTPUT: 189808}
    assert points["symphony.agent.runtime"] == {NONE: 794}
    assert points["symphony.issues.completed"] == {NONE: 0}
    assert points["symphony.worker.turns"] == {
        attrs("symphony.issue.identifier", "FAKE-101"): 1,
        attrs("symphony.issue.identifier", "FAKE-102"): 1,
        attrs("symphony.issue.identifier", "FAKE-103"): 1,
    }
    worker_tokens = points["symphony.worker.tokens"]
    fake_102_input = frozenset({("symphony.issue.identifier", "FAKE-102"), ("gen_ai.token.type", "input")})
    fake_103_output = frozenset({("symphony.issue.identifier", "FAKE-103"), ("gen_ai.token.type", "output")})
    assert worker_tokens[fake_102_input] == 43548
    assert worker_tokens[fake_103_output] == 7765
    primary = frozenset({("symphony.rate_limit.window", "primary"), ("symphony.rate_limit.id", "codex")})
    secondary = frozenset({("symphony.rate_limit.window", "secondary"), ("symphony.rate_limit.id", "codex")})
    assert points["symphony.rate_limit.utilization"] == {primary: 0.24, secondary: 0.06}
    assert "symphony.workers.limit" not in points  # the Elixir body does not carry it


def test_watch_failures_and_recovery_reach_receiver(otlp_receiver: OtlpReceiver, fixtures_dir: Path) -> None:
    envelope = (
        b'{"generated_at":"2026-12-04T19:33:02Z",'
        b'"error":{"code":"snapshot_timeout","message":"Snapshot timed out"}}'
    )
    replies = [
        (500, b"internal error"),
        (200, envelope),
        (200, b"<html>Bad Gateway</html>"),
        (200, elixir_body(fixtures_dir, SEQUENCE[2])),
    ]
    with serving(replies) as url:
        argv = [
            "watch", url, "--interval", "0.02", "--duration", "1.0", "--quiet",
            "--otlp-endpoint", otlp_receiver.http_endpoint, "--protocol", "http/protobuf",
        ]  # fmt: skip
        assert main(argv) == 0

    otlp_receiver.wait_for_metric("symphony.bridge.scrape.errors", timeout=WAIT_S)
    points = latest_points(otlp_receiver)
    assert points["symphony.bridge.scrape.errors"] == {
        attrs("error.type", "http_500"): 1,
        attrs("error.type", "snapshot_timeout"): 1,
        attrs("error.type", "invalid_json"): 1,
    }
    assert points["symphony.bridge.up"] == {NONE: 1}
    assert points["symphony.workers.running"] == {NONE: 3}

    otlp_receiver.wait_for_span("symphony.bridge.scrape", lambda span: len(otlp_receiver.spans()) >= 4, WAIT_S)
    scrapes = sorted(
        (span for span in otlp_receiver.spans() if span["name"] == "symphony.bridge.scrape"),
        key=lambda span: span["start_time_unix_nano"],
    )
    failed = scrapes[:3]
    assert [span["attributes"]["error.type"] for span in failed] == ["http_500", "snapshot_timeout", "invalid_json"]
    assert [span["attributes"]["http.response.status_code"] for span in failed] == [500, 200, 200]
    assert all(span["status"]["code"] == "error" for span in failed)
    assert all(snapshot_events(span) == [] for span in failed)
    assert "error.type" not in scrapes[3]["attributes"]
    assert snapshot_events(scrapes[3])[0]["symphony.tokens.input"] == 259485


# --- demo -----------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_demo_reaches_receiver(otlp_receiver: OtlpReceiver, protocol: str) -> None:
    endpoint = otlp_receiver.grpc_endpoint if protocol == "grpc" else otlp_receiver.http_endpoint
    argv = [
        "demo", "--duration", "0.5", "--speed", "5000", "--interval", "0.1", "--quiet",
        "--otlp-endpoint", endpoint, "--protocol", protocol, "--service-name", "demo-under-test",
    ]  # fmt: skip

    assert main(argv) == 0

    otlp_receiver.wait_for_metric("symphony.worker.tokens", timeout=WAIT_S)
    otlp_receiver.wait_for_span("symphony.snapshot", timeout=WAIT_S)
    points = latest_points(otlp_receiver)
    assert points["symphony.workers.limit"] == {NONE: 5}
    assert 0 < points["symphony.workers.running"][NONE] <= 5
    assert points["symphony.tokens"][TOKEN_INPUT] > 0
    assert set(points["symphony.rate_limit.utilization"]) == {
        frozenset({("symphony.rate_limit.window", "primary"), ("symphony.rate_limit.id", "codex")}),
        frozenset({("symphony.rate_limit.window", "secondary"), ("symphony.rate_limit.id", "codex")}),
    }
    assert points["symphony.rate_limit.credits.balance"][attrs("symphony.rate_limit.id", "codex")] > 0

    spans = [span for span in otlp_receiver.spans() if span["name"] == "symphony.snapshot"]
    assert len(spans) >= 4
    assert all(span["resource"]["service.name"] == "demo-under-test" for span in spans)
    payloads = [json.loads(snapshot_events(span)[0]["symphony.snapshot.json"]) for span in spans]
    assert max(len(payload["running"]) for payload in payloads) > 0
    assert all(row["identifier"].startswith("SIM-") for payload in payloads for row in payload["running"])


# --- Signals, in a subprocess ---------------------------------------------------------


def command_environment() -> dict[str, str]:
    """Return the environment for ``python -m symphony_otel``, with this checkout importable."""
    environment = {name: value for name, value in os.environ.items() if not name.startswith("OTEL_")}
    source = str(Path(symphony_otel.__file__).resolve().parents[1])
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [source, environment.get("PYTHONPATH")]))
    return environment


@contextmanager
def running_command(*arguments: str) -> Iterator[tuple[subprocess.Popen[str], queue.Queue[str]]]:
    """Start ``python -m symphony_otel`` and collect its stderr lines; kill it if a test leaves it running."""
    process = subprocess.Popen(
        [sys.executable, "-m", "symphony_otel", *arguments],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=command_environment(),
    )
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.put(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        yield process, lines
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=5)
        reader.join(timeout=5)


def wait_for_line(lines: queue.Queue[str], text: str, timeout: float = WAIT_S) -> list[str]:
    """Return the stderr lines up to the first containing ``text``; fail after ``timeout`` seconds."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.05)
        except queue.Empty:
            continue
        seen.append(line)
        if text in line:
            return seen
    raise AssertionError(f"no stderr line contained {text!r} within {timeout} s; got:\n{''.join(seen)}")


def stop_and_time(process: subprocess.Popen[str], signal_number: int, limit: float) -> tuple[int, float]:
    started = time.monotonic()
    process.send_signal(signal_number)
    code = process.wait(timeout=limit + 5)
    return code, time.monotonic() - started


def test_sigterm_flushes_last_batch(otlp_receiver: OtlpReceiver, fixtures_dir: Path) -> None:
    with serving([(200, elixir_body(fixtures_dir, SEQUENCE[2]))]) as url:
        command = ["watch", url, "--interval", "0.1", "--otlp-endpoint", otlp_receiver.grpc_endpoint]
        with running_command(*command, "--protocol", "grpc") as (process, lines):
            wait_for_line(lines, "running 3, retrying 3")
            code, took = stop_and_time(process, signal.SIGTERM, limit=5.0)

    assert code == 0
    assert took < 5.0
    # The metric reader exports every 10 s, so these points come from the final flush.
    otlp_receiver.wait_for_metric("symphony.workers.running", lambda point: point["value"] == 3, WAIT_S)
    otlp_receiver.wait_for_metric("symphony.bridge.up", lambda point: point["value"] == 1, WAIT_S)
    otlp_receiver.wait_for_span("symphony.bridge.scrape", timeout=WAIT_S)


def test_sigterm_exits_with_unanswering_endpoint(fixtures_dir: Path) -> None:
    with serving([(200, elixir_body(fixtures_dir, SEQUENCE[2]))]) as url, unanswering_endpoint() as endpoint:
        command = ["watch", url, "--interval", "0.1", "--shutdown-timeout", "1", "--otlp-endpoint", endpoint]
        with running_command(*command, "--protocol", "grpc") as (process, lines):
            wait_for_line(lines, "running 3, retrying 3")
            code, took = stop_and_time(process, signal.SIGTERM, limit=4.0)

    assert code == 0
    # One second of --shutdown-timeout plus the interpreter's exit.
    assert took < 4.0


def test_sigint_stops_demo(tmp_path: Path) -> None:
    with running_command(
        "demo", "--duration", "0", "--speed", "600", "--interval", "0.1", "--output-dir", str(tmp_path)
    ) as (process, lines):
        wait_for_line(lines, " running ")
        code, took = stop_and_time(process, signal.SIGINT, limit=5.0)
    # The reader thread has seen the end of stderr once the command has exited.
    rest = []
    while not lines.empty():
        rest.append(lines.get())

    assert code == 0
    assert took < 5.0
    assert any("Received SIGINT; stopping after the last export." in line for line in rest)
    assert (tmp_path / "metrics.jsonl").read_text(encoding="utf-8").count("symphony.workers.running") >= 1
