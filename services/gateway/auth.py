"""Who is asking: the user of a bearer token (its ``sub``), verified with PyJWT.

HS256 with ``CARTFLOW_GATEWAY_JWT_SECRET``, or RS256 with
``CARTFLOW_GATEWAY_JWT_PUBLIC_KEY``; ``exp`` is required, audience and issuer
are checked when set. With neither key configured, a development secret is
generated once under the data folder: ``cartflow token USER_ID`` signs with it,
and the storefront's development login exists only while it is in use.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import jwt
from starlette.requests import Request

from contracts.envelope import is_identifier
from services.runtime.settings import Settings

DEVELOPMENT_SECRET_FILE = "gateway-development-secret"
INVALID_TOKEN = "Given token not valid for any token type"
#: RFC 7518 3.2: an HS256 key is at least as long as the hash.
MIN_SECRET_BYTES = 32
log = logging.getLogger(__name__)


class NotAuthenticated(Exception):
    """No usable bearer token: the request is answered 401."""


@dataclass(frozen=True)
class Verifier:
    key: str
    algorithm: str
    audience: str | None = None
    issuer: str | None = None
    #: Whether the key is the generated development secret (the development login exists only then).
    development: bool = False

    def user_of(self, authorization: str | None) -> str:
        """The user id a ``Bearer`` authorization header proves, or ``NotAuthenticated``."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise NotAuthenticated("Authentication credentials were not provided.")
        try:
            claims = jwt.decode(
                token.strip(),
                self.key,
                algorithms=[self.algorithm],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "sub"]},
            )
        except jwt.PyJWTError as error:
            # The reason is logged, not answered: it would tell a forger what to change.
            log.info("refused a bearer token: %s", error)
            raise NotAuthenticated(INVALID_TOKEN) from None
        user_id = claims.get("sub")
        if not is_identifier(user_id):
            raise NotAuthenticated(INVALID_TOKEN)
        return user_id

    def issue(self, user_id: str, *, ttl_seconds: int = 24 * 3600) -> str:
        """A token for ``user_id`` (HS256 only: an RS256 deployment signs elsewhere)."""
        if self.algorithm != "HS256":
            raise RuntimeError("tokens are issued by your identity provider when CARTFLOW_GATEWAY_JWT_PUBLIC_KEY is set")
        now = int(time.time())
        claims: dict[str, object] = {"sub": user_id, "iat": now, "exp": now + ttl_seconds}
        if self.audience:
            claims["aud"] = self.audience
        if self.issuer:
            claims["iss"] = self.issuer
        return jwt.encode(claims, self.key, algorithm="HS256")


def loopback(host: str | None) -> bool:
    """Whether ``host`` (a name or an address) is this machine's loopback."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def from_this_machine(request: Request) -> bool:
    """Whether a request came from a loopback address and named a loopback host:
    a page of another site that resolves its own name to 127.0.0.1 (DNS
    rebinding) sends its own name as ``Host``, and a proxy in front of the
    gateway connects from its own address or forwards another ``Host``."""
    host = request.headers.get("host", "")
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return request.client is not None and loopback(request.client.host) and loopback(name)


def development_secret(data_dir: str | Path, *, create: bool = True) -> str | None:
    """The generated development secret under ``data_dir`` (created, readable by
    its owner only, when missing and ``create``)."""
    path = Path(data_dir) / DEVELOPMENT_SECRET_FILE
    if path.exists():
        return path.read_text().strip()
    if not create:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first
        time.sleep(0.1)
        return path.read_text().strip()
    with os.fdopen(descriptor, "w") as file:
        file.write(secret)
    return secret


def verifier(settings: Settings) -> Verifier:
    """How this deployment checks tokens: its configured key, else the development secret."""
    audience, issuer = settings.gateway_jwt_audience, settings.gateway_jwt_issuer
    if settings.gateway_jwt_public_key:
        return Verifier(settings.gateway_jwt_public_key, "RS256", audience, issuer)
    if settings.gateway_jwt_secret is not None:
        secret = settings.gateway_jwt_secret.get_secret_value()
        if len(secret.encode()) < MIN_SECRET_BYTES:
            raise RuntimeError(f"CARTFLOW_GATEWAY_JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes")
        return Verifier(secret, "HS256", audience, issuer)
    if not loopback(settings.gateway_host):
        # The development login hands out tokens for any user: never beyond this machine.
        raise RuntimeError(
            "set CARTFLOW_GATEWAY_JWT_SECRET or CARTFLOW_GATEWAY_JWT_PUBLIC_KEY to serve beyond this machine "
            f"(CARTFLOW_GATEWAY_HOST={settings.gateway_host}); the development secret is for 127.0.0.1 only"
        )
    secret = development_secret(settings.data_dir)
    assert secret is not None
    return Verifier(secret, "HS256", audience, issuer, development=True)
