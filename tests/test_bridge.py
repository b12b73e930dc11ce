"""Tests of the bridge against real HTTP servers on 127.0.0.1, with in-memory OpenTelemetry readers."""

from __future__ import annotations

import base64
import http.server
import json
import logging
import random
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from symphony_otel import OTelSnapshotGenerator
from symphony_otel.bridge import (
    SCRAPE_SPAN_NAME,
    Bridge,
    ScrapeError,
    read_state_body,
    redact_url,
    state_url,
)

ELIXIR = "symphony-elixir"
STATE_15 = f"{ELIXIR}/15_state_3running_3retrying_rate_limits.json"
# The 200 bodies of an orchestrator whose own snapshot failed.
ENVELOPE_TIMEOUT = (
    b'{"generated_at":"2026-12-04T19:33:02Z","error":{"code":"snapshot_timeout","message":"Snapshot timed out"}}'
)
ENVELOPE_UNAVAILABLE = (
    b'{"generated_at":"2026-12-04T19:33:02Z",'
    b'"error":{"code":"snapshot_unavailable","message":"Snapshot unavailable"}}'
)

# --- OpenTelemetry in memory ------------------------------------------------------


@dataclass
class Telemetry:
    reader: InMemoryMetricReader
    spans: InMemorySpanExporter
    meter_provider: MeterProvider
    tracer_provider: TracerProvider
    generator: OTelSnapshotGenerator

    def bridge(self, url: str, **options: Any) -> Bridge:
        options.setdefault("interval", 0.05)
        options.setdefault("timeout", 1.0)
        return Bridge(
            url,
            self.generator,
            tracer_provider=self.tracer_provider,
            meter_provider=self.meter_provider,
            **options,
        )

    def points(self, name: str) -> dict[frozenset[tuple[str, Any]], float]:
        """Return the data points of metric ``name`` by attribute set."""
        found: dict[frozenset[tuple[str, Any]], float] = {}
        data = self.reader.get_metrics_data()
        for resource_metrics in data.resource_metrics if data else []:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    if metric.name == name:
                        for point in metric.data.data_points:
                            found[frozenset((point.attributes or {}).items())] = point.value
        return found

    def scrape_spans(self) -> list[ReadableSpan]:
        return [span for span in self.spans.get_finished_spans() if span.name == SCRAPE_SPAN_NAME]


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    generator = OTelSnapshotGenerator(meter_provider=meter_provider, tracer_provider=tracer_provider)
    yield Telemetry(reader, spans, meter_provider, tracer_provider, generator)
    generator.close()
    meter_provider.shutdown()
    tracer_provider.shutdown()


def error_key(error_type: str) -> frozenset[tuple[str, Any]]:
    return frozenset({("error.type", error_type)})


NO_ATTRIBUTES: frozenset[tuple[str, Any]] = frozenset()

# --- Servers on 127.0.0.1 -----------------------------------------------------------


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    chunked: bool = False


@dataclass
class StateServer:
    """An HTTP server that replies to each GET with the next reply, repeating the last one."""

    replies: list[Reply]
    requests: list[dict[str, str]] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def state_server(*replies: Reply) -> Iterator[StateServer]:
    server_state = StateServer(list(replies))
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
            with lock:
                server_state.requests.append({"path": self.path, **dict(self.headers)})
                index = min(len(server_state.requests), len(server_state.replies)) - 1
                reply = server_state.replies[index]
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            if reply.chunked:
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for start in range(0, len(reply.body), 65536):
                    piece = reply.body[start : start + 65536]
                    try:
                        self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                    except OSError:
                        return  # the client stopped reading
                self.wfile.write(b"0\r\n\r\n")
            else:
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                try:
                    self.wfile.write(reply.body)
                except OSError:
                    return
            self.close_connection = True

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server_state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server_state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def refused_url() -> str:
    """Return the address of a loopback port that nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@contextmanager
def silent_listener() -> Iterator[str]:
    """Yield the address of a socket that completes connections and never replies."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


