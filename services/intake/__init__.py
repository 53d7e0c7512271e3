"""intake: the HTTP service (partners' referral API, staff API, web app, SSE), one folder per domain.

Each domain folder holds a ``controller.py`` (endpoints, guards per role), a ``service.py`` (what it does:
business rules and SQL, no HTTP) and a ``sql/`` folder of named statements only that domain reads:

- ``core/``           who is calling, the error path, strict bodies, dependencies, middleware, health
- ``referrals/``      partners submit referrals; callers read the ones they may see
- ``cases/``          offers answered, case work, consent and the youth's details, follow-up reminders
- ``notifications/``  in-app notifications and their live Server-Sent Event stream
- ``partners/``       partners' API keys and webhook endpoints
- ``staff/``          sign-in and the case manager roster
- ``admin/``          dashboard figures, deliveries, dead letters, audit, the routing queue and explanations
- ``evaluation/``     the evaluator's de-identified export and report
- ``web/``            the staff web app under /app (pages call the services above)

``app.py`` is the app factory; ``maintenance.py`` the periodic sweeps. Other services are asked to act
through NATS commands (shared/commands.py) or outboxed events, never called.
"""
