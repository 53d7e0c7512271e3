"""k-anonymity for the row-level export: quasi-identifiers generalised until each combination is shared; pure.

The quasi-identifiers are what someone who knows a youth could match a row on: region, referral month,
age band and referral setting. Rows whose combination is shared by fewer than ``K_ANONYMITY`` youth are
generalised step by step (month to quarter, setting to a group of settings, to half-year and wider age
bands, to year, ...), only those rows and only as far as needed (local recoding); every generalised row
names the fields it had coarsened in ``generalised``, so an analyst knows which rows carry coarser
values. Values of different steps never coincide (a quarter is never read as a month), so each
published combination really is shared by at least ``K_ANONYMITY`` youth.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any, Protocol

__all__ = ["ANY", "K_ANONYMITY", "QUASI_IDENTIFIERS", "SETTING_GROUPS", "generalise"]

K_ANONYMITY = 5
ANY = "*"
QUASI_IDENTIFIERS = ("region", "referral_month", "age_band", "referral_setting")

SETTING_GROUPS = {
    "emergency_room": "health",
    "hospital": "health",
    "health_clinic": "health",
    "child_welfare": "child_welfare_or_justice",
    "juvenile_justice": "child_welfare_or_justice",
    "legal_aid": "child_welfare_or_justice",
    "domestic_violence_center": "shelter_or_outreach",
    "youth_shelter": "shelter_or_outreach",
    "street_outreach": "shelter_or_outreach",
    "homeless_services": "shelter_or_outreach",
    "faith_community": "community_or_school",
    "community_organization": "community_or_school",
    "school": "community_or_school",
    "refugee_services": "community_or_school",
    "other": "community_or_school",
    # The coordinating agency's own intake (issue 17).
    "hotline": "agency_intake",
    "walk_in": "agency_intake",
    "self_referral": "agency_intake",
}
_WIDE_AGE = {"10-13": "10-15", "14-15": "10-15", "16-17": "16-17", "18-20": "18-24", "21-24": "18-24"}


class _Row(Protocol):
    pid: str
    region: str
    referral_month: str
    age_band: str
    referral_setting: str | None
    generalised: list[str]


def _quarter(month: str) -> str:
    year, m = month.split("-")
    return f"{year}-Q{(int(m) - 1) // 3 + 1}"


def _half(month: str) -> str:
    year, m = month.split("-")
    return f"{year}-H{(int(m) - 1) // 6 + 1}"


def _setting_group(setting: str | None) -> str:
    return "group:" + SETTING_GROUPS.get(setting or "", "not_recorded")


_Step = dict[str, Callable[[Any], str]]
# Each step is the full recoding of every quasi-identifier at that level (identity where unchanged).
_STEPS: tuple[_Step, ...] = (
    {},
    {"referral_month": _quarter},
    {"referral_month": _quarter, "referral_setting": _setting_group},
    {
        "referral_month": _half,
        "referral_setting": _setting_group,
        "age_band": lambda a: _WIDE_AGE.get(a, ANY),
    },
    {
        "referral_month": lambda m: m.split("-")[0],
        "referral_setting": _setting_group,
        "age_band": lambda a: _WIDE_AGE.get(a, ANY),
    },
    {
        "referral_month": lambda m: m.split("-")[0],
        "referral_setting": lambda s: ANY,
        "age_band": lambda a: ANY,
    },
    {"referral_month": lambda m: ANY, "referral_setting": lambda s: ANY, "age_band": lambda a: ANY},
    {
        "referral_month": lambda m: ANY,
        "referral_setting": lambda s: ANY,
        "age_band": lambda a: ANY,
        "region": lambda r: ANY,
    },
)


def _combination(row: _Row, step: _Step) -> tuple[str, ...]:
    out = []
    for field in QUASI_IDENTIFIERS:
        value = getattr(row, field)
        out.append(step[field](value) if field in step else str(value))
    return (str(len(step)), *out) if step else ("0", *out)


def generalise(rows: Sequence[_Row], k: int = K_ANONYMITY) -> None:
    """Generalise ``rows`` in place until every quasi-identifier combination covers at least ``k``
    youth (distinct pseudonyms); with fewer than ``k`` youth in all, every row is fully generalised."""
    pending = list(range(len(rows)))
    decided: dict[int, int] = {}
    for level, step in enumerate(_STEPS):
        classes: dict[tuple[str, ...], list[int]] = defaultdict(list)
        for i in pending:
            classes[_combination(rows[i], step)].append(i)
        last = level == len(_STEPS) - 1
        pending = []
        for members in classes.values():
            if len({rows[i].pid for i in members}) >= k or last:
                for i in members:
                    decided[i] = level
            else:
                pending.extend(members)
    # At the last step everything left shares one class; if it is still too small, fold into it the
    # smallest class decided at a finer step (which is then generalised fully too).
    top = len(_STEPS) - 1
    leftover = [i for i, lv in decided.items() if lv == top]
    if leftover and len({rows[i].pid for i in leftover}) < k:
        finer: dict[tuple[str, ...], list[int]] = defaultdict(list)
        for i, lv in decided.items():
            if lv < top:
                finer[_combination(rows[i], _STEPS[lv])].append(i)
        for members in sorted(finer.values(), key=len):
            for i in members:
                decided[i] = top
            if len({rows[j].pid for j, lv in decided.items() if lv == top}) >= k:
                break
    for i, level in decided.items():
        step = _STEPS[level]
        row = rows[i]
        changed = []
        for field in QUASI_IDENTIFIERS:
            if field in step:
                before = getattr(row, field)
                after = step[field](before)
                if after != before:
                    setattr(row, field, after)
                    changed.append(field)
        row.generalised = changed
