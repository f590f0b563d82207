"""The characters a regular expression's match must begin with, read from its parse tree.

Why: the risk rules are some 350 small patterns run on every message. Most can only
start at one of a few Han characters (杀, 打, 砍 …), and a short message holds few of
them, so a set test tells which patterns are worth a search. The answer must never be
too small (a missed pattern is a missed emergency), so anything this module does not
understand — a character category like ``\\s``, ``.``, a negated class, a back
reference, case-insensitive flags, a pattern that can match the empty string — gives
``None``: "could start anywhere, always search". ``tests/test_regex_firsts.py`` checks
the promise on every rule and every message of the test files.

It reads CPython's own regex parser (``re._parser``, private but stable since 3.11 and
used by ``re`` itself); if that ever changes, the import fails over to ``None`` for
every pattern and the rules simply run unfiltered.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

_k: Any
_p: Any
try:  # CPython ≥ 3.11 (not in typeshed: private modules)
    _k = importlib.import_module("re._constants")
    _p = importlib.import_module("re._parser")
except ImportError:  # pragma: no cover - another interpreter: no filtering, still correct
    _k = _p = None

#: A character range wider than this (say ``[一-龥]``) is treated as "anywhere".
MAX_RANGE = 256

_Firsts = tuple[set[str] | None, bool]  # (characters or None = anywhere, can be empty)


def first_characters(pattern: str) -> frozenset[str] | None:
    """Every character a match of ``pattern`` can start with, or ``None`` if unknown."""
    if _p is None:
        return None
    try:
        parsed = _p.parse(pattern)
    except (re.error, RecursionError, TypeError):
        return None
    if parsed.state.flags & (re.IGNORECASE | re.VERBOSE):
        return None
    chars, can_be_empty = _sequence(list(parsed))
    if chars is None or can_be_empty:
        return None
    return frozenset(chars)


def _sequence(items: list[tuple[Any, Any]]) -> _Firsts:
    chars: set[str] = set()
    for op, arg in items:
        more, can_be_empty = _item(op, arg)
        if more is None:
            return None, False
        chars |= more
        if not can_be_empty:
            return chars, False
    return chars, True


def _item(op: Any, arg: Any) -> _Firsts:
    if op is _k.LITERAL:
        return {chr(arg)}, False
    if op is _k.IN:
        return _class(arg), False
    if op is _k.BRANCH:
        chars: set[str] = set()
        can_be_empty = False
        for branch in arg[1]:
            more, empty = _sequence(list(branch))
            if more is None:
                return None, False
            chars |= more
            can_be_empty = can_be_empty or empty
        return chars, can_be_empty
    if op is _k.SUBPATTERN:
        group_flags = arg[1]
        if group_flags & re.IGNORECASE:
            return None, False
        return _sequence(list(arg[3]))
    if op in (_k.MAX_REPEAT, _k.MIN_REPEAT, getattr(_k, "POSSESSIVE_REPEAT", None)):
        more, empty = _sequence(list(arg[2]))
        return (None, False) if more is None else (more, empty or arg[0] == 0)
    if op in (_k.AT, _k.ASSERT, _k.ASSERT_NOT):
        return set(), True  # zero width: the match starts at what follows
    return None, False


def _class(members: list[tuple[Any, Any]]) -> set[str] | None:
    chars: set[str] = set()
    for op, arg in members:
        if op is _k.LITERAL:
            chars.add(chr(arg))
        elif op is _k.RANGE and arg[1] - arg[0] <= MAX_RANGE:
            chars.update(chr(c) for c in range(arg[0], arg[1] + 1))
        else:  # NEGATE, CATEGORY (\s, \d), a wide range: could be anything
            return None
    return chars
