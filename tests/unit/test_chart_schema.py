"""values.schema.json refuses unknown and mistyped values at ``helm template``/``install`` time, with a
message naming the field, and accepts every documented shape (charts/kubetensor/ci/ covers the rest)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.chart_support import HelmError, render_values

REFUSED: list[tuple[str, dict[str, Any], str]] = [
    ("typo-at-top", {"operater": {"replicas": 1}}, "'operater' not allowed"),
    ("replicas-as-word", {"operator": {"replicas": "one"}}, "/operator/replicas"),
    ("two-operators", {"operator": {"replicas": 2}}, "/operator/replicas"),
    ("nested-typo", {"nats": {"jetstream": {"maxFileStor": "1Gi"}}}, "'maxFileStor' not allowed"),
    ("toleration-typo", {"operator": {"tolerations": [{"key": "a", "efect": "NoSchedule"}]}}, "'efect'"),
    ("protocol", {"otel": {"protocol": "http"}}, "/otel/protocol"),
    ("sampling-above-one", {"otel": {"samplingRatio": 1.5}}, "/otel/samplingRatio"),
    ("endpoint-without-scheme", {"otel": {"endpoint": "collector:4317"}}, "/otel/endpoint"),
    (
        "attribute-with-comma",
        {"otel": {"resourceAttributes": {"team": "a,b"}}},
        "/otel/resourceAttributes/team",
    ),
    ("nats-url-scheme", {"nats": {"external": {"url": "http://nats:4222"}}}, "/nats/external/url"),
    ("pull-policy", {"operator": {"image": {"pullPolicy": "Sometimes"}}}, "/operator/image/pullPolicy"),
    ("resources-typo", {"operator": {"resources": {"request": {"cpu": "1"}}}}, "'request' not allowed"),
    ("size", {"nats": {"jetstream": {"maxMemoryStore": "lots"}}}, "/nats/jetstream/maxMemoryStore"),
    ("namespace-name", {"operator": {"watchNamespaces": ["Team_A"]}}, "/operator/watchNamespaces/0"),
    ("miner-without-model", {"examples": {"miners": [{"name": "m", "gpus": 1}]}}, "model"),
    ("log-level", {"operator": {"logLevel": "verbose"}}, "/operator/logLevel"),
    (
        "metrics-service-flag",
        {"operator": {"metricsService": {"enabled": "yes"}}},
        "/operator/metricsService/enabled",
    ),
    (
        "scrape-interval-unitless",
        {"operator": {"serviceMonitor": {"interval": "30"}}},
        "/operator/serviceMonitor/interval",
    ),
    (
        "scrape-timeout-word",
        {"operator": {"serviceMonitor": {"scrapeTimeout": "soon"}}},
        "/operator/serviceMonitor/scrapeTimeout",
    ),
    ("service-monitor-typo", {"operator": {"serviceMonitor": {"label": {"a": "b"}}}}, "'label' not allowed"),
]


@pytest.mark.parametrize(("values", "named"), [(v, n) for _, v, n in REFUSED], ids=[i for i, _, _ in REFUSED])
def test_schema_refuses_a_bad_value_naming_its_field(
    tmp_path: Path, values: dict[str, Any], named: str
) -> None:
    with pytest.raises(HelmError) as refused:
        render_values(tmp_path, values)
    assert "values don't meet the specifications of the schema" in refused.value.stderr
    assert named in refused.value.stderr


def test_schema_accepts_a_values_file_with_only_some_values(tmp_path: Path) -> None:
    objects = render_values(
        tmp_path,
        {
            "otel": {
                "endpoint": "https://collector.example:4318",
                "protocol": "http/protobuf",
                "samplingRatio": 0,
            },
            "operator": {"tolerations": [{"operator": "Exists"}], "resources": {"requests": {"cpu": 0.5}}},
        },
    )
    assert any(o["kind"] == "Deployment" for o in objects)