@contextmanager
def dripping_server(head: bytes, body: bytes, byte_interval: float) -> Iterator[str]:
    """Yield the address of a server that sends ``head`` at once and ``body`` one byte at a time.

    With an empty ``body`` the head itself is sent one byte at a time.
    """
    stop = threading.Event()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.settimeout(0.05)

    def serve() -> None:
        # Bounded by the stop event, which the fixture sets on exit.
        while not stop.is_set():
            try:
                connection, _address = listener.accept()
            except TimeoutError:
                continue
            with connection:
                connection.recv(65536)
                slow = body if body else head
                if body:
                    connection.sendall(head)
                for index in range(len(slow)):
                    if stop.wait(byte_interval):
                        return
                    try:
                        connection.sendall(slow[index : index + 1])
                    except OSError:
                        break

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


def fixture_bytes(fixtures_dir: Path, relative_path: str) -> bytes:
    return (fixtures_dir / relative_path).read_bytes()


# --- URLs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("http://127.0.0.1:4000", "http://127.0.0.1:4000/api/v1/state"),
        ("http://127.0.0.1:4000/", "http://127.0.0.1:4000/api/v1/state"),
        ("127.0.0.1:4000", "http://127.0.0.1:4000/api/v1/state"),
        ("HTTP://localhost:4000/api/v1/state", "http://localhost:4000/api/v1/state"),
        ("http://127.0.0.1:4000/symphony/state?x=1", "http://127.0.0.1:4000/symphony/state?x=1"),
        ("https://[::1]:8443", "https://[::1]:8443/api/v1/state"),
        ("http://user:pw@127.0.0.1:4000#top", "http://user:pw@127.0.0.1:4000/api/v1/state"),
    ],
)
def test_state_url_normalizes(given: str, expected: str) -> None:
    assert state_url(given) == expected


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("ftp://127.0.0.1/state", "must start with http:// or https://"),
        ("http://", "has no host"),
        ("http://127.0.0.1:99999", "invalid port"),
        ("http://user:secret@127.0.0.1:99999", "REDACTED"),
    ],
)
def test_state_url_rejects_invalid(given: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as raised:
        state_url(given)
    assert "secret" not in str(raised.value)


def test_redact_url_hides_credentials() -> None:
    assert redact_url("http://user:pw@127.0.0.1:4000/api") == "http://REDACTED:REDACTED@127.0.0.1:4000/api"
    assert redact_url("http://token@127.0.0.1:4000/api") == "http://REDACTED@127.0.0.1:4000/api"
    assert redact_url("http://127.0.0.1:4000/api") == "http://127.0.0.1:4000/api"


# --- Bodies -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "error_type", "message"),
    [
        (ENVELOPE_TIMEOUT, "snapshot_timeout", "error envelope"),
        (ENVELOPE_UNAVAILABLE, "snapshot_unavailable", "error envelope"),
        (b"<html>502 Bad Gateway</html>", "invalid_json", "not valid JSON"),
        (b"\xff\xfe\x00garbage", "invalid_json", "not valid JSON"),
        (b"[1, 2, 3]", "invalid_body", "JSON array"),
        (b'"running"', "invalid_body", "JSON string"),
        (b'{"status": "ok"}', "invalid_body", "neither a running nor a retrying list"),
        (b"[" * 100_000, "invalid_json", "not valid JSON"),
    ],
)
def test_read_state_body_rejects(body: bytes, error_type: str, message: str) -> None:
    with pytest.raises(ScrapeError, match=message) as raised:
        read_state_body(body)
    assert raised.value.error_type == error_type


def test_read_state_body_rejects_issue_bodies(fixtures_dir: Path) -> None:
    for name, message in [
        ("02_issue_unknown_404.json", "code 'issue_not_found', message 'Issue not found'"),
        ("09_issue_running_FAKE-101.json", "neither a running nor a retrying list"),
        ("10_issue_retrying_turn_failed_FAKE-104.json", "neither a running nor a retrying list"),
    ]:
        with pytest.raises(ScrapeError) as raised:
            read_state_body(fixture_bytes(fixtures_dir, f"{ELIXIR}/{name}"))
        assert raised.value.error_type == "invalid_body", name
        assert message in raised.value.reason, name


