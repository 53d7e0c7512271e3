"""`refnet demo simulate`: a synthetic two-year pilot played through the real API, then backdated.

Every referral, acceptance, first contact, intervention, outcome and closing goes through the running
platform's HTTP API as the demo partners and case managers, in the order the simulated pilot would have
produced them (so cases close and free capacity before later referrals arrive). The API stamps the
present, and it has no way to record the past on purpose; so afterwards, as the database operator, the
simulator moves each row's timestamps to its simulated moment (referrals, their status history, offers,
routing decisions, consents, follow-ups, interventions, outcomes) and records in ``dataset_provenance``
that the data is synthetic and backdated, which the evaluation report prints. The audit log is left as
it is: it shows when the simulation really ran.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import math
import random
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import httpx

from refnet_dev.demo import PARTNERS
from services.intake.evaluation.report import CohortRecord
from shared import audit
from shared.casework import FAMILIES, FOLLOWUP_MONTHS, add_months, local_date
from shared.codes import CONSENT_SCOPES, EVALUATION_SCOPE, SHARE_STATUS_SCOPE
from shared.db import Identity

__all__ = [
    "BASELINE_HAZARD",
    "MAX_YOUTH",
    "PLANTED",
    "Plan",
    "Summary",
    "cohort_records",
    "in_evaluation",
    "intake_log_hazard",
    "interval_probability",
    "plan_pilot",
    "simulate",
]

OPERATOR = Identity(role="system", actor_id="demo-simulate")
PROVENANCE_KIND = "synthetic_demo"

# Partner index (demo.PARTNERS order) → region they refer from, weight, referral settings they report.
_PARTNER_SETTINGS: tuple[tuple[str, float, tuple[tuple[str, float], ...]], ...] = (
    ("south_la", 0.24, (("youth_shelter", 0.7), ("homeless_services", 0.2), ("child_welfare", 0.1))),
    ("south_la", 0.16, (("health_clinic", 0.8), ("hospital", 0.2))),
    ("south_la", 0.14, (("school", 1.0),)),
    ("south_la", 0.2, (("street_outreach", 0.75), ("homeless_services", 0.25))),
    ("south_la", 0.12, (("legal_aid", 0.55), ("juvenile_justice", 0.45))),
    ("south_la", 0.14, (("emergency_room", 0.8), ("hospital", 0.2))),
    ("san_fernando_valley", 0.45, (("youth_shelter", 0.8), ("domestic_violence_center", 0.2))),
    ("san_fernando_valley", 0.25, (("refugee_services", 1.0),)),
    (
        "san_fernando_valley",
        0.3,
        (("community_organization", 0.5), ("faith_community", 0.2), ("child_welfare", 0.3)),
    ),
)
_ZIPS = {
    "south_la": ("90001", "90002", "90003", "90011", "90037", "90044", "90047", "90059", "90061", "90062"),
    "san_fernando_valley": ("91331", "91340", "91342", "91343", "91402", "91405", "91406", "91605", "91606"),
}
_NEEDS = (
    ("housing", 0.6),
    ("mental_health", 0.55),
    ("safety_planning", 0.4),
    ("basic_needs", 0.35),
    ("legal", 0.3),
    ("education", 0.3),
    ("employment", 0.22),
    ("substance_use", 0.2),
    ("medical", 0.2),
    ("family", 0.15),
    ("peer_support", 0.15),
    ("lgbtq_affirming", 0.08),
    ("immigration", 0.08),
)
# need → (intervention type, probability it is delivered when needed)
_SERVICE_FOR_NEED = {
    "housing": ("housing_placement", 0.6),
    "mental_health": ("therapy", 0.75),
    "substance_use": ("substance_use", 0.6),
    "legal": ("court_advocacy", 0.55),
    "immigration": ("t_visa_or_immigration_relief", 0.6),
    "education": ("school_enrollment", 0.6),
    "employment": ("job_training", 0.6),
    "medical": ("medical", 0.8),
    "basic_needs": ("basic_needs", 0.9),
    "safety_planning": ("safety_planning", 0.9),
    "family": ("family", 0.6),
    "peer_support": ("peer_support", 0.6),
    "lgbtq_affirming": ("lgbtq_affirming", 0.7),
}
# intervention type → (provider partner index by region or None for external, typical duration)
_PROVIDERS: dict[str, tuple[dict[str, int], str | None]] = {
    "therapy": ({"south_la": 1}, "PT50M"),
    "medical": ({"south_la": 1}, "PT30M"),
    "substance_use": ({"south_la": 1}, "PT1H"),
    "court_advocacy": ({"south_la": 4, "san_fernando_valley": 4}, "PT3H"),
    "vacatur_or_record_relief": ({"south_la": 4, "san_fernando_valley": 4}, "PT2H"),
    "t_visa_or_immigration_relief": ({"san_fernando_valley": 7, "south_la": 4}, "PT2H"),
    "housing_placement": ({"south_la": 0, "san_fernando_valley": 6}, None),
    "school_enrollment": ({"south_la": 2}, None),
    "mentoring": ({"south_la": 3, "san_fernando_valley": 8}, "PT1H"),
    "peer_support": ({"south_la": 3, "san_fernando_valley": 8}, "PT1H"),
    "case_management": ({}, "PT1H"),
    "safety_planning": ({}, "PT45M"),
    "job_training": ({}, "P30D"),
}
_CLOSE_REASONS = (
    ("goals_met", 0.48),
    ("youth_declined_services", 0.1),
    ("lost_contact", 0.14),
    ("moved_out_of_area", 0.08),
    ("transferred", 0.08),
    ("other", 0.05),
)
# Share of youth who say no to an optional consent scope when asked (case management is required).
# Most youth in a closed-loop programme agree that their referrer may follow the case and that their
# de-identified record may count in the evaluation; some do not, and the demo shows what that changes:
# their referrer sees "received" only and gets no status webhooks; they are in no evaluation output.
_CONSENT_DECLINES = {"evaluation": 0.05, "share_status_with_referrer": 0.1}
_COMPLETION = {"intake": 0.97, "m3": 0.86, "m6": 0.78, "m12": 0.7, "m24": 0.62}
MAX_YOUTH = 5000
# Youths played at once.
_CONCURRENCY = 128
# A large pilot gets a synthetic case manager per this many youth in a region (see _make_room).
_YOUTH_PER_CASE_MANAGER = 40


@dataclass
class Plan:
    """One simulated youth and everything that happens in their case, in simulated time."""

    n: int
    region: str
    partner: int
    zip: str
    age: int
    language: str
    needs: list[str]
    urgency: str
    intake: dict[str, Any]
    do_not_contact: bool
    received: datetime
    decline_first: bool
    accept_at: datetime
    contact_at: datetime | None = None
    withdraw_at: datetime | None = None
    close_at: datetime | None = None
    close_reason: str | None = None
    # (when, type, provider partner index or None, ISO 8601 duration or None)
    interventions: list[tuple[datetime, str, int | None, str | None]] = field(default_factory=list)
    # (when, follow-up point, source, {measure: value})
    outcomes: list[tuple[datetime, str, str, dict[str, str]]] = field(default_factory=list)
    # The consent scopes the youth gave (contract v1.1; see _CONSENT_DECLINES).
    scope: list[str] = field(default_factory=lambda: list(CONSENT_SCOPES))


def _pick(rnd: random.Random, weighted: tuple[tuple[str, float], ...]) -> str:
    return rnd.choices([v for v, _ in weighted], [w for _, w in weighted])[0]


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def plan_pilot(seed: int, south: int, valley: int, now: datetime, *, days: int = 730) -> list[Plan]:
    """The whole pilot, deterministic for a seed. Effects are plausible, not evidence: housing
    placement, therapy, legal advocacy, school or job training and mentoring each lower the odds of
    re-arrest and re-exploitation; prior arrests, foster care, early exploitation and mandated earlier
    services raise them; housing and school or work improve with the matching services."""
    rnd = random.Random(seed)
    plans: list[Plan] = []
    regions = ["south_la"] * south + ["san_fernando_valley"] * valley
    starts = sorted(now - timedelta(days=rnd.uniform(2, days)) for _ in regions)
    rnd.shuffle(regions)
    for n, (region, received) in enumerate(zip(regions, starts, strict=True)):
        partners = [(i, w) for i, (r, w, _) in enumerate(_PARTNER_SETTINGS) if r == region]
        partner = rnd.choices([i for i, _ in partners], [w for _, w in partners])[0]
        setting = _pick(rnd, _PARTNER_SETTINGS[partner][2])
        age = rnd.choices(range(12, 23), [2, 4, 7, 9, 10, 10, 9, 7, 5, 4, 3])[0]
        needs = [need for need, p in _NEEDS if rnd.random() < p] or ["safety_planning"]
        language = "es" if rnd.random() < 0.28 else "en"
        if region == "san_fernando_valley" and rnd.random() < 0.06:
            language = "ko"
            needs = sorted({*needs, "housing"})
        prior_arrests = min(8, int(rnd.expovariate(0.7)))
        intake = {
            "referral_setting": setting,
            "prior_services": _pick(rnd, (("none", 0.45), ("voluntary", 0.35), ("mandated", 0.2))),
            "age_first_exploited": max(8, min(age, int(rnd.gauss(14, 2)))),
            "education_level": _pick(
                rnd,
                (("primary", 0.15), ("some_high_school", 0.55), ("high_school", 0.2), ("some_college", 0.1))
                if age >= 16
                else (("primary", 0.6), ("some_high_school", 0.4)),
            ),
            "socioeconomic_status": _pick(rnd, (("very_low", 0.45), ("low", 0.4), ("moderate", 0.15))),
            "prior_arrests": prior_arrests,
            "foster_care_history": rnd.random() < 0.42,
        }
        urgency = "urgent" if rnd.random() < 0.15 else "routine"
        decline_first = rnd.random() < 0.08
        accept_at = received + timedelta(
            hours=rnd.uniform(0.3, 3) if urgency == "urgent" else rnd.uniform(1, 20)
        )
        if decline_first:
            accept_at += timedelta(hours=rnd.uniform(1, 4))
        plan = Plan(
            n=n,
            region=region,
            partner=partner,
            zip=rnd.choice(_ZIPS[region]),
            age=age,
            language=language,
            needs=needs,
            urgency=urgency,
            intake=intake,
            do_not_contact=rnd.random() < 0.05,
            received=received,
            decline_first=decline_first,
            accept_at=accept_at,
        )
        plans.append(plan)
        roll = rnd.random()
        if roll < 0.03:
            plan.withdraw_at = received + timedelta(days=rnd.uniform(0.3, 2))
            continue
        if roll < 0.09:
            # Accepted, never reached: closed for lost contact after some weeks of trying.
            plan.close_at = accept_at + timedelta(days=rnd.uniform(20, 50))
            plan.close_reason = "lost_contact"
            if plan.close_at > now:
                plan.close_at = plan.close_reason = None
            continue
        median = 0.8 if urgency == "urgent" else 2.5
        contact_at = accept_at + timedelta(days=rnd.lognormvariate(math.log(median), 0.9))
        if contact_at > now:
            continue
        plan.contact_at = contact_at
        close_at = contact_at + timedelta(days=rnd.uniform(90, 420))
        if close_at < now:
            plan.close_at = close_at
            plan.close_reason = "aged_out" if age >= 21 and rnd.random() < 0.3 else _pick(rnd, _CLOSE_REASONS)
        _plan_services(rnd, plan, now)
        _plan_outcomes(rnd, plan, now)
    # Consent scopes from a stream of their own, so a seed plans the same pilot as before they existed.
    asks = random.Random(f"consent-scopes-{seed}")
    for plan in plans:
        plan.scope = [s for s in CONSENT_SCOPES if asks.random() >= _CONSENT_DECLINES.get(s, 0.0)]
    return plans


def in_evaluation(plan: Plan) -> bool:
    """Whether the evaluation may include this youth: consent covers `evaluation` and was not withdrawn."""
    return EVALUATION_SCOPE in plan.scope and plan.withdraw_at is None


def _plan_services(rnd: random.Random, plan: Plan, now: datetime) -> None:
    assert plan.contact_at is not None
    end = min(plan.close_at or now, now)
    span = max(1.0, (end - plan.contact_at).total_seconds() / 86400)
    types = ["case_management"] * rnd.randint(2, 6)
    for need in plan.needs:
        service, p = _SERVICE_FOR_NEED[need]
        if rnd.random() < p:
            sessions = rnd.randint(2, 6) if service == "therapy" else 1
            types.extend([service] * sessions)
    if "legal" in plan.needs and plan.intake["prior_arrests"] > 0 and rnd.random() < 0.45:
        types.append("vacatur_or_record_relief")
    if rnd.random() < 0.42:
        types.extend(["mentoring"] * rnd.randint(1, 3))
    for kind in types:
        at = plan.contact_at + timedelta(days=rnd.uniform(0, min(span, 150)))
        if at >= end:
            continue
        providers, duration = _PROVIDERS.get(kind, ({}, None))
        provider = providers.get(plan.region) if rnd.random() < 0.8 else None
        if kind == "housing_placement":
            duration = f"P{rnd.randint(60, 365)}D"
        plan.interventions.append((at, kind, provider, duration))
    plan.interventions.sort(key=lambda x: x[0])


# The planted truth, on the scale the evaluation estimates it (services.intake.evaluation.analysis):
# log hazard ratios of a grouped-time proportional-hazards model of the first re-arrest or return to
# exploitation. Time runs from first contact; each follow-up interval (from the previous follow-up at
# which recidivism was known, to this one) has the probability 1 - exp(-dH * exp(x.b)), where dH is the
# baseline cumulative hazard of the scheduled periods it spans and x holds the intake variables and the
# intervention families received (first delivery) before the interval began. Terms not named are 0.
PLANTED: dict[str, float] = {
    "family:housing": -1.2,
    "family:therapy": -0.75,
    "family:legal": -0.5,
    "family:education_work": -0.4,
    "family:mentoring": -0.45,
    "prior_services:mandated": 0.6,
    "prior_arrests:1": 0.2,
    "prior_arrests:2-3": 0.45,
    "prior_arrests:4+": 0.9,
    "foster_care_history": 0.35,
    "age_first_exploited:under 14": 0.3,
}
# Baseline cumulative hazard of each scheduled period (contact to 3 months, 3 to 6, 6 to 12, 12 to 24).
BASELINE_HAZARD: dict[str, float] = {"m3": 0.22, "m6": 0.18, "m12": 0.3, "m24": 0.4}
# Which intervention types make up each family (as shared.casework.FAMILIES).
_FAMILY_TYPES = dict(FAMILIES)
_PARTNER_NAMES = tuple(name for name, _ in PARTNERS)


def _arrest_band(n: int) -> str:
    return "0" if n == 0 else "1" if n == 1 else "2-3" if n <= 3 else "4+"


def intake_log_hazard(intake: dict[str, Any]) -> float:
    """The planted log relative hazard of the intake variables (pure)."""
    x: float = 0.0
    x += PLANTED.get(f"prior_services:{intake['prior_services']}", 0.0)
    x += PLANTED.get(f"prior_arrests:{_arrest_band(intake['prior_arrests'])}", 0.0)
    x += PLANTED["foster_care_history"] * float(bool(intake["foster_care_history"]))
    x += PLANTED["age_first_exploited:under 14"] * float(int(intake["age_first_exploited"]) < 14)
    return float(x)


def families_before(interventions: list[tuple[datetime, str, int | None, str | None]], day: date) -> set[str]:
    """Families with a first delivery on a local date before ``day`` (so it precedes the interval)."""
    return {
        family
        for at, kind, _, _ in interventions
        if local_date(at) < day
        for family, types in _FAMILY_TYPES.items()
        if kind in types
    }


def interval_probability(intake: dict[str, Any], families: set[str], periods: list[str]) -> float:
    """Probability of a first recidivism within an interval spanning ``periods`` (pure)."""
    xb = intake_log_hazard(intake) + sum(PLANTED.get(f"family:{f}", 0.0) for f in families)
    dh = sum(BASELINE_HAZARD[p] for p in periods)
    return 1 - math.exp(-dh * math.exp(xb))


def _plan_outcomes(rnd: random.Random, plan: Plan, now: datetime) -> None:
    assert plan.contact_at is not None
    got = {kind for _, kind, _, _ in plan.interventions}
    intake = plan.intake
    first = local_date(plan.contact_at)
    disengaged = plan.close_reason in ("lost_contact", "moved_out_of_area", "youth_declined_services")
    # The recidivism chain: the last follow-up at which it was known, and the periods since then.
    known_at, pending, relapsed = first, [], False
    for i, (point, months) in enumerate(FOLLOWUP_MONTHS.items()):
        due = add_months(first, months)
        at = datetime(due.year, due.month, due.day, 17, tzinfo=UTC) + timedelta(days=rnd.uniform(-5, 12))
        at = max(at, plan.contact_at + timedelta(hours=1))
        if at > now:
            break
        if point != "intake":
            pending.append(point)
        completion = _COMPLETION[point]
        if disengaged and plan.close_at is not None and at > plan.close_at:
            completion *= 0.3
        if rnd.random() > completion:
            continue

        def maybe(value: str) -> str:
            return "unknown" if rnd.random() < 0.04 else value

        later = i > 0
        housed = rnd.random() < (
            0.25
            if not later
            else 0.28 + 0.38 * ("housing_placement" in got) + 0.05 * i + 0.05 * ("housing" in got)
        )
        active = rnd.random() < (
            0.3 if not later else 0.3 + 0.3 * bool(got & {"school_enrollment", "job_training"}) + 0.04 * i
        )
        safe = rnd.random() < (
            0.3 if not later else 0.45 + 0.15 * ("therapy" in got) + 0.1 * housed + 0.03 * i
        )
        status = {
            "housing_stability": maybe(
                "stable" if housed else ("homeless" if rnd.random() < 0.4 else "unstable")
            ),
            "in_school_or_work": maybe(
                ("school" if plan.age < 18 else rnd.choice(["work", "work", "both"])) if active else "neither"
            ),
            "safety": maybe("safe" if safe else ("unsafe" if rnd.random() < 0.35 else "at_risk")),
        }
        if not later:
            # The intake interview asks about the year before the referral (a baseline, not an outcome).
            arrested = rnd.random() < _sigmoid(-0.9 + 0.35 * min(intake["prior_arrests"], 4))
            plan.outcomes.append(
                (at, point, "youth_self_report", {**status, "re_arrest": maybe("yes" if arrested else "no")})
            )
            continue
        if rnd.random() < 0.04:
            # Neither could be established at this follow-up: the interval runs on to the next one.
            arrest_value = exploit_value = "unknown"
        else:
            p = interval_probability(intake, families_before(plan.interventions, known_at), pending)
            event = rnd.random() < p
            if relapsed:
                event = rnd.random() < p  # later episodes: the evaluation looks at the first only
            relapsed = relapsed or event
            kind = rnd.random()
            arrest_value = "yes" if event and kind < 0.6 else "no"
            exploit_value = "yes" if event and kind >= 0.4 else "no"
            known_at, pending = local_date(at), []
        self_report = _pick(
            rnd, (("youth_self_report", 0.7), ("case_manager_observation", 0.2), ("caregiver_report", 0.1))
        )
        plan.outcomes.append((at, point, self_report, {**status, "return_to_exploitation": exploit_value}))
        justice = "justice_system_record" if rnd.random() < 0.4 else self_report
        arrest = {"re_arrest": arrest_value}
        if justice == self_report:
            plan.outcomes[-1][3].update(arrest)
        else:
            plan.outcomes.append((at, point, justice, arrest))


def cohort_records(plans: list[Plan]) -> list[CohortRecord]:
    """The evaluation's view of a planned pilot, as the database would hold it had every step gone
    through the API unchanged (pure: the recovery test runs the analysis on it without servers)."""
    out = []
    for p in plans:
        status = (
            "withdrawn"
            if p.withdraw_at
            else "closed"
            if p.close_at
            else "engaged"
            if p.contact_at
            else "accepted"
        )
        counts: Counter[str] = Counter(kind for _, kind, _, _ in p.interventions)
        firsts: dict[str, date] = {}
        for at, kind, _, _ in p.interventions:
            day = local_date(at)
            firsts[kind] = min(firsts.get(kind, day), day)
        outcomes: dict[str, dict[str, str]] = {}
        dates: dict[str, dict[str, date]] = {}
        for at, point, _, measures in p.outcomes:
            outcomes.setdefault(point, {}).update(measures)
            dates.setdefault(point, {}).update({m: local_date(at) for m in measures})
        out.append(
            CohortRecord(
                referral_id=str(uuid.UUID(int=p.n + 1)),
                youth_key=f"youth-{p.n}",
                received_at=p.received,
                region=p.region,
                partner=_PARTNER_NAMES[p.partner] if p.partner < len(_PARTNER_NAMES) else None,
                age_years=p.age,
                urgency=p.urgency,
                needs=p.needs,
                status=status,
                close_reason=p.close_reason,
                intake=p.intake,
                engaged_at=p.contact_at,
                closed_at=p.close_at,
                interventions=dict(counts),
                intervention_dates=firsts,
                outcomes=outcomes,
                outcome_dates=dates,
            )
        )
    return out


# --------------------------------------------------------------------------- playing it through the API


class _Api:
    """The platform's HTTP API as the demo's partners and staff, polite to rate limits: requests with
    one credential are paced just under intake's default limit (1,200 a minute per credential), so
    many concurrent youths share each case manager's budget instead of running into 429s."""

    def __init__(self, client: httpx.AsyncClient, creds: dict[str, Any], per_minute: int = 1100) -> None:
        self.client = client
        self.creds = creds
        self.tokens: dict[str, str] = {}
        self.calls = 0
        self._interval = 60.0 / per_minute if per_minute > 0 else 0.0
        self._next: dict[str, float] = {}
        self._logins: dict[str, asyncio.Lock] = {}

    async def login(self, person: dict[str, Any], stale: str | None = None) -> str:
        async with self._logins.setdefault(person["id"], asyncio.Lock()):
            token = self.tokens.get(person["id"])
            if token is not None and token != stale:
                return token  # another task signed in meanwhile
            r = await self.call(
                "POST", "/v1/auth/token", None, {"email": person["email"], "password": person["password"]}
            )
            token = str(r.json()["access_token"])
            self.tokens[person["id"]] = token
            return token

    async def _pace(self, key: str) -> None:
        now = time.monotonic()
        slot = max(now, self._next.get(key, now))
        self._next[key] = slot + self._interval
        if slot > now:
            await asyncio.sleep(slot - now)

    async def call(
        self,
        method: str,
        url: str,
        who: dict[str, Any] | str | None,
        body: Any = None,
        ok: tuple[int, ...] = (200, 201),
    ) -> httpx.Response:
        for attempt in range(30):
            headers = {}
            token = None
            if isinstance(who, str):
                headers["Authorization"] = f"Bearer {who}"
            elif who is not None:
                token = self.tokens.get(who["id"]) or await self.login(who)
                headers["Authorization"] = f"Bearer {token}"
            await self._pace(who if isinstance(who, str) else who["id"] if who else "anonymous")
            self.calls += 1
            r = await self.client.request(method, url, json=body, headers=headers)
            if r.status_code in (429, 503):
                await asyncio.sleep(min(10.0, float(r.headers.get("retry-after", "1"))))
                continue
            if r.status_code == 401 and isinstance(who, dict) and attempt < 2:
                await self.login(who, stale=token)  # the short-lived staff token ran out
                continue
            if r.status_code not in ok:
                raise RuntimeError(f"{method} {url} -> {r.status_code}: {r.text[:300]}")
            return r
        raise RuntimeError(f"{method} {url}: still throttled after retries")


