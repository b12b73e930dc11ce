"""The ``symphony-otel`` command: argument parsing and wiring only.

``watch URL`` polls an orchestrator's ``/api/v1/state`` through
:class:`~symphony_otel.bridge.Bridge`; ``demo`` records a
:class:`~symphony_otel.simulation.Simulation`; ``snapshot FILE`` records one
state body read from a file.  All three export through
:func:`~symphony_otel.pipeline.build_pipeline`.

Usage::

    symphony-otel watch http://127.0.0.1:4000 --otlp-endpoint http://127.0.0.1:4317 --protocol grpc
    symphony-otel demo --duration 30 --speed 120
    curl -s http://127.0.0.1:4000/api/v1/state | symphony-otel snapshot -
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Final

from symphony_otel._reading import ValueReport
from symphony_otel.bridge import (
    DEFAULT_INTERVAL,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_TIMEOUT,
    Bridge,
    ScrapeError,
    ScrapeResult,
    read_state_body,
    state_url,
)
from symphony_otel.pipeline import DEFAULT_OUTPUT_DIR, TelemetryPipeline, build_pipeline
from symphony_otel.recorder import OTelSnapshotGenerator
from symphony_otel.recorder.view import parse_rate_limits
from symphony_otel.simulation import Simulation, run_in_real_time
from symphony_otel.snapshot import SystemSnapshot
from symphony_otel.version import __version__

__all__ = ["EXIT_FAILURE", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "build_parser", "main", "status_line"]

_logger = logging.getLogger(__name__)

PROG: Final = "symphony-otel"
EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130  # 128 + SIGINT, as shells report it

DEFAULT_SHUTDOWN_TIMEOUT: Final = 5.0
DEFAULT_DEMO_DURATION: Final = 60.0
DEFAULT_DEMO_SPEED: Final = 60.0
DEFAULT_DEMO_INTERVAL: Final = 2.0

_LOG_FORMAT: Final = "%(asctime)s %(levelname)s [%(name)s] %(message)s"
_TIME_FORMAT: Final = "%H:%M:%S"
# Keeps the line breaks of the descriptions and of the exit-status epilog.
_FORMATTER: Final = argparse.RawDescriptionHelpFormatter

_EPILOG: Final = """\
exit status:
  0    finished, or stopped by Ctrl-C or SIGTERM after the last export
  1    runtime failure, such as a snapshot FILE that cannot be read or is not a state
  2    usage error: an invalid option, argument or setting
  130  a second Ctrl-C or SIGTERM cut the last export short

