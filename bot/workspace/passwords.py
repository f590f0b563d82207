"""Password hashing with argon2id (argon2-cffi's defaults follow RFC 9106)."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

#: OWASP's argon2id parameters (19 MiB, 2 passes, 1 lane): about a quarter second on a
#: 2-core office server; argon2-cffi's defaults (64 MiB, 3 passes) took over a second.
_HASHER = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)
#: Verified against when the user name is unknown, so timing does not reveal names.
_DUMMY = _HASHER.hash("not a password of anyone")
MIN_LENGTH = 8


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    try:
        return _HASHER.verify(stored or _DUMMY, password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


def acceptable(password: str) -> bool:
    return len(password) >= MIN_LENGTH