@dataclass
class _Case:
    plan: Plan
    referral_id: str
    status: str
    cm: dict[str, Any] | None = None
    offers: int = 0
    # Simulated moments the API cannot know (it records the present).
    assigned_at: datetime | None = None
    unroutable_at: datetime | None = None
    withdrawn_at: datetime | None = None
    gen: int = 0
    interventions: list[tuple[str, datetime]] = field(default_factory=list)
    outcomes: list[tuple[str, datetime]] = field(default_factory=list)


@dataclass(frozen=True)
class Summary:
    referrals: int
    statuses: dict[str, int]
    interventions: int
    outcomes: int
    api_calls: int
    seconds: float


def _referral_body(plan: Plan, today: date, now: datetime) -> dict[str, Any]:
    years_ago = (now - plan.received).days / 365.25
    born = today - timedelta(days=int((plan.age + years_ago) * 365.25) + 40 + plan.n % 200)
    youth: dict[str, Any] = {
        # Obviously synthetic: nobody could mistake these for real youth.
        "first_name": f"Demo{plan.n:03d}",
        "last_name": "Synthetic",
        "date_of_birth": born.isoformat(),
    }
    if plan.do_not_contact:
        youth["do_not_contact"] = True
    return {
        "youth": youth,
        "location": {"zip": plan.zip},
        "needs": plan.needs,
        "language": plan.language,
        "urgency": plan.urgency,
        "consent": {
            "obtained_at": (now - timedelta(hours=2)).isoformat(),
            "expires_at": (now + timedelta(days=3 * 365)).isoformat(),
            "method": "written",
            "scope": plan.scope,
        },
        "intake": plan.intake,
        "notes": "Synthetic demo referral generated by `refnet demo simulate`.",
    }