Telemetry goes to the OTLP endpoint of --otlp-endpoint or OTEL_EXPORTER_OTLP_ENDPOINT
(OTEL_EXPORTER_OTLP_PROTOCOL, _HEADERS, _TIMEOUT and the per-signal variables apply),
else to OTLP/JSON files in --output-dir, which the Collector's otlpjsonfile receiver
reads. The SYMPHONY_OTEL_* variables tune the recorder."""


# --- Arguments ------------------------------------------------------------------


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number of seconds: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def _duration_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number of seconds: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be 0 (no limit) or a positive number of seconds, got {text!r}")
    return value


def _positive_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def _positive_integer(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _url(text: str) -> str:
    try:
        return state_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _shared_options() -> argparse.ArgumentParser:
    """Return a parent parser with the options that every command takes."""
    parent = argparse.ArgumentParser(add_help=False)
    output = parent.add_argument_group("telemetry output")
    # Not an argparse mutually exclusive group: its options would leave this
    # group's section of the help.  main() rejects the pair instead.
    output.add_argument(
        "--otlp-endpoint",
        metavar="URL",
        help="OTLP endpoint for traces, metrics and logs, such as http://127.0.0.1:4317 for "
        "gRPC or http://127.0.0.1:4318 for HTTP (default: OTEL_EXPORTER_OTLP_ENDPOINT, "
        "else files in --output-dir)",
    )
    output.add_argument(
        "--console", action="store_true", help="print the telemetry on stdout instead of exporting it"
    )
    output.add_argument(
        "--protocol",
        choices=("grpc", "http/protobuf"),
        help="OTLP protocol (default: OTEL_EXPORTER_OTLP_PROTOCOL, else http/protobuf)",
    )
    output.add_argument(
        "--output-dir",
        type=Path,
        default=DEFAULT_OUTPUT_DIR,
        metavar="DIR",
        help="directory of traces.jsonl, metrics.jsonl and logs.jsonl when no OTLP endpoint "
        f"is set (default: ./{DEFAULT_OUTPUT_DIR}/)",
    )
    output.add_argument(
        "--service-name",
        default="symphony-otel",
        metavar="NAME",
        help="service.name of the telemetry unless OTEL_SERVICE_NAME or "
        "OTEL_RESOURCE_ATTRIBUTES sets one (default: symphony-otel)",
    )
    output.add_argument(
        "--shutdown-timeout",
        type=_positive_seconds,
        default=DEFAULT_SHUTDOWN_TIMEOUT,
        metavar="SECONDS",
        help=f"seconds to wait for the last export on exit (default: {DEFAULT_SHUTDOWN_TIMEOUT:g})",
    )

    messages = parent.add_argument_group("messages")
    messages.add_argument(
        "-q", "--quiet", action="store_true", help="no status lines, and only warnings and errors"
    )
    messages.add_argument(
        "--log-level",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        type=str.upper,
        help="level of the diagnostics on stderr (default: INFO, or WARNING with --quiet)",
    )
    return parent


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of the ``symphony-otel`` command."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Export the runtime state of Symphony coding-agent orchestrators as\n"
        "OpenTelemetry metrics, spans and events.",
        epilog=_EPILOG,
        formatter_class=_FORMATTER,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    shared = _shared_options()
    _add_watch_command(commands, shared)
    _add_demo_command(commands, shared)
    _add_snapshot_command(commands, shared)
    return parser


def _add_watch_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], shared: argparse.ArgumentParser
) -> None:
    watch = commands.add_parser(
        "watch",
        parents=[shared],
        help="poll an orchestrator's /api/v1/state and export each snapshot",
        description="Poll an orchestrator's GET /api/v1/state and export every snapshot.\n"
        "Failed scrapes are retried with backoff and counted in symphony.bridge.scrape.errors.",
        epilog=_EPILOG,
        formatter_class=_FORMATTER,
    )
    watch.add_argument(
        "url",
        type=_url,
        metavar="URL",
        help="the orchestrator's address, such as http://127.0.0.1:4000; /api/v1/state is "
        "appended when the path is empty",
    )
    watch.add_argument(
        "--interval",
        type=_positive_seconds,
        default=DEFAULT_INTERVAL,
        metavar="SECONDS",
        help=f"seconds between polls while they succeed (default: {DEFAULT_INTERVAL:g})",
    )
    watch.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"seconds one request may take from connecting to the last byte (default: {DEFAULT_TIMEOUT:g})",
    )
    watch.add_argument(
        "--max-body-bytes",
        type=_positive_integer,
        default=DEFAULT_MAX_BODY_BYTES,
        metavar="BYTES",
        help=f"largest response body accepted, in bytes (default: {DEFAULT_MAX_BODY_BYTES})",
    )
    watch.add_argument(
        "--duration",
        type=_duration_seconds,
        default=0.0,
        metavar="SECONDS",
        help="stop after this many seconds; 0 runs until Ctrl-C or SIGTERM (default: 0)",
    )
    watch.set_defaults(handler=_watch)


def _add_demo_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], shared: argparse.ArgumentParser
) -> None:
    demo = commands.add_parser(
        "demo",
        parents=[shared],
        help="export the snapshots of a built-in simulated orchestrator",
        description="Run a simulated orchestrator (workers, turns, retries, rate limits)\n"
        "and export a snapshot of it every --interval seconds.",
        epilog=_EPILOG,
        formatter_class=_FORMATTER,
    )
    demo.add_argument(
        "--duration",
        type=_duration_seconds,
        default=DEFAULT_DEMO_DURATION,
        metavar="SECONDS",
        help=f"stop after this many seconds; 0 runs until Ctrl-C or SIGTERM (default: {DEFAULT_DEMO_DURATION:g})",
    )
    demo.add_argument(
        "--speed",
        type=_positive_number,
        default=DEFAULT_DEMO_SPEED,
        metavar="FACTOR",
        help=f"simulated seconds per real second (default: {DEFAULT_DEMO_SPEED:g})",
    )
    demo.add_argument(
        "--seed", type=int, default=0, metavar="N", help="seed of the simulation's random choices (default: 0)"
    )
    demo.add_argument(
        "--interval",
        type=_positive_seconds,
        default=DEFAULT_DEMO_INTERVAL,
        metavar="SECONDS",
        help=f"real seconds between snapshots (default: {DEFAULT_DEMO_INTERVAL:g})",
    )
    demo.add_argument(
        "--max-agents",
        type=_positive_integer,
        default=5,
        metavar="N",
        help="max_concurrent_agents of the simulated orchestrator (default: 5)",
    )
    demo.set_defaults(handler=_demo)


def _add_snapshot_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], shared: argparse.ArgumentParser
) -> None:
    snapshot = commands.add_parser(
        "snapshot",
        parents=[shared],
        help="export one /api/v1/state body read from a file",
        description="Read one /api/v1/state body (JSON) from FILE, export it as one snapshot,\n"
        "and print the snapshot as JSON on stdout.",
        epilog=_EPILOG,
        formatter_class=_FORMATTER,
    )
    snapshot.add_argument("file", metavar="FILE", help="the JSON body, or - for standard input")
    snapshot.set_defaults(handler=_snapshot)


# --- Entry point ----------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``symphony-otel`` command.

    Args:
        argv: The arguments without the program name; ``sys.argv[1:]`` when None.

    Returns:
        The exit status: 0 when done or stopped by a signal, 1 on a runtime
        failure, 2 on a usage error, 130 when a second signal cut the last
        export short.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_request:  # --help, --version and usage errors
        return exit_request.code if isinstance(exit_request.code, int) else EXIT_USAGE
    if args.console and args.otlp_endpoint:
        parser.print_usage(sys.stderr)
        print(f"{PROG}: error: --console and --otlp-endpoint cannot be used together", file=sys.stderr)
        return EXIT_USAGE
    level = args.log_level or ("WARNING" if args.quiet else "INFO")
    handler: Callable[[argparse.Namespace], int] = args.handler
    with _diagnostics_on_stderr(level):
        try:
            return handler(args)
        except KeyboardInterrupt:
            _logger.warning("Interrupted; telemetry not yet exported is lost.")
            return EXIT_INTERRUPTED


@contextmanager
def _diagnostics_on_stderr(level: str) -> Iterator[None]:
    """Send log records of ``level`` and above to stderr while the command runs."""
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_LOG_FORMAT, _TIME_FORMAT))
    previous_level = root.level
    root.addHandler(handler)
    root.setLevel(level)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(previous_level)


@contextmanager
def _stop_on_signals(stop_event: threading.Event) -> Iterator[None]:
    """Set ``stop_event`` on the first SIGINT or SIGTERM; raise KeyboardInterrupt on a second."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be installed from the main thread
        return

    def handle(signum: int, frame: FrameType | None) -> None:
        if stop_event.is_set():
            raise KeyboardInterrupt
        _logger.info("Received %s; stopping after the last export.", signal.Signals(signum).name)
        stop_event.set()

    previous = {number: signal.signal(number, handle) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old)