def test_read_state_body_reads_fixture(fixtures_dir: Path) -> None:
    snapshot = read_state_body(fixture_bytes(fixtures_dir, STATE_15))

    assert [row["identifier"] for row in snapshot.running] == ["FAKE-101", "FAKE-102", "FAKE-103"]
    assert snapshot.codex_totals["input_tokens"] == 259485
    assert snapshot.rate_limits is not None
    assert snapshot.rate_limits["primary"]["used_percent"] == 30.0


# --- Good scrapes -------------------------------------------------------------------


def test_poll_records_fixture_in_scrape_span(telemetry: Telemetry, fixtures_dir: Path) -> None:
    with state_server(Reply(body=fixture_bytes(fixtures_dir, STATE_15))) as server:
        bridge = telemetry.bridge(server.url)
        result = bridge.poll_once()

    assert result.ok
    assert result.status_code == 200
    assert server.requests[0]["path"] == "/api/v1/state"
    assert server.requests[0]["Accept"] == "application/json"

    (span,) = telemetry.scrape_spans()
    assert span.kind is SpanKind.CLIENT
    assert span.attributes is not None
    assert span.attributes["url.full"] == f"{server.url}/api/v1/state"
    assert span.attributes["http.response.status_code"] == 200
    assert "error.type" not in span.attributes
    assert span.status.status_code is StatusCode.UNSET
    (event,) = span.events
    assert event.name == "symphony.snapshot"
    assert event.attributes is not None
    assert event.attributes["symphony.workers.running"] == 3
    assert event.attributes["symphony.retry_queue.size"] == 3
    assert event.attributes["symphony.tokens.input"] == 259485
    assert event.attributes["symphony.tokens.output"] == 40334
    # No span of the generator's own: the event went into the scrape span.
    assert [s.name for s in telemetry.spans.get_finished_spans()] == [SCRAPE_SPAN_NAME]

    assert telemetry.points("symphony.bridge.up") == {NO_ATTRIBUTES: 1}
    assert telemetry.points("symphony.bridge.scrape.errors") == {}
    assert telemetry.points("symphony.workers.running") == {NO_ATTRIBUTES: 3}
    assert telemetry.points("symphony.tokens") == {
        frozenset({("gen_ai.token.type", "input")}): 259485,
        frozenset({("gen_ai.token.type", "output")}): 40334,
    }
    assert telemetry.points("symphony.rate_limit.utilization") == {
        frozenset({("symphony.rate_limit.window", "primary"), ("symphony.rate_limit.id", "codex")}): 0.3,
        frozenset({("symphony.rate_limit.window", "secondary"), ("symphony.rate_limit.id", "codex")}): 0.075,
    }


def test_poll_sends_basic_auth_and_redacts_it(telemetry: Telemetry, fixtures_dir: Path) -> None:
    with state_server(Reply(body=fixture_bytes(fixtures_dir, STATE_15))) as server:
        url = server.url.replace("http://", "http://alice:s%40cret@")
        bridge = telemetry.bridge(url)
        bridge.poll_once()

    expected = base64.b64encode(b"alice:s@cret").decode()
    assert server.requests[0]["Authorization"] == f"Basic {expected}"
    (span,) = telemetry.scrape_spans()
    assert span.attributes is not None
    assert span.attributes["url.full"] == server.url.replace("http://", "http://REDACTED:REDACTED@") + "/api/v1/state"
    assert "s%40cret" not in bridge.display_url


def test_poll_counts_invalid_values(telemetry: Telemetry) -> None:
    body = json.dumps({"running": [{"issue_identifier": "FAKE-1", "turn_count": "many"}], "retrying": []})
    with state_server(Reply(body=body.encode())) as server:
        result = telemetry.bridge(server.url).poll_once()

    assert result.ok
    assert telemetry.points("symphony.snapshot.invalid_values") == {
        frozenset({("symphony.snapshot.field", "turn_count")}): 1
    }


def test_poll_reads_chunked_body(telemetry: Telemetry, fixtures_dir: Path) -> None:
    with state_server(Reply(body=fixture_bytes(fixtures_dir, STATE_15), chunked=True)) as server:
        result = telemetry.bridge(server.url).poll_once()

    assert result.ok
    assert result.snapshot is not None
    assert len(result.snapshot.running) == 3