class _OfferBoard:
    """Who was offered which referral: one poller reads every case manager's offered assignments for
    all the referrals waiting at once (instead of each referral scanning every case manager)."""

    def __init__(self, api: _Api) -> None:
        self.api = api
        self.waiting: dict[str, asyncio.Future[tuple[dict[str, Any], str]]] = {}
        self.task: asyncio.Task[None] | None = None
        # Offers already answered: a page read before the answer may still list them.
        self.answered: set[str] = set()

    async def wait(self, rid: str, seconds: float) -> tuple[dict[str, Any], str] | None:
        future = self.waiting.get(rid)
        if future is None or future.done():
            future = self.waiting[rid] = asyncio.get_running_loop().create_future()
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._poll())
        try:
            return await asyncio.wait_for(asyncio.shield(future), seconds)
        except TimeoutError:
            return None
        finally:
            if future.done():
                self.waiting.pop(rid, None)

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    async def _poll(self) -> None:
        while any(not f.done() for f in self.waiting.values()):
            pages = await asyncio.gather(
                *(
                    self.api.call("GET", "/v1/assignments?state=offered", cm)
                    for cm in self.api.creds["case_managers"]
                )
            )
            for cm, page in zip(self.api.creds["case_managers"], pages, strict=True):
                for item in page.json()["items"]:
                    if str(item["id"]) in self.answered:
                        continue
                    future = self.waiting.get(item["referral_id"])
                    if future is not None and not future.done():
                        future.set_result((cm, str(item["id"])))
            # Each round spends one request of every case manager's rate budget (and the server's time):
            # twice a second for the demo network, less often for a large synthetic one.
            await asyncio.sleep(max(0.5, len(self.api.creds["case_managers"]) / 40))


