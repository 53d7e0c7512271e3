"""Every service's /metrics parses as Prometheus text and carries the families the dashboards use,
with codes (never ids) as labels; GET /v1/admin/metrics gives the dashboard's figures to admins only."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from refnet_dev.embedded import EmbeddedPostgres
from shared.codes import NEED_CODES
from tests.conftest import SEEDED_TEMPLATE, clone_database
from tests.support.platform import Platform, referral_body, running_platform

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)


@pytest.fixture(scope="module")
def plat(
    pg_server: EmbeddedPostgres, seeded_template: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Platform, int, int]]:
    dsn = asyncio.run(clone_database(pg_server, "m", SEEDED_TEMPLATE))
    # Each service's metrics listener on a port of its own (the launcher picks free ones).
    with running_platform(dsn, tmp_path_factory.mktemp("metrics"), seeded_template) as p:
        yield p, int(p.env["REFNET_ROUTING_METRICS_PORT"]), int(p.env["REFNET_NOTIFY_METRICS_PORT"])


def _scrape(url: str, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            r = httpx.get(url, timeout=2)
            break
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    for family in families.values():
        for sample in family.samples:
            for key, value in sample.labels.items():
                assert not _UUID.search(value), f"an id as a label value: {sample.name}{{{key}={value!r}}}"
                assert key not in ("id", "referral_id", "partner_id", "case_manager_id", "staff_id")
    return families


def _value(families: dict[str, Any], family: str, sample: str, **labels: str) -> float:
    for s in families[family].samples:
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
            return float(s.value)
    raise AssertionError(f"no sample {sample}{labels} in {family}")


def _flow(p: Platform) -> str:
    """One referral through routing to acceptance, and one declined offer, so the figures move."""
    key = {"Authorization": f"Bearer {p.partner_key(0)}"}
    cms = {c["id"]: p.staff_token(c) for c in p.creds["case_managers"] if c["regions"] == ["south_la"]}
    ids = []
    for _ in range(2):
        r = httpx.post(p.base_url + "/v1/referrals", json=referral_body(), headers=key)
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    offers: dict[str, tuple[str, str]] = {}
    deadline = time.monotonic() + 15
    while len(offers) < 2 and time.monotonic() < deadline:
        for tok in cms.values():
            items = httpx.get(
                p.base_url + "/v1/assignments?state=offered", headers={"Authorization": f"Bearer {tok}"}
            ).json()["items"]
            for o in items:
                if o["referral_id"] in ids:
                    offers[o["referral_id"]] = (o["id"], tok)
        time.sleep(0.1)
    assert len(offers) == 2, offers
    aid, tok = offers[ids[0]]
    r = httpx.post(p.base_url + f"/v1/assignments/{aid}/accept", headers={"Authorization": f"Bearer {tok}"})
    assert r.status_code == 200, r.text
    aid, tok = offers[ids[1]]
    r = httpx.post(
        p.base_url + f"/v1/assignments/{aid}/decline",
        json={"reason": "capacity"},
        headers={"Authorization": f"Bearer {tok}"},
    )
    assert r.status_code == 200, r.text
    return str(ids[0])


def test_every_service_metrics_parse(plat: tuple[Platform, int, int]) -> None:
    p, routing_port, notify_port = plat
    _flow(p)

    intake_url = p.metrics_url("intake")
    assert intake_url is not None and not intake_url.startswith(p.base_url)
    intake = _scrape(intake_url)
    for name in (
        "refnet_http_requests",
        "refnet_http_request_duration_seconds",
        "refnet_referrals",
        "refnet_referrals_by_region",
        "refnet_outbox_pending_events",
        "refnet_outbox_oldest_age_seconds",
        "refnet_offers_open",
        "refnet_offers_expiring_within_1h",
        "refnet_case_manager_utilisation_ratio",
        "refnet_referral_duration_quantile_seconds",
    ):
        assert name in intake, f"intake lacks {name}"
    assert _value(intake, "refnet_referrals", "refnet_referrals", status="accepted") >= 1
    # Requests are counted by route template, never by the concrete path with its ids.
    assert (
        _value(
            intake,
            "refnet_http_requests",
            "refnet_http_requests_total",
            method="POST",
            route="/v1/referrals",
            status="201",
        )
        >= 2
    )
    routes = {s.labels["route"] for s in intake["refnet_http_requests"].samples}
    assert "/v1/assignments/{assignment_id}/accept" in routes

    routing = _scrape(f"http://127.0.0.1:{routing_port}/metrics")
    assert _value(routing, "refnet_routing_decision_seconds", "refnet_routing_decision_seconds_count") >= 3
    assert (
        _value(
            routing,
            "refnet_routing_time_to_assignment_seconds",
            "refnet_routing_time_to_assignment_seconds_count",
        )
        >= 2
    )
    assert (
        _value(routing, "refnet_routing_decisions", "refnet_routing_decisions_total", outcome="assigned") >= 2
    )
    assert "refnet_routing_offers_expired" in routing

    def declined() -> float:
        fams = _scrape(f"http://127.0.0.1:{routing_port}/metrics")
        return _value(fams, "refnet_routing_offers_declined", "refnet_routing_offers_declined_total")

    deadline = time.monotonic() + 10
    while declined() < 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert declined() >= 1

    # The consumer gauges are refreshed every few seconds.
    deadline = time.monotonic() + 10
    while True:
        routing = _scrape(f"http://127.0.0.1:{routing_port}/metrics")
        notify = _scrape(f"http://127.0.0.1:{notify_port}/metrics")
        have = [f for f in (routing, notify) if f["refnet_jetstream_consumer_pending_messages"].samples]
        if len(have) == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert (
        _value(
            routing,
            "refnet_jetstream_consumer_pending_messages",
            "refnet_jetstream_consumer_pending_messages",
            consumer="routing",
        )
        >= 0
    )
    assert (
        _value(
            notify,
            "refnet_jetstream_consumer_pending_messages",
            "refnet_jetstream_consumer_pending_messages",
            consumer="notify",
        )
        >= 0
    )
    assert "refnet_notify_deliveries" in notify
    assert (
        _value(
            notify,
            "refnet_notify_delivery_queue",
            "refnet_notify_delivery_queue",
            channel="webhook",
            state="dead",
        )
        == 0
    )


def test_admin_metrics_json(plat: tuple[Platform, int, int]) -> None:
    p, _, _ = plat
    url = p.base_url + "/v1/admin/metrics"
    admin = {"Authorization": f"Bearer {p.staff_token(p.creds['admins'][0])}"}
    # The previous test moved the figures; ask for fresh ones (the figures are cached a few seconds).
    r = httpx.get(url, params={"fresh": "true"}, headers=admin)
    assert r.status_code == 200, r.text
    f = r.json()
    assert f["referrals_by_status"].get("accepted", 0) >= 1
    assert f["referrals_total"] == sum(f["referrals_by_status"].values())
    assert f["referrals_by_region"].get("south_la", 0) >= 2
    assert sum(x["count"] for x in f["referrals_by_partner"]) == f["referrals_total"]
    assert len(f["last_24h"]) == 24
    assert sum(h["received"] for h in f["last_24h"]) >= 2
    tta, tacc = f["time_to_assignment"], f["time_to_acceptance"]
    assert tta["count"] >= 2 and tta["p50_seconds"] is not None and tta["p90_seconds"] >= tta["p50_seconds"]
    assert sum(b["count"] for b in tta["histogram"]) == tta["count"]
    assert tacc["count"] >= 1 and tacc["p50_seconds"] is not None
    assert f["offers"]["expiring_within_1h"] <= f["offers"]["open"]
    util = f["utilisation"]
    assert util["capacity"] == sum(c["capacity"] for c in util["case_managers"]) > 0
    assert {c["consumer"] for c in f["consumer_lag"]} == {"routing", "notify"}
    assert all(c["pending"] is not None for c in f["consumer_lag"])
    assert "failed" in f["deliveries"] and "dead" in f["deliveries"]
    assert f["outbox"]["pending"] >= 0
    # Aggregates only: no youth details anywhere in the figures.
    assert "Zyxwandra" not in r.text and "Quellmorrow" not in r.text
    # The window: 30 days unless asked; every region and every need code even at zero.
    assert (f["window"], f["window_days"], f["timeline_bucket"], len(f["timeline"])) == ("30d", 30, "day", 30)
    assert set(f["referrals_by_region"]) == {"south_la", "san_fernando_valley", "out_of_area"}
    assert f["referrals_by_region"]["san_fernando_valley"] == 0
    needs = {n["need"]: n for n in f["referrals_by_need"]}
    assert set(needs) == set(NEED_CODES)
    assert needs["housing"]["count"] >= 2 and needs["housing"]["tta_p50_seconds"] is not None
    assert needs["legal"] == {
        "need": "legal",
        "count": 0,
        "assigned": 0,
        "tta_p50_seconds": None,
        "tta_p90_seconds": None,
    }
    for window, days, bucket, points in (
        ("24h", 1, "hour", 24),
        ("7d", 7, "day", 7),
        ("all", None, "day", 1),
    ):
        w = httpx.get(url, params={"window": window, "fresh": "true"}, headers=admin).json()
        assert (w["window"], w["window_days"], w["timeline_bucket"]) == (window, days, bucket)
        assert len(w["timeline"]) == points, (window, w["timeline"])
        assert w["referrals_total"] == f["referrals_total"]  # every referral of this test is minutes old
    bad = httpx.get(url, params={"window": "1y"}, headers=admin)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "window"

    # Admins only.
    assert httpx.get(url).status_code == 401
    cm = p.creds["case_managers"][0]
    assert httpx.get(url, headers={"Authorization": f"Bearer {p.staff_token(cm)}"}).status_code == 403
    sup = p.creds["supervisors"][0]
    assert httpx.get(url, headers={"Authorization": f"Bearer {p.staff_token(sup)}"}).status_code == 403
    assert httpx.get(url, headers={"Authorization": f"Bearer {p.partner_key(0)}"}).status_code == 403


def test_public_port_hides_metrics_unless_asked(plat: tuple[Platform, int, int]) -> None:
    p, _, _ = plat
    # Off the public port by default: a 404 problem, whoever asks.
    r = httpx.get(p.base_url + "/metrics")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")
    admin = {"Authorization": f"Bearer {p.staff_token(p.creds['admins'][0])}"}
    assert httpx.get(p.base_url + "/metrics", headers=admin).status_code == 404
    # REFNET_METRICS_PUBLIC=true puts them back there (for a scraper behind a proxy).
    p.env["REFNET_METRICS_PUBLIC"] = "true"
    p.terminate("intake")
    p.restart("intake")
    try:
        families = _scrape(p.base_url + "/metrics")
        assert "refnet_referrals" in families
    finally:
        p.env.pop("REFNET_METRICS_PUBLIC")
        p.terminate("intake")
        p.restart("intake")
