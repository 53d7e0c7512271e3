"""The evaluation report's fields as ../shared/CONTRACT.md (v1.1, "Evaluation") writes them, checked on a
decoded JSON document: every name and shape, and no count from 1 to 10 anywhere."""

from __future__ import annotations

from typing import Any

# Spelled out from the contract, not imported from the code under test.
CONTRACT_VARIABLES = (
    "referral_setting",
    "partner",
    "prior_services",
    "age_first_exploited",
    "education_level",
    "socioeconomic_status",
    "prior_arrests",
    "foster_care_history",
    "region",
)
# The contract leaves the families to the project: these are issue 16's (shared.casework.FAMILIES).
CONTRACT_FAMILIES = ("housing", "therapy", "legal", "education_work", "mentoring")
LEVEL_KEYS = {"level", "n", "events", "rate", "ci_low", "ci_high"}
CURVE_KEYS = {"time_days", "survival", "ci_low", "ci_high", "at_risk"}
TERM_KEYS = {"term", "ratio", "ci_low", "ci_high", "p"}
SUPPRESSED = "suppressed"


def _count_problem(where: str, value: Any) -> str | None:
    if value == SUPPRESSED:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        return f"{where}: {value!r} is neither a count nor 'suppressed'"
    if 1 <= value <= 10:
        return f"{where}: the count {value} is published"
    return None


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _curve_problems(where: str, curve: Any) -> list[str]:
    if not isinstance(curve, dict) or not set(curve) >= CURVE_KEYS:
        return [
            f"{where}: a curve needs {sorted(CURVE_KEYS)}, got {sorted(curve) if isinstance(curve, dict) else curve!r}"
        ]
    out = []
    length = len(curve["time_days"])
    for key in CURVE_KEYS:
        if not isinstance(curve[key], list) or len(curve[key]) != length:
            out.append(f"{where}.{key}: a list as long as time_days")
    if out:
        return out
    for k in range(length):
        s, lo, hi = curve["survival"][k], curve["ci_low"][k], curve["ci_high"][k]
        if not all(_number(v) and 0 <= v <= 1 for v in (s, lo, hi)) or not lo <= s <= hi:
            out.append(f"{where}[{k}]: survival {s!r} not within its band {lo!r}-{hi!r} in [0, 1]")
        if not _number(curve["time_days"][k]):
            out.append(f"{where}.time_days[{k}]: {curve['time_days'][k]!r}")
        for name in ("at_risk", "events"):
            if name in curve:
                problem = _count_problem(f"{where}.{name}[{k}]", curve[name][k])
                if problem:
                    out.append(problem)
    if curve["time_days"] != sorted(curve["time_days"]):
        out.append(f"{where}.time_days: not in order")
    return out


def contract_problems(doc: dict[str, Any]) -> list[str]:
    """Everything in ``doc`` (a decoded GET /v1/evaluation/report) that is not as the contract writes it."""
    out: list[str] = []
    by_variable = doc.get("by_variable")
    if not isinstance(by_variable, dict) or set(by_variable) != set(CONTRACT_VARIABLES):
        return [f"by_variable: the contract's nine variables, got {sorted(by_variable or {})}"]
    for variable, rows in by_variable.items():
        if not isinstance(rows, list):
            out.append(f"by_variable.{variable}: a list")
            continue
        for i, row in enumerate(rows):
            where = f"by_variable.{variable}[{i}]"
            if not isinstance(row, dict) or set(row) != LEVEL_KEYS:
                out.append(f"{where}: keys {sorted(row) if isinstance(row, dict) else row!r}")
                continue
            if not isinstance(row["level"], str):
                out.append(f"{where}.level: {row['level']!r}")
            for name in ("n", "events"):
                problem = _count_problem(f"{where}.{name}", row[name])
                if problem:
                    out.append(problem)
            estimates = (row["rate"], row["ci_low"], row["ci_high"])
            if SUPPRESSED in (row["n"], row["events"]):
                if estimates != (None, None, None):
                    out.append(f"{where}: a suppressed count with a rate or interval")
            elif row["n"]:
                if (
                    not all(_number(v) for v in estimates)
                    or not row["ci_low"] <= row["rate"] <= row["ci_high"]
                ):
                    out.append(
                        f"{where}: rate {row['rate']!r} not within {row['ci_low']!r}-{row['ci_high']!r}"
                    )
                elif abs(row["rate"] - row["events"] / row["n"]) > 1e-9:
                    out.append(f"{where}: rate is not events / n")
    survival = doc.get("survival")
    if not isinstance(survival, dict) or not {"overall", "by_intervention_family"} <= set(survival):
        return [*out, "survival: needs overall and by_intervention_family"]
    out += _curve_problems("survival.overall", survival["overall"])
    families = survival["by_intervention_family"]
    if not isinstance(families, dict) or set(families) != set(CONTRACT_FAMILIES):
        out.append(f"survival.by_intervention_family: one curve per family, got {families!r:.200}")
    else:
        for family, curve in families.items():
            out += _curve_problems(f"survival.by_intervention_family.{family}", curve)
    adjusted = doc.get("adjusted")
    if not isinstance(adjusted, dict) or not isinstance(adjusted.get("model"), str) or not adjusted["model"]:
        return [*out, "adjusted.model: a description"]
    terms = adjusted.get("terms")
    if not isinstance(terms, list) or not terms:
        return [*out, "adjusted.terms: a list of terms"]
    for i, term in enumerate(terms):
        where = f"adjusted.terms[{i}]"
        if not isinstance(term, dict) or set(term) != TERM_KEYS:
            out.append(f"{where}: keys {sorted(term) if isinstance(term, dict) else term!r}")
            continue
        if not isinstance(term["term"], str):
            out.append(f"{where}.term: {term['term']!r}")
        values = (term["ratio"], term["ci_low"], term["ci_high"], term["p"])
        if values == (None, None, None, None):
            continue
        if not all(_number(v) for v in values) or not 0 < term["ci_low"] <= term["ratio"] <= term["ci_high"]:
            out.append(f"{where}: ratio {term['ratio']!r} not within {term['ci_low']!r}-{term['ci_high']!r}")
        elif not 0 <= term["p"] <= 1:
            out.append(f"{where}.p: {term['p']!r}")
    return out