async def _refer(api: _Api, board: _OfferBoard, plan: Plan, now: datetime) -> _Case:
    partner = api.creds["partners"][plan.partner]
    r = await api.call(
        "POST", "/v1/referrals", partner["api_key"], _referral_body(plan, local_date(now), now), ok=(201,)
    )
    rid = str(r.json()["id"])
    case = _Case(plan, rid, "received")

    async def status() -> str:
        view = await api.call("GET", f"/v1/referrals/{rid}", partner["api_key"])
        return str(view.json()["status"])

    async def offered() -> tuple[dict[str, Any], str] | None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            found = await board.wait(rid, 2.0)
            if found is not None:
                return found
            case.status = await status()
            if case.status not in ("received", "assigned"):
                return None  # unroutable (waits in the supervisor queue) or withdrawn
        return None

    routed_at = plan.received + timedelta(minutes=2)
    found = await offered()
    if found is None:
        if case.status == "unroutable":
            case.unroutable_at = routed_at
        return case
    case.assigned_at = routed_at
    if plan.decline_first:
        case.offers += 1
        board.answered.add(found[1])
        await api.call(
            "POST", f"/v1/assignments/{found[1]}/decline", found[0], {"reason": "caseload full this week"}
        )
        found = await offered()
        if found is None:
            if case.status == "unroutable":
                case.unroutable_at = plan.received + timedelta(hours=2)
            return case
    cm, aid = found
    case.offers += 1
    board.answered.add(aid)
    await api.call("POST", f"/v1/assignments/{aid}/accept", cm)
    case.cm, case.status = cm, "accepted"
    return case