def test_bridge_points_carry_orchestrator_name(fixtures_dir: Path) -> None:
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    generator = OTelSnapshotGenerator(meter_provider=meter_provider, orchestrator_name="east")
    try:
        with state_server(Reply(status=500)) as server:
            bridge = Bridge(server.url, generator, meter_provider=meter_provider, tracer_provider=TracerProvider())
            bridge.poll_once()
        telemetry = Telemetry(reader, InMemorySpanExporter(), meter_provider, TracerProvider(), generator)

        assert telemetry.points("symphony.bridge.up") == {frozenset({("symphony.orchestrator.name", "east")}): 0}
        assert telemetry.points("symphony.bridge.scrape.errors") == {
            frozenset({("symphony.orchestrator.name", "east"), ("error.type", "http_500")}): 1
        }
    finally:
        generator.close()
        meter_provider.shutdown()


# --- Failed scrapes -----------------------------------------------------------------

HUGE_BODY = b'{"running": [], "padding": "' + b"x" * (300 * 1024) + b'"}'


@pytest.mark.parametrize(
    ("reply", "error_type", "status_code"),
    [
        (Reply(status=500, body=b"internal error"), "http_500", 500),
        (Reply(status=404, body=b'{"error":{"code":"not_found","message":"Route not found"}}'), "http_404", 404),
        (Reply(body=ENVELOPE_TIMEOUT), "snapshot_timeout", 200),
        (Reply(body=ENVELOPE_UNAVAILABLE), "snapshot_unavailable", 200),
        (Reply(body=b"<html>not json</html>"), "invalid_json", 200),
        (Reply(body=b'{"running": [], "retrying": '), "invalid_json", 200),
        (Reply(body=b'["not", "a", "state"]'), "invalid_body", 200),
        (Reply(body=HUGE_BODY), "body_too_large", 200),
        (Reply(body=HUGE_BODY, chunked=True), "body_too_large", 200),
    ],
    ids=[
        "http_500",
        "http_404",
        "snapshot_timeout",
        "snapshot_unavailable",
        "html",
        "truncated_json",
        "not_a_state",
        "huge_with_length",
        "huge_chunked",
    ],
)
def test_poll_failure_is_counted(
    telemetry: Telemetry, reply: Reply, error_type: str, status_code: int
) -> None:
    with state_server(reply) as server:
        bridge = telemetry.bridge(server.url, max_body_bytes=256 * 1024)
        result = bridge.poll_once()

    assert not result.ok
    assert result.error_type == error_type
    assert result.status_code == status_code
    assert result.consecutive_failures == 1
    assert bridge.up == 0
    assert bridge.error_counts() == {error_type: 1}
    assert telemetry.points("symphony.bridge.up") == {NO_ATTRIBUTES: 0}
    assert telemetry.points("symphony.bridge.scrape.errors") == {error_key(error_type): 1}
    (span,) = telemetry.scrape_spans()
    assert span.attributes is not None
    assert span.attributes["error.type"] == error_type
    assert span.attributes["http.response.status_code"] == status_code
    assert span.status.status_code is StatusCode.ERROR
    assert span.events == ()


def test_refused_connection_is_counted(telemetry: Telemetry) -> None:
    bridge = telemetry.bridge(refused_url())
    results = [bridge.poll_once() for _ in range(3)]

    assert [r.error_type for r in results] == ["connection_refused"] * 3
    assert [r.consecutive_failures for r in results] == [1, 2, 3]
    assert telemetry.points("symphony.bridge.up") == {NO_ATTRIBUTES: 0}
    assert telemetry.points("symphony.bridge.scrape.errors") == {error_key("connection_refused"): 3}
    span = telemetry.scrape_spans()[0]
    assert span.attributes is not None
    assert "http.response.status_code" not in span.attributes


