"""JWT → Identity: the only way a request learns which organisation and user it acts for."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar

import jwt

from vechat_rls.config import ConfigError, Settings
from vechat_rls.identity import BIGINT_MAX, ROLE_PATTERN, Identity, UserType

T = TypeVar("T")
NAME_MAX_CHARS = 200
VERIFIED_CACHE_SIZE = 4096  # tokens whose signature and claims were checked, per process

# The ERP's existing tokens spell some claims differently; the first name is ours (contract.md).
ORGANISATION_CLAIMS = ("org", "organisation_id", "organisationId")
USER_CLAIMS = ("sub", "id")
USER_TYPE_CLAIMS = ("user_type", "userType")

WEBSOCKET_TOKEN_PARAMETER = "access_token"  # noqa: S105 - a parameter name; also the cookie


class AuthError(Exception):
    """No usable token; the API answers 401 with `WWW-Authenticate: Bearer`.

    `reason` is safe to show (it never contains the token); `error` is RFC 6750's error code, empty
    when the request carried no token at all.
    """

    def __init__(self, reason: str, *, error: str = "invalid_token") -> None:
        super().__init__(reason)
        self.reason = reason
        self.error = error

    @property
    def www_authenticate(self) -> str:
        if not self.error:
            return 'Bearer realm="vechat"'
        description = self.reason.replace('"', "'")
        return f'Bearer realm="vechat", error="{self.error}", error_description="{description}"'


class TokenVerifier:
    """Verifies tokens with the one configured algorithm and key (pinned: no `alg` negotiation)."""

    def __init__(self, settings: Settings) -> None:
        self.algorithm = settings.resolved_jwt_algorithm
        self.audience = settings.jwt_audience
        self.issuer = settings.jwt_issuer
        self._key = _load_key(self.algorithm, settings.jwt_verification_key())
        self._options: jwt.types.Options = {
            "require": ["exp"],
            "verify_sub": False,  # an integer `sub` is accepted (contract.md); checked below
            "verify_aud": self.audience is not None,
            "verify_iss": self.issuer is not None,
        }
        # token -> (identity, exp): a client sends the same token with every request, and the
        # signature check cost ~5 % of the API's CPU per message sent (bench/http_api.py
        # --profile). Only the clock can change the verdict on a token already verified: it is
        # checked again on every use (exp); tokens with `nbf` are not kept (checked each time).
        self._verified: dict[str, tuple[Identity, float]] = {}

    def verify(self, token: str) -> Identity:
        """The identity in `token`, or `AuthError` for anything short of a valid, current token."""
        known = self._verified.get(token)
        if known is not None:
            identity, expires = known
            if time.time() < expires:
                return identity
            del self._verified[token]
            raise AuthError("token has expired")
        claims = self._decode(token)
        identity = identity_from_claims(claims)
        exp = claims.get("exp")
        if "nbf" not in claims and isinstance(exp, int | float):
            if len(self._verified) >= VERIFIED_CACHE_SIZE:
                self._verified.clear()  # simplest bound: start over (a cache miss is one decode)
            self._verified[token] = (identity, float(exp))
        return identity

    def _decode(self, token: str) -> dict[str, Any]:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[self.algorithm],
                audience=self.audience,
                issuer=self.issuer,
                options=self._options,
                leeway=0,
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token has expired") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError(f"token lacks the {exc.claim!r} claim") from None
        except jwt.InvalidAlgorithmError:
            raise AuthError(f"token must be signed with {self.algorithm}") from None
        except jwt.InvalidAudienceError:
            raise AuthError("token is for another audience") from None
        except jwt.InvalidIssuerError:
            raise AuthError("token is from another issuer") from None
        except jwt.InvalidSignatureError:
            raise AuthError("token signature is invalid") from None
        except jwt.PyJWTError:
            raise AuthError("token is malformed or invalid") from None
        return claims


def identity_from_claims(claims: Mapping[str, Any]) -> Identity:
    """Validate the verified claims (with the ERP's aliases) into an Identity."""
    organisation_id = _claim(claims, ORGANISATION_CLAIMS, _positive_int)
    user_id = _claim(claims, USER_CLAIMS, _positive_int)
    user_type = _claim(claims, USER_TYPE_CLAIMS, _user_type)
    role = claims.get("role")
    if role not in (None, "") and (not isinstance(role, str) or not ROLE_PATTERN.fullmatch(role)):
        raise AuthError("token claim 'role' must be a short identifier")
    name = claims.get("name")
    if name is not None and not isinstance(name, str):
        raise AuthError("token claim 'name' must be a string")
    name = (name or "").strip()[:NAME_MAX_CHARS] or None
    return Identity(
        organisation_id=organisation_id,
        user_id=user_id,
        user_type=user_type,
        role=role or None,
        display_name=name,
    )


def _claim(claims: Mapping[str, Any], names: tuple[str, ...], parse: Callable[[Any, str], T]) -> T:
    values = [parse(claims[n], names[0]) for n in names if n in claims]
    if not values:
        raise AuthError(f"token lacks the {names[0]!r} claim")
    if any(value != values[0] for value in values[1:]):
        # Two spellings naming two organisations: refuse rather than guess which one counts.
        raise AuthError(f"token carries conflicting values for the {names[0]!r} claim")
    return values[0]


def _positive_int(value: Any, claim: str) -> int:
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
        number = int(value)
    if number is None or not 0 < number <= BIGINT_MAX:
        raise AuthError(f"token claim {claim!r} must be a positive integer")
    return number


def _user_type(value: Any, claim: str) -> UserType:
    if value == "personnel":
        return "personnel"
    if value == "client":
        return "client"
    raise AuthError(f"token claim {claim!r} must be 'personnel' or 'client'")


def _load_key(algorithm: str, key: str) -> Any:
    if algorithm == "HS256":
        return key
    try:
        parsed = jwt.algorithms.get_default_algorithms()[algorithm].prepare_key(key)
    except (jwt.InvalidKeyError, ValueError, TypeError) as exc:
        raise ConfigError(f"VECHAT_JWT_PUBLIC_KEY is not a usable {algorithm} key: {exc}") from None
    if hasattr(parsed, "private_bytes"):
        raise ConfigError("VECHAT_JWT_PUBLIC_KEY must be a public key, not a private key")
    return parsed


# ---------------------------------------------------------------------------------------------
# Where a token comes from


class _Connection(Protocol):
    """The parts of a Litestar `Request`/`WebSocket` (ASGIConnection) read here."""

    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def query_params(self) -> Mapping[str, Any]: ...
    @property
    def cookies(self) -> Mapping[str, str]: ...


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of an `Authorization: Bearer …` header, or None when there is none."""
    value = headers.get("authorization")
    if value is None:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("Authorization header must be 'Bearer <token>'", error="invalid_request")
    return token.strip()


def http_token(connection: _Connection) -> str:
    """The token of an HTTP request: the `Authorization: Bearer` header only."""
    token = bearer_token(connection.headers)
    if token is None:
        raise AuthError("missing bearer token", error="")
    return token


def websocket_token(connection: _Connection) -> str:
    """A WebSocket handshake's token: header, else `?access_token=`, else cookie `access_token`.

    Browsers cannot set headers on a WebSocket, hence the two other places (contract.md).
    """
    token = bearer_token(connection.headers)
    if token is None:
        token = connection.query_params.get(WEBSOCKET_TOKEN_PARAMETER) or connection.cookies.get(
            WEBSOCKET_TOKEN_PARAMETER
        )
    if not token or not isinstance(token, str):
        raise AuthError("missing access token", error="")
    return token


# ---------------------------------------------------------------------------------------------
# Minting (tests, the demo, `vechat-rls token`: cli/token.py)


def mint_token(
    *,
    organisation_id: int,
    user_id: int,
    user_type: str,
    key: Any,
    algorithm: str = "HS256",
    role: str | None = None,
    name: str | None = None,
    ttl_s: int = 3600,
    audience: str | None = None,
    issuer: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """A signed token in our claim names (`extra` may add or override claims, e.g. aliases)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "org": organisation_id,
        "sub": str(user_id),
        "user_type": user_type,
        "iat": now,
        "exp": now + ttl_s,
    }
    if role is not None:
        claims["role"] = role
    if name is not None:
        claims["name"] = name
    if audience is not None:
        claims["aud"] = audience
    if issuer is not None:
        claims["iss"] = issuer
    claims.update(extra or {})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # short test secrets are the caller's business
        return jwt.encode(claims, key, algorithm=algorithm)
