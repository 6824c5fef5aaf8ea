"""Tokens in, Identity out: every JWT attack answers 401 with `WWW-Authenticate: Bearer`."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from litestar import Controller, WebSocket, get, websocket
from litestar.exceptions import WebSocketDisconnect
from litestar.testing import TestClient

from vechat_rls import cli
from vechat_rls.api.app import create_app
from vechat_rls.api.dependencies import IdentityDep
from vechat_rls.api.security import authenticate
from vechat_rls.auth import AuthError, TokenVerifier, mint_token, websocket_token
from vechat_rls.config import ConfigError, Settings
from vechat_rls.identity import Identity
from vechat_rls.pgserver import free_port

SECRET = "test-secret-that-is-long-enough-for-hs256"
DOWN_URL = f"postgresql://vechat_app:x@127.0.0.1:{free_port()}/none"


class WhoAmI(Controller):
    path = "/whoami"

    @get()
    async def whoami(self, identity: IdentityDep) -> Identity:
        return identity

    @websocket("/ws")
    async def whoami_ws(self, socket: WebSocket[Any, Any, Any]) -> None:
        await socket.accept()
        await socket.send_json({"user_id": authenticate(socket).user_id})
        await socket.close()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(**overrides: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "org": 7,
        "sub": "42",
        "user_type": "personnel",
        "exp": int(time.time()) + 600,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _hs256(claims: Mapping[str, Any], key: str | bytes = SECRET) -> str:
    return jwt.encode(dict(claims), key, algorithm="HS256")


def _unsigned(claims: Mapping[str, Any], alg: str = "none") -> str:
    header = _b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    return f"{header}.{_b64(json.dumps(claims).encode())}."


def _hmac_with(key: bytes, claims: Mapping[str, Any]) -> str:
    """HS256 computed by hand, so that a PEM public key can be (ab)used as the secret."""
    signing_input = (
        _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        + "."
        + _b64(json.dumps(claims).encode())
    )
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


@pytest.fixture(scope="module")
def rsa_keys() -> tuple[Any, str]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public_pem


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient[Any]]:
    settings = Settings(jwt_secret=SECRET, database_url=DOWN_URL, pool_min=0)
    with TestClient(create_app(settings, controllers=[WhoAmI])) as c:
        yield c


def _get(client: TestClient[Any], token: str) -> Any:
    return client.get("/api/v1/whoami", headers={"Authorization": f"Bearer {token}"})


def _assert_401(response: Any) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == 401 and body["type"].endswith("unauthorized")


def test_valid_token_yields_identity(client: TestClient[Any]) -> None:
    response = _get(client, _hs256(_claims(role="admin", name=" Ada ")))
    assert response.status_code == 200
    assert response.json() == {
        "organisation_id": 7,
        "user_id": 42,
        "user_type": "personnel",
        "role": "admin",
        "display_name": "Ada",
    }


@pytest.mark.parametrize(
    "claims",
    [
        {"organisation_id": 7, "org": None},
        {"organisationId": 7, "org": None},
        {"organisationId": "7", "org": 7},  # two spellings, same value
        {"id": 42, "sub": None},
        {"sub": 42},
        {"userType": "personnel", "user_type": None},
    ],
    ids=["organisation_id", "organisationId", "same-value-aliases", "id", "int-sub", "userType"],
)
def test_erp_claim_aliases_are_accepted(client: TestClient[Any], claims: dict[str, Any]) -> None:
    response = _get(client, _hs256(_claims(**claims)))
    assert response.status_code == 200, response.text
    assert (response.json()["organisation_id"], response.json()["user_id"]) == (7, 42)


BAD_CLAIMS = {
    "missing-org": {"org": None},
    "string-org": {"org": "seven"},
    "float-org": {"org": 7.5},
    "bool-org": {"org": True},
    "zero-org": {"org": 0},
    "negative-org": {"org": -3},
    "negative-string-org": {"org": "-3"},
    "huge-org": {"org": 2**63},
    "conflicting-org-aliases": {"organisationId": 8},
    "missing-sub": {"sub": None},
    "zero-sub": {"sub": "0"},
    "non-digit-sub": {"sub": "42abc"},
    "bad-user-type": {"user_type": "admin"},
    "missing-user-type": {"user_type": None},
    "missing-exp": {"exp": None},
    "expired": {"exp": int(time.time()) - 5},
    "role-not-identifier": {"role": "admin'; --"},
    "role-not-string": {"role": ["admin"]},
    "name-not-string": {"name": 12},
}


@pytest.mark.parametrize("overrides", BAD_CLAIMS.values(), ids=BAD_CLAIMS.keys())
def test_invalid_claims_are_401(client: TestClient[Any], overrides: dict[str, Any]) -> None:
    _assert_401(_get(client, _hs256(_claims(**overrides))))


def test_alg_none_is_401(client: TestClient[Any]) -> None:
    _assert_401(_get(client, _unsigned(_claims())))
    _assert_401(_get(client, _unsigned(_claims(), alg="None")))


def test_wrong_secret_is_401(client: TestClient[Any]) -> None:
    _assert_401(_get(client, _hs256(_claims(), key="another-secret-of-sufficient-length!!")))


@pytest.mark.filterwarnings("ignore::jwt.InsecureKeyLengthWarning")
def test_other_algorithm_with_right_secret_is_401(client: TestClient[Any]) -> None:
    token = jwt.encode(_claims(), SECRET, algorithm="HS512")
    _assert_401(_get(client, token))


def test_tampered_payload_with_original_signature_is_401(client: TestClient[Any]) -> None:
    header, _, signature = _hs256(_claims()).split(".")
    forged = _b64(json.dumps(_claims(org=8)).encode())
    _assert_401(_get(client, f"{header}.{forged}.{signature}"))


@pytest.mark.parametrize(
    "authorization", ["", "Bearer", "Bearer ", "Basic dXNlcjpwdw==", "not-a-jwt", "Bearer a.b.c"]
)
def test_malformed_authorization_is_401(client: TestClient[Any], authorization: str) -> None:
    _assert_401(client.get("/api/v1/whoami", headers={"Authorization": authorization}))


def test_missing_token_is_401_without_error_code(client: TestClient[Any]) -> None:
    response = client.get("/api/v1/whoami")
    _assert_401(response)
    assert response.headers["www-authenticate"] == 'Bearer realm="vechat"'


def test_http_ignores_query_and_cookie_tokens(client: TestClient[Any]) -> None:
    token = _hs256(_claims())
    _assert_401(client.get(f"/api/v1/whoami?access_token={token}"))
    _assert_401(client.get("/api/v1/whoami", headers={"Cookie": f"access_token={token}"}))


def test_routes_outside_api_need_no_token(client: TestClient[Any]) -> None:
    assert client.get("/healthz").status_code == 200


def test_websocket_accepts_query_and_cookie_tokens(client: TestClient[Any]) -> None:
    token = _hs256(_claims())
    with client.websocket_connect(f"/api/v1/whoami/ws?access_token={token}") as ws:
        assert ws.receive_json() == {"user_id": 42}
    with client.websocket_connect(
        "/api/v1/whoami/ws", headers={"Cookie": f"access_token={token}"}
    ) as ws:
        assert ws.receive_json() == {"user_id": 42}


@pytest.mark.parametrize("query", ["", "?access_token=not-a-jwt"])
def test_websocket_without_valid_token_is_closed_4401(client: TestClient[Any], query: str) -> None:
    with (
        pytest.raises(WebSocketDisconnect) as caught,
        client.websocket_connect(f"/api/v1/whoami/ws{query}") as ws,
    ):
        ws.receive_json()
    assert caught.value.code == 4401


# --- asymmetric keys ----------------------------------------------------------------------


def _rs_verifier(public_pem: str, **kwargs: Any) -> TokenVerifier:
    return TokenVerifier(Settings(jwt_public_key=public_pem, jwt_algorithm="RS256", **kwargs))


def test_rs256_token_is_accepted(rsa_keys: tuple[Any, str]) -> None:
    private, public_pem = rsa_keys
    token = jwt.encode(_claims(), private, algorithm="RS256")
    assert _rs_verifier(public_pem).verify(token).user_id == 42


def test_hs256_signed_with_the_public_key_is_rejected(rsa_keys: tuple[Any, str]) -> None:
    _, public_pem = rsa_keys
    token = _hmac_with(public_pem.encode(), _claims())
    with pytest.raises(AuthError, match="RS256"):
        _rs_verifier(public_pem).verify(token)


def test_rs256_signed_by_another_key_is_rejected(rsa_keys: tuple[Any, str]) -> None:
    _, public_pem = rsa_keys
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(AuthError, match="signature"):
        _rs_verifier(public_pem).verify(jwt.encode(_claims(), other, algorithm="RS256"))


def test_rs_verifier_rejects_alg_none(rsa_keys: tuple[Any, str]) -> None:
    with pytest.raises(AuthError):
        _rs_verifier(rsa_keys[1]).verify(_unsigned(_claims()))


def test_es256_token_is_accepted() -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    verifier = TokenVerifier(Settings(jwt_public_key=public_pem, jwt_algorithm="ES256"))
    assert verifier.verify(jwt.encode(_claims(), private, algorithm="ES256")).organisation_id == 7


def test_public_key_may_be_a_file(rsa_keys: tuple[Any, str], tmp_path: Any) -> None:
    private, public_pem = rsa_keys
    (tmp_path / "key.pem").write_text(public_pem)
    verifier = _rs_verifier(str(tmp_path / "key.pem"))
    assert verifier.verify(jwt.encode(_claims(), private, algorithm="RS256")).user_id == 42


def test_rsa_key_configured_as_es256_is_a_config_error(rsa_keys: tuple[Any, str]) -> None:
    with pytest.raises(ConfigError, match="VECHAT_JWT_PUBLIC_KEY"):
        TokenVerifier(Settings(jwt_public_key=rsa_keys[1], jwt_algorithm="ES256"))


def test_private_key_as_public_key_is_a_config_error(rsa_keys: tuple[Any, str]) -> None:
    private_pem = (
        rsa_keys[0]
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    with pytest.raises(ConfigError, match="public key"):
        _rs_verifier(private_pem)


# --- audience and issuer ------------------------------------------------------------------


def test_audience_and_issuer_are_enforced_when_configured() -> None:
    verifier = TokenVerifier(Settings(jwt_secret=SECRET, jwt_audience="chat", jwt_issuer="erp"))
    assert verifier.verify(_hs256(_claims(aud="chat", iss="erp"))).user_id == 42
    for bad in ({"aud": "other", "iss": "erp"}, {"aud": "chat", "iss": "evil"}, {"iss": "erp"}):
        with pytest.raises(AuthError):
            verifier.verify(_hs256(_claims(**bad)))


def test_audience_is_ignored_when_not_configured() -> None:
    verifier = TokenVerifier(Settings(jwt_secret=SECRET))
    assert verifier.verify(_hs256(_claims(aud="whatever"))).user_id == 42


def test_a_verified_token_is_not_checked_again_but_still_expires_on_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    verifier = TokenVerifier(Settings(jwt_secret=SECRET))
    now = time.time()
    token = _hs256(_claims(exp=int(now) + 60))
    assert verifier.verify(token).user_id == 42
    decoded: list[str] = []
    monkeypatch.setattr(jwt, "decode", lambda *a, **k: decoded.append("again"))
    assert verifier.verify(token).user_id == 42
    assert decoded == [], "the signature of a token already verified is not checked again"
    monkeypatch.setattr(time, "time", lambda: now + 61)
    with pytest.raises(AuthError, match="expired"):
        verifier.verify(token)


def test_a_token_not_yet_valid_is_never_kept() -> None:
    verifier = TokenVerifier(Settings(jwt_secret=SECRET))
    token = _hs256(_claims(nbf=int(time.time()) + 3600))
    for _ in range(2):
        with pytest.raises(AuthError):
            verifier.verify(token)


# --- token sources ------------------------------------------------------------------------


class _FakeHandshake:
    def __init__(self, headers: dict[str, str], query: dict[str, str], cookies: dict[str, str]):
        self.headers, self.query_params, self.cookies = headers, query, cookies


def test_websocket_token_comes_from_header_then_query_then_cookie() -> None:
    assert websocket_token(_FakeHandshake({"authorization": "Bearer h"}, {}, {})) == "h"
    assert websocket_token(_FakeHandshake({}, {"access_token": "q"}, {"access_token": "c"})) == "q"
    assert websocket_token(_FakeHandshake({}, {}, {"access_token": "c"})) == "c"
    with pytest.raises(AuthError):
        websocket_token(_FakeHandshake({}, {}, {}))


# --- minting and settings -----------------------------------------------------------------


def test_mint_token_round_trips_through_the_verifier() -> None:
    token = mint_token(
        organisation_id=3, user_id=4, user_type="client", role="admin", name="Cy", key=SECRET
    )
    assert TokenVerifier(Settings(jwt_secret=SECRET)).verify(token) == Identity(
        organisation_id=3, user_id=4, user_type="client", role="admin", display_name="Cy"
    )


def test_token_command_prints_a_verifiable_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("VECHAT_JWT_SECRET", SECRET)
    assert cli.main(["token", "--org", "5", "--user", "9", "--type", "client"]) == 0
    token = capsys.readouterr().out.strip()
    assert TokenVerifier(Settings(jwt_secret=SECRET)).verify(token).organisation_id == 5


def test_token_command_without_secret_is_a_one_line_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Where no demo ran: in a checkout after `make run`, the command signs with the demo's
    # secret from ./.vechat/demo.json, as it should.
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VECHAT_JWT_SECRET", raising=False)
    monkeypatch.delenv("VECHAT_JWT_PUBLIC_KEY", raising=False)
    assert cli.main(["token", "--org", "5", "--user", "9", "--type", "client"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "VECHAT_JWT_SECRET" in err


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"VECHAT_PORT": "eighty"}, "VECHAT_PORT must be an integer"),
        ({"VECHAT_MAX_BODY_BYTES": "0"}, "VECHAT_MAX_BODY_BYTES must be > 0"),
        ({"VECHAT_POOL_MIN": "20"}, "VECHAT_POOL_MIN"),
        ({"VECHAT_DATABASE_URL": "mysql://x"}, "VECHAT_DATABASE_URL"),
        ({"VECHAT_JWT_ALGORITHM": "HS512"}, "VECHAT_JWT_ALGORITHM must be one of"),
        ({"VECHAT_JWT_PUBLIC_KEY": "-----BEGIN"}, "RS256 or ES256"),
        ({"VECHAT_JWT_SECRET": "s", "VECHAT_JWT_ALGORITHM": "RS256"}, "must be HS256"),
        ({"VECHAT_JWT_ALGORITHM": "ES256"}, "VECHAT_JWT_PUBLIC_KEY is required"),
        ({"VECHAT_JWT_SECRET": "s", "VECHAT_JWT_PUBLIC_KEY": "k"}, "only one of"),
    ],
)
def test_bad_settings_are_one_line_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        Settings.from_env(env)
    assert "\n" not in str(caught.value)


def test_settings_defaults_and_overrides() -> None:
    settings = Settings.from_env({"VECHAT_CORS_ORIGINS": "https://a, https://b"}, port=9000)
    assert settings.port == 9000 and settings.cors_origins == ("https://a", "https://b")
    assert (settings.max_body_bytes, settings.max_upload_bytes) == (1 << 20, 10 << 20)
    assert (settings.rate_limit_per_min, settings.edit_window_s) == (60, 900)


def test_settings_repr_hides_secrets() -> None:
    text = repr(Settings(jwt_secret=SECRET, database_url="postgresql://u:hunter2@h/db"))
    assert SECRET not in text and "hunter2" not in text
