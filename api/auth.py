"""API keys: high-entropy bearer tokens, stored as sha256 hashes and shown exactly once."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.errors import Problem
from kgan_service.models import ApiKey, Owner

KEY_PREFIX = "kgan_"


@dataclass(frozen=True)
class NewKey:
    owner_id: str
    owner_name: str
    key_id: str
    token: str  # the only time the plain key exists


def hash_token(token: str) -> str:
    # A 256-bit random token needs no slow KDF: a plain hash cannot be brute-forced.
    return hashlib.sha256(token.encode()).hexdigest()


def create_key(session: Session, owner_name: str) -> NewKey:
    owner = session.scalar(select(Owner).where(Owner.name == owner_name))
    if owner is None:
        owner = Owner(name=owner_name)
        session.add(owner)
        session.flush()
    token = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(owner_id=owner.id, key_hash=hash_token(token), prefix=token[: len(KEY_PREFIX) + 6])
    session.add(key)
    session.flush()
    return NewKey(owner.id, owner.name, key.id, token)


def unauthorized(detail: str) -> Problem:
    return Problem(401, "Missing or invalid API key", detail, slug="unauthorized",
                   headers={"WWW-Authenticate": 'Bearer realm="kgan"'})


def owner_for_header(session: Session, authorization: str | None) -> Owner:
    if not authorization:
        raise unauthorized("Send your API key as 'Authorization: Bearer <key>'. "
                           "Create one with `kgan create-key` (or `python -m api.keys create`).")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise unauthorized("The Authorization header must read 'Bearer <key>'.")
    row = session.execute(
        select(Owner).join(ApiKey, ApiKey.owner_id == Owner.id)
        .where(ApiKey.key_hash == hash_token(token), ApiKey.revoked_at.is_(None))
    ).scalar_one_or_none()
    if row is None:
        raise unauthorized("This API key is not known or has been revoked; check for a copying mistake "
                           "or create a new key with `kgan create-key`.")
    return row
