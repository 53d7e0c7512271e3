"""The evaluation report's words in English and Spanish: labels for codes, headings, sentence templates."""

from __future__ import annotations

__all__ = ["LANGUAGES", "label", "prose", "text"]

LANGUAGES = ("en", "es")

_LABELS: dict[str, dict[str, str]] = {
    "en": {
        # intervention families and model terms
        "housing": "Housing",
        "therapy": "Therapy",
        "legal": "Legal help",
        "education_work": "Education and work",
        "mentoring": "Mentoring and peer support",
        "family:housing": "Housing received",
        "family:therapy": "Therapy received",
        "family:legal": "Legal help received",
        "family:education_work": "Education or work help received",
        "family:mentoring": "Mentoring or peer support received",
        "prior_services:voluntary": "Voluntary earlier services (vs none)",
        "prior_services:mandated": "Mandated earlier services (vs none)",
        "prior_arrests:1": "1 prior arrest (vs none)",
        "prior_arrests:2-3": "2-3 prior arrests (vs none)",
        "prior_arrests:4+": "4 or more prior arrests (vs none)",
        "foster_care_history": "Foster care history",
        "age_first_exploited:under 14": "First exploited before 14",
        "socioeconomic_status:very_low": "Very low socio-economic status",
        "region:san_fernando_valley": "San Fernando Valley (vs South LA)",
        # variables
        "referral_setting": "Referral setting",
        "partner": "Referring partner",
        "prior_services": "Earlier services",
        "age_first_exploited": "Age first exploited",
        "education_level": "Education",
        "socioeconomic_status": "Socio-economic status",
        "prior_arrests": "Prior arrests",
        "region": "Region",
        "recidivism": "Recidivism",
        "engagement": "Engagement",
        # levels
        "none": "None",
        "voluntary": "Voluntary",
        "mandated": "Mandated",
        "yes": "Yes",
        "no": "No",
        "not_recorded": "Not recorded",
        "very_low": "Very low",
        "low": "Low",
        "moderate": "Moderate",
        "high": "High",
        "primary": "Primary school",
        "some_high_school": "Some high school",
        "high_school": "High school",
        "some_college": "Some college",
        "college": "College",
        "south_la": "South LA",
        "san_fernando_valley": "San Fernando Valley",
        "out_of_area": "Out of area",
        # the time-to-contact rows, labelled by region name
        "South LA": "South LA",
        "San Fernando Valley": "San Fernando Valley",
        "Out of area": "Out of area",
        "All regions": "All regions",
        "received": "Received",
        "not received": "Not received",
        "intake": "Intake",
        "m3": "3 months",
        "m6": "6 months",
        "m12": "12 months",
        "m24": "24 months",
        "re_arrest": "Not re-arrested",
        "return_to_exploitation": "Not returned to exploitation",
        "housing_stability": "Stably housed",
        "in_school_or_work": "In school or work",
        "safety": "Feels safe",
        "all": "All youth followed up",
        "under 12": "Under 12",
        "18+": "18 or older",
    },
    "es": {
        "housing": "Vivienda",
        "therapy": "Terapia",
        "legal": "Ayuda legal",
        "education_work": "Educación y trabajo",
        "mentoring": "Mentoría y apoyo entre pares",
        "family:housing": "Recibió vivienda",
        "family:therapy": "Recibió terapia",
        "family:legal": "Recibió ayuda legal",
        "family:education_work": "Recibió ayuda de educación o trabajo",
        "family:mentoring": "Recibió mentoría o apoyo entre pares",
        "prior_services:voluntary": "Servicios previos voluntarios (frente a ninguno)",
        "prior_services:mandated": "Servicios previos obligatorios (frente a ninguno)",
        "prior_arrests:1": "1 arresto previo (frente a ninguno)",
        "prior_arrests:2-3": "2-3 arrestos previos (frente a ninguno)",
        "prior_arrests:4+": "4 o más arrestos previos (frente a ninguno)",
        "foster_care_history": "Historial de cuidado de crianza",
        "age_first_exploited:under 14": "Explotado por primera vez antes de los 14",
        "socioeconomic_status:very_low": "Nivel socioeconómico muy bajo",
        "region:san_fernando_valley": "Valle de San Fernando (frente al Sur de LA)",
        "referral_setting": "Lugar de referencia",
        "partner": "Socio que refiere",
        "prior_services": "Servicios previos",
        "age_first_exploited": "Edad de la primera explotación",
        "education_level": "Educación",
        "socioeconomic_status": "Nivel socioeconómico",
        "prior_arrests": "Arrestos previos",
        "region": "Región",
        "recidivism": "Reincidencia",
        "engagement": "Vinculación",
        "none": "Ninguno",
        "voluntary": "Voluntarios",
        "mandated": "Obligatorios",
        "yes": "Sí",
        "no": "No",
        "not_recorded": "No registrado",
        "very_low": "Muy bajo",
        "low": "Bajo",
        "moderate": "Moderado",
        "high": "Alto",
        "primary": "Primaria",
        "some_high_school": "Secundaria incompleta",
        "high_school": "Secundaria",
        "some_college": "Universidad incompleta",
        "college": "Universidad",
        "south_la": "Sur de LA",
        "san_fernando_valley": "Valle de San Fernando",
        "out_of_area": "Fuera del área",
        "South LA": "Sur de LA",
        "San Fernando Valley": "Valle de San Fernando",
        "Out of area": "Fuera del área",
        "All regions": "Todas las regiones",
        "received": "Recibida",
        "not received": "No recibida",
        "intake": "Admisión",
        "m3": "3 meses",
        "m6": "6 meses",
        "m12": "12 meses",
        "m24": "24 meses",
        "re_arrest": "Sin nuevo arresto",
        "return_to_exploitation": "Sin regreso a la explotación",
        "housing_stability": "Vivienda estable",
        "in_school_or_work": "Estudia o trabaja",
        "safety": "Se siente seguro/a",
        "all": "Todos los jóvenes con seguimiento",
        # statuses, close reasons, settings, table columns, groupings
        "assigned": "Asignada",
        "accepted": "Aceptada",
        "engaged": "En atención",
        "closed": "Cerrada",
        "unroutable": "Sin asignar",
        "withdrawn": "Retirada",
        "goals_met": "Objetivos cumplidos",
        "youth_declined_services": "El joven rechazó servicios",
        "lost_contact": "Se perdió el contacto",
        "moved_out_of_area": "Se mudó fuera del área",
        "transferred": "Transferido",
        "aged_out": "Superó la edad",
        "other": "Otro",
        "emergency_room": "Urgencias",
        "hospital": "Hospital",
        "child_welfare": "Bienestar infantil",
        "juvenile_justice": "Justicia juvenil",
        "domestic_violence_center": "Centro de violencia doméstica",
        "youth_shelter": "Albergue juvenil",
        "faith_community": "Comunidad religiosa",
        "community_organization": "Organización comunitaria",
        "school": "Escuela",
        "health_clinic": "Clínica de salud",
        "refugee_services": "Servicios para refugiados",
        "legal_aid": "Asistencia legal",
        "street_outreach": "Trabajo de calle",
        "homeless_services": "Servicios para personas sin hogar",
        "re-offended or re-exploited": "Reincidió o fue reexplotado",
        "neither": "Ninguno de los dos",
        "favourable": "Favorable",
        "not favourable": "No favorable",
        "none of the five": "Ninguna de las cinco",
        "other combinations": "Otras combinaciones",
        "none or one kind": "Ninguna o una",
        "two kinds": "Dos",
        "three kinds": "Tres",
        "four or five kinds": "Cuatro o cinco",
        "under 1 day": "Menos de 1 día",
        "1-2 days": "1-2 días",
        "3-7 days": "3-7 días",
        "8-14 days": "8-14 días",
        "15-30 days": "15-30 días",
        "over 30 days": "Más de 30 días",
        "under 12": "Menos de 12",
        "18+": "18 o más",
    },
}

