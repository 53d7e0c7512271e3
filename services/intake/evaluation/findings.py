"""Plain sentences answering the pilot's three questions, from the published report only; pure.

Which intake characteristics go with more recidivism, which kinds of help go with less after
adjustment, and how sure the data can be at its size. Every number comes from the report itself (so a
sentence never reveals a count the tables suppress), in English or Spanish.
"""

from __future__ import annotations

import msgspec

from services.intake.evaluation.analysis import FAMILY_TERMS, INTAKE_TERMS
from services.intake.evaluation.report import Report
from services.intake.evaluation.suppression import SUPPRESSED
from services.intake.evaluation.texts import label, text

__all__ = ["Findings", "findings"]


class Findings(msgspec.Struct, kw_only=True):
    baseline: list[str]
    characteristics: list[str]
    interventions: list[str]
    certainty: list[str]


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.0f}%"


def _ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def findings(report: Report, lang: str = "en") -> Findings:
    out = Findings(baseline=[], characteristics=[], interventions=[], certainty=[])
    base = report.recidivism_baseline
    if base.rate is not None and base.n != SUPPRESSED:
        out.baseline.append(
            text(
                "f_baseline", lang, n=base.n, pct=_pct(base.rate), lo=_pct(base.ci_low), hi=_pct(base.ci_high)
            )
        )
    terms = {t.term: t for t in report.adjusted.terms}
    power = {p.term: p for p in report.adjusted.power}

    # Characteristics: adjusted intake terms with a clearly higher hazard, then the unadjusted group
    # differences that stand after Holm's correction.
    for term in INTAKE_TERMS:
        est = terms.get(term)
        if est is None or est.ratio is None or est.ci_low is None or est.ci_low <= 1:
            continue
        out.characteristics.append(
            text(
                "f_harmful_term",
                lang,
                term=label(term, lang),
                ratio=_ratio(est.ratio),
                lo=_ratio(est.ci_low),
                hi=_ratio(est.ci_high),
            )
        )
    rates = {(variable, row.level): row.rate for variable, rows in report.by_variable.items() for row in rows}
    for c in report.comparisons:
        if c.outcome != "recidivism" or c.verdict != "higher" or c.variable.startswith("family:"):
            continue
        out.characteristics.append(
            text(
                "f_higher_group",
                lang,
                variable=label(c.variable, lang),
                level=label(c.level, lang),
                reference=label(c.reference, lang),
                pct=_pct(rates.get((c.variable, c.level))),
                ref_pct=_pct(rates.get((c.variable, c.reference))),
                diff=f"{c.difference * 100:+.0f}",
                lo=f"{c.ci_low * 100:+.0f}",
                hi=f"{c.ci_high * 100:+.0f}",
            )
        )
    if not out.characteristics:
        out.characteristics.append(text("f_no_characteristic", lang))

    for term in FAMILY_TERMS:
        est = terms.get(term)
        if est is None or est.ratio is None or est.ci_high is None or est.ci_high >= 1:
            continue
        out.interventions.append(
            text(
                "f_protective_term",
                lang,
                term=label(term, lang),
                ratio=_ratio(est.ratio),
                lo=_ratio(est.ci_low),
                hi=_ratio(est.ci_high),
            )
        )
    if not out.interventions:
        out.interventions.append(text("f_no_intervention", lang))
    out.interventions.append(text("f_observational", lang))

    adjusted = report.adjusted
    if adjusted.youth != SUPPRESSED and adjusted.events != SUPPRESSED:
        out.certainty.append(text("f_model", lang, youth=adjusted.youth, events=adjusted.events))
    unclear = [
        label(t, lang)
        for t in (*FAMILY_TERMS, *INTAKE_TERMS)
        if power.get(t) and power[t].verdict == "cannot tell"
    ]
    missing = [
        label(t, lang)
        for t in (*FAMILY_TERMS, *INTAKE_TERMS)
        if power.get(t) and power[t].verdict == "not estimated"
    ]
    if unclear:
        out.certainty.append(text("f_cannot_tell", lang, terms="; ".join(unclear)))
    if missing:
        out.certainty.append(text("f_not_estimated", lang, terms="; ".join(missing)))
    detectable = [
        f"{label(t, lang)} ≤ {_ratio(power[t].detectable_below)} / ≥ {_ratio(power[t].detectable_above)}"
        for t in FAMILY_TERMS
        if power.get(t) and power[t].detectable_below is not None
    ]
    if detectable:
        out.certainty.append(text("f_detectable", lang, terms="; ".join(detectable)))
    return out
