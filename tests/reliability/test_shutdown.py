"""Bounded shutdown: the pipeline and the command stop in time when the receiver never responds.

``TelemetryPipeline.shutdown()`` and ``force_flush()`` wait at most their
timeout, by default the export timeout plus 1 s.  A receiver that accepts
connections and never responds makes every export wait for the whole export
timeout, which is the worst case for these bounds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from symphony_otel import OTelSnapshotGenerator, SnapshotGenerator
from symphony_otel.pipeline import SHUTDOWN_MARGIN, TelemetryPipeline

from .conftest import LOOPBACK, SilentServer, consistent_state

pytestmark = pytest.mark.e2e

PROTOCOLS = ["grpc", "http/protobuf"]
SOURCE_DIR = Path(__file__).resolve().parents[2] / "src"

# Scheduling slack on top of a bound: thread start-up and joins on a loaded
# 2-core machine.  Measured overshoot: under 0.1 s.
SLACK_S = 0.5
# A child interpreter's teardown after its at-exit handlers, and its reaction
# to a signal.  Measured: under 0.2 s.
INTERPRETER_SLACK_S = 1.0


def generator_for(pipeline: TelemetryPipeline, **options: Any) -> OTelSnapshotGenerator:
    return OTelSnapshotGenerator(
        meter_provider=pipeline.meter_provider,
        tracer_provider=pipeline.tracer_provider,
        logger_provider=pipeline.logger_provider,
        **options,
    )


def child_environment(**extra: str) -> dict[str, str]:
    """The test's environment for a child interpreter, with the package importable."""
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith(("OTEL_", "SYMPHONY_OTEL_"))
    }
    paths = [str(SOURCE_DIR)] + ([environment["PYTHONPATH"]] if environment.get("PYTHONPATH") else [])
    environment["PYTHONPATH"] = os.pathsep.join(paths)
    environment.update(extra)
    return environment


def wait_for_text(path: Path, text: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(encoding="utf-8", errors="replace"):
            return
        if process.poll() is not None:
            break
        time.sleep(0.05)
    output = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
    raise AssertionError(f"{text!r} did not appear within {timeout} s; the output was:\n{output}")


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Child processes to kill after the test if they are still running."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5.0)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_shutdown_bounded_by_export_timeout(
    silent_server: SilentServer, pipelines: Callable[..., TelemetryPipeline], protocol: str
) -> None:
    pipeline = pipelines(
        otlp_endpoint=silent_server.endpoint, protocol=protocol, export_timeout=1.0, metric_export_interval=60.0
    )
    generator = generator_for(pipeline, event_mode="both")
    for size in range(20):
        generator.generate(consistent_state(size))

    started = time.monotonic()
    finished = pipeline.shutdown()
    elapsed = time.monotonic() - started

    assert pipeline.default_timeout() == 1.0 + SHUTDOWN_MARGIN
    assert elapsed <= pipeline.default_timeout() + SLACK_S
    # The three signals wait for their exports side by side, about 1 s in all.
    assert finished
    assert set(pipeline.drops.counts()) == {"traces", "metrics", "logs"}
    assert silent_server.accepted >= 1


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_force_flush_bounded_by_export_timeout(
    silent_server: SilentServer, pipelines: Callable[..., TelemetryPipeline], protocol: str
) -> None:
    pipeline = pipelines(
        otlp_endpoint=silent_server.endpoint, protocol=protocol, export_timeout=1.0, metric_export_interval=60.0
    )
    generator = generator_for(pipeline, event_mode="both")
    generator.generate(consistent_state(2))

    started = time.monotonic()
    flushed = pipeline.force_flush()
    elapsed = time.monotonic() - started

    assert elapsed <= 1.0 + SHUTDOWN_MARGIN + SLACK_S
    assert flushed
    assert pipeline.drops.counts()["traces"] == 1


def test_shutdown_gives_up_at_timeout(
    silent_server: SilentServer, pipelines: Callable[..., TelemetryPipeline]
) -> None:
    pipeline = pipelines(
        otlp_endpoint=silent_server.endpoint, protocol="grpc", export_timeout=1.0, metric_export_interval=60.0
    )
    generator = generator_for(pipeline)
    state = consistent_state(1)
    for _ in range(640):  # ten batches of 64 spans, one export timeout each
        generator.generate(state)

    started = time.monotonic()
    finished = pipeline.shutdown(timeout=1.5)
    elapsed = time.monotonic() - started

    assert not finished
    assert 1.5 <= elapsed <= 1.5 + SLACK_S
    assert pipeline.shutdown(timeout=1.0)  # a second call returns at once


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_timeout_variable_read_as_milliseconds(
    silent_server: SilentServer, pipelines: Callable[..., TelemetryPipeline], protocol: str
) -> None:
    # The Python SDK would read 400 as seconds.
    pipeline = pipelines(
        otlp_endpoint=silent_server.endpoint,
        protocol=protocol,
        metric_export_interval=60.0,
        environ={"OTEL_EXPORTER_OTLP_TIMEOUT": "400"},
    )
    generator_for(pipeline).generate(consistent_state(1))

    started = time.monotonic()
    flushed = pipeline.force_flush(timeout=10.0)
    elapsed = time.monotonic() - started

    assert pipeline.export_timeout == 0.4
    assert flushed
    assert 0.3 <= elapsed <= 0.4 + SLACK_S
    assert pipeline.drops.counts()["traces"] == 1


