"""Production-style sign-in: staff tokens issued by an OIDC provider, verified against its JWKS."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.conftest import SEEDED_TEMPLATE, clone_database
from tests.support.platform import Platform, running_platform

ISSUER = "https://idp.example.test/realms/refnet"
AUDIENCE = "refnet-intake"


@pytest.fixture(scope="module")
def idp() -> Iterator[tuple[Any, str]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid="test-key-1", use="sig", alg="RS256")
    body = json.dumps({"keys": [jwk]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield key, f"http://127.0.0.1:{server.server_port}/jwks.json"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def oidc_platform(
    pg_server: Any, seeded_template: dict[str, Any], idp: tuple[Any, str]
) -> Iterator[Platform]:
    import tempfile

    dsn = asyncio.run(clone_database(pg_server, "o", SEEDED_TEMPLATE))
    env = {"REFNET_OIDC_ISSUER": ISSUER, "REFNET_OIDC_AUDIENCE": AUDIENCE, "REFNET_OIDC_JWKS_URL": idp[1]}
    with running_platform(
        dsn,
        Path(tempfile.mkdtemp(prefix="refnet-oidc-")),
        seeded_template,
        extra_env=env,
        services=("intake",),
    ) as plat:
        yield plat


def _token(key: Any, email: str, **over: Any) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "idp-user-1",
        "email": email,
        "iat": now,
        "exp": now + 300,
    }
    claims.update(over)
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "test-key-1"})


def test_oidc_tokens(oidc_platform: Platform, idp: tuple[Any, str]) -> None:
    key, _ = idp
    cm = oidc_platform.creds["case_managers"][0]
    admin = oidc_platform.creds["admins"][0]

    def get(path: str, token: str) -> httpx.Response:
        return httpx.get(
            oidc_platform.base_url + path, headers={"Authorization": f"Bearer {token}"}, timeout=10
        )

    assert get("/v1/assignments", _token(key, cm["email"])).status_code == 200
    # The roster, not the provider, decides the role: a case manager is not an admin.
    assert get("/v1/admin/partners", _token(key, cm["email"])).status_code == 403
    assert get("/v1/admin/partners", _token(key, admin["email"])).status_code == 200
    assert get("/v1/assignments", _token(key, "stranger@example.org")).status_code == 403
    assert get("/v1/assignments", _token(key, cm["email"], aud="someone-else")).status_code == 401
    assert get("/v1/assignments", _token(key, cm["email"], iss="https://evil.example")).status_code == 401
    assert get("/v1/assignments", _token(key, cm["email"], exp=int(time.time()) - 10)).status_code == 401
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert get("/v1/assignments", _token(other, cm["email"])).status_code == 401
    # Our own short-lived tokens keep working beside OIDC.
    assert get("/v1/assignments", oidc_platform.staff_token(cm)).status_code == 200
