"""Checks of the Collector configurations, dashboard and alert rules in collector-config/.

The metric and label names are derived from the instrument catalogue in
symphony_otel.recorder.instruments, translated the way Prometheus translates
OTLP names, so a new instrument that the dashboard does not show fails here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from symphony_otel.recorder.instruments import ALL_INSTRUMENT_SPECS, InstrumentSpec
from symphony_otel.settings import DEFAULT_PAYLOAD_LIMIT

CONFIG_DIR = Path(__file__).resolve().parent.parent / "collector-config"

COLLECTOR_CONFIGS = (
    "debug.yaml",
    "honeycomb.yaml",
    "jaeger.yaml",
    "tempo.yaml",
    "gateway/agent.yaml",
    "gateway/gateway.yaml",
)
DASHBOARD = CONFIG_DIR / "grafana" / "symphony.json"
ALERT_RULES = CONFIG_DIR / "prometheus" / "alerts.yaml"
ALERT_TESTS = CONFIG_DIR / "prometheus" / "alerts_test.yaml"
PROMETHEUS_CONFIG = CONFIG_DIR / "prometheus" / "prometheus.yml"
COMPOSE_FILE = CONFIG_DIR / "docker-compose.yaml"

# Default of SYMPHONY_OTEL_PAYLOAD_LIMIT, the maximum size of the snapshot JSON
# attribute in bytes.
PAYLOAD_LIMIT_BYTES = DEFAULT_PAYLOAD_LIMIT
# Estimated size of everything in a snapshot span except the JSON attribute.
SPAN_OVERHEAD_BYTES = 2048
# Estimated upper size of one metric data point with its attributes.
DATA_POINT_BYTES = 1024
# gRPC's default maximum received message size, kept by Jaeger, Tempo and the
# Collector's OTLP receiver unless configured otherwise.
GRPC_MESSAGE_LIMIT_BYTES = 4 * 1024 * 1024

# Exporter types that Collector 0.144 and later load only as deprecated aliases.
DEPRECATED_EXPORTER_TYPES = {"otlp": "otlp_grpc", "otlphttp": "otlp_http", "logging": "debug"}

# Labels that Prometheus's OTLP receiver derives from the resource.
RESOURCE_LABELS = {"job", "instance"}

ENV_REFERENCE = re.compile(r"^\$\{env:[A-Za-z_][A-Za-z0-9_]*\}$")
ENV_REFERENCE_WITH_DEFAULT = re.compile(
    r"^\$\{env:[A-Za-z_][A-Za-z0-9_]*(?::-(?P<default>[^}]*))?\}$"
)
SECRET_KEY = re.compile(r"api_?key|token|password|secret|authorization|bearer", re.IGNORECASE)
HEADER_VERSION = re.compile(r"^# Written for: otelcol-contrib (\d+\.\d+\.\d+)\b", re.MULTILINE)
EXPLICIT_HOSTS = {"0.0.0.0", "127.0.0.1", "[::]", "[::1]"}


# Translation of OTLP names to Prometheus names.
#
# Rules of the strategy UnderscoreEscapingWithSuffixes, Prometheus 3.x's
# default, as implemented in github.com/prometheus/otlptranslator (metric_namer.go,
# unit_namer.go, label_namer.go): the name is split on every character outside
# [a-zA-Z0-9:] and joined with "_". A unit in braces adds nothing. Other units
# add their word (s -> seconds) unless the name already contains it, and a
# "/x" part adds "per_<x>". A monotonic counter ends in "_total" and a gauge
# with unit "1" in "_ratio", each moved to the end if already present.

UNIT_WORDS = {
    "d": "days",
    "h": "hours",
    "min": "minutes",
    "s": "seconds",
    "ms": "milliseconds",
    "us": "microseconds",
    "ns": "nanoseconds",
    "By": "bytes",
    "KiBy": "kibibytes",
    "MiBy": "mebibytes",
    "GiBy": "gibibytes",
    "KBy": "kilobytes",
    "MBy": "megabytes",
    "GBy": "gigabytes",
    "m": "meters",
    "V": "volts",
    "A": "amperes",
    "J": "joules",
    "W": "watts",
    "g": "grams",
    "Cel": "celsius",
    "Hz": "hertz",
    "1": "",
    "%": "percent",
}
PER_UNIT_WORDS = {
    "s": "second",
    "m": "minute",
    "h": "hour",
    "d": "day",
    "w": "week",
    "mo": "month",
    "y": "year",
}


def _clean_unit_word(word: str) -> str:
    word = re.sub(r"[^a-zA-Z0-9:]", "_", word)
    word = re.sub(r"__+", "_", word)
    return word.lstrip("_")


def _unit_suffixes(unit: str) -> tuple[str, str]:
    main, _, per = unit.partition("/")
    main = main.strip()
    per = per.strip()

    main_suffix = ""
    if main and "{" not in main and "}" not in main:
        main_suffix = _clean_unit_word(UNIT_WORDS.get(main, main))

    per_suffix = ""
    if per and "{" not in per and "}" not in per:
        per_suffix = _clean_unit_word("per_" + PER_UNIT_WORDS.get(per, per)).rstrip("_")
        if per_suffix == "per":
            per_suffix = ""
    return main_suffix, per_suffix


def prometheus_metric_name(name: str, unit: str, kind: str) -> str:
    """Translate an OTLP metric to the name Prometheus stores it under.

    Args:
        name: The OTLP metric name, for example ``symphony.tokens``.
        unit: The UCUM unit, for example ``s``, ``1`` or ``{token}``.
        kind: ``counter`` for a monotonic sum, ``gauge`` for a gauge.

    Returns:
        The name under the UnderscoreEscapingWithSuffixes strategy.
    """
    tokens = [token for token in re.split(r"[^a-zA-Z0-9:]+", name) if token]

    main_suffix, per_suffix = _unit_suffixes(unit)
    if main_suffix and main_suffix not in tokens:
        tokens.append(main_suffix.rstrip("_") if per_suffix else main_suffix)
    if per_suffix and per_suffix not in tokens:
        tokens.append(per_suffix)

    if kind == "counter":
        tokens = [token for token in tokens if token != "total"] + ["total"]
    if unit == "1" and kind == "gauge":
        tokens = [token for token in tokens if token != "ratio"] + ["ratio"]

    translated = "_".join(tokens)
    if translated[:1].isdigit():
        translated = "_" + translated
    return translated


def prometheus_label_name(attribute: str) -> str:
    """Translate an OTLP attribute name to the Prometheus label name.

    Args:
        attribute: The attribute name, for example ``gen_ai.token.type``.

    Returns:
        The label name: invalid characters become ``_``, a leading digit gets
        the prefix ``key_`` and a single leading ``_`` the prefix ``key``.
    """
    label = re.sub(r"[^a-zA-Z0-9_]", "_", attribute)
    if label[:1].isdigit():
        return "key_" + label
    if label.startswith("_") and not label.startswith("__"):
        return "key" + label
    return label


def exported_metric_names(
    specs: tuple[InstrumentSpec, ...] = ALL_INSTRUMENT_SPECS,
) -> dict[str, str]:
    """Map each Prometheus metric name to the OTLP instrument it comes from."""
    return {prometheus_metric_name(spec.name, spec.unit, spec.kind): spec.name for spec in specs}


def exported_label_names(specs: tuple[InstrumentSpec, ...] = ALL_INSTRUMENT_SPECS) -> set[str]:
    """Return the label names the instruments' attributes and the resource produce."""
    labels = set(RESOURCE_LABELS)
    for spec in specs:
        labels.update(prometheus_label_name(attribute) for attribute in spec.attributes)
    return labels