def _push_case_events(heap: list[Any], plan: Plan, gen: int, seq: Any) -> None:
    """Queue a case's events after acceptance (``gen`` lets a re-planned case drop its old ones)."""
    if plan.contact_at:
        heapq.heappush(heap, (plan.contact_at, 2, plan.n, next(seq), gen, "contact", None))
    for at, kind, prov, dur in plan.interventions:
        heapq.heappush(heap, (at, 3, plan.n, next(seq), gen, "intervention", (kind, prov, dur)))
    for at, point, src, m in plan.outcomes:
        heapq.heappush(heap, (at, 4, plan.n, next(seq), gen, "outcome", (point, src, m)))
    if plan.close_at:
        heapq.heappush(heap, (plan.close_at, 5, plan.n, next(seq), gen, "close", None))


async def _play(api: _Api, plans: list[Plan], now: datetime, log: Callable[[str], None]) -> list[_Case]:
    """Play every youth's events in their simulated order, many youths at once (started in the order
    they were referred). Youths do not depend on each other once the case managers have room for
    everyone (``_make_room``); a referral that still finds nobody waits in the supervisor queue."""
    cases: dict[int, _Case] = {}
    board = _OfferBoard(api)
    gate = asyncio.Semaphore(_CONCURRENCY)
    progress = {"done": 0}

    async def youth(plan: Plan) -> None:
        seq = itertools.count()
        heap: list[Any] = [(plan.received, 0, plan.n, next(seq), 0, "refer", None)]
        if plan.withdraw_at:
            heap.append((plan.withdraw_at, 1, plan.n, next(seq), 0, "withdraw", None))
        _push_case_events(heap, plan, 0, seq)
        heapq.heapify(heap)
        async with gate:
            while heap:
                await _event(api, board, plans, cases, now, heapq.heappop(heap))
        progress["done"] += 1
        if progress["done"] % 250 == 0:
            log(f"  {progress['done']}/{len(plans)} youth played")

    try:
        await asyncio.gather(*(youth(p) for p in sorted(plans, key=lambda p: p.received)))
    finally:
        await board.close()
    return [cases[p.n] for p in plans if p.n in cases]


async def _event(
    api: _Api, board: _OfferBoard, plans: list[Plan], cases: dict[int, _Case], now: datetime, event: Any
) -> None:
    at, _, n, _, gen, kind, extra = event
    plan = plans[n]
    partners = api.creds["partners"]
    if kind == "refer":
        cases[n] = await _refer(api, board, plan, now)
        return
    case = cases[n]
    rid = case.referral_id
    if kind == "withdraw":
        if case.status in ("received", "assigned", "accepted", "unroutable"):
            await api.call(
                "POST", f"/v1/referrals/{rid}/consent/withdraw", partners[plan.partner]["api_key"], {}
            )
            case.status = "withdrawn"
            case.withdrawn_at = at
        return
    if case.cm is None or case.status == "withdrawn" or gen != case.gen:
        return
    if kind == "contact" and case.status == "accepted":
        await api.call("POST", f"/v1/referrals/{rid}/contact", case.cm, {})
        case.status = "engaged"
    elif kind == "intervention" and case.status == "engaged":
        itype, prov, dur = extra
        body = {
            "type": itype,
            "delivered_on": local_date(datetime.now(UTC)).isoformat(),
            "provider": partners[prov]["id"] if prov is not None else "external",
        }
        if dur:
            body["duration"] = dur
        r = await api.call("POST", f"/v1/referrals/{rid}/interventions", case.cm, body, ok=(201,))
        case.interventions.append((str(r.json()["id"]), at))
    elif kind == "outcome" and case.status in ("engaged", "closed"):
        point, source, measures = extra
        today = local_date(datetime.now(UTC)).isoformat()
        body = {"followup": point, "observed_on": today, "source": source, **measures}
        r = await api.call("POST", f"/v1/referrals/{rid}/outcomes", case.cm, body, ok=(201,))
        case.outcomes.extend((str(o["id"]), at) for o in r.json()["items"])
    elif kind == "close" and case.status in ("accepted", "engaged"):
        await api.call("POST", f"/v1/referrals/{rid}/close", case.cm, {"reason": plan.close_reason})
        case.status = "closed"


async def _make_room(
    conn: asyncpg.Connection, creds: dict[str, Any], plans: list[Plan], now: datetime
) -> int:
    """As the operator, size the demo network to the simulated caseload: the demo has 7 case managers
    with 12 places each, so a pilot of thousands would queue almost every referral, and each case
    manager's requests are rate-limited (1,200 a minute per credential) — so a large pilot gets one
    more synthetic case manager per ``_YOUTH_PER_CASE_MANAGER`` youth in a region (all needs, English
    and Spanish; added to ``creds`` for this run only), and every case manager room for its share of the
    peak caseload. Returns the capacity set."""
    from refnet_dev.demo import _email  # one spelling of demo addresses
    from shared.codes import NEED_CODES
    from shared.credentials import hash_password

    for region in ("south_la", "san_fernando_valley"):
        wanted = math.ceil(sum(p.region == region for p in plans) / _YOUTH_PER_CASE_MANAGER)
        have = [cm for cm in creds["case_managers"] if region in cm["regions"]]
        for k in range(len(have), wanted):
            sid, password = uuid.uuid4(), secrets.token_urlsafe(12)
            name = f"Synthetic Case Manager {region} {k + 1}"
            email = _email(name)
            await conn.execute(
                "INSERT INTO staff (id, email, display_name, role, region, password_hash)"
                " VALUES ($1, $2, $3, 'case_manager', $4, $5)",
                sid,
                email,
                name,
                region,
                hash_password(password),
            )
            await conn.execute(
                "INSERT INTO case_managers (staff_id, regions, needs, languages, capacity, specialisms)"
                " VALUES ($1, $2, $3, $4, 12, '{}')",
                sid,
                [region],
                list(NEED_CODES),
                ["en", "es"],
            )
            creds["case_managers"].append(
                {"id": str(sid), "email": email, "password": password, "regions": [region], "capacity": 12}
            )
    peak = 0
    for region in ("south_la", "san_fernando_valley"):
        moments = []
        for p in plans:
            if p.region == region and not p.withdraw_at:
                moments += [(p.received, 1), (p.close_at or now, -1)]
        open_cases = 0
        for _, step in sorted(moments):
            open_cases += step
            peak = max(peak, open_cases)
    managers = await conn.fetchval(
        "SELECT min(n) FROM (SELECT count(*) AS n FROM case_managers c, unnest(c.regions) AS r GROUP BY r) x"
    )
    capacity = max(12, math.ceil(1.5 * peak / max(1, managers or 1)))
    await conn.execute("UPDATE case_managers SET capacity = greatest(capacity, $1)", capacity)
    return int(capacity)


