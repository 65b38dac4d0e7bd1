"""API keys: scopes, the key format, how keys are stored and checked, and the per-key limit on jobs.

**Scopes** are ordered, each including the ones before it: ``read`` (every GET), ``submit`` (jobs,
uploads, predictions) and ``admin`` (promoting models, registering datasets, managing keys).

**A key** is ``emgp_<key id>_<secret>``: the id is 16 hex digits, public (it names the key in lists,
logs and the job rows it submitted); the secret is 256 random bits from :mod:`secrets` (43 base64url
characters). The whole key is shown once, when it is made, and stored nowhere.

**Stored: HMAC-SHA256(AUTH_PEPPER, key), not scrypt.** A slow password hash protects secrets people
choose, by making each guess expensive. These secrets are 256 random bits: no number of guesses at any
speed finds one, so scrypt would add nothing but its cost (tens of milliseconds and 16 MiB per check)
on every check the cache misses, a cost anyone could make the server pay by sending made-up secrets for
a known key id. The HMAC takes a microsecond. Its key, the pepper, lives outside the database (in the
environment of the services and of ``emgpose keys``), so a copy of the table alone (a backup, a leaked
dump) cannot even test a candidate key, and rows copied into another deployment verify nothing. Digests
are compared with :func:`hmac.compare_digest` (constant time). Changing the pepper invalidates every key.

**Checking** (:class:`Verifier`): a key verified against its row is trusted for ``AUTH_CACHE_S`` (30 s)
without another database read, so a revocation made elsewhere (``emgpose keys revoke``, another
process) takes effect within that time; the process that revokes a key forgets it at once. While the
database cannot be reached, a key verified in the last :data:`STALE_IF_ERROR_S` keeps working and any
other key gets 503. ``last_used_at`` is written at most every :data:`LAST_USED_RESOLUTION_S`.

Error messages and logs name a key by its id only; neither ever contains a secret or what a caller sent.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, get_args

from pydantic import SecretStr
from sqlalchemy import func, select, update
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session

from emgpose.db.engine import session_scope
from emgpose.db.models import ApiKey, Job, utcnow
from emgpose.errors import Forbidden, InvalidInput, NotFound, TooManyRequests, Unauthorized, Unavailable

log = logging.getLogger(__name__)

Scope = Literal["read", "submit", "admin"]
SCOPES: tuple[Scope, ...] = get_args(Scope)  # lowest first; each includes the ones before it
PREFIX = "emgp"
ID_HEX = 16  # 64 bits: unique, not secret
SECRET_BYTES = 32  # 256 bits of randomness
ID_PATTERN = re.compile(f"[0-9a-f]{{{ID_HEX}}}")
KEY_PATTERN = re.compile(rf"^{PREFIX}_([0-9a-f]{{{ID_HEX}}})_([A-Za-z0-9_-]{{43}})$")
KEY_FORMAT = f"{PREFIX}_<key id>_<secret>"
MIN_PEPPER = 32  # characters of AUTH_PEPPER
NAME_MAX = 100
LAST_USED_RESOLUTION_S = 600.0
STALE_IF_ERROR_S = 300.0
CACHE_MAX = 10_000  # verified keys remembered per process
IN_FLIGHT_RETRY_AFTER_S = 30
IN_FLIGHT = ("queued", "running")  # the job states that are not TERMINAL (emgpose.jobs.schemas)
REALM = 'Bearer realm="emgpose"'


class AuthNotConfigured(Unavailable):
    """Keys cannot be made or checked: ``AUTH_PEPPER`` is missing or too short (HTTP 503)."""


@dataclass(frozen=True)
class ApiKeyInfo:
    """What a request knows about the key it came with (never the secret)."""

    id: str
    name: str
    scope: Scope


def allows(granted: str, needed: Scope) -> bool:
    """Whether a key of scope ``granted`` may do what needs ``needed`` (``admin`` > ``submit`` > ``read``)."""
    return granted in SCOPES and SCOPES.index(granted) >= SCOPES.index(needed)  # type: ignore[arg-type]


def check_scope(scope: str) -> Scope:
    if scope not in SCOPES:
        raise InvalidInput(f"scope {scope!r} is not one of {', '.join(SCOPES)} (each includes the ones before it)")
    return scope  # type: ignore[return-value]


def check_name(name: str) -> str:
    """A key's label: up to :data:`NAME_MAX` characters after trimming, no control characters or line breaks."""
    name = name.strip()
    if len(name) > NAME_MAX:
        raise InvalidInput(f"key name is {len(name)} characters long; the most is {NAME_MAX}")
    if any(unicodedata.category(char) in ("Cc", "Cs", "Zl", "Zp") for char in name):
        raise InvalidInput("key name holds a control character or a line break; use printable text")
    return name