# PromQL scanning. This is not a parser: it removes string literals, label
# matchers, range selectors and grouping clauses, and keeps the identifiers
# that are not keywords or function calls. That is enough for the expressions
# in this folder and errs towards reporting a name.

PROMQL_KEYWORDS = {
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "atan2",
    "inf",
    "nan",
}
PROMQL_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
PROMQL_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)")


def promql_metric_names(expr: str) -> set[str]:
    """Return the metric names that a PromQL expression selects."""
    text = PROMQL_STRING.sub('""', expr)
    text = re.sub(r"\{[^{}]*\}", " ", text)
    text = re.sub(r"\[[^\[\]]*\]", " ", text)
    text = PROMQL_GROUPING.sub(" ", text)

    names = set()
    for match in re.finditer(r"(?<![\w:$.])[A-Za-z_:][\w:]*", text):
        identifier = match.group(0)
        if identifier.lower() in PROMQL_KEYWORDS:
            continue
        if re.match(r"\s*\(", text[match.end() :]):
            continue
        names.add(identifier)
    return names


def promql_label_names(expr: str) -> set[str]:
    """Return the label names used in matchers and grouping clauses of a PromQL expression."""
    text = PROMQL_STRING.sub('""', expr)

    labels = set()
    for block in re.findall(r"\{([^{}]*)\}", text):
        labels.update(re.findall(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)", block))
    for clause in PROMQL_GROUPING.findall(text):
        labels.update(label.strip() for label in clause.split(",") if label.strip())
    return labels


# Collector configuration checks. Each returns a list of problems so that a
# failing test names every one of them.


def load_yaml(path: Path) -> Any:
    """Parse a YAML file with PyYAML's safe loader."""
    with path.open(encoding="utf-8") as stream:
        return yaml.safe_load(stream)


def component_type(component_id: str) -> str:
    """Return the type part of a ``type/name`` component id."""
    return component_id.split("/", 1)[0]


def pipeline_reference_problems(config: dict[str, Any]) -> list[str]:
    """List pipeline entries that name a component the file does not define."""
    connectors = set(config.get("connectors") or {})
    defined = {
        "receivers": set(config.get("receivers") or {}) | connectors,
        "processors": set(config.get("processors") or {}),
        "exporters": set(config.get("exporters") or {}) | connectors,
    }
    service = config.get("service") or {}

    problems = []
    for pipeline_id, pipeline in (service.get("pipelines") or {}).items():
        for section, known in defined.items():
            for component_id in pipeline.get(section) or []:
                if component_id not in known:
                    problems.append(
                        f"pipeline {pipeline_id}: {section} entry {component_id!r} is not defined"
                    )
    for extension_id in service.get("extensions") or []:
        if extension_id not in (config.get("extensions") or {}):
            problems.append(f"service.extensions entry {extension_id!r} is not defined")
    return problems


def unused_component_problems(config: dict[str, Any]) -> list[str]:
    """List components that are defined but not used by any pipeline or by the service."""
    service = config.get("service") or {}
    pipelines = (service.get("pipelines") or {}).values()
    used: dict[str, set[str]] = {
        section: set() for section in ("receivers", "processors", "exporters")
    }
    for pipeline in pipelines:
        for section, used_ids in used.items():
            used_ids.update(pipeline.get(section) or [])

    problems = []
    for section, used_ids in used.items():
        for component_id in config.get(section) or {}:
            if component_id not in used_ids:
                problems.append(f"{section} {component_id!r} is defined but no pipeline uses it")
    for connector_id in config.get("connectors") or {}:
        if connector_id not in used["exporters"] or connector_id not in used["receivers"]:
            problems.append(
                f"connector {connector_id!r} must be an exporter of one pipeline and a receiver of another"
            )
    for extension_id in config.get("extensions") or {}:
        if extension_id not in (service.get("extensions") or []):
            problems.append(
                f"extension {extension_id!r} is defined but not listed in service.extensions"
            )
    return problems


def processor_order_problems(config: dict[str, Any]) -> list[str]:
    """List pipelines where memory_limiter is not first or batch is not last."""
    problems = []
    for pipeline_id, pipeline in ((config.get("service") or {}).get("pipelines") or {}).items():
        processors = pipeline.get("processors") or []
        types = [component_type(processor) for processor in processors]
        if "memory_limiter" in types and types[0] != "memory_limiter":
            problems.append(
                f"pipeline {pipeline_id}: memory_limiter must be the first processor, got {processors}"
            )
        if "batch" in types and types[-1] != "batch":
            problems.append(
                f"pipeline {pipeline_id}: batch must be the last processor, got {processors}"
            )
    return problems


def walk(node: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Yield the key path and value of every scalar in a parsed YAML document."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, (*path, str(key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, (*path, str(index)))
    else:
        yield path, node


def secret_problems(config: dict[str, Any]) -> list[str]:
    """List header values and secret-looking fields that are not a plain ``${env:VAR}``."""
    problems = []
    for path, value in walk(config):
        is_header = "headers" in path
        is_secret = bool(path) and bool(SECRET_KEY.search(path[-1]))
        if not (is_header or is_secret):
            continue
        if not (isinstance(value, str) and ENV_REFERENCE.match(value)):
            problems.append(
                f"{'.'.join(path)} must be a ${{env:VAR}} reference without default, got {value!r}"
            )
    return problems


def endpoint_problem(where: str, endpoint: Any) -> str | None:
    """Return why a listening endpoint is not an explicit address, or None if it is one."""
    if not isinstance(endpoint, str) or not endpoint:
        return f"{where}: endpoint is missing, so the Collector would listen on localhost only"

    match = ENV_REFERENCE_WITH_DEFAULT.match(endpoint)
    if match:
        if match.group("default") is None:
            return None
        endpoint = match.group("default")

    host, _, port = endpoint.rpartition(":")
    if host not in EXPLICIT_HOSTS or not port.isdigit():
        return f"{where}: endpoint {endpoint!r} is not an explicit host:port (host one of {sorted(EXPLICIT_HOSTS)})"
    return None


def listener_problems(config: dict[str, Any]) -> list[str]:
    """List receivers and extensions whose listening address is missing or implicit."""
    problems = []
    for receiver_id, receiver in (config.get("receivers") or {}).items():
        receiver = receiver or {}
        protocols = receiver.get("protocols")
        if protocols is not None:
            for protocol, settings in protocols.items():
                problem = endpoint_problem(
                    f"receiver {receiver_id} {protocol}", (settings or {}).get("endpoint")
                )
                if problem:
                    problems.append(problem)
        else:
            problem = endpoint_problem(f"receiver {receiver_id}", receiver.get("endpoint"))
            if problem:
                problems.append(problem)
    for extension_id, extension in (config.get("extensions") or {}).items():
        if extension and "endpoint" in extension:
            problem = endpoint_problem(f"extension {extension_id}", extension["endpoint"])
            if problem:
                problems.append(problem)
    return problems


def pipelines_of_signal(config: dict[str, Any], signal: str) -> Iterator[dict[str, Any]]:
    """Yield the pipelines of one signal (``traces``, ``metrics`` or ``logs``)."""
    for pipeline_id, pipeline in ((config.get("service") or {}).get("pipelines") or {}).items():
        if component_type(pipeline_id) == signal:
            yield pipeline


def batch_size_problems(config: dict[str, Any]) -> list[str]:
    """List batch processors whose largest batch can exceed gRPC's default message limit."""
    problems = []
    item_bytes = {"traces": PAYLOAD_LIMIT_BYTES + SPAN_OVERHEAD_BYTES, "metrics": DATA_POINT_BYTES}
    processors = config.get("processors") or {}
    for signal, size in item_bytes.items():
        for pipeline in pipelines_of_signal(config, signal):
            for processor_id in pipeline.get("processors") or []:
                if component_type(processor_id) != "batch":
                    continue
                settings = processors[processor_id] or {}
                maximum = settings.get("send_batch_max_size", 0)
                if not maximum:
                    problems.append(
                        f"{processor_id}: send_batch_max_size is unset, so batches have no upper bound"
                    )
                    continue
                if maximum * size > GRPC_MESSAGE_LIMIT_BYTES:
                    problems.append(
                        f"{processor_id}: {maximum} {signal} items x {size} bytes exceed "
                        f"{GRPC_MESSAGE_LIMIT_BYTES} bytes"
                    )
                if settings.get("send_batch_size", 8192) > maximum:
                    problems.append(
                        f"{processor_id}: send_batch_size is larger than send_batch_max_size"
                    )
    return problems


def header_of(path: Path) -> str:
    """Return the leading comment block of a file."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line)
    return "\n".join(lines)


@pytest.fixture(scope="module", params=COLLECTOR_CONFIGS)
def collector_config(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    relative = request.param
    return relative, load_yaml(CONFIG_DIR / relative)


# Translation


@pytest.mark.parametrize(
    ("name", "unit", "kind", "expected"),
    [
        ("http.server.request.duration", "s", "gauge", "http_server_request_duration_seconds"),
        ("requests.count", "1", "counter", "requests_count_total"),
        ("memory.usage", "By", "gauge", "memory_usage_bytes"),
        ("system.cpu.utilization", "1", "gauge", "system_cpu_utilization_ratio"),
        ("cache.hit.ratio", "1", "gauge", "cache_hit_ratio"),
        ("queue.size", "{item}", "gauge", "queue_size"),
        ("tokens", "{token}", "counter", "tokens_total"),
        ("requests.total", "{request}", "counter", "requests_total"),
        ("process.uptime.seconds", "s", "gauge", "process_uptime_seconds"),
        ("network.io", "By/s", "gauge", "network_io_bytes_per_second"),
        ("cpu.time", "s", "counter", "cpu_time_seconds_total"),
        ("retry_queue.size", "{issue}", "gauge", "retry_queue_size"),
        ("3d.points", "1", "counter", "_3d_points_total"),
    ],
)
def test_metric_name_translation_cases(name: str, unit: str, kind: str, expected: str) -> None:
    assert prometheus_metric_name(name, unit, kind) == expected


@pytest.mark.parametrize(
    ("attribute", "expected"),
    [
        ("gen_ai.token.type", "gen_ai_token_type"),
        ("error.type", "error_type"),
        ("symphony.rate_limit.window", "symphony_rate_limit_window"),
        ("2fa.method", "key_2fa_method"),
        ("_private", "key_private"),
    ],
)
def test_label_name_translation_cases(attribute: str, expected: str) -> None:
    assert prometheus_label_name(attribute) == expected


def test_exported_metric_names_unique() -> None:
    names = [
        prometheus_metric_name(spec.name, spec.unit, spec.kind) for spec in ALL_INSTRUMENT_SPECS
    ]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    assert duplicates == []


def test_promql_scanner_finds_names() -> None:
    expr = (
        'sum by (gen_ai_token_type) (rate(symphony_tokens_total{job=~"$job"}[$__rate_interval])) '
        "/ on (job) group_left max(symphony_workers_limit offset 1h) > bool 0.5 "
        'and label_replace(up, "dst", "$1", "src", "(.*)")'
    )
    assert promql_metric_names(expr) == {"symphony_tokens_total", "symphony_workers_limit", "up"}
    assert promql_label_names(expr) == {"gen_ai_token_type", "job"}


# Collector configurations


def test_collector_configs_all_listed() -> None:
    """Every Collector configuration in the folder is one that these tests check."""
    found = set()
    for path in CONFIG_DIR.rglob("*.yaml"):
        document = load_yaml(path)
        if isinstance(document, dict) and "pipelines" in (document.get("service") or {}):
            found.add(path.relative_to(CONFIG_DIR).as_posix())
    assert found == set(COLLECTOR_CONFIGS)


def test_collector_config_parses(collector_config: tuple[str, dict[str, Any]]) -> None:
    relative, config = collector_config
    assert isinstance(config, dict), relative
    assert config.get("receivers"), relative
    assert config.get("exporters"), relative
    assert (config.get("service") or {}).get("pipelines"), relative


def test_collector_pipelines_reference_defined(
    collector_config: tuple[str, dict[str, Any]],
) -> None:
    relative, config = collector_config
    assert pipeline_reference_problems(config) == [], relative


def test_collector_components_all_used(collector_config: tuple[str, dict[str, Any]]) -> None:
    relative, config = collector_config
    assert unused_component_problems(config) == [], relative


def test_collector_processor_order(collector_config: tuple[str, dict[str, Any]]) -> None:
    relative, config = collector_config
    assert processor_order_problems(config) == [], relative


def test_collector_memory_limiter_everywhere(collector_config: tuple[str, dict[str, Any]]) -> None:
    relative, config = collector_config
    for pipeline_id, pipeline in config["service"]["pipelines"].items():
        assert "memory_limiter" in (pipeline.get("processors") or []), f"{relative} {pipeline_id}"


def test_collector_secrets_only_from_env(collector_config: tuple[str, dict[str, Any]]) -> None:
    relative, config = collector_config
    assert secret_problems(config) == [], relative


def test_collector_listeners_explicit(collector_config: tuple[str, dict[str, Any]]) -> None:
    relative, config = collector_config
    assert listener_problems(config) == [], relative


def test_collector_batches_fit_grpc_limit(collector_config: tuple[str, dict[str, Any]]) -> None:
    relative, config = collector_config
    assert batch_size_problems(config) == [], relative


def test_collector_header_names_file_and_version(
    collector_config: tuple[str, dict[str, Any]],
) -> None:
    relative, _ = collector_config
    header = header_of(CONFIG_DIR / relative)

    assert header.startswith(f"# {relative}: "), relative
    assert HEADER_VERSION.search(header), relative
    assert f"otelcol-contrib validate --config collector-config/{relative}" in header, relative


def test_collector_headers_share_version() -> None:
    versions = {
        relative: HEADER_VERSION.search(header_of(CONFIG_DIR / relative))
        for relative in COLLECTOR_CONFIGS
    }
    found = {relative: match.group(1) if match else None for relative, match in versions.items()}
    assert len(set(found.values())) == 1, found


def test_collector_exporter_names_current(collector_config: tuple[str, dict[str, Any]]) -> None:
    relative, config = collector_config
    header = header_of(CONFIG_DIR / relative)
    for exporter_id in config["exporters"]:
        exporter_type = component_type(exporter_id)
        assert exporter_type not in DEPRECATED_EXPORTER_TYPES, f"{relative}: {exporter_id}"
        assert f"`{exporter_type}`" in header, f"{relative}: header does not name `{exporter_type}`"


def test_collector_ids_typed_when_repeated(collector_config: tuple[str, dict[str, Any]]) -> None:
    """Components of a type that occurs twice have ``type/name`` ids, never the bare type."""
    relative, config = collector_config
    for section in ("receivers", "processors", "exporters"):
        ids = list(config.get(section) or {})
        types = [component_type(component_id) for component_id in ids]
        for component_id in ids:
            if types.count(component_type(component_id)) > 1:
                assert "/" in component_id, f"{relative}: {section} {component_id}"


def test_checks_flag_broken_config() -> None:
    """The checks above report each kind of mistake they are meant to catch."""
    broken = {
        "receivers": {"otlp": {"protocols": {"grpc": {}, "http": {"endpoint": "localhost:4318"}}}},
        "processors": {"batch": {}, "memory_limiter": {}, "unused": {}},
        "exporters": {
            "otlp_grpc": {
                "headers": {"x-honeycomb-team": "hcaik_literal"},
                "api_key": "${env:K:-x}",
            }
        },
        "extensions": {"health_check": {"endpoint": "0.0.0.0:13133"}},
        "service": {
            "pipelines": {
                "traces": {
                    "receivers": ["otlp"],
                    "processors": ["batch", "memory_limiter"],
                    "exporters": ["nope"],
                },
            },
        },
    }

    assert any(
        "'nope' is not defined" in problem for problem in pipeline_reference_problems(broken)
    )
    assert any("'unused'" in problem for problem in unused_component_problems(broken))
    assert any("'otlp_grpc'" in problem for problem in unused_component_problems(broken))
    assert any("health_check" in problem for problem in unused_component_problems(broken))
    assert len(processor_order_problems(broken)) == 2
    assert len(secret_problems(broken)) == 2
    assert len(listener_problems(broken)) == 2
    assert any("send_batch_max_size is unset" in problem for problem in batch_size_problems(broken))


def test_tempo_header_explains_attribute_limit() -> None:
    header = header_of(CONFIG_DIR / "tempo.yaml")
    for fact in (
        "max_attribute_bytes",
        "max_span_attr_byte",
        "2048",
        "SYMPHONY_OTEL_PAYLOAD_LIMIT",
        "32768",
    ):
        assert fact in header, fact


def test_honeycomb_headers_from_env() -> None:
    config = load_yaml(CONFIG_DIR / "honeycomb.yaml")
    exporters = config["exporters"]
    metrics_exporters = {
        exporter_id
        for pipeline in pipelines_of_signal(config, "metrics")
        for exporter_id in pipeline["exporters"]
    }

    for exporter_id, exporter in exporters.items():
        headers = exporter.get("headers") or {}
        assert ENV_REFERENCE.match(headers.get("x-honeycomb-team", "")), exporter_id
        if exporter_id in metrics_exporters:
            assert ENV_REFERENCE.match(headers.get("x-honeycomb-dataset", "")), exporter_id


def test_gateway_agent_routing_keys() -> None:
    config = load_yaml(CONFIG_DIR / "gateway" / "agent.yaml")
    expected_keys = {"traces": {"traceID"}, "metrics": {"streamID", "resource"}}

    for signal, keys in expected_keys.items():
        pipelines = list(pipelines_of_signal(config, signal))
        assert pipelines, signal
        for pipeline in pipelines:
            for exporter_id in pipeline["exporters"]:
                exporter = config["exporters"][exporter_id]
                assert component_type(exporter_id) == "loadbalancing", exporter_id
                assert exporter.get("routing_key") in keys, exporter_id
                resolvers = set(exporter.get("resolver") or {}) & {
                    "dns",
                    "static",
                    "k8s",
                    "aws_cloud_map",
                }
                assert len(resolvers) == 1, exporter_id


def test_gateway_receives_on_agent_port() -> None:
    agent = load_yaml(CONFIG_DIR / "gateway" / "agent.yaml")
    gateway = load_yaml(CONFIG_DIR / "gateway" / "gateway.yaml")
    grpc_endpoint = gateway["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]

    for exporter in agent["exporters"].values():
        port = str(exporter["resolver"]["dns"]["port"])
        assert grpc_endpoint.rstrip("}").endswith(f":{port}"), (port, grpc_endpoint)


# Local stack


def test_compose_ports_loopback_only() -> None:
    compose = load_yaml(COMPOSE_FILE)
    for name, service in compose["services"].items():
        for port in service.get("ports") or []:
            assert str(port).startswith("127.0.0.1:"), f"{name}: {port}"


def test_compose_images_pinned() -> None:
    compose = load_yaml(COMPOSE_FILE)
    for name, service in compose["services"].items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository, f"{name}: {image} has no tag"
        assert tag != "latest", f"{name}: {image}"


def test_compose_collector_matches_configs() -> None:
    compose = load_yaml(COMPOSE_FILE)
    collector = compose["services"]["otel-collector"]
    header_version = HEADER_VERSION.search(header_of(CONFIG_DIR / COLLECTOR_CONFIGS[0]))
    assert header_version
    assert collector["image"] == f"otel/opentelemetry-collector-contrib:{header_version.group(1)}"

    mounts = {
        target.removesuffix(":ro"): source
        for source, target in (v.split(":", 1) for v in collector["volumes"])
    }
    config_arguments = [
        argument for argument in collector["command"] if argument.startswith("--config=")
    ]
    assert len(config_arguments) == 1
    config_path = config_arguments[0].removeprefix("--config=")
    assert config_path in mounts
    assert (CONFIG_DIR / mounts[config_path]).is_file()


def test_compose_mounts_exist() -> None:
    compose = load_yaml(COMPOSE_FILE)
    for name, service in compose["services"].items():
        for volume in service.get("volumes") or []:
            source = volume.split(":", 1)[0]
            assert (CONFIG_DIR / source).exists(), f"{name}: {source}"


def test_compose_prometheus_accepts_otlp() -> None:
    compose = load_yaml(COMPOSE_FILE)
    prometheus = compose["services"]["prometheus"]
    assert "--web.enable-otlp-receiver" in prometheus["command"]

    collector_env = compose["services"]["otel-collector"]["environment"]
    assert collector_env["PROMETHEUS_OTLP_ENDPOINT"] == "http://prometheus:9090/api/v1/otlp"


def test_prometheus_config_matches_stack() -> None:
    config = load_yaml(PROMETHEUS_CONFIG)
    compose = load_yaml(COMPOSE_FILE)
    mounted = {volume.split(":")[1] for volume in compose["services"]["prometheus"]["volumes"]}

    assert config["otlp"]["translation_strategy"] == "UnderscoreEscapingWithSuffixes"
    for rule_file in config["rule_files"]:
        assert rule_file in mounted, rule_file


def test_grafana_provisioning_matches_stack() -> None:
    compose = load_yaml(COMPOSE_FILE)
    grafana_volumes = dict(
        volume.removesuffix(":ro").split(":", 1)
        for volume in compose["services"]["grafana"]["volumes"]
    )
    dashboard_target = grafana_volumes["./grafana/symphony.json"]

    providers = load_yaml(CONFIG_DIR / "grafana" / "provisioning" / "dashboards" / "symphony.yaml")[
        "providers"
    ]
    assert [provider["options"]["path"] for provider in providers] == [
        str(Path(dashboard_target).parent)
    ]

    datasources = load_yaml(
        CONFIG_DIR / "grafana" / "provisioning" / "datasources" / "datasources.yaml"
    )
    types = {datasource["type"] for datasource in datasources["datasources"]}
    assert "prometheus" in types


def test_readme_metric_table_current() -> None:
    readme = (CONFIG_DIR / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `(symphony\.[^`]+)` \| `([^`]+)` \|$", readme, re.MULTILINE)
    table = {prometheus_name: instrument for instrument, prometheus_name in rows}
    assert table == exported_metric_names()


# Dashboard


def dashboard_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Yield every panel, including those nested in collapsed rows."""
    for panel in dashboard.get("panels") or []:
        yield panel
        yield from panel.get("panels") or []


def dashboard_queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """Yield (where, PromQL) for every panel target and query variable."""
    for panel in dashboard_panels(dashboard):
        for target in panel.get("targets") or []:
            yield f"panel {panel['title']!r} target {target.get('refId')}", target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = (
            variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        )
        match = re.fullmatch(r"label_values\((.*),\s*([A-Za-z_]\w*)\)", query.strip())
        assert match, f"variable {variable['name']}: unexpected query {query!r}"
        # Rewritten as PromQL that selects the same series and names the same
        # label, so that the PromQL checks cover variables too.
        yield (
            f"variable {variable['name']}",
            f"{match.group(1)} and on ({match.group(2)}) vector(0)",
        )


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return document


def test_dashboard_datasource_variable(dashboard: dict[str, Any]) -> None:
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"

    for path, value in walk(dashboard):
        if len(path) >= 2 and path[-2] == "datasource" and path[-1] == "uid":
            assert value.startswith("$"), f"{'.'.join(path)} is the hard-coded uid {value!r}"


def test_dashboard_panels_query(dashboard: dict[str, Any]) -> None:
    ids = [panel["id"] for panel in dashboard_panels(dashboard)]
    assert len(ids) == len(set(ids))

    for panel in dashboard_panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel.get("targets"), panel["title"]
        assert panel.get("description"), panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]


def test_dashboard_metrics_exported(dashboard: dict[str, Any]) -> None:
    exported = exported_metric_names()
    for where, expr in dashboard_queries(dashboard):
        unknown = promql_metric_names(expr) - set(exported)
        assert unknown == set(), f"{where} uses metrics the code does not export: {sorted(unknown)}"


def test_dashboard_shows_every_instrument(dashboard: dict[str, Any]) -> None:
    used = set()
    for _, expr in dashboard_queries(dashboard):
        used |= promql_metric_names(expr)
    missing = {
        name: instrument for name, instrument in exported_metric_names().items() if name not in used
    }
    assert missing == {}, (
        f"instruments missing from the dashboard (Prometheus name: OTLP name): {missing}"
    )


def test_dashboard_labels_exported(dashboard: dict[str, Any]) -> None:
    allowed = exported_label_names()
    for where, expr in dashboard_queries(dashboard):
        unknown = promql_label_names(expr) - allowed
        assert unknown == set(), f"{where} uses unknown labels {sorted(unknown)}"
    for panel in dashboard_panels(dashboard):
        for target in panel.get("targets") or []:
            legend_labels = set(
                re.findall(r"\{\{\s*([A-Za-z_]\w*)\s*\}\}", target.get("legendFormat", ""))
            )
            assert legend_labels <= allowed, (
                f"panel {panel['title']!r}: legend uses {sorted(legend_labels - allowed)}"
            )


# Alert rules


@pytest.fixture(scope="module")
def alert_rules() -> list[dict[str, Any]]:
    groups = load_yaml(ALERT_RULES)["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_alert_rules_annotated(alert_rules: list[dict[str, Any]]) -> None:
    assert alert_rules
    for rule in alert_rules:
        for annotation in ("summary", "description", "runbook"):
            assert rule.get("annotations", {}).get(annotation, "").strip(), (
                f"{rule['alert']}: {annotation}"
            )
        assert rule.get("labels", {}).get("severity") in {"warning", "critical"}, rule["alert"]


def test_alert_rules_metrics_exported(alert_rules: list[dict[str, Any]]) -> None:
    exported = set(exported_metric_names())
    for rule in alert_rules:
        used = promql_metric_names(rule["expr"])
        assert used, rule["alert"]
        assert used <= exported, (
            f"{rule['alert']} uses metrics the code does not export: {sorted(used - exported)}"
        )


def test_alert_rules_labels_exported(alert_rules: list[dict[str, Any]]) -> None:
    allowed = exported_label_names()
    for rule in alert_rules:
        used = promql_label_names(rule["expr"])
        for text in rule["annotations"].values():
            used |= set(re.findall(r"\$labels\.([A-Za-z_]\w*)", text))
        assert used <= allowed, f"{rule['alert']} uses unknown labels {sorted(used - allowed)}"


def test_alert_rules_rate_limit_thresholds(alert_rules: list[dict[str, Any]]) -> None:
    utilization = prometheus_metric_name("symphony.rate_limit.utilization", "1", "gauge")
    thresholds = {}
    for rule in alert_rules:
        if utilization in promql_metric_names(rule["expr"]):
            match = re.search(r">=\s*([0-9.]+)", rule["expr"])
            assert match, rule["alert"]
            thresholds[rule["labels"]["severity"]] = float(match.group(1))
    assert thresholds == {"warning": 0.8, "critical": 0.9}


def test_alert_rules_cover_required_cases(alert_rules: list[dict[str, Any]]) -> None:
    def metric(name: str) -> str:
        spec = next(spec for spec in ALL_INSTRUMENT_SPECS if spec.name == name)
        return prometheus_metric_name(spec.name, spec.unit, spec.kind)

    expressions = [rule["expr"] for rule in alert_rules]
    credits = metric("symphony.rate_limit.credits.balance")
    queue = metric("symphony.retry_queue.size")
    workers = metric("symphony.workers.running")
    age = metric("symphony.snapshot.age")
    bridge_up = metric("symphony.bridge.up")

    assert any(credits in expr and "predict_linear" in expr for expr in expressions)
    assert any(queue in expr and workers in expr for expr in expressions)
    assert any(re.search(rf"{age}\s*>\s*\d", expr) for expr in expressions)
    assert any(age in expr and "absent" in expr for expr in expressions)
    assert any(bridge_up in expr for expr in expressions)


def test_alert_tests_cover_every_alert(alert_rules: list[dict[str, Any]]) -> None:
    cases = [
        case
        for test in load_yaml(ALERT_TESTS)["tests"]
        for case in test.get("alert_rule_test") or []
    ]
    for name in {rule["alert"] for rule in alert_rules}:
        outcomes = [bool(case.get("exp_alerts")) for case in cases if case["alertname"] == name]
        assert True in outcomes, f"{name} is never shown firing"
        assert False in outcomes, f"{name} is never shown staying quiet"


def promtool() -> str:
    """Return the promtool path, or skip (fail under CI) when it is not installed."""
    path = shutil.which("promtool")
    if path:
        return path
    message = (
        "promtool not found: install Debian's prometheus package "
        "(apt-get install -y --no-install-recommends prometheus)"
    )
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def run_promtool(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *arguments],
        cwd=ALERT_RULES.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_promtool_check_rules() -> None:
    result = run_promtool("check", "rules", ALERT_RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_test_rules() -> None:
    result = run_promtool("test", "rules", ALERT_TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr
