"""Personal numbers in free text: a masked copy to show, the original sealed.

Residents type their phone, ID card and bank card numbers and e-mail addresses into
their stories ("押金打到我卡上 6222…", "电话13812345678"); mediators quote them back in
replies and notes. PIPL article 51 asks that such data be protected, and only the
case's own mediator needs it in full. So every free text the store keeps goes in two
parts:

* the ordinary column holds the text with those numbers **masked**
  (:func:`storage.redact.redact`). Cards, lists, search, exports, reports and logs
  read only this, so none of them can leak what they never see;
* a ``…_sealed`` column beside it holds the **original**, encrypted with the phone
  vault's keys (Fernet under :class:`~cryptography.fernet.MultiFernet`, so ``tiaojie
  keys rotate`` re-encrypts it like the phone columns). It is NULL when the text has
  nothing to hide, and read only by an audited reveal (:mod:`actions.reveal`).

JSON values (a timeline entry's data, the case's form answers, a conversation's state,
an outbox message) are sealed whole: every string inside is masked, and the sealed
column holds the original JSON document.

Writers do nothing special: a ``before_flush`` listener seals every registered column
of new and changed rows, with the vault the session was opened with
(``session.info["vault"]``, set by :class:`bot.runtime.Store`). A session without a
vault masks and keeps no original — the safe failure. Core statements bypass the
listener; the few that write these columns (conversation saves, retention, rotation)
call :func:`seal_text`/:func:`seal_value` themselves.

Pure of the models (they register themselves here), so any ``storage`` module can use it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import event, inspect
from sqlalchemy.orm import Session

from storage.redact import find_personal_numbers, redact

#: Where a session carries its vault (``async_sessionmaker(..., info={VAULT_KEY: v})``).
VAULT_KEY = "vault"


class Vault(Protocol):
    """What sealing needs of :class:`storage.phone.PhoneVault`."""

    def encrypt(self, phone: str) -> bytes: ...

    def decrypt(self, token: bytes | None) -> str | None: ...


def _is_identifier(key: object) -> bool:
    """Keys whose values are ids, never words (a Telegram ``file_id`` is random letters
    and digits that could look like a number; masking it would lose the file)."""
    return isinstance(key, str) and (
        key == "id" or key.endswith("_id") or key in ("mime_type", "sha256")
    )


def seal_text(text: str | None, vault: Vault | None) -> tuple[str | None, bytes | None]:
    """``(masked text, sealed original or None)``; None when nothing needed hiding."""
    if not text:
        return text, None
    result = redact(text)
    if not result.found:
        return text, None
    return result.masked_text, vault.encrypt(text) if vault is not None else None


def unseal_text(masked: str | None, token: bytes | None, vault: Vault | None) -> str | None:
    """The original when sealed and readable, else the masked text."""
    if token and vault is not None:
        original = vault.decrypt(token)
        if original is not None:
            return original
    return masked


def _masked(value: Any, key: object = None) -> tuple[Any, bool]:
    """``value`` with every string inside masked; and whether anything was."""
    if isinstance(value, str):
        if _is_identifier(key) or not find_personal_numbers(value):
            return value, False
        return redact(value).masked_text, True
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**10:
        # A number read as an amount or a count may be a phone or card number.
        digits = str(value)
        if not _is_identifier(key) and find_personal_numbers(digits):
            return redact(digits).masked_text, True
        return value, False
    if isinstance(value, dict):
        changed = False
        out: dict[Any, Any] = {}
        for name, child in value.items():
            out[name], hit = _masked(child, name)
            changed = changed or hit
        return (out, True) if changed else (value, False)
    if isinstance(value, list | tuple):
        items = [_masked(child, key) for child in value]
        if any(hit for _, hit in items):
            return [item for item, _ in items], True
        return value, False
    return value, False


def has_personal(value: Any) -> bool:
    return _masked(value)[1]


def seal_value(value: Any, vault: Vault | None) -> tuple[Any, bytes | None]:
    """A JSON value masked, and the original document sealed (None: nothing to hide)."""
    masked, changed = _masked(value)
    if not changed:
        return value, None
    if vault is None:
        return masked, None
    body = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    return masked, vault.encrypt(body)


def unseal_value(masked: Any, token: bytes | None, vault: Vault | None) -> Any:
    """The original JSON value when sealed and readable, else the masked one."""
    if token and vault is not None:
        body = vault.decrypt(token)
        if body is not None:
            try:
                return json.loads(body)
            except ValueError:
                return masked
    return masked


# ---------------------------------------------------------------- sealed columns


@dataclass(frozen=True, slots=True)
class SealedColumn:
    """``model.attr`` is shown masked; ``model.sealed`` holds its original."""

    model: type[Any]
    attr: str
    sealed: str
    json: bool = False

    @property
    def label(self) -> str:
        return f"{self.model.__tablename__}.{self.sealed}"

    def seal(self, value: Any, vault: Vault | None) -> tuple[Any, bytes | None]:
        return seal_value(value, vault) if self.json else seal_text(value, vault)

    def unseal(self, row: Any, vault: Vault | None) -> Any:
        masked, token = getattr(row, self.attr), getattr(row, self.sealed)
        if self.json:
            return unseal_value(masked, token, vault)
        return unseal_text(masked, token, vault)


_REGISTRY: dict[type[Any], list[SealedColumn]] = {}


def register(model: type[Any], attr: str, sealed: str, *, json: bool = False) -> None:
    """Declare a sealed pair (called by the module that defines ``model``)."""
    column = SealedColumn(model, attr, sealed, json)
    if column not in _REGISTRY.setdefault(model, []):
        _REGISTRY[model].append(column)


def sealed_columns() -> list[SealedColumn]:
    """Every registered pair, for rotation, retention and the tests."""
    return [column for columns in _REGISTRY.values() for column in columns]


def columns_of(model: type[Any]) -> list[SealedColumn]:
    return list(_REGISTRY.get(model, []))


def session_vault(session: Any) -> Vault | None:
    """The vault a (sync or async) session was opened with, if any."""
    info = getattr(session, "info", None) or {}
    found = info.get(VAULT_KEY)
    return found if found is not None else None


def _seal_row(row: Any, columns: Iterable[SealedColumn], vault: Vault | None, new: bool) -> None:
    state = inspect(row)
    for column in columns:
        history = state.attrs[column.attr].history
        if not new and not history.has_changes():
            continue
        if state.attrs[column.sealed].history.has_changes():
            continue  # the writer sealed it itself
        value = getattr(row, column.attr)
        old = history.deleted[0] if history.deleted else None
        if not new and value == old:
            continue  # the same (masked) value set again: the original stays sealed
        original = value
        token = getattr(row, column.sealed)
        if (
            not new
            and not column.json
            and isinstance(old, str)
            and isinstance(value, str)
            and old
            and value.startswith(old)
            and token
        ):
            # Text appended to the shown (masked) copy: the original grows the same way.
            original = (unseal_text(old, token, vault) or old) + value[len(old) :]
        masked, sealed = column.seal(original, vault)
        if masked != value:
            setattr(row, column.attr, masked)
        setattr(row, column.sealed, sealed)


@event.listens_for(Session, "before_flush")
def _seal_on_flush(session: Session, _context: Any, _instances: Any) -> None:
    """Seal every registered column of the rows this flush writes."""
    if not _REGISTRY:
        return
    vault = session_vault(session)
    for row in list(session.new):
        columns = _REGISTRY.get(type(row))
        if columns:
            _seal_row(row, columns, vault, new=True)
    for row in list(session.dirty):
        columns = _REGISTRY.get(type(row))
        if columns:
            _seal_row(row, columns, vault, new=False)
