"""Find and mask personal numbers in free text before it is kept anywhere.

Residents write phone numbers, ID card numbers and bank card numbers into their
messages ("押金打到我卡上 6222 0212 3456 7890 128"). Text kept for review, training or
export must not carry them in the clear. Each kind is recognised by its shape *and*,
where the number has one, by its check digit, so amounts (13800元), dates
(2026-11-25) and order numbers are left alone:

- mobile numbers: ``1[3-9]`` + 9 digits, optionally ``+86``/``86`` before, spaces or
  dashes between the 3-4-4 groups;
- landlines: an area code ``0`` + 2-3 digits (or in brackets) + 7-8 digits, with a
  separator or brackets (a bare run of digits starting with 0 is too often something
  else), optionally ``+86`` before without the leading 0;
- resident ID card numbers: 17 digits + a digit or ``X`` that satisfies the
  ISO 7064 MOD 11-2 checksum, with a plausible birth date;
- bank card numbers: 13-19 digits (optionally in groups split by spaces or dashes)
  passing the Luhn check;
- e-mail addresses.

Pure and dependency-free so ``storage`` and anything above it may use it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

#: The kinds :func:`redact` reports, in the order they are looked for (longest first,
#: so an ID card number is never half-taken as a phone number).
KINDS = ("email", "id_card", "bank_card", "mobile", "landline")

_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
)
_ID_CARD = re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])")
_BANK_CARD = re.compile(r"(?<![\d-])\d{4,6}(?:[ -]?\d{2,6}){2,4}(?![\d-])")
_MOBILE = re.compile(r"(?<![\d+])(?:(?:\+|00)?86[ -]?)?1[3-9]\d(?:[ -]?\d{4}){2}(?!\d)")
_LANDLINE = re.compile(
    r"(?<![\d+])(?:"
    r"(?:(?:\+|00)86[ -]?)\(?[1-9]\d{1,2}\)?[ -]?\d{7,8}"  # +86 755 12345678
    r"|\(0\d{2,3}\)[ -]?\d{7,8}"  # (0755)12345678
    r"|0\d{2,3}[ -]\d{7,8}"  # 0755-12345678
    r")(?:[ -]?(?:转|ext\.?|-)\d{1,5})?(?!\d)"
)

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


@dataclass(frozen=True, slots=True)
class Found:
    """One number found: its kind and its ``(start, end)`` in the original text."""

    kind: str
    span: tuple[int, int]


@dataclass(frozen=True, slots=True)
class RedactResult:
    masked_text: str
    found: list[Found]

    @property
    def kinds(self) -> list[str]:
        return [item.kind for item in self.found]


def id_card_valid(number: str) -> bool:
    """An 18-character resident ID: checksum right and a real birth date."""
    if len(number) != 18 or not number[:17].isdigit():
        return False
    total = sum(int(d) * w for d, w in zip(number[:17], _ID_WEIGHTS, strict=True))
    if _ID_CHECK[total % 11] != number[17].upper():
        return False
    try:
        born = date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return False
    return 1900 <= born.year <= 2100


def luhn_valid(digits: str) -> bool:
    """The Luhn check every bank card number (UnionPay, Visa …) passes."""
    if not digits.isdigit():
        return False
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _digits(text: str) -> str:
    return "".join(char for char in text if char.isdigit())


def _mask(kind: str, raw: str) -> str:
    """A masked stand-in that keeps the kind recognisable and nothing identifying."""
    digits = _digits(raw)
    if kind == "email":
        local, _, domain = raw.partition("@")
        return f"{local[:1]}***@{domain}"
    if kind == "id_card":
        return f"{raw[:4]}{'*' * 12}{raw[-2:]}"
    if kind == "bank_card":
        return f"****{digits[-4:]}"
    if kind == "mobile":
        local = digits[-11:]
        return f"{local[:3]}****{local[-4:]}"
    return f"{'*' * (len(digits) - 4)}{digits[-4:]}"


def _accept(kind: str, raw: str) -> bool:
    if kind == "id_card":
        return id_card_valid(raw)
    if kind == "bank_card":
        digits = _digits(raw)
        return 13 <= len(digits) <= 19 and luhn_valid(digits)
    return True


_PATTERNS = {
    "email": _EMAIL,
    "id_card": _ID_CARD,
    "bank_card": _BANK_CARD,
    "mobile": _MOBILE,
    "landline": _LANDLINE,
}


def find_personal_numbers(text: str) -> list[Found]:
    """Every personal number in ``text``, non-overlapping, in text order."""
    taken: list[tuple[int, int]] = []
    found: list[Found] = []
    for kind in KINDS:
        for match in _PATTERNS[kind].finditer(text):
            start, end = match.span()
            if any(start < b and a < end for a, b in taken):
                continue
            if not _accept(kind, match.group()):
                continue
            taken.append((start, end))
            found.append(Found(kind, (start, end)))
    return sorted(found, key=lambda item: item.span)


def redact(text: str) -> RedactResult:
    """``text`` with each phone, ID card, bank card number and e-mail masked.

    Spans in ``found`` refer to the original text (the masked text may differ in
    length).
    """
    found = find_personal_numbers(text)
    pieces: list[str] = []
    cursor = 0
    for item in found:
        start, end = item.span
        pieces.append(text[cursor:start])
        pieces.append(_mask(item.kind, text[start:end]))
        cursor = end
    pieces.append(text[cursor:])
    return RedactResult("".join(pieces), found)


def redact_text(text: str) -> str:
    """Just the masked text (for values inside parse results)."""
    return redact(text).masked_text if text else text
