"""Tests of the ``symphony-otel`` command, run in-process with ``main(argv)`` and the file sink."""

from __future__ import annotations

import datetime as dt
import http.server
import io
import json
import logging
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from symphony_otel.bridge import read_state_body
from symphony_otel.cli import build_parser, main, status_line
from symphony_otel.recorder.instruments import INSTRUMENT_SPECS, INVALID_VALUES
from symphony_otel.version import __version__

ELIXIR = "symphony-elixir"
CODE_FACTORY = "code-factory"


@pytest.fixture(autouse=True)
def no_otlp_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the caller's OTEL_* settings from sending the tests' data anywhere."""
    for name in (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
        "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_METRIC_EXPORT_INTERVAL",
        "OTEL_SERVICE_NAME",
        "OTEL_RESOURCE_ATTRIBUTES",
    ):
        monkeypatch.delenv(name, raising=False)


# --- Reading the OTLP/JSON files ------------------------------------------------------


def _attribute_value(value: dict[str, Any]) -> Any:
    for key in ("stringValue", "boolValue", "doubleValue"):
        if key in value:
            return value[key]
    if "intValue" in value:
        return int(value["intValue"])
    return value


def _attributes(items: list[dict[str, Any]] | None) -> frozenset[tuple[str, Any]]:
    return frozenset((item["key"], _attribute_value(item["value"])) for item in items or [])


def read_metrics(directory: Path) -> dict[str, dict[frozenset[tuple[str, Any]], float]]:
    """Return the latest value of every metric data point in ``metrics.jsonl``, by name and attributes."""
    found: dict[str, dict[frozenset[tuple[str, Any]], float]] = {}
    for line in (directory / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        for resource_metrics in json.loads(line)["resourceMetrics"]:
            for scope_metrics in resource_metrics["scopeMetrics"]:
                for metric in scope_metrics["metrics"]:
                    data = metric.get("gauge") or metric.get("sum") or {}
                    for point in data.get("dataPoints", []):
                        value = point["asDouble"] if "asDouble" in point else int(point["asInt"])
                        found.setdefault(metric["name"], {})[_attributes(point.get("attributes"))] = value
    return found


def read_spans(directory: Path) -> list[dict[str, Any]]:
    """Return every span in ``traces.jsonl``."""
    spans = []
    for line in (directory / "traces.jsonl").read_text(encoding="utf-8").splitlines():
        for resource_spans in json.loads(line)["resourceSpans"]:
            for scope_spans in resource_spans["scopeSpans"]:
                spans.extend(scope_spans["spans"])
    return spans


def event_attributes(span: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {item["key"]: _attribute_value(item["value"]) for item in event["attributes"]}
        for event in span.get("events", [])
        if event["name"] == "symphony.snapshot"
    ]


NONE: frozenset[tuple[str, Any]] = frozenset()


def tokens(kind: str) -> frozenset[tuple[str, Any]]:
    return frozenset({("gen_ai.token.type", kind)})


def window(name: str) -> frozenset[tuple[str, Any]]:
    return frozenset({("symphony.rate_limit.window", name), ("symphony.rate_limit.id", "codex")})


def worker_tokens(identifier: str, kind: str) -> frozenset[tuple[str, Any]]:
    return frozenset({("symphony.issue.identifier", identifier), ("gen_ai.token.type", kind)})


# --- Help, version and usage errors ---------------------------------------------------


@pytest.mark.parametrize("command", [[], ["watch"], ["demo"], ["snapshot"]])
def test_help_lists_exit_status(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*command, "--help"]) == 0
    output = capsys.readouterr().out

    assert output.startswith(f"usage: symphony-otel {' '.join(command)}".rstrip())
    assert "exit status:" in output
    assert "2    usage error" in output


def test_version_prints_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"symphony-otel {__version__}"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required: COMMAND"),
        (["serve"], "invalid choice: 'serve'"),
        (["watch"], "the following arguments are required: URL"),
        (["watch", "ftp://127.0.0.1/state"], "must start with http:// or https://"),
        (["watch", "http://127.0.0.1:4000", "--interval", "0"], "must be a positive number of seconds"),
        (["watch", "http://127.0.0.1:4000", "--timeout", "soon"], "invalid number of seconds: 'soon'"),
        (["watch", "http://127.0.0.1:4000", "--max-body-bytes", "-5"], "must be a positive integer"),
        (["demo", "--duration", "-1"], "must be 0 (no limit) or a positive number of seconds"),
        (["demo", "--speed", "0"], "must be a positive number"),
        (["demo", "--protocol", "thrift"], "invalid choice: 'thrift'"),
        (["demo", "--console", "--otlp-endpoint", "http://127.0.0.1:4317"], "cannot be used together"),
        (["snapshot"], "the following arguments are required: FILE"),
    ],
)
def test_usage_error_exits_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_invalid_environment_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "often")

    assert main(["demo", "--duration", "0.1", "--output-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "Invalid telemetry setting: OTEL_METRIC_EXPORT_INTERVAL must be" in err
    assert "'often'" in err


def test_invalid_recorder_setting_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SYMPHONY_OTEL_EVENT_MODE", "carrier-pigeon")

    assert main(["demo", "--duration", "0.1", "--output-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "Invalid recorder setting: SYMPHONY_OTEL_EVENT_MODE must be one of span, log, both" in err


def test_parser_defaults() -> None:
    parser = build_parser()
    watch = parser.parse_args(["watch", "http://127.0.0.1:4000"])
    demo = parser.parse_args(["demo"])

    assert watch.url == "http://127.0.0.1:4000/api/v1/state"
    assert (watch.interval, watch.timeout, watch.max_body_bytes, watch.duration) == (5.0, 5.0, 8 * 1024 * 1024, 0.0)
    assert (demo.duration, demo.speed, demo.seed, demo.interval) == (60.0, 60.0, 0, 2.0)
    assert watch.output_dir == Path("symphony-otel-data")
    assert watch.shutdown_timeout == 5.0


# --- snapshot FILE --------------------------------------------------------------------

# Values read by hand from the fixture bodies.
ELIXIR_STATES = {
    "01_state_idle.json": {
        "running": [],
        "retrying": [],
        "input": 0,
        "output": 0,
        "seconds": 0,
        "utilization": None,
    },
    "08_state_running3_retrying3_no_rate_limits.json": {
        "running": ["FAKE-101", "FAKE-102", "FAKE-103"],
        "retrying": ["FAKE-104", "FAKE-105", "FAKE-106"],
        "input": 52332,
        "output": 7609,
        "seconds": 13,
        "utilization": None,
        "worker": ("FAKE-101", 12852, 1074),
    },
    "15_state_3running_3retrying_rate_limits.json": {
        "running": ["FAKE-101", "FAKE-102", "FAKE-103"],
        "retrying": ["FAKE-104", "FAKE-105", "FAKE-106"],
        "input": 259485,
        "output": 40334,
        "seconds": 37,
        "utilization": (0.30, 0.075),
        "worker": ("FAKE-103", 70962, 11658),
    },
    "18_state_continuation_retry_error_null.json": {
        "running": ["FAKE-101", "FAKE-102"],
        "retrying": ["FAKE-103", "FAKE-104", "FAKE-105", "FAKE-106"],
        "input": 1091640,
        "output": 167773,
        "seconds": 554,
        "utilization": (0.57, 0.142),
        "worker": ("FAKE-102", 165578, 25366),
    },
    "20_state_retry_no_available_slots.json": {
        "running": ["FAKE-101", "FAKE-102", "FAKE-103"],
        "retrying": ["FAKE-104", "FAKE-105", "FAKE-106"],
        "input": 1231697,
        "output": 189808,
        "seconds": 794,
        "utilization": (0.24, 0.06),
        "worker": ("FAKE-101", 43973, 6187),
    },
}


@pytest.mark.parametrize("name", sorted(ELIXIR_STATES))
def test_snapshot_records_elixir_state(
    name: str, fixtures_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = ELIXIR_STATES[name]
    output = tmp_path / "out"

    assert main(["snapshot", str(fixtures_dir / ELIXIR / name), "--output-dir", str(output)]) == 0

    printed = json.loads(capsys.readouterr().out)
    assert [row["identifier"] for row in printed["running"]] == expected["running"]
    assert [row["identifier"] for row in printed["retrying"]] == expected["retrying"]
    assert printed["codex_totals"]["input_tokens"] == expected["input"]

    metrics = read_metrics(output)
    assert metrics["symphony.workers.running"] == {NONE: len(expected["running"])}
    assert metrics["symphony.retry_queue.size"] == {NONE: len(expected["retrying"])}
    assert metrics["symphony.tokens"] == {tokens("input"): expected["input"], tokens("output"): expected["output"]}
    assert metrics["symphony.agent.runtime"] == {NONE: expected["seconds"]}
    if expected["utilization"] is None:
        assert "symphony.rate_limit.utilization" not in metrics
    else:
        primary, secondary = expected["utilization"]
        utilization = metrics["symphony.rate_limit.utilization"]
        assert utilization == {window("primary"): primary, window("secondary"): secondary}
    if "worker" in expected:
        identifier, input_tokens, output_tokens = expected["worker"]
        assert metrics["symphony.worker.tokens"][worker_tokens(identifier, "input")] == input_tokens
        assert metrics["symphony.worker.tokens"][worker_tokens(identifier, "output")] == output_tokens

    (span,) = read_spans(output)
    (event,) = event_attributes(span)
    assert event["symphony.workers.running"] == len(expected["running"])
    assert event["symphony.tokens.input"] == expected["input"]
    assert json.loads(event["symphony.snapshot.json"])["codex_totals"]["output_tokens"] == expected["output"]


def test_snapshot_prints_retry_rows(
    fixtures_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = fixtures_dir / ELIXIR / "18_state_continuation_retry_error_null.json"

    assert main(["snapshot", str(path), "--output-dir", str(tmp_path), "--quiet"]) == 0

    retrying = json.loads(capsys.readouterr().out)["retrying"]
    assert retrying[0] == {
        "issue_id": "7b1c0e2a-0000-4000-8000-000000000003",
        "identifier": "FAKE-103",
        "attempt": 1,
        "delay_type": "continuation",
        "error": None,
        "worker_host": None,
        "workspace_path": "/srv/symphony/workspaces/FAKE-103",
    }
    assert retrying[1]["attempt"] == 6
    assert retrying[1]["error"].startswith("agent exited: {%RuntimeError{message:")


@pytest.mark.parametrize(
    ("name", "running", "retrying", "limit", "input_tokens"),
    [
        ("code_factory_running3.json", ["ENG-101", "ENG-102", "ENG-104"], [], 5, 6000),
        ("code_factory_retrying.json", [], ["ENG-103", "ENG-105", "ENG-106"], 5, 0),
    ],
)
def test_snapshot_records_code_factory_state(
    name: str,
    running: list[str],
    retrying: list[str],
    limit: int,
    input_tokens: int,
    load_fixture: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    body = tmp_path / "state.json"
    body.write_text(json.dumps(load_fixture(f"{CODE_FACTORY}/{name}")["api_state"]), encoding="utf-8")
    output = tmp_path / "out"

    assert main(["snapshot", str(body), "--output-dir", str(output)]) == 0

    printed = json.loads(capsys.readouterr().out)
    assert [row["identifier"] for row in printed["running"]] == running
    assert [row["identifier"] for row in printed["retrying"]] == retrying
    assert printed["max_concurrent_agents"] == limit
    metrics = read_metrics(output)
    assert metrics["symphony.workers.limit"] == {NONE: limit}
    assert metrics["symphony.tokens"][tokens("input")] == input_tokens


def test_snapshot_reads_stdin(
    fixtures_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = (fixtures_dir / ELIXIR / "15_state_3running_3retrying_rate_limits.json").read_bytes()
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))

    assert main(["snapshot", "-", "--output-dir", str(tmp_path)]) == 0

    captured = capsys.readouterr()
    assert json.loads(captured.out)["codex_totals"]["total_tokens"] == 299819
    assert "Recorded the snapshot of standard input (3 running, 3 retrying)" in captured.err
    assert read_metrics(tmp_path)["symphony.workers.running"] == {NONE: 3}


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "02_issue_unknown_404.json",
            "is not an orchestrator state: the body is an error envelope "
            "(code 'issue_not_found', message 'Issue not found'), not a state.",
        ),
        ("09_issue_running_FAKE-101.json", "neither a running nor a retrying list"),
    ],
)
def test_snapshot_of_non_state_exits_1(
    name: str, message: str, fixtures_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "out"

    assert main(["snapshot", str(fixtures_dir / ELIXIR / name), "--output-dir", str(output)]) == 1

    captured = capsys.readouterr()
    assert message in captured.err
    assert captured.out == ""
    assert not output.exists()


def test_snapshot_of_missing_file_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "absent.json"

    assert main(["snapshot", str(missing), "--output-dir", str(tmp_path / "out")]) == 1
    assert f"Cannot read {missing}: No such file or directory" in capsys.readouterr().err


def test_snapshot_of_garbage_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    garbage = tmp_path / "garbage.json"
    garbage.write_bytes(b"<html>Bad Gateway</html>")

    assert main(["snapshot", str(garbage), "--output-dir", str(tmp_path / "out")]) == 1
    assert "is not an orchestrator state: the body is not valid JSON" in capsys.readouterr().err


# --- demo -----------------------------------------------------------------------------


def test_demo_writes_every_instrument(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["demo", "--duration", "0.6", "--speed", "5000", "--interval", "0.1", "--output-dir", str(tmp_path)]

    assert main(argv) == 0

    metrics = read_metrics(tmp_path)
    # Invalid values are the one thing the simulation never produces.
    producible = {spec.name for spec in INSTRUMENT_SPECS} - {INVALID_VALUES.name}
    assert producible <= set(metrics), sorted(producible - set(metrics))
    assert INVALID_VALUES.name not in metrics
    assert metrics["symphony.workers.limit"] == {NONE: 5}
    assert metrics["symphony.poll.interval"] == {NONE: 30.0}
    assert 0 < metrics["symphony.workers.running"][NONE] <= 5
    assert metrics["symphony.tokens"][tokens("input")] > 0

    events = [event for span in read_spans(tmp_path) for event in event_attributes(span)]
    assert len(events) >= 4
    payloads = [json.loads(event["symphony.snapshot.json"]) for event in events]
    assert all(set(payload) >= {"running", "retrying", "codex_totals", "rate_limits"} for payload in payloads)
    inputs = [payload["codex_totals"]["input_tokens"] for payload in payloads]
    assert inputs == sorted(inputs)
    assert inputs[-1] > inputs[0]
    assert (tmp_path / "logs.jsonl").read_text(encoding="utf-8") == ""

    status = [line for line in capsys.readouterr().err.splitlines() if " running " in line]
    assert len(status) == len(events)
    assert status[-1].endswith(f"-> OTLP/JSON files in {tmp_path.resolve()}")


def test_demo_quiet_prints_no_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["demo", "--duration", "0.2", "--interval", "0.05", "--output-dir", str(tmp_path), "--quiet"]

    assert main(argv) == 0
    assert capsys.readouterr().err == ""


# --- watch ----------------------------------------------------------------------------


@contextmanager
def serving(bodies: list[bytes]) -> Iterator[str]:
    """Serve ``bodies`` one per GET on 127.0.0.1, repeating the last; yield the base URL."""
    served = [0]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
            body = bodies[min(served[0], len(bodies) - 1)]
            served[0] += 1
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_watch_writes_scrape_spans(fixtures_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    body = (fixtures_dir / ELIXIR / "15_state_3running_3retrying_rate_limits.json").read_bytes()
    with serving([body]) as url:
        argv = ["watch", url, "--interval", "0.05", "--duration", "0.4", "--output-dir", str(tmp_path)]
        assert main(argv) == 0

    spans = read_spans(tmp_path)
    assert len(spans) >= 3
    assert {span["name"] for span in spans} == {"symphony.bridge.scrape"}
    assert all(span["kind"] == 3 for span in spans)  # SPAN_KIND_CLIENT
    assert all(event_attributes(span)[0]["symphony.tokens.input"] == 259485 for span in spans)
    metrics = read_metrics(tmp_path)
    assert metrics["symphony.bridge.up"] == {NONE: 1}
    assert "symphony.bridge.scrape.errors" not in metrics

    err = capsys.readouterr().err
    assert f"Watching {url}/api/v1/state; telemetry goes to OTLP/JSON files in {tmp_path.resolve()}" in err
    assert "running 3, retrying 3, completed 0, tokens 299,819, rate limit 30% (primary) -> " in err


def test_watch_counts_refused_scrapes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as probe:  # a loopback port that nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    argv = ["watch", url, "--interval", "0.05", "--duration", "0.3", "--output-dir", str(tmp_path)]

    assert main(argv) == 0

    metrics = read_metrics(tmp_path)
    assert metrics["symphony.bridge.up"] == {NONE: 0}
    assert metrics["symphony.bridge.scrape.errors"][frozenset({("error.type", "connection_refused")})] >= 1
    err = capsys.readouterr().err
    assert err.count(f"Scraping {url}/api/v1/state failed: the connection was refused") == 1


# --- Status lines ---------------------------------------------------------------------


def test_status_line_summarizes_snapshot(fixtures_dir: Path) -> None:
    snapshot = read_state_body((fixtures_dir / ELIXIR / "18_state_continuation_retry_error_null.json").read_bytes())
    line = status_line(snapshot, "OTLP/gRPC to http://127.0.0.1:4317", now=dt.datetime(2026, 12, 4, 19, 37, 12))

    assert line == (
        "19:37:12 running 2, retrying 4, completed 0, tokens 1,259,413, rate limit 57% (primary)"
        " -> OTLP/gRPC to http://127.0.0.1:4317"
    )


def test_status_line_shows_limit_when_known(fixtures_dir: Path, load_fixture: Any) -> None:
    body = json.dumps(load_fixture(f"{CODE_FACTORY}/code_factory_running3.json")["api_state"]).encode()
    line = status_line(read_state_body(body), "files", now=dt.datetime(2026, 1, 1, 8, 0, 0))

    assert line == "08:00:00 running 3/5, retrying 0, completed 0, tokens 7,500 -> files"


def test_watch_summary_warns_when_never_connected(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again before watch runs: refused

    with caplog.at_level(logging.INFO):
        code = main(
            ["watch", f"http://127.0.0.1:{port}", "--interval", "0.2", "--duration", "1",
             "--output-dir", str(tmp_path), "-q"]
        )

    assert code == 0
    summaries = [r for r in caplog.records if r.getMessage().startswith("Scraped ")]
    assert len(summaries) == 1
    assert summaries[0].levelno == logging.WARNING
    assert ": 0 succeeded," in summaries[0].getMessage()