@contextmanager
def _stop_after(stop_event: threading.Event, duration: float) -> Iterator[None]:
    """Set ``stop_event`` after ``duration`` seconds, or never when it is 0."""
    timer = threading.Timer(duration, stop_event.set) if duration > 0 else None
    if timer is not None:
        timer.daemon = True
        timer.start()
    try:
        yield
    finally:
        if timer is not None:
            timer.cancel()


def _build_pipeline(args: argparse.Namespace) -> TelemetryPipeline:
    return build_pipeline(
        sink="console" if args.console else "auto",
        output_dir=args.output_dir,
        otlp_endpoint=args.otlp_endpoint,
        protocol=args.protocol,
        service_name=args.service_name,
    )


def _start_telemetry(args: argparse.Namespace) -> tuple[TelemetryPipeline, OTelSnapshotGenerator] | None:
    """Build the pipeline and the generator, or log the invalid setting and return None."""
    try:
        pipeline = _build_pipeline(args)
    except ValueError as exc:
        _logger.error("Invalid telemetry setting: %s", exc)
        return None
    try:
        generator = OTelSnapshotGenerator(
            meter_provider=pipeline.meter_provider,
            tracer_provider=pipeline.tracer_provider,
            logger_provider=pipeline.logger_provider,
        )
    except ValueError as exc:
        _logger.error("Invalid recorder setting: %s", exc)
        pipeline.shutdown(timeout=args.shutdown_timeout)
        return None
    return pipeline, generator


def _stop_telemetry(pipeline: TelemetryPipeline, generator: OTelSnapshotGenerator, timeout: float) -> bool:
    """Flush and stop the pipeline; return whether every item was delivered."""
    started = time.monotonic()
    finished = pipeline.shutdown(timeout=timeout)
    generator.close()
    dropped = pipeline.drops.counts()
    _logger.info("Telemetry stopped in %.1f s.", time.monotonic() - started)
    if dropped:
        details = ", ".join(f"{count} {signal_name}" for signal_name, count in sorted(dropped.items()))
        _logger.warning("Items not delivered to %s: %s.", pipeline.description, details)
    return finished and not dropped


# --- Commands -------------------------------------------------------------------


