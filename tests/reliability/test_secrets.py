"""Secrets: none of a corpus of secret formats reaches the receiver or the package's logs.

The secrets sit where coding agents put them: retry errors, the last agent
event, workspace paths and rate-limit payloads.  Each test searches every
received record, or every log line, for the distinctive part of each secret.
All values are fake.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider

from symphony_otel import OTelSnapshotGenerator, SystemSnapshot
from symphony_otel.pipeline import TelemetryPipeline
from tests.support.otlp_receiver import OtlpReceiver

from .conftest import closed_port, in_memory_recorder

PROTOCOLS = ["grpc", "http/protobuf"]


@dataclass(frozen=True)
class Secret:
    """One secret format: how it appears in text, and the part that must never leave."""

    name: str
    text: str
    distinctive: str


SECRETS = [
    Secret("anthropic api key", "ANTHROPIC_KEY sk-ant-api03-Xq7vR2mK9pL4nB8wT1yZ6cF3hJ5dG0sA-uE4iO7rW2qY9tP1aS6dF3gH8jK5lZ0xC_vBAA", "Xq7vR2mK9pL4nB8wT1yZ6cF3h"),
    Secret("openai project key", "sk-proj-Ab3De5Gh7Jk9Mn1Pq3St5Vw7Yz9Bc2Df4Gh6Jk8Lm0Np2Qr", "Ab3De5Gh7Jk9Mn1Pq3St"),
    Secret("openai legacy key", "using key sk-4f9QeWx7LmNp2RsT8vYz3BcD6gHj1KoP5qUi9Xa0 for requests", "4f9QeWx7LmNp2RsT8vYz"),
    Secret("github classic token", "ghp_hzczPa43BBMHW73eOg3L0lobgAkYryR8NTby", "hzczPa43BBMHW73eOg3L0"),
    Secret("github fine-grained token", "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456", "11ABCDEFG0123456789_abcdef"),
    Secret("github app token in a clone url", "fatal: unable to access 'https://x-access-token:ghs_aB1cD2eF3gH4iJ5kL6mN7oP8qR9sT0uV1wX2@github.com/acme/app.git/'", "aB1cD2eF3gH4iJ5kL6mN7"),
    Secret("gitlab token", "glpat-xZ8vK2mQ9nR4tW6yB1cD", "xZ8vK2mQ9nR4tW6yB1cD"),
    Secret("slack bot token", "xoxb-2048613458931-4729384756102-Rt5Yh8Kp2Wq9Lm3Nv6Bx1Zc4", "Rt5Yh8Kp2Wq9Lm3Nv6Bx1Zc4"),
    Secret("slack webhook", "POST https://hooks.slack.com/services/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 returned 500", "Qm5Zx8Wc2Vb7Nn4Ll1Kk9Jj3"),
    Secret("aws access key id", "The AWS Access Key Id AKIAZ7Q4R2M8N6P3T5V1 does not exist", "AKIAZ7Q4R2M8N6P3T5V1"),
    Secret("aws secret access key", "export AWS_SECRET_ACCESS_KEY=Hk3jL9mN2pQ5rS8tV1wX4yZ7aB0cD3eF6gH9iJ2k", "Hk3jL9mN2pQ5rS8tV1wX4yZ7"),
    Secret("google api key", "key=AIzaSyD4x7Kq9Lm2Np5Rs8Tv1Wy4Zb7Cd0Ef3Gh is invalid", "D4x7Kq9Lm2Np5Rs8Tv1W"),
    Secret("stripe secret key", "stripe.api_key = sk_live_51HxQ2eLkF8mN3pR7tV9wY2zB4dG6jK", "51HxQ2eLkF8mN3pR7tV9"),
    Secret("bearer json web token", "Authorization: Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhZ2VudC0xMjMiLCJzY29wZSI6InJlcG8ifQ.Zk9mQ2xWb3Rlc3RTaWduYXR1cmVIZXJl", "Zk9mQ2xWb3Rlc3RTaWduYXR1cmVIZXJl"),
    Secret("bearer opaque token", "request headers: {'authorization': 'bearer 7f3c9a1e5b8d2f4a6c0e9b7d5f3a1c8e'}", "7f3c9a1e5b8d2f4a6c0e9b7d"),
    Secret("basic credentials", "Authorization: Basic YWRtaW46Q29ycmVjdEhvcnNlQmF0dGVyeVN0YXBsZQ==", "YWRtaW46Q29ycmVjdEhvcnNl"),
    Secret("password in a postgres url", "could not connect to postgresql://app_user:S3cr3t-P4ssw0rd-42@db.internal:5432/app", "S3cr3t-P4ssw0rd-42"),
    Secret("password in a redis url", "redis://:R3d1sP4ssw0rdXyz@cache:6379/0 refused the connection", "R3d1sP4ssw0rdXyz"),
    Secret("rsa private key", "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA3YmM2hKK+2C6d5mk7D7wtx9WNuzgva7T68GwyLPpgDEJTMSB\nm8r8IIR56njgSWdNOCfzI6imTcqzYN/xz23iKggMqpBtm4VDiuaAdR4LCry9WmYs\n-----END RSA PRIVATE KEY-----", "3YmM2hKK+2C6d5mk7D7wtx9WNuzgva7T"),
    Secret("openssh private key with escaped newlines", '"key": "-----BEGIN OPENSSH PRIVATE KEY-----\\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQRj8MwjVl0TlAZpvamM2ZUzmXaw56awtRBiu2j\\n-----END OPENSSH PRIVATE KEY-----\\n"', "Rj8MwjVl0TlAZpvamM2ZUzmXaw"),
    Secret("gcp service account key", '{"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCFpVfySIZqwQUS0Bgmp1prpjraiFV3xXi3GFgwyvgxv6PPiZ7\\n-----END PRIVATE KEY-----\\n"}', "FpVfySIZqwQUS0Bgmp1prpjraiFV"),
    Secret("hugging face token", "hf_kZ8xQ2vN5mR9tW3yB6cE1gJ4lP7sU0aD", "kZ8xQ2vN5mR9tW3yB6cE"),
    Secret("npm token", "//registry.npmjs.org/:_authToken=npm_aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dF3gH5", "aB3dE5gH7jK9mN1pQ3sT5v"),
    Secret("pypi token", "password: pypi-AgEIcHlwaS5vcmcCJGU3YzE2ZjRhLTk4NmItNDc2ZC05YjA4LWFhZjM5ZjE0MmUzOQACKlsz", "AgEIcHlwaS5vcmcCJGU3YzE2"),
    Secret("sendgrid key", "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", "YE5bZANRQMsKPjNf2x6p5cxW"),
    Secret("azure storage account key", "DefaultEndpointsProtocol=https;AccountName=acmelogs;AccountKey=ZxxtEPdIj1F7BsXtBLJi+4Jrivwhe3Ot1ToVfnQs29F+DucBNmfxlOIjITwd7KqELpdcEKutZd/yjHbR7BNeCQ==;EndpointSuffix=core.windows.net", "ZxxtEPdIj1F7BsXtBLJi"),
    Secret("password in json", '{"username": "deploy", "password": "correct-horse-battery-staple-9"}', "correct-horse-battery-staple-9"),
    Secret("linear api key", "LINEAR_API_KEY lin_api_Kq8Zx3Vn6Bm9Lp2Wr5Ty8Ui1Oa4Sd7Fg0Hj3Kl6", "Kq8Zx3Vn6Bm9Lp2Wr5Ty8"),
]  # fmt: skip

# Formats that the first version of the built-in patterns missed.
LATER_SECRETS = [
    Secret("curl user and password", "curl -u deploy:Tr0ub4dor-and-3 https://ci.example.com/api/builds", "Tr0ub4dor-and-3"),
    Secret("digitalocean token", "dop_v1_4f1b6c2e9a8d7f3b5c0e1a2d9f8b7c6e5d4c3b2a1f0e9d8c7b6a5f4e3d2c1b0a", "4f1b6c2e9a8d7f3b5c0e1a2d9f8b"),
    Secret("databricks token", "dapi3f9c2b7a1e8d4c6f0b9a2e7d1c5f8b3a", "3f9c2b7a1e8d4c6f0b9a2e7d1c5f8b3a"),
]  # fmt: skip


def secret_state(index: int, secret: Secret) -> dict[str, Any]:
    """A state carrying ``secret`` in an error, an agent event, a path and a rate-limit payload."""
    marker = f"marker-{index}"
    return {
        "running": {
            f"issue-{index}": {
                "issue_id": f"issue-{index}",
                "identifier": f"SYM-{index}",
                "turn_count": 3,
                "last_codex_event": f"{marker} tool call failed: {secret.text}",
                "workspace_path": f"/srv/agents/{marker}/{secret.text}/repo",
                "started_at": "2026-05-01T12:00:00Z",
            }
        },
        "retry_attempts": {
            f"retry-{index}": {
                "issue_id": f"retry-{index}",
                "identifier": f"RET-{index}",
                "attempt": 2,
                "error": f"{marker} git push failed: {secret.text}",
                "workspace_path": f"/srv/agents/{secret.text}",
            }
        },
        "completed": set(),
        "codex_totals": {"input_tokens": 10, "output_tokens": 20},
        "codex_rate_limits": {
            "primary": {"used_percent": 42.0, "window_minutes": 300, "resets_in_seconds": 60},
            "message": f"{marker} {secret.text}",
            "details": {"reason": secret.text, "hint": [secret.text]},
        },
        "poll_interval_ms": 1000,
        "max_concurrent_agents": 4,
    }


def leaked(text: str, secrets: list[Secret]) -> list[str]:
    return [secret.name for secret in secrets if secret.distinctive in text]


@pytest.mark.e2e
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_secrets_absent_from_received_data(
    otlp_receiver: OtlpReceiver, pipelines: Callable[..., TelemetryPipeline], protocol: str
) -> None:
    endpoint = otlp_receiver.grpc_endpoint if protocol == "grpc" else otlp_receiver.http_endpoint
    pipeline = pipelines(otlp_endpoint=endpoint, protocol=protocol, metric_export_interval=0.2)
    generator = OTelSnapshotGenerator(
        meter_provider=pipeline.meter_provider,
        tracer_provider=pipeline.tracer_provider,
        logger_provider=pipeline.logger_provider,
        event_mode="both",
    )
    for index, secret in enumerate(SECRETS):
        snapshot = generator.generate(secret_state(index, secret))
        assert secret.distinctive in str(snapshot.to_dict()), "the host's own snapshot keeps the data"
    assert pipeline.force_flush(timeout=10.0)

    for index in range(len(SECRETS)):
        otlp_receiver.wait_for_log_record(
            "symphony.snapshot",
            lambda record, marker=f"marker-{index} ": marker in str(record["attributes"]),
        )
    otlp_receiver.wait_for_metric("symphony.rate_limit.utilization")
    received = otlp_receiver.records_file.read_text(encoding="utf-8")

    assert leaked(received, SECRETS) == []
    assert all(f"marker-{index} " in received for index in range(len(SECRETS)))
    assert received.count("[REDACTED]") >= 4 * len(SECRETS)
    assert "tool call failed" in received
    assert pipeline.drops.counts() == {}


@pytest.mark.parametrize("secret", LATER_SECRETS, ids=lambda secret: secret.name)
def test_later_formats_absent_from_payload(secret: Secret) -> None:
    recorder = in_memory_recorder()
    try:
        recorder.generator.generate(secret_state(0, secret))
        payload = recorder.spans.get_finished_spans()[0].events[0].attributes["symphony.snapshot.json"]
        assert leaked(payload, [secret]) == []
    finally:
        recorder.close()


def test_rate_limit_id_secret_absent_from_metrics() -> None:
    recorder = in_memory_recorder()
    secret = SECRETS[0]
    state = secret_state(0, secret)
    state["codex_rate_limits"] = {"limit_id": secret.text, "primary": {"used_percent": 42.0}}
    try:
        recorder.generator.generate(state)
        data = recorder.reader.get_metrics_data()
        assert leaked(data.to_json() if data else "", [secret]) == []
    finally:
        recorder.close()


class FailingTracerProvider(TracerProvider):
    """A host's tracer provider whose spans cannot be started, to reach the record-error path."""

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        tracer = super().get_tracer(*args, **kwargs)

        def fail(*_args: Any, **_kwargs: Any) -> Any:
            raise RuntimeError("the host's tracer is unavailable")

        tracer.start_as_current_span = fail  # type: ignore[method-assign]
        tracer.start_span = fail  # type: ignore[method-assign]
        return tracer


