"""Every page of the web app, per role: the one list the browser walk (tests/e2e/test_pages.py) opens.

Adding a page under /app? Add its path here for each role that may open it (the walk checks that every
GET route of the /app router is listed here or in NOT_PAGES). ``{name}`` stands for an id the walk finds
in the database (see ``test_pages.PLACEHOLDERS``): a page whose id the state has not got yet (no case on a
fresh demo) is opened in the states that have one, and the simulated pilot has them all.
"""

from __future__ import annotations

# role -> paths (as the browser asks for them). "anonymous": nobody signed in.
PAGES: dict[str, tuple[str, ...]] = {
    "anonymous": ("/app/", "/app/login"),
    "case_manager": (
        "/app/",
        "/app/inbox",
        "/app/inbox/fragment",
        "/app/cases/{case_id}",
        "/app/cases/{closed_case_id}",
        "/app/password",
    ),
    "supervisor": (
        "/app/",
        "/app/queue",
        "/app/queue/{queue_id}",
        "/app/queue/{out_of_area_id}",
        "/app/team",
        "/app/roster/{case_manager_id}",
        "/app/map",
    ),
    "admin": (
        "/app/",
        "/app/dashboard",
        "/app/dashboard?window=24h",
        "/app/dashboard?window=7d",
        "/app/dashboard?window=30d",
        "/app/dashboard?window=all",
        "/app/dashboard/panels?window=all",
        "/app/queue",
        "/app/queue/{queue_id}",
        "/app/queue/{out_of_area_id}",
        "/app/team",
        "/app/roster",
        "/app/roster/new",
        "/app/roster/{case_manager_id}",
        "/app/partners",
        "/app/partners/{partner_id}",
        "/app/staff",
        "/app/password",
        "/app/map",
    ),
    "evaluator": ("/app/", "/app/map", "/app/evaluation"),
}

# GET routes under /app that are not pages, and why the walk leaves them out.
NOT_PAGES: dict[str, str] = {
    "/app/session": "the page script's session probe: 204, no page",
    "/app/events": "the Server-Sent Events stream: it never ends",
    "/app/lang/{}": "sets the language cookie and redirects (the walk uses it for Spanish)",
    "/app/static/{}": "stylesheet and script",
    "/app/evaluation/report.html": "a download (the report to keep; test_web_evaluation opens it)",
    "/app/evaluation/export.csv": "a download (test_web_evaluation checks its contents and suppression)",
    "/app/evaluation/export.json": "a download (test_web_evaluation checks its contents and suppression)",
    "/app/evaluation/tables.csv": "a download (test_web_evaluation checks its contents and suppression)",
    # The partner's own pages belong to partner users and intake staff, who are not in the walk's
    # agency roles: test_partner_web opens each of them in a browser, in English and Spanish, with axe-core.
    "/app/partner/keys": "a partner user's page: walked by tests/e2e/test_partner_web.py",
    "/app/partner/referrals": "a partner user's page: walked by tests/e2e/test_partner_web.py",
    "/app/partner/referrals/fragment": "part of /app/partner/referrals (its live refresh)",
    "/app/partner/webhooks": "a partner user's page: walked by tests/e2e/test_partner_web.py",
    "/app/referrals/new": "the referral form (partner users, intake staff): walked by tests/e2e/test_partner_web.py",
}