_TEXT: dict[str, dict[str, str]] = {
    "en": {
        "title": "Pilot evaluation: which youth, which help, what reduces re-exploitation and re-arrest",
        "subtitle": "Referrals received {period} · generated {generated} UTC · de-identified, small numbers suppressed",
        "no_referrals": "no referrals yet",
        "about_data": "About this data.",
        "referrals": "Referrals",
        "followed_up": "Followed up after intake",
        "recidivism": "Re-arrest or re-exploitation",
        "median_contact": "Median time to first contact",
        "days": "days",
        "answers": "What the numbers say",
        "q_characteristics": "Which intake characteristics go with more recidivism?",
        "q_interventions": "Which kinds of help go with less recidivism, after adjustment?",
        "q_certainty": "How sure can we be at this size?",
        "suppressed": "suppressed",
        "not_shown": "not shown (small numbers)",
        "sources": "Where referrals come from",
        "status": "Where referrals stand",
        "close_reasons": "Why cases were closed",
        "contact": "How fast youth were reached",
        "by_variable": "Recidivism by what was collected at intake",
        "by_variable_note": "Share of youth followed up who were re-arrested or returned to exploitation, with Wilson 95% intervals.",
        "engagement_by_variable": "Engagement by what was collected at intake",
        "engagement_note": "Share of referrals that reached first contact, with Wilson 95% intervals.",
        "comparisons": "Differences between groups",
        "survival": "Time to first re-arrest or re-exploitation",
        "survival_by_family": "By kind of help received in the first {days} days (youth still without recidivism then)",
        "survival_by_prior": "By earlier services",
        "adjusted": "Adjusted estimates",
        "by_family": "By kind of help received before the follow-up period",
        "outcomes": "Outcomes over time",
        "how_to_read": "How to read this report",
        "level": "Level",
        "youth": "Youth",
        "events": "Events",
        "share": "Share (95% CI)",
        "difference": "Difference (95% CI)",
        "holm": "Holm-adjusted p",
        "verdict": "Verdict",
        "term": "Term",
        "ratio": "Hazard ratio (95% CI)",
        "p": "p",
        "detectable": "Detectable (80% power)",
        "day": "Day",
        "survival_col": "Without recidivism (95% CI)",
        "at_risk": "At risk",
        "total": "Total",
        "setting": "Referral setting",
        "status_col": "Status",
        "reason": "Close reason",
        "higher": "higher",
        "lower": "lower",
        "similar": "no clear difference",
        "protective": "lower hazard",
        "harmful": "higher hazard",
        "cannot tell": "cannot tell",
        "not estimated": "too few to estimate",
        "ci95": "95% CI",
        "variable": "Variable",
        "family": "Kind of help",
        "counts": "Youth by recidivism",
        "combination": "Kinds of help received",
        "by_combination": "Recidivism by combination of kinds of help",
        "kinds": "How many kinds of help",
        "by_count": "Recidivism by how many kinds of help were received",
        "contact_quartiles": "Days to first contact: quartiles",
        "protocol": "Child-protection protocol (youth under 18)",
        "advocate_quartiles": "Minutes from receipt to the in-person advocate response: quartiles",
        "advocate": "Advocate response",
        "exam_uptake": "Medical exams offered and accepted",
        "exams_offered": "Exams offered (outcome recorded)",
        "exams_accepted": "Accepted",
        "curve_too_small": "Too few youth to draw this curve beyond day 0 without revealing small numbers; its table follows.",
        "curve_note": "The curve stops where the numbers at risk or the events would be too small to publish.",
        # findings
        "f_baseline": "Of the {n} youth seen at a follow-up after intake, {pct} were re-arrested or returned to exploitation at some point (95% CI {lo} to {hi}).",
        "f_harmful_term": "{term}: {ratio} times the hazard of a first re-arrest or re-exploitation, after adjustment (95% CI {lo} to {hi}).",
        "f_higher_group": "{variable} — {level}: {pct} re-offended or were re-exploited against {ref_pct} for {reference} (difference {diff} points, 95% CI {lo} to {hi}; clear after Holm's correction).",
        "f_no_characteristic": "No intake characteristic goes with clearly more recidivism at this sample size.",
        "f_protective_term": "{term}: {ratio} times the hazard in the periods after it was received, compared with youth alike at intake who had not received it (95% CI {lo} to {hi}).",
        "f_no_intervention": "No kind of help goes with clearly less recidivism after adjustment at this sample size.",
        "f_model": "The adjusted model used {youth} youth with {events} first recidivisms.",
        "f_cannot_tell": "It cannot tell whether these make a difference (their intervals include no difference): {terms}.",
        "f_not_estimated": "Too few youth to estimate at all: {terms}. The pilot cannot detect an effect of these, of any plausible size.",
        "f_detectable": "At this size an effect is detected 80% of the time only if it is at least as large as: {terms}.",
        "f_observational": "These are associations in observational data, not proof that the help caused the difference.",
        "model_description": "Discrete-time proportional hazards model (binomial GLM with complementary log-log link, one row per youth and follow-up interval, an intercept per kind of interval; kinds of help counted from their first delivery before the interval; cluster-robust standard errors by youth). Ratios are hazard ratios of a first re-arrest or return to exploitation.",
        "comparison_method": "Each level is compared with its variable's largest level (kinds of help: received with not received): the difference of the two shares with Newcombe's hybrid score 95% interval; Holm's correction across all {n} comparisons keeps the chance of any false 'higher' or 'lower' at 5%.",
        "survival_definition": "Days from first contact to the follow-up that first reported a re-arrest or a return to exploitation; youth without one are censored at their last follow-up with a known answer. Kaplan-Meier estimates with 95% confidence bands.",
        "recidivism_definition": "Re-arrested or returned to exploitation, as reported at a follow-up after intake (3, 6, 12 or 24 months after first contact), among youth with at least one such follow-up. Kinds of help count when first received before the follow-up period in which recidivism was reported (or last assessed).",
    },
    "es": {
        "title": "Evaluación del piloto: qué jóvenes, qué ayuda, qué reduce la reexplotación y el nuevo arresto",
        "subtitle": "Referencias recibidas {period} · generado {generated} UTC · anonimizado, cifras pequeñas suprimidas",
        "no_referrals": "aún no hay referencias",
        "about_data": "Sobre estos datos.",
        "referrals": "Referencias",
        "followed_up": "Con seguimiento tras la admisión",
        "recidivism": "Nuevo arresto o reexplotación",
        "median_contact": "Mediana hasta el primer contacto",
        "days": "días",
        "answers": "Lo que dicen las cifras",
        "q_characteristics": "¿Qué características de la admisión van con más reincidencia?",
        "q_interventions": "¿Qué tipos de ayuda van con menos reincidencia, tras el ajuste?",
        "q_certainty": "¿Qué certeza tenemos con este tamaño?",
        "suppressed": "suprimido",
        "not_shown": "no se muestra (cifras pequeñas)",
        "sources": "De dónde vienen las referencias",
        "status": "En qué estado están",
        "close_reasons": "Por qué se cerraron los casos",
        "contact": "Con qué rapidez se contactó a los jóvenes",
        "by_variable": "Reincidencia según lo registrado en la admisión",
        "by_variable_note": "Proporción de jóvenes con seguimiento que volvieron a ser arrestados o explotados, con intervalos de Wilson al 95%.",
        "engagement_by_variable": "Vinculación según lo registrado en la admisión",
        "engagement_note": "Proporción de referencias que llegaron al primer contacto, con intervalos de Wilson al 95%.",
        "comparisons": "Diferencias entre grupos",
        "survival": "Tiempo hasta el primer nuevo arresto o reexplotación",
        "survival_by_family": "Según la ayuda recibida en los primeros {days} días (jóvenes aún sin reincidencia entonces)",
        "survival_by_prior": "Según los servicios previos",
        "adjusted": "Estimaciones ajustadas",
        "by_family": "Según la ayuda recibida antes del periodo de seguimiento",
        "outcomes": "Resultados a lo largo del tiempo",
        "how_to_read": "Cómo leer este informe",
        "level": "Nivel",
        "youth": "Jóvenes",
        "events": "Eventos",
        "share": "Proporción (IC 95%)",
        "difference": "Diferencia (IC 95%)",
        "holm": "p ajustada (Holm)",
        "verdict": "Conclusión",
        "term": "Término",
        "ratio": "Razón de riesgos (IC 95%)",
        "p": "p",
        "detectable": "Detectable (potencia 80%)",
        "day": "Día",
        "survival_col": "Sin reincidencia (IC 95%)",
        "at_risk": "En riesgo",
        "total": "Total",
        "setting": "Lugar de referencia",
        "status_col": "Estado",
        "reason": "Motivo de cierre",
        "higher": "mayor",
        "lower": "menor",
        "similar": "sin diferencia clara",
        "protective": "menor riesgo",
        "harmful": "mayor riesgo",
        "cannot tell": "no se puede saber",
        "not estimated": "muy pocos para estimar",
        "ci95": "IC 95%",
        "variable": "Variable",
        "family": "Tipo de ayuda",
        "counts": "Jóvenes según reincidencia",
        "combination": "Tipos de ayuda recibidos",
        "by_combination": "Reincidencia según la combinación de ayudas",
        "kinds": "Cuántos tipos de ayuda",
        "by_count": "Reincidencia según cuántos tipos de ayuda se recibieron",
        "contact_quartiles": "Días hasta el primer contacto: cuartiles",
        "protocol": "Protocolo de protección infantil (menores de 18 años)",
        "advocate_quartiles": "Minutos desde la recepción hasta la respuesta presencial de un defensor: cuartiles",
        "advocate": "Respuesta del defensor",
        "exam_uptake": "Exámenes médicos ofrecidos y aceptados",
        "exams_offered": "Exámenes ofrecidos (con resultado registrado)",
        "exams_accepted": "Aceptados",
        "curve_too_small": "Demasiados pocos jóvenes para dibujar esta curva más allá del día 0 sin revelar cifras pequeñas; su tabla sigue.",
        "curve_note": "La curva se detiene donde las cifras en riesgo o los eventos serían demasiado pequeños para publicarse.",
        "f_baseline": "De los {n} jóvenes vistos en un seguimiento tras la admisión, {pct} volvieron a ser arrestados o explotados en algún momento (IC 95% {lo} a {hi}).",
        "f_harmful_term": "{term}: {ratio} veces el riesgo de un primer nuevo arresto o reexplotación, tras el ajuste (IC 95% {lo} a {hi}).",
        "f_higher_group": "{variable} — {level}: {pct} reincidieron frente a {ref_pct} en {reference} (diferencia {diff} puntos, IC 95% {lo} a {hi}; clara tras la corrección de Holm).",
        "f_no_characteristic": "Ninguna característica de la admisión va con claramente más reincidencia con este tamaño de muestra.",
        "f_protective_term": "{term}: {ratio} veces el riesgo en los periodos posteriores a recibirla, frente a jóvenes parecidos en la admisión que no la recibieron (IC 95% {lo} a {hi}).",
        "f_no_intervention": "Ningún tipo de ayuda va con claramente menos reincidencia tras el ajuste con este tamaño de muestra.",
        "f_model": "El modelo ajustado usó {youth} jóvenes con {events} primeras reincidencias.",
        "f_cannot_tell": "No puede saber si estas marcan una diferencia (sus intervalos incluyen la ausencia de efecto): {terms}.",
        "f_not_estimated": "Demasiados pocos jóvenes para estimar: {terms}. El piloto no puede detectar un efecto de estas, de ningún tamaño plausible.",
        "f_detectable": "Con este tamaño un efecto se detecta el 80% de las veces solo si es al menos tan grande como: {terms}.",
        "f_observational": "Son asociaciones en datos observacionales, no prueba de que la ayuda causara la diferencia.",
        "model_description": "Modelo de riesgos proporcionales en tiempo discreto (GLM binomial con enlace log-log complementario, una fila por joven e intervalo de seguimiento, un intercepto por tipo de intervalo; la ayuda cuenta desde su primera entrega antes del intervalo; errores estándar robustos por joven). Las razones son razones de riesgos de un primer nuevo arresto o regreso a la explotación.",
        "comparison_method": "Cada nivel se compara con el nivel más numeroso de su variable (ayuda: recibida frente a no recibida): la diferencia de las dos proporciones con el intervalo híbrido de Newcombe al 95%; la corrección de Holm sobre las {n} comparaciones mantiene en 5% la probabilidad de cualquier 'mayor' o 'menor' falso.",
        "survival_definition": "Días desde el primer contacto hasta el seguimiento que registró por primera vez un nuevo arresto o un regreso a la explotación; los jóvenes sin ninguno se censuran en su último seguimiento con respuesta conocida. Estimaciones de Kaplan-Meier con bandas de confianza al 95%.",
        "recidivism_definition": "Nuevo arresto o regreso a la explotación, registrado en un seguimiento tras la admisión (3, 6, 12 o 24 meses tras el primer contacto), entre jóvenes con al menos un seguimiento así. La ayuda cuenta si se recibió por primera vez antes del periodo de seguimiento en que se registró la reincidencia (o se evaluó por última vez).",
    },
}


