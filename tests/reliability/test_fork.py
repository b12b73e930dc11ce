"""Fork: a pre-forking host (gunicorn, uWSGI, multiprocessing with fork) and the pipeline.

Each scenario runs in a child interpreter, which forks; the test process never
forks itself.  With opentelemetry-sdk 1.45 the batch processors and the
periodic metric reader restart their threads in a forked child, and the
providers give the child a new ``service.instance.id``, so a generator
created before the fork keeps working in the child.  The recommended setup is
still to build the pipeline and the generator after the fork, in each worker
(gunicorn's ``post_fork`` hook), which the last scenarios show.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.support.otlp_receiver import OtlpReceiver

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is not available on this platform"),
]

SOURCE_DIR = Path(__file__).resolve().parents[2] / "src"
PROTOCOLS = ["grpc", "http/protobuf"]
SCRIPT_TIMEOUT_S = 60.0

# Shared by the scripts: a bounded wait for forked children.
PRELUDE = textwrap.dedent(
    """
    import os, sys, time
    from symphony_otel import OTelSnapshotGenerator
    from symphony_otel.pipeline import build_pipeline

    def state(completed):
        return {"running": {}, "completed": completed, "poll_interval_ms": 1000, "max_concurrent_agents": 2}

    def wait_for_children(pids, timeout=30.0):
        deadline = time.monotonic() + timeout
        statuses = {}
        while pids and time.monotonic() < deadline:
            for pid in list(pids):
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    statuses[pid] = os.waitstatus_to_exitcode(status)
                    pids.remove(pid)
            time.sleep(0.02)
        for pid in pids:
            os.kill(pid, 9)
            statuses[pid] = "killed after the timeout"
        return statuses
    """
)

FORK_AFTER_GENERATOR = PRELUDE + textwrap.dedent(
    """
    endpoint, protocol = sys.argv[1], sys.argv[2]
    pipeline = build_pipeline(otlp_endpoint=endpoint, protocol=protocol, export_timeout=2.0,
                              metric_export_interval=0.2)
    generator = OTelSnapshotGenerator(meter_provider=pipeline.meter_provider,
                                      tracer_provider=pipeline.tracer_provider)
    generator.generate(state(1))
    pipeline.force_flush()

    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            generator.generate(state(777))
            flushed = pipeline.force_flush()
            stopped = pipeline.shutdown()
            code = 0 if flushed and stopped and not pipeline.drops.counts() else 3
        finally:
            os._exit(code)
    generator.generate(state(2))
    statuses = wait_for_children([pid])
    finished = pipeline.shutdown()
    print(f"child {statuses[pid]} parent {int(finished)} drops {pipeline.drops.counts()}", flush=True)
    """
)

CREATE_AFTER_FORK = PRELUDE + textwrap.dedent(
    """
    endpoint, protocol = sys.argv[1], sys.argv[2]
    pids = []
    for worker in range(2):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                # What gunicorn's post_fork hook would do in each worker.
                pipeline = build_pipeline(otlp_endpoint=endpoint, protocol=protocol, export_timeout=2.0,
                                          metric_export_interval=0.2)
                generator = OTelSnapshotGenerator(meter_provider=pipeline.meter_provider,
                                                  tracer_provider=pipeline.tracer_provider,
                                                  orchestrator_name=f"worker-{worker}")
                generator.generate(state(100 + worker))
                stopped = pipeline.shutdown()
                code = 0 if stopped and not pipeline.drops.counts() else 3
            finally:
                os._exit(code)
        pids.append(pid)
    statuses = wait_for_children(pids)
    print("children " + " ".join(str(status) for status in statuses.values()), flush=True)
    """
)

FILE_SINK_FORK = PRELUDE + textwrap.dedent(
    """
    import threading
    output = sys.argv[1]
    pipeline = build_pipeline(sink="file", output_dir=output, metric_export_interval=0.05,
                              environ={"OTEL_BSP_SCHEDULE_DELAY": "5"})
    generator = OTelSnapshotGenerator(meter_provider=pipeline.meter_provider,
                                      tracer_provider=pipeline.tracer_provider)
    # Keep the exporter threads writing while the process forks.
    stop = threading.Event()
    def keep_generating():
        completed = 0
        while not stop.is_set():
            completed += 1
            generator.generate(state(completed))
            time.sleep(0.001)
    writer = threading.Thread(target=keep_generating, daemon=True)
    writer.start()
    pids = []
    for worker in range(4):
        time.sleep(0.05)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                for completed in range(50):
                    generator.generate(state(10_000 + completed))
                code = 0 if pipeline.shutdown(timeout=10.0) else 3
            finally:
                os._exit(code)
        pids.append(pid)
    statuses = wait_for_children(pids)
    stop.set()
    writer.join(timeout=5.0)
    finished = pipeline.shutdown(timeout=10.0)
    print("children " + " ".join(str(status) for status in statuses.values()) + f" parent {int(finished)}",
          flush=True)
    """
)


def run_script(script: str, *arguments: str) -> str:
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith(("OTEL_", "SYMPHONY_OTEL_"))
    }
    environment["PYTHONPATH"] = os.pathsep.join(
        [str(SOURCE_DIR)] + ([environment["PYTHONPATH"]] if environment.get("PYTHONPATH") else [])
    )
    result = subprocess.run(
        [sys.executable, "-c", script, *arguments],
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT_S,
        env=environment,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def completed_points(receiver: OtlpReceiver) -> list[dict[str, Any]]:
    return [point for point in receiver.metric_points() if point["name"] == "symphony.issues.completed"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_fork_after_generator_child_exports(otlp_receiver: OtlpReceiver, protocol: str) -> None:
    endpoint = otlp_receiver.grpc_endpoint if protocol == "grpc" else otlp_receiver.http_endpoint

    summary = run_script(FORK_AFTER_GENERATOR, endpoint, protocol)

    assert summary == "child 0 parent 1 drops {}"
    child_point = otlp_receiver.wait_for_metric("symphony.issues.completed", lambda point: point["value"] == 777)
    parent_point = otlp_receiver.wait_for_metric("symphony.issues.completed", lambda point: point["value"] == 2)
    child_instance = child_point["resource"]["service.instance.id"]
    parent_instance = parent_point["resource"]["service.instance.id"]
    assert child_instance != parent_instance
    # Each process's series stays its own: no point of the parent under the child's identity.
    for point in completed_points(otlp_receiver):
        if point["resource"]["service.instance.id"] == child_instance:
            assert point["value"] in (1, 777)
    otlp_receiver.wait_for_span(
        predicate=lambda span: any(
            event["attributes"]["symphony.issues.completed"] == 777 for event in span["events"]
        )
    )


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_create_after_fork_each_worker_exports(otlp_receiver: OtlpReceiver, protocol: str) -> None:
    endpoint = otlp_receiver.grpc_endpoint if protocol == "grpc" else otlp_receiver.http_endpoint

    summary = run_script(CREATE_AFTER_FORK, endpoint, protocol)

    assert summary == "children 0 0"
    for worker in range(2):

        def from_worker(point: dict[str, Any], name: str = f"worker-{worker}") -> bool:
            return point["attributes"].get("symphony.orchestrator.name") == name

        point = otlp_receiver.wait_for_metric("symphony.issues.completed", from_worker)
        assert point["value"] == 100 + worker
    instances = {point["resource"]["service.instance.id"] for point in completed_points(otlp_receiver)}
    assert len(instances) == 2


def test_fork_file_sink_lines_stay_whole(tmp_path: Path) -> None:
    summary = run_script(FILE_SINK_FORK, str(tmp_path))

    assert summary == "children 0 0 0 0 parent 1"
    lines = (tmp_path / "traces.jsonl").read_text(encoding="utf-8").splitlines()
    requests = [json.loads(line) for line in lines]
    completed = {
        attribute["value"]["intValue"]
        for request in requests
        for resource_spans in request["resourceSpans"]
        for scope_spans in resource_spans["scopeSpans"]
        for span in scope_spans["spans"]
        for event in span.get("events", [])
        for attribute in event["attributes"]
        if attribute["key"] == "symphony.issues.completed"
    }
    # Every child wrote its 50 snapshots (the same values, so 50 distinct ones).
    assert {str(10_000 + index) for index in range(50)} <= completed