def test_secrets_absent_from_logs(
    caplog: pytest.LogCaptureFixture, pipelines: Callable[..., TelemetryPipeline]
) -> None:
    caplog.set_level(logging.DEBUG)
    hostile = [secret.text for secret in SECRETS]

    # Invalid values: every count field contains a secret.
    recorder = in_memory_recorder()
    state: dict[str, Any] = {
        "running": {
            text: {"identifier": text, "turn_count": text, "codex_input_tokens": [text], "started_at": text}
            for text in hostile
        },
        "retry_attempts": [{"attempt": text, "error": {"nested": text}} for text in hostile],
        "completed": hostile[0],
        "codex_totals": {"input_tokens": hostile[1], "seconds_running": hostile[2]},
        "poll_interval_ms": hostile[3],
        "max_concurrent_agents": hostile[4],
        "next_poll_due_at_ms": hostile[5],
        "poll_check_in_progress": hostile[6],
    }
    recorder.generator.generate(state)
    recorder.close()

    # The host's redaction hook fails, with the text in its error.
    def hook(text: str) -> str:
        raise ValueError(f"cannot redact {text}")

    hooked = in_memory_recorder(redaction_hook=hook)
    for index, secret in enumerate(SECRETS):
        hooked.generator.generate(secret_state(index, secret))
    hooked.close()

    # Recording fails inside the generator; at DEBUG the traceback is logged.
    failing = OTelSnapshotGenerator(
        meter_provider=MeterProvider(shutdown_on_exit=False),
        tracer_provider=FailingTracerProvider(shutdown_on_exit=False),
    )
    for index, secret in enumerate(SECRETS):
        failing.generate(secret_state(index, secret))
        failing.record(SystemSnapshot.from_dict({"retrying": [{"error": secret.text}], "rate_limits": {"x": secret.text}}))
    failing.close()

    # Export failures: the endpoint has a password and the headers a token.
    password, token = SECRETS[16], SECRETS[13]
    pipeline = pipelines(
        otlp_endpoint=f"http://deploy:{password.distinctive}@127.0.0.1:{closed_port()}",
        protocol="http/protobuf",
        export_timeout=0.5,
        environ={"OTEL_EXPORTER_OTLP_HEADERS": f"authorization=Bearer%20{token.distinctive}"},
    )
    exporting = OTelSnapshotGenerator(
        meter_provider=pipeline.meter_provider, tracer_provider=pipeline.tracer_provider
    )
    exporting.generate(secret_state(0, SECRETS[0]))
    pipeline.force_flush(timeout=5.0)
    time.sleep(0.1)

    messages = [record.getMessage() for record in caplog.records]
    reasons = " ".join(messages)
    assert "Invalid value for snapshot field" in reasons
    assert "redaction hook" in reasons
    assert "Recording a snapshot failed" in reasons
    assert "Destination: OTLP/HTTP to http://deploy:REDACTED@127.0.0.1" in reasons
    assert leaked(caplog.text, SECRETS) == []
    assert leaked(reasons, SECRETS) == []