EXIT_WITHOUT_SHUTDOWN = textwrap.dedent(
    """
    import sys
    from symphony_otel import OTelSnapshotGenerator
    from symphony_otel.pipeline import build_pipeline

    pipeline = build_pipeline(
        otlp_endpoint=sys.argv[1], protocol=sys.argv[2], export_timeout=1.0, metric_export_interval=60.0
    )
    generator = OTelSnapshotGenerator(
        meter_provider=pipeline.meter_provider, tracer_provider=pipeline.tracer_provider
    )
    for completed in range(3000):
        generator.generate({"running": {}, "completed": completed, "poll_interval_ms": 1000})
    print("generated", flush=True)
    """
)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_process_exit_bounded_without_shutdown(
    silent_server: SilentServer, tmp_path: Path, processes: list[subprocess.Popen[bytes]], protocol: str
) -> None:
    output = tmp_path / "output.log"
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-c", EXIT_WITHOUT_SHUTDOWN, silent_server.endpoint, protocol],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=child_environment(),
        )
    processes.append(process)
    wait_for_text(output, "generated", process, timeout=30.0)
    started = time.monotonic()

    process.wait(timeout=30.0)
    elapsed = time.monotonic() - started

    # The queued batches would take one export timeout each; the pipeline's
    # own at-exit shutdown stops after one export timeout plus 1 s.
    assert elapsed <= 1.0 + SHUTDOWN_MARGIN + INTERPRETER_SLACK_S, output.read_text(encoding="utf-8")
    assert process.returncode == 0


class _StateHandler(BaseHTTPRequestHandler):
    body = b"{}"
    requests = 0

    def do_GET(self) -> None:  # the name http.server calls
        type(self).requests += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: object) -> None:  # the base class's signature
        """Keep the test output quiet."""


@pytest.fixture
def state_api() -> Iterator[tuple[str, type[_StateHandler]]]:
    """Serve an orchestrator's ``/api/v1/state`` on 127.0.0.1 and stop it after the test."""
    snapshot = SnapshotGenerator().generate(consistent_state(3))
    body = json.dumps(snapshot.to_dict()).encode("utf-8")
    handler: type[_StateHandler] = type("StateHandler", (_StateHandler,), {"body": body})
    server = ThreadingHTTPServer((LOOPBACK, 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://{LOOPBACK}:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5.0)


@pytest.mark.parametrize("command", ["demo", "watch"])
def test_command_exits_in_time_after_sigterm(
    silent_server: SilentServer,
    state_api: tuple[str, type[_StateHandler]],
    tmp_path: Path,
    processes: list[subprocess.Popen[bytes]],
    command: str,
) -> None:
    api_url, handler = state_api
    shutdown_timeout = 1.5
    arguments = (
        ["demo", "--duration", "0", "--interval", "0.2", "--speed", "600"]
        if command == "demo"
        else ["watch", api_url, "--interval", "0.2"]
    )
    output = tmp_path / "stderr.log"
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "symphony_otel", *arguments,
                "--otlp-endpoint", silent_server.endpoint, "--protocol", "grpc",
                "--shutdown-timeout", str(shutdown_timeout), "--quiet", "--log-level", "INFO",
            ],
            stdout=subprocess.DEVNULL,
            stderr=sink,
            # Each export waits 5 s for the silent receiver, longer than the
            # shutdown timeout, so only the shutdown bound can end the command.
            env=child_environment(OTEL_EXPORTER_OTLP_TIMEOUT="5000"),
        )
    processes.append(process)
    wait_for_text(output, "telemetry goes to", process, timeout=30.0)
    time.sleep(1.0)  # a few snapshots, and exports that hang
    assert process.poll() is None

    process.send_signal(signal.SIGTERM)
    started = time.monotonic()
    process.wait(timeout=30.0)
    elapsed = time.monotonic() - started

    log = output.read_text(encoding="utf-8", errors="replace")
    assert elapsed <= shutdown_timeout + INTERPRETER_SLACK_S, log
    assert process.returncode == 0, log
    assert "Received SIGTERM" in log
    if command == "watch":
        assert handler.requests >= 2