def _watch(args: argparse.Namespace) -> int:
    started = _start_telemetry(args)
    if started is None:
        return EXIT_USAGE
    pipeline, generator = started
    bridge = Bridge(
        args.url,
        generator,
        tracer_provider=pipeline.tracer_provider,
        meter_provider=pipeline.meter_provider,
        interval=args.interval,
        timeout=args.timeout,
        max_body_bytes=args.max_body_bytes,
    )
    _logger.info("Watching %s; telemetry goes to %s. Stop with Ctrl-C.", bridge.display_url, pipeline.description)

    scrapes = {"ok": 0, "failed": 0}

    def show(result: ScrapeResult) -> None:
        if not result.stopped:
            scrapes["ok" if result.snapshot is not None else "failed"] += 1
        if result.snapshot is not None and not args.quiet:
            _print_status(result.snapshot, pipeline.description)

    stop = threading.Event()
    with _stop_on_signals(stop), _stop_after(stop, args.duration):
        bridge.run(stop, on_result=show)
        level = logging.WARNING if scrapes["failed"] and not scrapes["ok"] else logging.INFO
        _logger.log(
            level,
            "Scraped %s %d times: %d succeeded, %d failed.",
            bridge.display_url,
            scrapes["ok"] + scrapes["failed"],
            scrapes["ok"],
            scrapes["failed"],
        )
        _stop_telemetry(pipeline, generator, args.shutdown_timeout)
    return EXIT_OK


def _demo(args: argparse.Namespace) -> int:
    started = _start_telemetry(args)
    if started is None:
        return EXIT_USAGE
    pipeline, generator = started
    simulation = Simulation(seed=args.seed, speed=args.speed, max_concurrent_agents=args.max_agents)
    length = f"for {args.duration:g} s" if args.duration > 0 else "until stopped"
    _logger.info(
        "Simulating an orchestrator at %gx speed %s; telemetry goes to %s.",
        args.speed,
        length,
        pipeline.description,
    )

    def show(snapshot: SystemSnapshot) -> None:
        if not args.quiet:
            _print_status(snapshot, pipeline.description)

    stop = threading.Event()
    with _stop_on_signals(stop), _stop_after(stop, args.duration):
        count = run_in_real_time(simulation, generator, stop, interval=args.interval, on_snapshot=show)
        _logger.info("Recorded %d snapshots covering %.0f simulated seconds.", count, simulation.elapsed)
        _stop_telemetry(pipeline, generator, args.shutdown_timeout)
    return EXIT_OK


def _snapshot(args: argparse.Namespace) -> int:
    name = "standard input" if args.file == "-" else args.file
    try:
        data = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    except OSError as exc:
        _logger.error("Cannot read %s: %s", name, exc.strerror or exc)
        return EXIT_FAILURE
    try:
        # Checked before the pipeline exists, so a bad file leaves no output behind.
        read_state_body(data, report=ValueReport())
    except ScrapeError as exc:
        _logger.error("%s is not an orchestrator state: %s.", name, exc.reason)
        return EXIT_FAILURE

    started = _start_telemetry(args)
    if started is None:
        return EXIT_USAGE
    pipeline, generator = started
    snapshot = read_state_body(data, report=generator.value_report)
    generator.record(snapshot)
    # Scrubbed like the exported payload: stdout often ends up in a log.
    json.dump(generator.redacted_dict(snapshot), sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
    sys.stdout.flush()
    _logger.info(
        "Recorded the snapshot of %s (%d running, %d retrying); telemetry goes to %s.",
        name,
        len(snapshot.running),
        len(snapshot.retrying),
        pipeline.description,
    )
    if not _stop_telemetry(pipeline, generator, args.shutdown_timeout):
        _logger.error("The snapshot of %s may not have reached %s.", name, pipeline.description)
        return EXIT_FAILURE
    return EXIT_OK


# --- Status lines ---------------------------------------------------------------


def _print_status(snapshot: SystemSnapshot, destination: str) -> None:
    print(status_line(snapshot, destination), file=sys.stderr, flush=True)


def status_line(snapshot: SystemSnapshot, destination: str, now: dt.datetime | None = None) -> str:
    """Return the one-line summary of a snapshot that ``watch`` and ``demo`` print."""
    moment = (now or dt.datetime.now()).strftime(_TIME_FORMAT)
    limit = snapshot.max_concurrent_agents
    running = f"{len(snapshot.running)}/{limit}" if limit > 0 else str(len(snapshot.running))
    tokens = snapshot.codex_totals.get("total_tokens", 0)
    parts = [
        f"{moment} running {running}",
        f"retrying {len(snapshot.retrying)}",
        f"completed {snapshot.completed_count}",
        f"tokens {tokens:,}",
    ]
    windows = [w for w in parse_rate_limits(snapshot.rate_limits, time.time()).windows if w.utilization is not None]
    if windows:
        busiest = max(windows, key=lambda window: window.utilization or 0.0)
        parts.append(f"rate limit {busiest.utilization * 100:.0f}% ({busiest.window})")  # type: ignore[operator]
    return ", ".join(parts) + f" -> {destination}"
