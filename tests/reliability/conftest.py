"""Fixtures of the reliability tests: receivers that fail in known ways, states and recorders.

Every server here binds 127.0.0.1 and is stopped by the fixture that started
it, whatever the test's outcome.
"""

from __future__ import annotations

import socket
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

_REPOSITORY_ROOT = str(Path(__file__).resolve().parents[2])
if _REPOSITORY_ROOT not in sys.path:
    sys.path.insert(0, _REPOSITORY_ROOT)

from symphony_otel import OTelSnapshotGenerator
from symphony_otel.pipeline import TelemetryPipeline, build_pipeline
from tests.support.otlp_receiver import OtlpReceiver

LOOPBACK = "127.0.0.1"
_ACCEPT_POLL_S = 0.05
_MAX_HELD_CONNECTIONS = 256


class SilentServer:
    """A TCP server on 127.0.0.1 that accepts connections and never sends a byte.

    An OTLP exporter pointed at it connects, sends its request and waits for
    the whole export timeout, as with a receiver that hangs.
    """

    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind((LOOPBACK, 0))
        self._socket.listen(64)
        self._socket.settimeout(_ACCEPT_POLL_S)
        self.port: int = self._socket.getsockname()[1]
        self._stop = threading.Event()
        self._held: list[socket.socket] = []
        self.accepted = 0
        self._thread = threading.Thread(target=self._accept_loop, name="silent-server", daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        """The server's address as an OTLP endpoint."""
        return f"http://{LOOPBACK}:{self.port}"

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _address = self._socket.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            if len(self._held) < _MAX_HELD_CONNECTIONS:
                self._held.append(connection)
            else:
                connection.close()

    def stop(self) -> None:
        """Stop accepting and close every connection."""
        self._stop.set()
        self._thread.join(timeout=5.0)
        self._socket.close()
        for connection in self._held:
            connection.close()
        self._held.clear()


def closed_port() -> int:
    """Return a loopback port that nothing listens on (refused connections)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


@pytest.fixture
def otlp_receiver(tmp_path: Path) -> Iterator[OtlpReceiver]:
    """Yield a started rotel-agent receiver; it is stopped after the test."""
    with OtlpReceiver(tmp_path / "otlp-receiver") as receiver:
        yield receiver


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    """Yield a server that accepts connections and never responds; it is stopped after the test."""
    server = SilentServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def refused_endpoint() -> str:
    """An endpoint on 127.0.0.1 whose port refuses connections."""
    return f"http://{LOOPBACK}:{closed_port()}"


@pytest.fixture
def pipelines() -> Iterator[Callable[..., TelemetryPipeline]]:
    """Yield ``build_pipeline``; every pipeline it built is shut down after the test."""
    built: list[TelemetryPipeline] = []

    def build(**kwargs: Any) -> TelemetryPipeline:
        pipeline = build_pipeline(**kwargs)
        built.append(pipeline)
        return pipeline

    yield build
    for pipeline in built:
        pipeline.shutdown(timeout=2.0)


def consistent_state(size: int, *, marker: str = "") -> dict[str, Any]:
    """Return a state whose snapshot has ``size`` running, ``size`` retrying and ``size`` completed.

    Token totals are ``size`` input and ``2 * size`` output, so every number of
    the snapshot can be checked against ``size``.
    """
    running = {
        f"issue-{index}": {
            "issue_id": f"issue-{index}",
            "identifier": f"SYM-{index}",
            "turn_count": size,
            "codex_input_tokens": size,
            "codex_output_tokens": size,
            "last_codex_event": f"turn completed {marker}".strip(),
            "started_at": "2026-05-01T12:00:00Z",
        }
        for index in range(size)
    }
    retrying = {
        f"retry-{index}": {
            "issue_id": f"retry-{index}",
            "identifier": f"RET-{index}",
            "attempt": 1,
            "error": f"agent exited with status 1 {marker}".strip(),
        }
        for index in range(size)
    }
    return {
        "running": running,
        "retry_attempts": retrying,
        "completed": {f"done-{index}" for index in range(size)},
        "codex_totals": {"input_tokens": size, "output_tokens": 2 * size, "seconds_running": float(size)},
        "codex_rate_limits": None,
        "poll_interval_ms": 1000,
        "max_concurrent_agents": max(size, 1),
    }


@dataclass
class InMemoryRecorder:
    """A generator wired to the SDK's in-memory span exporter and metric reader."""

    generator: OTelSnapshotGenerator
    spans: InMemorySpanExporter
    reader: InMemoryMetricReader
    meter_provider: MeterProvider
    tracer_provider: TracerProvider

    def close(self) -> None:
        """Close the generator and shut the providers down."""
        self.generator.close()
        self.meter_provider.shutdown()
        self.tracer_provider.shutdown()


def in_memory_recorder(**generator_options: Any) -> InMemoryRecorder:
    """Build an :class:`InMemoryRecorder`; ``generator_options`` go to the generator."""
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider(shutdown_on_exit=False)
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    generator = OTelSnapshotGenerator(
        meter_provider=meter_provider, tracer_provider=tracer_provider, **generator_options
    )
    return InMemoryRecorder(generator, spans, reader, meter_provider, tracer_provider)


@pytest.fixture
def recorder() -> Iterator[InMemoryRecorder]:
    """Yield an in-memory recorder with the default settings."""
    built = in_memory_recorder()
    try:
        yield built
    finally:
        built.close()
