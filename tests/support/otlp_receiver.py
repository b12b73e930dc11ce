"""A real OTLP receiver for end-to-end tests: rotel-agent on 127.0.0.1 with a recording processor.

``OtlpReceiver`` starts ``rotel-agent`` (from the ``rotel`` wheel in the test
extras) with an OTLP/gRPC and an OTLP/HTTP listener on two free loopback
ports. The processor in ``rotel_processor.py`` appends one JSON line per
received span, metric data point and log record to ``records.jsonl`` in the
work directory, and the read methods here parse that file.

Record fields (all attribute maps are ``{key: value}`` with the value's Python
type kept: ``str``, ``bool``, ``int``, ``float``, ``list`` for arrays, ``dict``
for key/value lists and ``{"bytes_base64": ...}`` for bytes):

- span: ``resource``, ``scope``, ``scope_version``, ``name``, ``span_kind``,
  ``trace_id``, ``span_id``, ``parent_span_id`` (hex, None for a root span),
  ``start_time_unix_nano``, ``end_time_unix_nano``, ``attributes``,
  ``events`` (``name``, ``time_unix_nano``, ``attributes``), ``links``,
  ``status`` (``code`` is "unset", "ok" or "error", and ``message``).
- metric point: ``resource``, ``scope``, ``scope_version``, ``name``, ``unit``,
  ``description``, ``type``, ``is_monotonic``, ``aggregation_temporality``,
  ``attributes``, ``value``, ``time_unix_nano`` and ``start_time_unix_nano``.
  ``type`` is "gauge", "sum", "histogram", "exponential_histogram" or
  "summary". ``is_monotonic`` is None unless the type is "sum", and
  ``aggregation_temporality`` ("delta" or "cumulative") is None for gauges.
  ``value`` is the int or float of a gauge or sum point and None otherwise.
  Histogram points add ``count``, ``sum``, ``min``, ``max``,
  ``bucket_counts`` and ``explicit_bounds``.
- log record: ``resource``, ``scope``, ``scope_version``, ``event_name`` (None
  when empty), ``body``, ``attributes``, ``severity_number``,
  ``severity_text``, ``trace_id``, ``span_id``, ``time_unix_nano``,
  ``observed_time_unix_nano``.
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from .rotel_processor import RECORDS_FILE_ENV

Record = dict[str, Any]

ROTEL_AGENT_ENV = "SYMPHONY_OTEL_TEST_ROTEL_AGENT"
"""Environment variable that overrides the rotel-agent binary path."""

RECORD_KINDS = ("span", "metric_point", "log_record")

_PROCESSOR_FILE = Path(__file__).with_name("rotel_processor.py")
_INSTALL_HINT = "install the test extras with: pip install -e '.[test]'"
_POLL_INTERVAL_S = 0.05
_STOP_TIMEOUT_S = 5.0
_PORT_ATTEMPTS = 3

# setpriv (util-linux) makes the kernel SIGKILL rotel-agent when the thread that
# started it dies, so a test run that is killed before teardown (SIGKILL, CI
# timeout) leaves no receiver behind. Without setpriv, only teardown and the
# atexit hook below stop it.
_SETPRIV = shutil.which("setpriv") if sys.platform.startswith("linux") else None

# Receivers that are running, so that an interpreter exit that skipped
# teardown (for example a KeyboardInterrupt inside start()) still stops them.
_running: set[OtlpReceiver] = set()


class OtlpReceiverError(RuntimeError):
    """rotel-agent could not be found, started or stopped."""


class OtlpReceiver:
    """rotel-agent listening for OTLP/gRPC and OTLP/HTTP on two loopback ports.

    The ports are chosen by the first ``start()`` and kept for the lifetime of
    the object, so a test can ``stop()`` the receiver to simulate an outage and
    ``start()`` it again on the same endpoints. Records survive a restart
    because the record file is only appended to, until ``clear()``.

    Args:
        workdir: Directory for the record file, rotel's pid and log files and
            its captured output. It is created if missing.
        rotel_agent: Path of the rotel-agent binary. Defaults to the
            ``SYMPHONY_OTEL_TEST_ROTEL_AGENT`` environment variable, then to
            the binary inside the installed ``rotel`` package.
        ready_timeout: Seconds to wait for both ports to accept connections.
    """

    def __init__(
        self, workdir: Path, *, rotel_agent: Path | None = None, ready_timeout: float = 10.0
    ) -> None:
        self.workdir = Path(workdir)
        self.records_file = self.workdir / "records.jsonl"
        self.output_file = self.workdir / "rotel-output.log"
        self._rotel_agent = rotel_agent
        self._ready_timeout = ready_timeout
        self._ports: tuple[int, int] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self.last_start_seconds: float | None = None
        """Seconds the last ``start()`` took until both ports accepted connections."""

    # Lifecycle

    def start(self) -> OtlpReceiver:
        """Start rotel-agent and wait until both OTLP ports accept connections.

        NOTE: with setpriv available, rotel-agent is killed when the thread that
        called ``start()`` exits, so call it from a thread that outlives the
        receiver (the main thread in tests).

        Returns:
            This receiver, for chaining.

        Raises:
            OtlpReceiverError: The binary is missing, the receiver is already
                running, or rotel-agent exited or did not open its ports within
                ``ready_timeout`` seconds. The message contains the tail of
                rotel's output.
        """
        if self.is_running:
            raise OtlpReceiverError(f"rotel-agent is already running with pid {self.pid}")
        binary = self._find_binary()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.records_file.touch()

        if self._ports is not None:
            self._launch(binary, self._ports)
            return self

        # Another process can take a probed port before rotel binds it, so a
        # first start retries with new ports. A restart must keep its ports.
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            ports = _free_port_pair()
            try:
                self._launch(binary, ports)
            except OtlpReceiverError:
                if attempt == _PORT_ATTEMPTS:
                    raise
                continue
            self._ports = ports
            break
        return self

    def stop(self) -> None:
        """Stop rotel-agent with SIGTERM, then SIGKILL if it is still running after 5 s.

        Does nothing when the receiver is not running. Records already written
        stay readable.

        Raises:
            OtlpReceiverError: The process survived SIGKILL for 5 s.
        """
        process = self._process
        if process is None:
            return
        try:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=_STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    process.kill()
                    try:
                        process.wait(timeout=_STOP_TIMEOUT_S)
                    except subprocess.TimeoutExpired as error:
                        raise OtlpReceiverError(
                            f"rotel-agent with pid {process.pid} did not exit within "
                            f"{_STOP_TIMEOUT_S} s after SIGKILL"
                        ) from error
        finally:
            if process.returncode is not None:
                self._process = None
                _running.discard(self)

    def __enter__(self) -> OtlpReceiver:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # Endpoints and state

    @property
    def grpc_endpoint(self) -> str:
        """OTLP/gRPC endpoint, such as ``http://127.0.0.1:40123``."""
        return f"http://127.0.0.1:{self._require_ports()[0]}"

    @property
    def http_endpoint(self) -> str:
        """OTLP/HTTP base URL without a signal path.

        An exporter given ``endpoint=`` needs the signal path appended
        (``/v1/traces``, ``/v1/metrics``, ``/v1/logs``). The SDK appends it only
        when the URL comes from ``OTEL_EXPORTER_OTLP_ENDPOINT``.
        """
        return f"http://127.0.0.1:{self._require_ports()[1]}"

    @property
    def is_running(self) -> bool:
        """Whether the rotel-agent process started by this object is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """Process id of the running rotel-agent, or None when it is not running."""
        return self._process.pid if self.is_running and self._process is not None else None

    # Reading records

    def records(self, kind: str | None = None) -> list[Record]:
        """Parse the record file.

        Args:
            kind: "span", "metric_point", "log_record" or "error", or None
                for every record.

        Returns:
            The records in arrival order. A line still being written is left out.
        """
        try:
            data = self.records_file.read_bytes()
        except FileNotFoundError:
            return []
        complete = data[: data.rfind(b"\n") + 1]
        parsed = [json.loads(line) for line in complete.splitlines() if line]
        if kind is None:
            return parsed
        return [record for record in parsed if record.get("kind") == kind]

    def spans(self) -> list[Record]:
        """Return every span received so far."""
        return self.records("span")

    def metric_points(self) -> list[Record]:
        """Return every metric data point received so far."""
        return self.records("metric_point")

    def log_records(self) -> list[Record]:
        """Return every log record received so far."""
        return self.records("log_record")

    def errors(self) -> list[Record]:
        """Return the processor failures (each with ``signal`` and a traceback in ``error``)."""
        return self.records("error")

    def clear(self) -> None:
        """Empty the record file. rotel keeps appending to it."""
        self.records_file.write_bytes(b"")

    def wait_for(self, kind: str, predicate: Callable[[Record], bool], timeout: float = 10.0) -> Record:
        """Poll the record file until a record of ``kind`` satisfies ``predicate``.

        Args:
            kind: "span", "metric_point" or "log_record".
            predicate: Called with each record of that kind.
            timeout: Seconds to wait.

        Returns:
            The first matching record.

        Raises:
            AssertionError: No record matched within ``timeout`` seconds, or the
                processor wrote an error record. The message lists what arrived.
        """
        if kind not in RECORD_KINDS:
            raise ValueError(f"invalid record kind {kind!r}; expected one of {RECORD_KINDS}")
        deadline = time.monotonic() + timeout
        while True:
            records = self.records()
            errors = [record for record in records if record.get("kind") == "error"]
            if errors:
                raise AssertionError(f"the rotel processor failed:\n{errors[0]['error']}")
            for record in records:
                if record.get("kind") == kind and predicate(record):
                    return record
            if time.monotonic() >= deadline:
                raise AssertionError(self._describe_timeout(kind, timeout, records))
            time.sleep(_POLL_INTERVAL_S)

    def wait_for_span(
        self,
        name: str | None = None,
        predicate: Callable[[Record], bool] | None = None,
        timeout: float = 10.0,
    ) -> Record:
        """Wait for a span with ``name`` (any name when None) that satisfies ``predicate``."""
        return self.wait_for("span", _matcher(name, predicate), timeout)

    def wait_for_metric(
        self,
        name: str,
        predicate: Callable[[Record], bool] | None = None,
        timeout: float = 10.0,
    ) -> Record:
        """Wait for a data point of metric ``name`` that satisfies ``predicate``."""
        return self.wait_for("metric_point", _matcher(name, predicate), timeout)

    def wait_for_log_record(
        self,
        event_name: str | None = None,
        predicate: Callable[[Record], bool] | None = None,
        timeout: float = 10.0,
    ) -> Record:
        """Wait for a log record with ``event_name`` (any when None) that satisfies ``predicate``."""

        def matches(record: Record) -> bool:
            if event_name is not None and record["event_name"] != event_name:
                return False
            return predicate is None or predicate(record)

        return self.wait_for("log_record", matches, timeout)

    def output_tail(self, max_lines: int = 40) -> str:
        """Return the last lines rotel-agent wrote to its stdout, stderr and log file."""
        parts = []
        for path in (self.output_file, self.workdir / "rotel.log"):
            if path.exists():
                lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
                parts.extend(lines[-max_lines:])
        return "\n".join(parts) if parts else "(rotel-agent wrote no output)"

    # Internals

    def _find_binary(self) -> Path:
        configured = self._rotel_agent or os.environ.get(ROTEL_AGENT_ENV)
        if configured:
            binary = Path(configured)
            reason = f"rotel-agent was configured as {binary} but that file does not exist"
        else:
            spec = importlib.util.find_spec("rotel")
            if spec is None or spec.origin is None:
                raise OtlpReceiverError(
                    "The end-to-end tests need rotel-agent, but the Python package 'rotel' is not "
                    f"installed. The test extras pin rotel for Python 3.11 on Linux only; {_INSTALL_HINT}, "
                    f"or set {ROTEL_AGENT_ENV} to the path of a rotel-agent binary."
                )
            binary = Path(spec.origin).with_name("rotel-agent")
            reason = f"the 'rotel' package has no rotel-agent binary at {binary}"
        if not binary.is_file():
            raise OtlpReceiverError(f"{reason}; {_INSTALL_HINT}.")
        if not os.access(binary, os.X_OK):
            raise OtlpReceiverError(f"rotel-agent at {binary} is not executable; {_INSTALL_HINT}.")
        return binary

    def _launch(self, binary: Path, ports: tuple[int, int]) -> None:
        grpc_port, http_port = ports
        parent_death = [_SETPRIV, "--pdeathsig", "KILL", "--"] if _SETPRIV else []
        command = [
            *parent_death,
            str(binary),
            "start",
            "--otlp-grpc-endpoint", f"127.0.0.1:{grpc_port}",
            "--otlp-http-endpoint", f"127.0.0.1:{http_port}",
            "--exporter", "blackhole",
            "--batch-timeout", "50ms",
            # Without --daemon rotel 0.0.1a15 writes neither file, but the
            # defaults are shared paths under /tmp, so give each instance its own.
            "--pid-file", str(self.workdir / "rotel.pid"),
            "--log-file", str(self.workdir / "rotel.log"),
            "--otlp-with-trace-processor", str(_PROCESSOR_FILE),
            "--otlp-with-metrics-processor", str(_PROCESSOR_FILE),
            "--otlp-with-logs-processor", str(_PROCESSOR_FILE),
        ]  # fmt: skip
        started = time.monotonic()
        with self.output_file.open("ab") as output:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env=_child_environment(self.records_file),
            )
        self._process = process
        _running.add(self)

        deadline = started + self._ready_timeout
        while not (_accepts_connections(grpc_port) and _accepts_connections(http_port)):
            failure = None
            if process.poll() is not None:
                failure = f"rotel-agent exited with status {process.returncode} during start"
            elif time.monotonic() >= deadline:
                failure = (
                    f"rotel-agent did not open ports {grpc_port} and {http_port} "
                    f"within {self._ready_timeout} s"
                )
            if failure is not None:
                self.stop()
                raise OtlpReceiverError(
                    f"{failure}. Command: {' '.join(command)}\nOutput:\n{self.output_tail()}"
                )
            time.sleep(0.01)

        # A port probed open could belong to another process if rotel failed to bind it.
        if process.poll() is not None:
            self.stop()
            raise OtlpReceiverError(
                f"rotel-agent exited with status {process.returncode} during start "
                f"(is another process listening on {grpc_port} or {http_port}?)\n"
                f"Output:\n{self.output_tail()}"
            )
        self.last_start_seconds = time.monotonic() - started

    def _require_ports(self) -> tuple[int, int]:
        if self._ports is None:
            raise OtlpReceiverError("the receiver has no ports yet; call start() first")
        return self._ports

    def _describe_timeout(self, kind: str, timeout: float, records: list[Record]) -> str:
        same_kind = [record for record in records if record.get("kind") == kind]
        state = "running" if self.is_running else "not running"
        lines = [f"no matching {kind} record arrived within {timeout} s (receiver {state})."]
        lines.append(f"{len(same_kind)} {kind} record(s) arrived:")
        lines.extend(f"  {_summarize(record)}" for record in same_kind[-50:])
        return "\n".join(lines)


def _matcher(name: str | None, predicate: Callable[[Record], bool] | None) -> Callable[[Record], bool]:
    def matches(record: Record) -> bool:
        if name is not None and record["name"] != name:
            return False
        return predicate is None or predicate(record)

    return matches


def _summarize(record: Record, max_chars: int = 300) -> str:
    label = record.get("name") or record.get("event_name") or ""
    text = json.dumps(record.get("attributes", {}), ensure_ascii=False)
    if len(text) > max_chars:
        text = text[:max_chars] + "..."
    if record.get("kind") == "metric_point":
        return f"{label} {record['type']} value={record['value']!r} attributes={text}"
    return f"{label} attributes={text}"


def _child_environment(records_file: Path) -> dict[str, str]:
    environment = {
        key: value
        for key, value in os.environ.items()
        # ROTEL_* variables would change rotel's configuration. PYTHONHOME would
        # point rotel's embedded interpreter at another standard library, and
        # PYTHONPATH would add the test environment's packages to it.
        if not key.startswith("ROTEL_") and key not in ("PYTHONHOME", "PYTHONPATH")
    }
    environment[RECORDS_FILE_ENV] = str(records_file)
    environment["NO_COLOR"] = "1"
    return environment


def _free_port_pair() -> tuple[int, int]:
    """Return two distinct ports that were free on 127.0.0.1 a moment ago."""
    with socket.socket() as first, socket.socket() as second:
        first.bind(("127.0.0.1", 0))
        second.bind(("127.0.0.1", 0))
        return first.getsockname()[1], second.getsockname()[1]


def _accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@atexit.register
def _stop_running_receivers() -> None:
    for receiver in list(_running):
        receiver.stop()
