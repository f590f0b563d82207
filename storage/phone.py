"""Phone numbers: encrypted at rest, masked wherever someone does not need them.

Only the case's own mediator sees the full number; cards, lists, logs and reports see
``138****5678``. Fernet (AES + HMAC from ``cryptography``) keeps the number unreadable
in a copied database file or backup.
"""

from __future__ import annotations

import base64
import hashlib
import re

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

_DIGITS = re.compile(r"\D")


def normalise_phone(raw: str) -> str | None:
    """Digits of a Chinese mobile or landline number, or None if it is not one."""
    digits = _DIGITS.sub("", raw)
    if digits.startswith("86") and len(digits) == 13:
        digits = digits[2:]
    if re.fullmatch(r"1[3-9]\d{9}", digits):
        return digits
    if re.fullmatch(r"0\d{9,11}", digits):
        return digits
    return None


def mask_phone(phone: str) -> str:
    """``13812345678`` → ``138****5678``; short or odd values keep only the last 2."""
    digits = _DIGITS.sub("", phone)
    if len(digits) >= 11:
        return f"{digits[:3]}****{digits[-4:]}"
    if len(digits) >= 4:
        return "*" * (len(digits) - 2) + digits[-2:]
    return "****"


class PhoneVault:
    """Encrypts and decrypts phone numbers with keys derived from the secret.

    The secret may hold several comma-separated keys (key rotation): new data is
    encrypted with the first, data encrypted under any of them still decrypts
    (``cryptography``'s :class:`MultiFernet`); ``tiaojie keys rotate`` re-encrypts
    stored values with the first so an old key can later be removed.
    """

    def __init__(self, secret: str) -> None:
        secrets = [part.strip() for part in (secret or "").split(",") if part.strip()]
        if not secrets:
            raise ValueError("a secret key is required to store phone numbers")
        fernets = [Fernet(_derive(part)) for part in secrets]
        self._primary = fernets[0]
        self._fernet = MultiFernet(fernets)
        self.key_count = len(fernets)

    def encrypt(self, phone: str) -> bytes:
        return self._fernet.encrypt(phone.encode("utf-8"))

    def decrypt(self, token: bytes | None) -> str | None:
        """The number, or None when absent or encrypted under none of the keys."""
        if not token:
            return None
        try:
            return self._fernet.decrypt(token).decode("utf-8")
        except InvalidToken:
            return None

    def is_current(self, token: bytes) -> bool:
        """True when ``token`` is already encrypted under the first (current) key."""
        try:
            self._primary.decrypt(token)
        except InvalidToken:
            return False
        return True

    def rotate(self, token: bytes) -> bytes | None:
        """``token`` re-encrypted under the first key, or None if no key opens it."""
        try:
            return self._fernet.rotate(token)
        except InvalidToken:
            return None


def _derive(secret: str) -> bytes:
    return base64.urlsafe_b64encode(hashlib.sha256(secret.encode("utf-8")).digest())


#: Mobile numbers (with +86, spaces or dashes) and landlines inside free text.
_PHONE_IN_TEXT = re.compile(
    r"(?<!\d)(?:\+?86[\s-]?)?(?:1[3-9]\d(?:[\s-]?\d){8}|0\d{2,3}[\s-]?\d{7,8})(?!\d)"
)


def mask_phones_in_text(text: str) -> str:
    """Every phone number inside ``text`` masked (``138****5678``), for cards and logs."""
    return _PHONE_IN_TEXT.sub(lambda m: mask_phone(m.group()), text or "")