def test_silent_server_times_out(telemetry: Telemetry) -> None:
    with silent_listener() as url:
        bridge = telemetry.bridge(url, timeout=0.3)
        started = time.monotonic()
        result = bridge.poll_once()
        elapsed = time.monotonic() - started

    assert result.error_type == "timeout"
    assert 0.29 <= elapsed < 1.5
    assert telemetry.points("symphony.bridge.scrape.errors") == {error_key("timeout"): 1}


def test_dripping_body_times_out(telemetry: Telemetry) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n"
    with dripping_server(head, b'{"running": []' + b" " * 4986, byte_interval=0.02) as url:
        bridge = telemetry.bridge(url, timeout=0.4)
        started = time.monotonic()
        result = bridge.poll_once()
        elapsed = time.monotonic() - started

    assert result.error_type == "timeout"
    assert elapsed < 1.5
    assert telemetry.points("symphony.bridge.scrape.errors") == {error_key("timeout"): 1}


def test_dripping_head_times_out(telemetry: Telemetry) -> None:
    head = b"HTTP/1.1 200 OK\r\n" + b"X-Padding: " + b"y" * 2000 + b"\r\n\r\n"
    with dripping_server(head, b"", byte_interval=0.02) as url:
        bridge = telemetry.bridge(url, timeout=0.4)
        started = time.monotonic()
        result = bridge.poll_once()
        elapsed = time.monotonic() - started

    assert result.error_type == "timeout"
    assert elapsed < 1.5


def test_dripping_body_without_length_times_out(telemetry: Telemetry) -> None:
    # A body that ends when the connection closes looks complete after the
    # deadline cuts it.  It must still count as a timeout, not as bad JSON.
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
    with dripping_server(head, b'{"running": [], "retrying": []}' + b" " * 2000, byte_interval=0.02) as url:
        result = telemetry.bridge(url, timeout=0.3).poll_once()

    assert result.error_type == "timeout"


def test_unknown_status_line_is_connection_error(telemetry: Telemetry) -> None:
    with dripping_server(b"SSH-2.0-OpenSSH_9.6\r\n", b"x", byte_interval=0.01) as url:
        result = telemetry.bridge(url, timeout=1.0).poll_once()

    assert result.error_type == "connection_error"
    assert result.reason is not None and "BadStatusLine" in result.reason


def test_failure_leaves_last_snapshot_unrecorded(telemetry: Telemetry, fixtures_dir: Path) -> None:
    with state_server(Reply(body=fixture_bytes(fixtures_dir, STATE_15)), Reply(status=503)) as server:
        bridge = telemetry.bridge(server.url)
        first = bridge.poll_once()
        view = telemetry.generator.latest
        second = bridge.poll_once()

    assert first.ok and not second.ok
    assert telemetry.generator.latest is view
    assert len([span for span in telemetry.scrape_spans() if span.events]) == 1


# --- Backoff, logging and recovery --------------------------------------------------


def test_backoff_doubles_up_to_cap(telemetry: Telemetry) -> None:
    bridge = telemetry.bridge(refused_url(), interval=1.0, rng=random.Random(1))
    assert bridge.max_backoff == 8.0
    assert bridge.next_delay() == 1.0

    delays = []
    for _ in range(6):
        bridge.poll_once()
        delays.append(bridge.next_delay())

    for failures, delay in enumerate(delays, start=1):
        full = min(2.0**failures, 8.0)
        assert 0.8 * full <= delay <= full


@pytest.mark.parametrize(("interval", "cap"), [(0.05, 0.4), (5.0, 40.0), (10.0, 60.0), (120.0, 120.0)])
def test_backoff_cap_depends_on_interval(telemetry: Telemetry, interval: float, cap: float) -> None:
    assert telemetry.bridge("http://127.0.0.1:9", interval=interval).max_backoff == cap