# --------------------------------------------------------------------------- backdating, as the operator


async def _backdate(conn: asyncpg.Connection, cases: list[_Case], now: datetime) -> None:
    today = local_date(now)
    for case in cases:
        p = case.plan
        rid = uuid.UUID(case.referral_id)
        assigned = case.assigned_at
        accepted = p.accept_at if case.cm is not None else None
        engaged = p.contact_at if case.status in ("engaged", "closed") and p.contact_at else None
        closed = p.close_at if case.status == "closed" else None
        withdrawn = case.withdrawn_at
        moments = (p.received, assigned, case.unroutable_at, accepted, engaged, closed, withdrawn)
        last = max(t for t in moments if t is not None)
        await conn.execute(
            "UPDATE referrals SET received_at = $2, assigned_at = CASE WHEN assigned_at IS NULL THEN NULL ELSE $3::timestamptz END,"
            " accepted_at = CASE WHEN accepted_at IS NULL THEN NULL ELSE $4::timestamptz END,"
            " engaged_at = CASE WHEN engaged_at IS NULL THEN NULL ELSE $5::timestamptz END,"
            " closed_at = CASE WHEN closed_at IS NULL THEN NULL ELSE $6::timestamptz END, updated_at = $7, age_years = $8,"
            " pii_shredded_at = CASE WHEN pii_shredded_at IS NULL THEN NULL ELSE $9::timestamptz END WHERE id = $1",
            rid,
            p.received,
            assigned,
            accepted,
            engaged,
            closed,
            last,
            p.age,
            withdrawn,
        )
        await conn.execute(
            "UPDATE referral_transitions SET at = coalesce(CASE to_status WHEN 'assigned' THEN $2::timestamptz"
            " WHEN 'unroutable' THEN $7::timestamptz WHEN 'accepted' THEN $3::timestamptz"
            " WHEN 'engaged' THEN $4::timestamptz WHEN 'closed' THEN $5::timestamptz"
            " WHEN 'withdrawn' THEN $6::timestamptz END, at) WHERE referral_id = $1",
            rid,
            assigned,
            accepted,
            engaged,
            closed,
            withdrawn,
            case.unroutable_at,
        )
        if assigned is not None:
            await conn.execute(
                "UPDATE assignments SET offered_at = $2::timestamptz + (attempt - 1) * interval '90 minutes',"
                " respond_by = $2 + (attempt - 1) * interval '90 minutes' + interval '4 hours',"
                " responded_at = CASE state WHEN 'accepted' THEN $3::timestamptz WHEN 'declined'"
                " THEN $2 + (attempt - 1) * interval '90 minutes' + interval '1 hour'"
                " ELSE coalesce($4::timestamptz, responded_at) END WHERE referral_id = $1",
                rid,
                assigned,
                accepted or assigned,
                withdrawn,
            )
            await conn.execute(
                "UPDATE routing_decisions SET decided_at = $2 WHERE referral_id = $1", rid, assigned
            )
        await conn.execute(
            "UPDATE consents SET obtained_at = $2, expires_at = $3, withdrawn_at = CASE WHEN withdrawn_at IS NULL"
            " THEN NULL ELSE $4::timestamptz END WHERE referral_id = $1",
            rid,
            p.received - timedelta(hours=3),
            p.received + timedelta(days=3 * 365),
            withdrawn,
        )
        if engaged is not None:
            first = local_date(engaged)
            done = {point: at for at, point, _, _ in p.outcomes}
            for point, months in FOLLOWUP_MONTHS.items():
                due = add_months(first, months)
                completed = done.get(point) if case.outcomes else None
                # Reminders for follow-ups long past were (as far as the story goes) sent at the time.
                reminded = datetime(due.year, due.month, due.day, 16, tzinfo=UTC) - timedelta(days=7)
                await conn.execute(
                    "UPDATE followups SET due_on = $3::date, completed_at = CASE WHEN completed_at IS NULL THEN NULL"
                    " ELSE $4::timestamptz END, reminded_at = CASE WHEN $3::date < $6::date - 7"
                    " THEN coalesce(reminded_at, $5::timestamptz)"
                    " ELSE reminded_at END WHERE referral_id = $1 AND point = $2",
                    rid,
                    point,
                    due,
                    completed,
                    reminded,
                    today,
                )
        await _backdate_protocol(conn, case, accepted, now)
        for iid, at in case.interventions:
            await conn.execute(
                "UPDATE interventions SET delivered_on = $2, recorded_at = $3 WHERE id = $1",
                uuid.UUID(iid),
                local_date(at),
                at + timedelta(hours=2),
            )
        for oid, at in case.outcomes:
            await conn.execute(
                "UPDATE outcomes SET observed_on = $2, recorded_at = $3 WHERE id = $1",
                uuid.UUID(oid),
                local_date(at),
                at + timedelta(hours=1),
            )