def label(code: str, lang: str = "en") -> str:
    """A code's label in ``lang`` (English, then the code itself made readable, as fallbacks); a
    combination "a + b" is labelled part by part."""
    if " + " in code:
        return " + ".join(label(part, lang) for part in code.split(" + "))
    return _LABELS.get(lang, {}).get(code) or _LABELS["en"].get(code) or code.replace("_", " ").capitalize()


def text(key: str, lang: str = "en", **values: object) -> str:
    template = _TEXT.get(lang, {}).get(key) or _TEXT["en"][key]
    return template.format(**values) if values else template


# The report's fixed paragraphs (notes, limits) in Spanish, keyed by their English wording.
_PROSE_ES: dict[str, str] = {
    "These are observational data: youth were not assigned their help at random. The adjusted model"
    " accounts for the intake variables it names, not for what else led a case manager to offer a kind"
    " of help (confounding by indication: help tends to go to youth at higher risk, which can hide a"
    " benefit, or to youth already doing better, which can fake one).": (
        "Son datos observacionales: la ayuda no se asignó al azar. El modelo ajustado tiene en cuenta las"
        " variables de admisión que nombra, no lo que llevó a un gestor de casos a ofrecer una ayuda"
        " (confusión por indicación: la ayuda suele ir a jóvenes de mayor riesgo, lo que puede ocultar un"
        " beneficio, o a jóvenes a los que ya les va mejor, lo que puede fingirlo)."
    ),
    "A ratio below 1 means fewer first recidivisms in the periods after that help was received than"
    " among comparable youth without it; it is an association after adjustment, not proof of effect.": (
        "Una razón menor que 1 significa menos primeras reincidencias en los periodos posteriores a recibir"
        " esa ayuda que entre jóvenes comparables sin ella; es una asociación tras el ajuste, no prueba de"
        " efecto."
    ),
    "Missing intake answers count as the reference level in the model; recidivism known only from"
    " follow-ups that took place (a youth who drops out is censored, assumed to be like those who stay).": (
        "Las respuestas de admisión que faltan cuentan como el nivel de referencia del modelo; la"
        " reincidencia solo se conoce por los seguimientos realizados (un joven que deja el seguimiento se"
        " censura y se supone parecido a los que siguen)."
    ),
    "Follow-ups of the same youth are not independent samples: outcomes over time are described,"
    " not tested against each other.": (
        "Los seguimientos del mismo joven no son muestras independientes: los resultados a lo largo del"
        " tiempo se describen, no se contrastan entre sí."
    ),
    "Intervals are 95%: Wilson score intervals for shares, Newcombe intervals for differences"
    " between groups (with Holm's correction for the number of comparisons), Kaplan-Meier bands"
    " for survival, cluster-robust Wald intervals for hazard ratios.": (
        "Los intervalos son al 95%: de Wilson para proporciones, de Newcombe para diferencias entre grupos"
        " (con la corrección de Holm por el número de comparaciones), bandas de Kaplan-Meier para la"
        " supervivencia e intervalos de Wald robustos para las razones de riesgos."
    ),
    "Child-protection protocol: the advocate response's median and quartiles are in minutes from"
    " receipt (not days); exam uptake is the share accepted among medical exams offered whose"
    " outcome was recorded.": (
        "Protocolo de protección infantil: la mediana y los cuartiles de la respuesta del defensor están"
        " en minutos desde la recepción (no en días); la aceptación del examen es la proporción aceptada"
        " entre los exámenes médicos ofrecidos con resultado registrado."
    ),
    "Intervention families: housing (housing, housing placement); therapy (mental health,"
    " therapy, substance use); legal (legal, court advocacy, vacatur or record relief,"
    " immigration, T-visa or immigration relief); education and work (education, employment,"
    " school enrolment, job training); mentoring (mentoring, peer support).": (
        "Familias de ayuda: vivienda (vivienda, colocación en vivienda); terapia (salud mental, terapia,"
        " consumo de sustancias); legal (legal, acompañamiento judicial, anulación o limpieza de"
        " antecedentes, inmigración, visa T o alivio migratorio); educación y trabajo (educación, empleo,"
        " inscripción escolar, formación laboral); mentoría (mentoría, apoyo entre pares)."
    ),
}


def prose(paragraph: str, lang: str = "en") -> str:
    """A fixed paragraph of the report in ``lang`` (as written, when there is no translation)."""
    if lang == "es":
        if paragraph.startswith("Counts from 1 to "):
            return (
                "Las cifras de 1 a 10 se muestran como 'suprimido'. Todas las cifras del informe, su página"
                " web y sus tablas CSV se suprimen juntas: se ocultan más cifras hasta que ninguna"
                " combinación de cifras publicadas (márgenes, otras tablas, curvas) reduce una cifra pequeña"
                " oculta por debajo del rango 1 a 10 (comprobado por programación lineal). Las proporciones"
                " solo se muestran cuando ambas partes se muestran."
            )
        return _PROSE_ES.get(paragraph, paragraph)
    return paragraph
