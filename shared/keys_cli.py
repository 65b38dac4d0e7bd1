"""``emgpose keys create | list | revoke``: API keys in the job database (``DATABASE_URL`` or ``--url``).

``create`` prints the new key alone on stdout, once (``export EMGPOSE_API_KEY=$(emgpose keys create
--scope submit)`` works), and on stderr where it is not stored. ``list`` never shows a secret. Making a
key needs ``AUTH_PEPPER``, the same value the services have (in compose: ``docker compose exec gateway
emgpose keys create ...``).
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime

from emgpose import auth
from emgpose.db.engine import normalize_url, session_scope
from emgpose.settings import get_settings


def _url(args: argparse.Namespace) -> str:
    return normalize_url(args.url or get_settings().database_url)


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value is not None else "-"


def cmd_create(args: argparse.Namespace) -> int:
    pepper = auth.pepper_bytes(get_settings().auth_pepper)
    with session_scope(_url(args)) as session:
        row, key = auth.create_key(session, pepper, args.scope, args.name)
        key_id, scope, name = row.id, row.scope, row.name
    print(key)  # noqa: T201 - the one place the key is shown
    print(  # noqa: T201
        f"created API key {key_id} (scope {scope}{f', name {name!r}' if name else ''}). The key above is shown "
        "only now: it is stored nowhere (the database keeps a keyed hash). Keep it in a secret store, or a "
        "file only you can read; send it as `Authorization: Bearer <key>` or set EMGPOSE_API_KEY.",
        file=sys.stderr,
    )
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    with session_scope(_url(args)) as session:
        rows = [auth.describe(row) for row in auth.list_keys(session)]
    if not rows:
        print("no API keys (make one with `emgpose keys create --scope admin`)")  # noqa: T201
        return 0
    header = f"{'id':<16}  {'scope':<6}  {'created':<20}  {'last used':<20}  {'revoked':<20}  name"
    lines = [header]
    for row in rows:
        lines.append(
            f"{row['id']:<16}  {row['scope']:<6}  {_when(row['created_at']):<20}  {_when(row['last_used_at']):<20}  "
            f"{_when(row['revoked_at']):<20}  {row['name']}"
        )
    print("\n".join(lines))  # noqa: T201
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    with session_scope(_url(args)) as session:
        row = auth.revoke_key(session, args.key_id)
        summary = f"API key {row.id} (scope {row.scope}{f', name {row.name!r}' if row.name else ''})"
        when = _when(row.revoked_at)
    print(  # noqa: T201
        f"revoked {summary} at {when}: refused from now on (a service that checked it moments ago may still "
        f"accept it for up to AUTH_CACHE_S, {get_settings().auth_cache_s:g} s)"
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    keys = sub.add_parser("keys", help="API keys: create (shown once), list (no secrets), revoke")
    actions = keys.add_subparsers(dest="action", required=True)

    create = actions.add_parser("create", help="make a key and print it once")
    create.add_argument("--scope", required=True, choices=auth.SCOPES, help="read < submit < admin")
    create.add_argument("--name", default="", help="a label: who or what uses the key")
    create.set_defaults(func=cmd_create)

    listing = actions.add_parser("list", help="every key with its scope and dates, never the secret")
    listing.set_defaults(func=cmd_list)

    revoke = actions.add_parser("revoke", help="refuse a key from now on")
    revoke.add_argument("key_id", help="the key's id (from `emgpose keys list`)")
    revoke.set_defaults(func=cmd_revoke)

    for parser in (create, listing, revoke):
        parser.add_argument("--url", help="database URL (default DATABASE_URL)")