# The child-protection protocol's story (issue 18) for a simulated minor whose case was accepted: when
# each step was done, in minutes after receipt (low, high); a few land after their deadline.
_PROTOCOL_STORY: dict[str, tuple[float, float]] = {
    "hotline_report": (5, 90),
    "advocate_response": (20, 130),  # 90-minute clock: some late
    "written_report": (4 * 60, 40 * 60),  # 36-hour clock: some late
    "medical_exam_offered": (6 * 60, 80 * 60),  # 72-hour clock: some late
    "mdt_meeting": (3 * 24 * 60, 21 * 24 * 60),
}
_EXAM_OUTCOMES = ("accepted", "accepted", "accepted", "declined", "not_applicable")


async def _backdate_protocol(
    conn: asyncpg.Connection, case: _Case, accepted: datetime | None, now: datetime
) -> None:
    """Move a simulated minor's protocol clocks to its backdated receipt and play the steps: done by its
    case manager (some late) once the case was accepted. Deadlines passed long ago count as escalated at
    the time, so a freshly simulated pilot does not alert every supervisor at once."""
    p = case.plan
    rid = uuid.UUID(case.referral_id)
    await conn.execute(
        "UPDATE protocol_steps SET due_at = $2::timestamptz + make_interval(mins => clock_minutes)"
        " WHERE referral_id = $1 AND clock_from = 'receipt' AND clock_minutes IS NOT NULL",
        rid,
        p.received,
    )
    if accepted is not None and case.cm is not None:
        rnd = random.Random(case.referral_id)
        for code, (low, high) in _PROTOCOL_STORY.items():
            done = p.received + timedelta(minutes=rnd.uniform(low, high))
            if done >= now:
                continue
            await conn.execute(
                "UPDATE protocol_steps SET completed_at = $3, completed_by = $4, completed_role = 'case_manager',"
                " outcome = CASE WHEN cardinality(outcomes) > 0 THEN $5 END"
                " WHERE referral_id = $1 AND code = $2 AND completed_at IS NULL",
                rid,
                code,
                done,
                uuid.UUID(case.cm["id"]),
                rnd.choice(_EXAM_OUTCOMES),
            )
    await conn.execute(
        "UPDATE protocol_steps SET escalated_at = due_at WHERE referral_id = $1 AND due_at < $2"
        " AND (completed_at IS NULL OR completed_at > due_at)",
        rid,
        now - timedelta(hours=1),
    )


async def simulate(
    base_url: str,
    creds: dict[str, Any],
    operator_dsn: str,
    *,
    south: int = 100,
    valley: int = 20,
    seed: int = 2026,
    log: Callable[[str], None] = print,
) -> Summary:
    """Play a synthetic pilot through the API at ``base_url``, then backdate it as the operator."""
    if south < 0 or valley < 0 or not 0 < south + valley <= MAX_YOUTH:
        raise ValueError(f"--south and --valley must add up to 1 to {MAX_YOUTH:,} youth")
    started = time.monotonic()
    conn = await asyncpg.connect(operator_dsn)
    try:
        existing = await conn.fetchval(
            "SELECT count(*) FROM dataset_provenance WHERE kind = $1", PROVENANCE_KIND
        )
        if existing:
            raise RuntimeError("this database already holds a simulated pilot; use a fresh data dir")
        now = datetime.now(UTC)
        plans = plan_pilot(seed, south, valley, now)
        creds = {**creds, "case_managers": list(creds["case_managers"])}
        demo_managers = len(creds["case_managers"])
        capacity = await _make_room(conn, creds, plans, now)
        added = len(creds["case_managers"]) - demo_managers
        log(f"simulating {len(plans)} youth over two years through {base_url} ...")
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
            api = _Api(client, creds)
            cases = await _play(api, plans, now, log)
        log(f"played {api.calls} API calls; backdating timestamps as the database operator ...")
        async with conn.transaction():
            await conn.execute(
                "SELECT set_config('app.role', 'system', true), set_config('app.actor_id', $1, true)",
                OPERATOR.actor_id,
            )
            await _backdate(conn, cases, now)
            note = (
                f"Synthetic demo data: {len(plans)} fictitious youth ({south} South LA, {valley} San Fernando"
                f" Valley) generated by `refnet demo simulate` (seed {seed}) on {now:%Y-%m-%d} through the"
                " real API, then backdated over the two years before that date directly in the database by"
                " the operator (the API only records the present); the demo network was given"
                f" {added} synthetic case managers more and room for {capacity} cases each. Effects of interventions and intake characteristics are"
                " planted by the simulator (refnet_dev.simulate.PLANTED) to test the evaluation; nothing"
                " here describes real people or real results."
                f" Consent: {sum(EVALUATION_SCOPE not in p.scope for p in plans)} simulated youth declined"
                " the evaluation and are left out of it, as are those who withdrew consent;"
                f" {sum(SHARE_STATUS_SCOPE not in p.scope for p in plans)} did not let their referrer"
                " follow the case."
            )
            await conn.execute(
                "INSERT INTO dataset_provenance (kind, note) VALUES ($1, $2)", PROVENANCE_KIND, note
            )
            statuses = Counter(c.status for c in cases)
            summary = Summary(
                referrals=len(cases),
                statuses=dict(statuses),
                interventions=sum(len(c.interventions) for c in cases),
                outcomes=sum(len(c.outcomes) for c in cases),
                api_calls=api.calls,
                seconds=round(time.monotonic() - started, 1),
            )
            await audit.record(
                conn,
                OPERATOR,
                "demo.simulate",
                "dataset",
                "",
                {
                    "seed": seed,
                    "referrals": summary.referrals,
                    "interventions": summary.interventions,
                    "outcomes": summary.outcomes,
                },
            )
    finally:
        await conn.close()
    return summary