def test_failure_streak_logs_once_and_recovery(
    telemetry: Telemetry, fixtures_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    body = fixture_bytes(fixtures_dir, STATE_15)
    with state_server(Reply(status=500), Reply(status=500), Reply(status=502), Reply(body=body)) as server:
        bridge = telemetry.bridge(server.url)
        with caplog.at_level(logging.INFO, logger="symphony_otel.bridge"):
            results = [bridge.poll_once() for _ in range(4)]

    assert [r.error_type for r in results] == ["http_500", "http_500", "http_502", None]
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 2
    assert f"Scraping {server.url}/api/v1/state failed: the server returned HTTP 500" in warnings[0]
    assert "error.type http_500" in warnings[0]
    assert "works again after 3 failed scrapes" in warnings[1]
    assert bridge.up == 1
    assert bridge.consecutive_failures == 0
    assert telemetry.points("symphony.bridge.scrape.errors") == {error_key("http_500"): 2, error_key("http_502"): 1}


def test_run_recovers_when_server_returns(telemetry: Telemetry, fixtures_dir: Path) -> None:
    body = fixture_bytes(fixtures_dir, STATE_15)
    url = refused_url()
    bridge = telemetry.bridge(url, interval=0.02, timeout=0.5)
    stop = threading.Event()
    results = []
    runner = threading.Thread(target=bridge.run, args=(stop,), kwargs={"on_result": results.append})
    runner.start()
    try:
        deadline = time.monotonic() + 3
        while bridge.error_counts().get("connection_refused", 0) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert telemetry.points("symphony.bridge.up") == {NO_ATTRIBUTES: 0}

        port = int(url.rsplit(":", 1)[1])
        with _server_on_port(port, body):
            while bridge.up != 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert telemetry.points("symphony.bridge.up") == {NO_ATTRIBUTES: 1}
    finally:
        stop.set()
        runner.join(timeout=3)

    assert not runner.is_alive()
    assert results[-1].ok or any(r.ok for r in results)
    assert telemetry.points("symphony.bridge.scrape.errors")[error_key("connection_refused")] >= 2
    assert telemetry.points("symphony.workers.running") == {NO_ATTRIBUTES: 3}


@contextmanager
def _server_on_port(port: int, body: bytes) -> Iterator[None]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --- Stopping -----------------------------------------------------------------------


def test_stop_cuts_request_short(telemetry: Telemetry) -> None:
    with silent_listener() as url:
        bridge = telemetry.bridge(url, timeout=10.0)
        stop = threading.Event()
        timer = threading.Timer(0.2, stop.set)
        timer.start()
        started = time.monotonic()
        result = bridge.poll_once(stop)
        elapsed = time.monotonic() - started
        timer.cancel()

    assert result.stopped
    assert not result.ok
    assert elapsed < 1.0
    assert bridge.error_counts() == {}
    assert bridge.up is None


def test_run_returns_after_stop(telemetry: Telemetry, fixtures_dir: Path) -> None:
    with state_server(Reply(body=fixture_bytes(fixtures_dir, STATE_15))) as server:
        bridge = telemetry.bridge(server.url, interval=0.02)
        stop = threading.Event()
        results = []
        timer = threading.Timer(0.3, stop.set)
        timer.start()
        started = time.monotonic()
        bridge.run(stop, on_result=results.append)
        elapsed = time.monotonic() - started

    assert elapsed < 1.0
    assert len(results) >= 3
    assert all(result.ok for result in results)


def test_run_survives_failing_callback(
    telemetry: Telemetry, fixtures_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    calls = []

    def broken(result: object) -> None:
        calls.append(result)
        raise RuntimeError("printer broke")

    with state_server(Reply(body=fixture_bytes(fixtures_dir, STATE_15))) as server:
        bridge = telemetry.bridge(server.url, interval=0.02)
        stop = threading.Event()
        timer = threading.Timer(0.2, stop.set)
        timer.start()
        with caplog.at_level(logging.WARNING, logger="symphony_otel.bridge"):
            bridge.run(stop, on_result=broken)

    assert len(calls) >= 3
    assert len([r for r in caplog.records if "callback raised" in r.getMessage()]) == 1


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("interval", 0, "interval must be a positive number"),
        ("timeout", -1, "timeout must be a positive number"),
        ("max_body_bytes", 0, "max_body_bytes must be a positive integer"),
    ],
)
def test_bridge_rejects_invalid_options(telemetry: Telemetry, option: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        telemetry.bridge("http://127.0.0.1:9", **{option: value})
