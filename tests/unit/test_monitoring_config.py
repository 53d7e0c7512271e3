"""deploy/: the Grafana dashboard queries only metrics the services export; Prometheus scrapes all three."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry

from services.intake.core.metrics import IntakeMetrics
from shared import metrics as worker_metrics
from shared.config import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
_SUFFIXES = ("", "_total", "_bucket", "_count", "_sum", "_created")


def _exported(registry: CollectorRegistry) -> set[str]:
    names: set[str] = set()
    for family in registry.collect():
        names.update(family.name + s for s in _SUFFIXES)
    return names


def test_dashboard_queries_exported_metrics_only() -> None:
    board = json.loads((DEPLOY / "grafana" / "refnet-dashboard.json").read_text())
    exported = _exported(IntakeMetrics().registry) | _exported(worker_metrics.REGISTRY)
    panels = [p for p in board["panels"] if p["type"] != "row"]
    assert len(panels) >= 12
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])
    used: set[str] = set()
    for p in panels:
        assert p["targets"], p["title"]
        assert {"x", "y", "w", "h"} <= set(p["gridPos"])
        for target in p["targets"]:
            used.update(re.findall(r"\brefnet_[a-z0-9_]+", target["expr"]))
    assert used, "the dashboard queries no refnet metric"
    assert used <= exported, f"not exported: {sorted(used - exported)}"
    # The figures the issue names all have a panel.
    for needle in (
        "refnet_referrals",
        "refnet_routing_decision_seconds_bucket",
        "refnet_routing_time_to_assignment_seconds_bucket",
        "refnet_routing_offers_declined_total",
        "refnet_routing_offers_expired_total",
        "refnet_outbox_oldest_age_seconds",
        "refnet_jetstream_consumer_pending_messages",
        "refnet_notify_deliveries_total",
        "refnet_http_request_duration_seconds_bucket",
    ):
        assert needle in used, needle


def test_prometheus_scrapes_the_three_services_on_their_default_metrics_ports() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert set(jobs) == {"refnet-intake", "refnet-routing", "refnet-notify"}
    defaults = Settings()
    ports = {
        "refnet-intake": defaults.metrics_port,
        "refnet-routing": defaults.routing_metrics_port,
        "refnet-notify": defaults.notify_metrics_port,
    }
    for name, job in jobs.items():
        assert job.get("metrics_path", "/metrics") == "/metrics"
        targets = [t for sc in job["static_configs"] for t in sc["targets"]]
        assert any(t.endswith(f":{ports[name]}") for t in targets), (name, targets)