def pepper_bytes(pepper: SecretStr | None) -> bytes:
    """The HMAC key; :class:`AuthNotConfigured` where AUTH_PEPPER is unset or shorter than :data:`MIN_PEPPER`."""
    value = pepper.get_secret_value() if pepper is not None else ""
    if len(value) < MIN_PEPPER:
        state = "is not set" if not value else f"has {len(value)} characters"
        raise AuthNotConfigured(
            f"API keys need AUTH_PEPPER, a secret of at least {MIN_PEPPER} characters (e.g. `openssl rand -hex 32`), "
            f"the same for the gateway, inference and `emgpose keys`; it {state}"
        )
    return value.encode()


def new_key() -> tuple[str, str]:
    """``(key id, key)`` for a new key; the key is ``emgp_<id>_<secret>`` with a 256-bit secret."""
    key_id = secrets.token_hex(ID_HEX // 2)
    return key_id, f"{PREFIX}_{key_id}_{secrets.token_urlsafe(SECRET_BYTES)}"


def key_id_of(key: str) -> str | None:
    """The id of a well-formed key, else None (the text is never echoed: it may be a secret)."""
    match = KEY_PATTERN.match(key)
    return match.group(1) if match else None


def key_digest(pepper: bytes, key: str) -> str:
    """Hex HMAC-SHA256 of the whole key: what the database holds."""
    return hmac.new(pepper, key.encode(), hashlib.sha256).hexdigest()


# --- errors a caller sees ---------------------------------------------------------------------------


def unauthorized(message: str, invalid: bool = True) -> Unauthorized:
    """401 with ``WWW-Authenticate: Bearer`` (RFC 6750: ``error="invalid_token"`` where a key was sent)."""
    challenge = f'{REALM}, error="invalid_token"' if invalid else REALM
    return Unauthorized(message, headers={"WWW-Authenticate": challenge})


def missing_key() -> Unauthorized:
    return unauthorized(
        "this route needs an API key: send `Authorization: Bearer <key>`; an admin makes keys with "
        "`emgpose keys create --scope read|submit|admin` or POST /v1/keys",
        invalid=False,
    )


def malformed_key() -> Unauthorized:
    return unauthorized(f"the Authorization header must be `Bearer {KEY_FORMAT}` (an emgpose API key)")


def insufficient_scope(key: ApiKeyInfo, needed: Scope) -> Forbidden:
    """403 naming the scope needed and the key's own (RFC 6750 ``insufficient_scope``)."""
    above = ", ".join(SCOPES[SCOPES.index(needed) :])
    return Forbidden(
        f"this needs scope {needed!r} (a key of scope {above}); key {key.id} has scope {key.scope!r}",
        headers={"WWW-Authenticate": f'{REALM}, error="insufficient_scope", scope="{needed}"'},
    )


def bearer_key(authorization: str | None) -> str:
    """The key in an ``Authorization: Bearer <key>`` header value; 401 when absent or not a key."""
    if not authorization or not authorization.strip():
        raise missing_key()
    scheme, _, credentials = authorization.strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() != "bearer" or key_id_of(credentials) is None:
        raise malformed_key()
    return credentials


# --- records ----------------------------------------------------------------------------------------


def create_key(session: Session, pepper: bytes, scope: str, name: str = "") -> tuple[ApiKey, str]:
    """Adds a key (flushed, not committed) and returns ``(row, key)``: the only time the key exists in full."""
    scope, name = check_scope(scope), check_name(name)
    key_id, key = new_key()
    row = ApiKey(id=key_id, name=name, scope=scope, digest=key_digest(pepper, key), created_at=utcnow())
    session.add(row)
    session.flush()
    log.info("API key %s (%s, scope %s) created", key_id, name or "unnamed", scope)
    return row, key


def list_keys(session: Session) -> list[ApiKey]:
    """Every key, revoked ones included, newest first (rows hold no secret)."""
    return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at.desc(), ApiKey.id)))


def revoke_key(session: Session, key_id: str) -> ApiKey:
    """Revokes a key (again is no error: the first revocation time stays); 404 for an unknown id."""
    key_id = key_id_of(key_id) or key_id.strip()  # a whole key names its id
    if not ID_PATTERN.fullmatch(key_id):  # not echoed: it may be a mistyped key
        raise InvalidInput(f"a key id is {ID_HEX} lower-case hex digits (the ids `emgpose keys list` shows)")
    row = session.get(ApiKey, key_id)
    if row is None:
        raise NotFound(f"no API key {key_id} (see `emgpose keys list`)")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        log.info("API key %s (%s, scope %s) revoked", row.id, row.name or "unnamed", row.scope)
    return row


