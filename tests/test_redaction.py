"""Tests of the secret scrubbing: each built-in pattern, harmless text, the host's hook, and the payload."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any, NamedTuple

import pytest

from symphony_otel.recorder.events import PayloadEncoder
from symphony_otel.recorder.redaction import REDACTED, SECRET_PATTERNS, Redactor
from tests.metrics_helpers import (
    ELIXIR_STATE_FIXTURES,
    FIXTURE_15,
    Telemetry,
    fixtures_dir,
    load_body,
    load_snapshot,
    retry,
    snapshot,
    worker,
)

PATTERNS = {name: pattern for name, _literals, pattern in SECRET_PATTERNS}
LITERALS = {name: literals for name, literals, _pattern in SECRET_PATTERNS}


class Sample(NamedTuple):
    """A secret in the context where it turns up, and what scrubbing should leave."""

    pattern: str
    text: str
    secret: str
    expected: str


def sample(pattern: str, before: str, secret: str, after: str, kept_prefix: str = "") -> Sample:
    return Sample(pattern, before + secret + after, secret, before + kept_prefix + REDACTED + after)


PEM_BODY = (
    "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n"
    "VTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK\n"
)

SAMPLES = [
    sample(
        "private key block",
        "loaded key: ",
        f"-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}-----END RSA PRIVATE KEY-----",
        " from ~/.ssh/deploy",
    ),
    sample(
        "private key block",
        "key=",
        f"-----BEGIN OPENSSH PRIVATE KEY-----\n{PEM_BODY}-----END OPENSSH PRIVATE KEY-----",
        "",
    ),
    # A key cut off before its END line is redacted up to the end of the text.
    sample("private key block", "cut off: ", f"-----BEGIN PRIVATE KEY-----\n{PEM_BODY.rstrip()}", ""),
    sample(
        "url credentials",
        "git clone ",
        "https://deploy:s3cr3tPassw0rd@git.example.com/team/repo.git",
        " failed: exit 128",
    )._replace(expected=f"git clone https://deploy:{REDACTED}@git.example.com/team/repo.git failed: exit 128"),
    sample("url credentials", "DATABASE_URL ", "postgres://app:Pa55-w0rd@127.0.0.1:5432/symphony", "")._replace(
        expected=f"DATABASE_URL postgres://app:{REDACTED}@127.0.0.1:5432/symphony"
    ),
    sample(
        "bearer credentials",
        "curl -H 'Authorization: Bearer ",
        "ya29.a0AfH6SMBx3k9Q-example_token_value",
        "' https://api.example.com",
    ),
    sample("basic credentials", "Authorization: Basic ", "dXNlcjpwYXNzd29yZA==", " rejected"),
    sample(
        "json web token",
        "id_token ",
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0"
        ".dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        " expired",
    ),
    sample("anthropic api key", "ANTHROPIC key ", "sk-ant-api03-u8jzPde0IgxLd6GncfBAepfJBd0Kh8oOOL8dKLzd", " invalid"),
    sample(
        "openai api key",
        "Incorrect API key provided: ",
        "sk-proj-ocJ2isAjIhKtJ0RlgLKOmxgJTeKdNnFRIBXuDL7DxtpYlSXp",
        ".",
    ),
    sample("openai api key", "using ", "sk-u8jzPde0IgxLd6GncfBAepfJBd0Kh8oOOL8dKLzd", " for codex"),
    sample("github token", "remote: ", "ghp_fKtHF4vUCsMehGAkWvj7FAc9QeWJKY40uvSw", " has no push access"),
    sample(
        "github token",
        "GH token ",
        "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",
        " revoked",
    ),
    sample("gitlab token", "PRIVATE-TOKEN ", "glpat-1LlqsajAIxNKu8iS2G8N", " unauthorized"),
    sample(
        "digitalocean token",
        "doctl auth init -t ",
        "dop_v1_4f1b6c2e9a8d7f3b5c0e1a2d9f8b7c6e5d4c3b2a1f0e9d8c7b6a5f4e3d2c1b0a",
        " failed",
    ),
    sample("databricks token", "DATABRICKS_HOST set, token ", "dapi3f9c2b7a1e8d4c6f0b9a2e7d1c5f8b3a", " expired"),
    sample(
        "command-line user and password",
        "curl -u deploy:",
        "Tr0ub4dor-and-3",
        " https://ci.example.com/api/builds",
    ),
    sample("command-line user and password", "curl --user=alice:", "s3cret-Pa55", " http://127.0.0.1:8080"),
    sample("slack token", "slack client ", "xoxb-2145678901-6234567890123-qzjI6GKFSufrdZSlB5er8bOf", " not_authed"),
    sample(
        "slack webhook",
        "POST ",
        "https://hooks.slack.com/services/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",
        " returned 404",
    ),
    sample("aws access key id", "The AWS Access Key Id ", "AKIAIOSFODNN7EXAMPLE", " does not exist"),
    sample("google api key", "maps key ", "AIzaPRVdD53X83RZJzzzzgEOzdmenCkhvMdgaKj", " is restricted"),
    sample("stripe key", "stripe ", "sk_live_4eC39HqLyjWDarjtT1zdp7dc", " declined"),
    sample("stripe key", "publishable ", "pk_test_TYooMQauvdEDq54NiTphI7jx", ""),
    sample("linear api key", "LINEAR_API_KEY ", "lin_api_Ig8xNbe3nNyjOq9wMxEhh2FDEEtfjgVvVqE1SkHb", " rejected by linear"),
    sample("hugging face token", "hub login with ", "hf_n88HxjSI6bWHtP3fS2qHx6kwXoIIXGvOoN", " failed"),
    sample("npm token", "//registry.npmjs.org/:_authToken ", "npm_ZYW2mZp0zVZomHFwUbbYrEqmSM9wCZ7Uw9xf", ""),
    sample(
        "pypi token",
        "twine upload -p ",
        "pypi-AgEIcHlwaS5vcmcogoEmvnEN5N1aE6PwZPf1Qh6yYTWmE4lBYOvfZ8UzDzV8fUkkibjL5DZPjN0",
        " dist/*",
    ),
    sample(
        "sendgrid key",
        "mail via ",
        "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",
        " failed",
    ),
    sample("shopify token", "X-Shopify-Access-Token ", "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", " 401"),
    sample(
        "honeycomb key",
        "honeycomb ingest ",
        "hcaik_01zcueqpbenqtyh5xj8tpqxjq4i9dov8gz4fkq1oktbgzvamwufuxbvjdc",
        " rejected",
    ),
    sample(
        "telegram bot token",
        "GET https://api.telegram.org/bot",
        "123456789:AATbyvHNsG9eh6Yo4gfqrc5XlrWi0B26R08",
        "/getMe",
    ),
    sample(
        "azure connection key",
        "DefaultEndpointsProtocol=https;AccountName=store;",
        "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==",
        ";EndpointSuffix=core.windows.net",
    )._replace(
        expected=f"DefaultEndpointsProtocol=https;AccountName=store;AccountKey={REDACTED};EndpointSuffix=core.windows.net"
    ),
    sample(
        "azure connection key",
        "GET https://store.blob.core.windows.net/c?sv=2022-11-02&",
        "sig=kZ4pHwA8%2BqkV1PZ6Jzd3Q3w%3D",
        "&se=2026-12-05",
        kept_prefix="sig=",
    )._replace(
        secret="kZ4pHwA8%2BqkV1PZ6Jzd3Q3w%3D",
    ),
    sample("secret assignment", "connect failed: ", "password=hunter2", " host=db", kept_prefix="password=")._replace(
        secret="hunter2"
    ),
    sample("secret assignment", "config ", "api_key: 9f8e7d6c5b4a", ", retries: 3", kept_prefix="api_key: ")._replace(
        secret="9f8e7d6c5b4a"
    ),
    sample(
        "secret assignment",
        "{",
        '"client_secret": "Zm9vYmFyYmF6cXV4"',
        ', "client_id": "symphony"}',
        kept_prefix='"client_secret": ',
    )._replace(secret="Zm9vYmFyYmF6cXV4"),
    sample(
        "secret assignment",
        "env ",
        "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        " set",
        kept_prefix="AWS_SECRET_ACCESS_KEY=",
    )._replace(secret="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
    sample(
        "secret assignment",
        "%{",
        '"password" => "correct horse battery"',
        ', "user" => "app"}',
        kept_prefix='"password" => ',
    )._replace(secret="correct horse battery"),
    # An Elixir map inspected twice, as in the error strings of the Elixir reference.
    sample(
        "secret assignment",
        "{:turn_failed, %{",
        '\\"access_token\\" => \\"opaque-7f3c9a21\\"',
        ', \\"threadId\\" => \\"thr_c569a1fd365144c6\\"}}',
        kept_prefix='\\"access_token\\" => ',
    )._replace(secret="opaque-7f3c9a21"),
]

HARMLESS = [
    "FAKE-101",
    "/srv/symphony/workspaces/FAKE-101",
    "7b1c0e2a-0000-4000-8000-000000000001",
    "thr_bacac181ce044f3d-turn_2_efde4436",
    "thread token usage updated (in 69,461, out 10,686, total 80,147)",
    "no available orchestrator slots",
    "https://linear.app/fake-team/issue/fake-101",
    "https://example.com:8443/api/v1/state",
    "git@github.com:openai/symphony.git",
    "max_tokens: 4096, input_tokens=259485",
    "HTTP Basic authentication is required",
    "OAuth bearer authentication failed",
    "Bearer realm=example",
    "a password is required but none was given",
    "token usage: see the dashboard",
    "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "Grüße aus Zürich — 東京の状態 🚀",
    "",
    "short",
]


def fixture_strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from fixture_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from fixture_strings(item)


# --- Built-in patterns --------------------------------------------------------------------


def test_samples_cover_every_pattern() -> None:
    assert {entry.pattern for entry in SAMPLES} == set(PATTERNS)
    assert len(PATTERNS) >= 20


@pytest.mark.parametrize("entry", SAMPLES, ids=[f"{n}-{entry.pattern}" for n, entry in enumerate(SAMPLES)])
def test_pattern_scrubs_sample(entry: Sample) -> None:
    assert PATTERNS[entry.pattern].search(entry.text), "the sample does not match its own pattern"

    scrubbed = Redactor()(entry.text)

    assert entry.secret not in scrubbed
    assert scrubbed == entry.expected


@pytest.mark.parametrize("entry", SAMPLES, ids=[f"{n}-{entry.pattern}" for n, entry in enumerate(SAMPLES)])
def test_pattern_literal_in_every_match(entry: Sample) -> None:
    # A pattern runs only on text containing one of its literals, so each
    # literal list must cover every text that the pattern can match.
    for match in PATTERNS[entry.pattern].finditer(entry.text):
        lowered = match.group(0).lower()
        assert any(literal in lowered for literal in LITERALS[entry.pattern]), match.group(0)


def test_redactor_cache_keeps_two_generations() -> None:
    redactor = Redactor()
    redactor.expect(10)  # the floor of 512 strings per generation applies
    first = [f"token={index:08d}" for index in range(512)]
    for text in first:
        redactor(text)
    redactor("password=rotates-a-generation")

    # The first 512 strings now sit in the previous generation: still cached.
    assert redactor._previous.get(first[0]) == "token=[REDACTED]"
    assert redactor(first[0]) == "token=[REDACTED]"


def test_scrub_texts_across_generations() -> None:
    calls: list[str] = []

    def hook(text: str) -> str:
        calls.append(text)
        return text.replace("ENG", "TEAM")

    redactor = Redactor(hook)
    texts = [f"ENG-{index} password=hunter{index}" for index in range(600)]  # past one generation
    scrubbed = redactor.scrub_texts(texts)
    assert scrubbed == [f"TEAM-{index} password=[REDACTED]" for index in range(600)]
    assert len(calls) == 600
    # Seen before: from the cache, with no new hook call.
    assert redactor.scrub_texts(texts[-10:]) == scrubbed[-10:]
    assert len(calls) == 600


@pytest.mark.parametrize("text", HARMLESS)
def test_harmless_text_unchanged(text: str) -> None:
    assert Redactor()(text) == text


@pytest.mark.parametrize("fixture", sorted(p.name for p in (fixtures_dir() / "symphony-elixir").glob("*.json")))
def test_fixture_strings_unchanged(fixture: str) -> None:
    redactor = Redactor()

    for text in fixture_strings(load_body(fixture)):
        assert redactor(text) == text


def test_scrubs_several_secrets_in_one_string() -> None:
    text = (
        "retry failed: password=hunter2 then curl -H 'Authorization: Bearer abcd1234efgh5678' "
        "with AKIAIOSFODNN7EXAMPLE"
    )

    scrubbed = Redactor()(text)

    assert scrubbed == (
        f"retry failed: password={REDACTED} then curl -H 'Authorization: Bearer {REDACTED}' "
        f"with {REDACTED}"
    )


def test_scrub_secrets_off_keeps_text() -> None:
    text = SAMPLES[0].text

    redactor = Redactor(scrub_secrets=False)

    assert redactor(text) == text
    assert redactor.active is False


# --- The host's hook ------------------------------------------------------------------------


def test_hook_runs_after_patterns() -> None:
    seen: list[str] = []

    def hook(text: str) -> str:
        seen.append(text)
        return text.replace("FAKE-", "ISSUE-")

    redactor = Redactor(hook)

    assert redactor("FAKE-101 password=hunter2") == f"ISSUE-101 password={REDACTED}"
    assert seen == [f"FAKE-101 password={REDACTED}"]
    assert redactor("FAKE-1") == "ISSUE-1"


def test_hook_without_patterns() -> None:
    redactor = Redactor(str.upper, scrub_secrets=False)

    assert redactor.active is True
    assert redactor("password=hunter2") == "PASSWORD=HUNTER2"


def test_hook_raising_gives_redacted_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    def hook(text: str) -> str:
        raise RuntimeError(f"cannot redact {text}")

    redactor = Redactor(hook)
    with caplog.at_level(logging.WARNING, logger="symphony_otel.recorder.redaction"):
        first = redactor("FAKE-101 first")
        second = redactor("FAKE-102 second")

    assert (first, second) == (REDACTED, REDACTED)
    warnings = [record for record in caplog.records if record.name == "symphony_otel.recorder.redaction"]
    assert len(warnings) == 1
    assert "raised RuntimeError" in warnings[0].getMessage()
    # The message names the exception type, never the string that failed.
    assert "FAKE-101" not in warnings[0].getMessage()


def test_hook_returning_non_string_gives_redacted() -> None:
    redactor = Redactor(lambda text: None)  # type: ignore[arg-type,return-value]

    assert redactor("FAKE-101 anything") == REDACTED


# --- Every string of the payload ---------------------------------------------------------------


def payload_of(encoder: PayloadEncoder, snap: Any) -> dict[str, Any]:
    return json.loads(encoder.encode(snap).text)


def test_payload_scrubs_every_string() -> None:
    secret = "ghp_fKtHF4vUCsMehGAkWvj7FAc9QeWJKY40uvSw"
    row = worker("FAKE-1", input_tokens=5)
    row.update(
        last_codex_event=f"tool call with token {secret}",
        session_id=f"session {secret}",
        worker_host=f"https://bot:{secret}@runner.example.com",
        workspace_path=f"/srv/workspaces/{secret}",
    )
    snap = snapshot(
        running=[row],
        retrying=[retry("FAKE-2", error=f"push failed: {secret}")],
        rate_limits={
            "limit_name": f"key {secret}",
            "notes": [f"list item {secret}", {"nested": f"deep {secret}"}],
            f"key {secret}": "value",
        },
    )

    text = PayloadEncoder(32768, Redactor()).encode(snap).text

    assert secret not in text
    payload = json.loads(text)
    assert payload["running"][0]["last_codex_event"] == f"tool call with token {REDACTED}"
    assert payload["running"][0]["session_id"] == f"session {REDACTED}"
    assert payload["running"][0]["worker_host"] == f"https://bot:{REDACTED}@runner.example.com"
    assert payload["running"][0]["workspace_path"] == f"/srv/workspaces/{REDACTED}"
    assert payload["retrying"][0]["error"] == f"push failed: {REDACTED}"
    assert payload["rate_limits"] == {
        "limit_name": f"key {REDACTED}",
        "notes": [f"list item {REDACTED}", {"nested": f"deep {REDACTED}"}],
        f"key {REDACTED}": "value",
    }


@pytest.mark.parametrize("fixture", ELIXIR_STATE_FIXTURES)
def test_payload_fixture_unchanged_by_scrubbing(fixture: str) -> None:
    snap = load_snapshot(fixture)

    assert payload_of(PayloadEncoder(32768, Redactor()), snap) == snap.to_dict()


def test_payload_redact_secrets_off_keeps_secrets() -> None:
    snap = snapshot(retrying=[retry("FAKE-2", error="password=hunter2")])

    payload = payload_of(PayloadEncoder(32768, Redactor(scrub_secrets=False)), snap)

    assert payload["retrying"][0]["error"] == "password=hunter2"


def test_payload_redact_locations_nulls_host_and_path() -> None:
    snap = load_snapshot(FIXTURE_15)
    row = worker("FAKE-9")
    row.update(worker_host="runner-3.internal", workspace_path="/srv/symphony/workspaces/FAKE-9")
    snap.running.append(snapshot(running=[row]).running[0])

    payload = payload_of(PayloadEncoder(32768, Redactor(), redact_locations=True), snap)

    for section in ("running", "retrying"):
        for entry in payload[section]:
            assert entry["worker_host"] is None
            assert entry["workspace_path"] is None
    expected = snap.to_dict()
    for section in ("running", "retrying"):
        for entry in expected[section]:
            entry["worker_host"] = None
            entry["workspace_path"] = None
    assert payload == expected


def test_generator_applies_hook_to_payload() -> None:
    telemetry = Telemetry()
    generator = telemetry.generator(redaction_hook=lambda text: text.replace("/srv/symphony", "<root>"))

    generator.record(load_snapshot(FIXTURE_15))

    (event,) = telemetry.spans()[0].events
    payload = json.loads(event.attributes["symphony.snapshot.json"])
    assert [row["workspace_path"] for row in payload["running"]] == [
        "<root>/workspaces/FAKE-101",
        "<root>/workspaces/FAKE-102",
        "<root>/workspaces/FAKE-103",
    ]
    assert "/srv/symphony" not in event.attributes["symphony.snapshot.json"]
    generator.close()


def test_generator_raising_hook_still_records(caplog: pytest.LogCaptureFixture) -> None:
    def hook(text: str) -> str:
        raise ValueError("host redaction failed")

    telemetry = Telemetry()
    generator = telemetry.generator(redaction_hook=hook)

    with caplog.at_level(logging.WARNING):
        generator.record(load_snapshot(FIXTURE_15))

    (event,) = telemetry.spans()[0].events
    payload = json.loads(event.attributes["symphony.snapshot.json"])
    assert {row["identifier"] for row in payload["running"]} == {REDACTED}
    assert {row["error"] for row in payload["retrying"]} == {REDACTED}
    assert payload["codex_totals"]["input_tokens"] == 259485
    points = telemetry.collect()
    assert points[("symphony.snapshot.record_errors", frozenset())] == 0
    assert points[("symphony.workers.running", frozenset())] == 3
    generator.close()


def test_generator_redact_locations_nulls_payload() -> None:
    telemetry = Telemetry()
    generator = telemetry.generator(redact_locations=True)

    generator.record(load_snapshot(FIXTURE_15))

    (event,) = telemetry.spans()[0].events
    payload = json.loads(event.attributes["symphony.snapshot.json"])
    assert [row["workspace_path"] for row in payload["running"] + payload["retrying"]] == [None] * 6
    assert [row["worker_host"] for row in payload["running"] + payload["retrying"]] == [None] * 6
    assert "/srv/symphony" not in event.attributes["symphony.snapshot.json"]
    generator.close()


@pytest.mark.parametrize(
    "text",
    [
        "boom api_key=sk-abcdefghijklmnopqrstuvwxyz123456",
        "password=sk-abcdefghijklmnopqrstuvwxyz123456 then",
        "token: ghp_abcdefghijklmnopqrstuvwxyz0123456789AB",
        'secret="AKIAABCDEFGHIJKLMNOP"',
    ],
)
def test_assignment_of_known_key_redacted_once(text: str) -> None:
    scrubbed = Redactor()(text)

    assert scrubbed.count(REDACTED) == 1
    assert "]]" not in scrubbed