def check_in_flight(session: Session, key_id: str, limit: int) -> None:
    """429 (``Retry-After``) when the key already has ``limit`` queued or running jobs.

    The key's row is written first (an update that changes nothing), which holds its row lock on
    PostgreSQL and the write lock on SQLite until the caller commits, so that concurrent submissions
    with one key are counted one after the other and cannot pass the limit together.
    """
    session.execute(update(ApiKey).where(ApiKey.id == key_id).values(name=ApiKey.name))
    in_flight = session.scalar(
        select(func.count()).select_from(Job).where(Job.api_key_id == key_id, Job.state.in_(IN_FLIGHT))
    )
    if (in_flight or 0) >= limit:
        raise TooManyRequests(
            f"API key {key_id} has {in_flight} jobs queued or running, the most one key may have "
            f"(MAX_JOBS_IN_FLIGHT_PER_KEY={limit}); retry when one has finished, or cancel one",
            headers={"Retry-After": str(IN_FLIGHT_RETRY_AFTER_S)},
        )


# --- checking ---------------------------------------------------------------------------------------


@dataclass
class _Verified:
    info: ApiKeyInfo
    at: float  # time.monotonic() of the database check


class Verifier:
    """Checks keys against ``api_keys`` of one database, remembering verified ones for ``cache_s``.

    Thread-safe; :meth:`verify` blocks on the database (call it from a worker thread), :meth:`cached`
    never does (the event loop's fast path).
    """

    def __init__(self, database_url: str, pepper: SecretStr | None, cache_s: float) -> None:
        self.database_url = database_url
        self.pepper = pepper_bytes(pepper)  # refuses to start without one
        self.cache_s = cache_s
        self._verified: dict[str, _Verified] = {}  # by digest: a wrong secret never hits
        self._lock = threading.Lock()

    def cached(self, key: str) -> ApiKeyInfo | None:
        """The key's info if it was verified within ``cache_s``, else None (no I/O)."""
        with self._lock:
            entry = self._verified.get(key_digest(self.pepper, key))
        if entry is not None and time.monotonic() - entry.at < self.cache_s:
            return entry.info
        return None

    def verify(self, key: str) -> ApiKeyInfo:
        """The key's info; :class:`Unauthorized` (401) for a malformed, unknown or revoked key."""
        key_id = key_id_of(key)
        if key_id is None:
            raise malformed_key()
        digest = key_digest(self.pepper, key)
        now = time.monotonic()
        with self._lock:
            entry = self._verified.get(digest)
        if entry is not None and now - entry.at < self.cache_s:
            return entry.info
        try:
            info = self._check(key_id, digest)
        except (OperationalError, InterfaceError, PoolTimeout) as exc:
            if entry is not None and now - entry.at < STALE_IF_ERROR_S:
                age = now - entry.at
                log.warning("API key %s: database unreachable, trusting its check of %.0f s ago", key_id, age)
                return entry.info
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            raise Unavailable(f"API keys cannot be checked: the database is not reachable ({reason})") from exc
        except Unauthorized:
            self.forget(key_id)
            raise
        with self._lock:
            if len(self._verified) >= CACHE_MAX:
                self._verified.pop(next(iter(self._verified)))
            self._verified[digest] = _Verified(info, now)
        return info

    def forget(self, key_id: str) -> None:
        """Drops a key from the cache (this process revoked it): its next use reads the database."""
        with self._lock:
            for digest in [d for d, entry in self._verified.items() if entry.info.id == key_id]:
                del self._verified[digest]

    def _check(self, key_id: str, digest: str) -> ApiKeyInfo:
        with session_scope(self.database_url) as session:
            row = session.get(ApiKey, key_id)
            if row is None or not hmac.compare_digest(row.digest, digest):
                log.info("refused an API key: %s", "unknown id" if row is None else f"wrong secret for key {key_id}")
                raise unauthorized("API key not recognised; check it was copied whole, or ask an admin for one")
            if row.revoked_at is not None:
                log.info("refused API key %s: revoked at %s", key_id, row.revoked_at.isoformat())
                raise unauthorized(f"API key {key_id} was revoked; ask an admin for a new one")
            if row.last_used_at is None or utcnow() - row.last_used_at > timedelta(seconds=LAST_USED_RESOLUTION_S):
                row.last_used_at = utcnow()
            return ApiKeyInfo(id=row.id, name=row.name, scope=check_scope(row.scope))


def describe(row: ApiKey) -> dict[str, str | bool | datetime | None]:
    """A key as lists show it: everything but the digest."""
    return {
        "id": row.id,
        "name": row.name,
        "scope": row.scope,
        "created_at": row.created_at,
        "last_used_at": row.last_used_at,
        "revoked_at": row.revoked_at,
        "revoked": row.revoked_at is not None,
    }
