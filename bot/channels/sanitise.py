"""Clean untrusted text at the channel edge, before it reaches the engine or the store.

Why: a NUL character cannot be stored in PostgreSQL text or JSON, and a lone UTF-16
surrogate (``"\\ud800"``, which JSON happily decodes) cannot be encoded to UTF-8 by
either SQLite or PostgreSQL. Once such a character sits in a saved conversation, every
later save of that chat fails, so the resident can never file their case. Replacing
them (and the other C0 control characters, which no person types) with U+FFFD where
the message enters keeps the words and makes the failure impossible.

Ids (sender, chat) get the stricter :func:`clean_id`: no line breaks or tabs either,
so an id can never forge a second line in a log.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from storage.redact import find_personal_numbers, redact_text

REPLACEMENT = "\ufffd"
#: C0 controls except tab and newline, DEL, and every surrogate code point.
_TEXT_JUNK = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
#: The same plus tab, newline and carriage return: ids are one line.
_ID_JUNK = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")
#: Unicode line and paragraph separators, which some log viewers break lines on.
_SEPARATORS = str.maketrans({"\u2028": REPLACEMENT, "\u2029": REPLACEMENT, "\x85": REPLACEMENT})


def clean_text(value: str) -> str:
    """A message's text: line breaks normalised to ``\\n``, junk replaced by U+FFFD."""
    value = value.replace("\r\n", "\n").replace("\r", "\n")
    return _TEXT_JUNK.sub(REPLACEMENT, value)


def clean_id(value: str) -> str:
    """A sender or chat id: one line, no controls, no surrogates."""
    return _ID_JUNK.sub(REPLACEMENT, value).translate(_SEPARATORS)


def clean_json(value: Any) -> Any:
    """Every string (keys too) of a decoded JSON document, cleaned with :func:`clean_text`.

    Iterative, so a deeply nested document cannot exhaust the stack here.
    """
    if isinstance(value, str):
        return clean_text(value)
    if not isinstance(value, dict | list):
        return value
    # (source container, cleaned container) pairs still to fill.
    stack: list[tuple[Any, Any]] = [(value, None)]
    results: dict[int, Any] = {}
    order: list[tuple[Any, Any]] = []
    while stack:
        source, _ = stack.pop()
        copy: Any = {} if isinstance(source, dict) else []
        results[id(source)] = copy
        order.append((source, copy))
        children = source.values() if isinstance(source, dict) else source
        for child in children:
            if isinstance(child, dict | list) and id(child) not in results:
                stack.append((child, None))
    for source, copy in order:
        if isinstance(source, dict):
            for key, child in source.items():
                copy[clean_text(key) if isinstance(key, str) else key] = _leaf(child, results)
        else:
            copy.extend(_leaf(child, results) for child in source)
    return results[id(value)]


def _leaf(child: Any, results: dict[int, Any]) -> Any:
    if isinstance(child, str):
        return clean_text(child)
    if isinstance(child, dict | list):
        return results[id(child)]
    return child


def escape_for_log(value: object) -> str:
    """A value fit for one log line: controls and line breaks shown as escapes."""
    text = value if isinstance(value, str) else str(value)
    return _LOG_JUNK.sub(_escaped, text)


_LOG_JUNK = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029\ud800-\udfff]")


def _escaped(match: re.Match[str]) -> str:
    return match.group().encode("unicode_escape", "backslashreplace").decode("ascii")


class OneLineLogFilter(logging.Filter):
    """A handler filter: every record's message stays on one line, whatever it quotes.

    Installed on the log handlers at start-up, so a value that was not escaped at the
    call site (a sender id with a newline, say) still cannot forge a log line.
    Tracebacks are formatted separately and keep their lines.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: let logging report it as usual
            return True
        if _LOG_JUNK.search(message):
            record.msg = escape_for_log(message)
            record.args = None
        return True


class PersonalNumberLogFilter(logging.Filter):
    """A handler filter: no phone, ID card or bank card number or e-mail in a log line.

    Our own code logs ids and counts, never words; but a library at DEBUG (an update
    dumped whole, a SQL error quoting its parameters, a traceback) may quote what a
    resident typed. Whatever the source, the line that is written has those numbers
    masked (:mod:`storage.redact`), tracebacks included.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: let logging report it as usual
            return True
        if find_personal_numbers(message):
            record.msg = redact_text(message)
            record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        return True


def install_log_filter(logger: logging.Logger | None = None) -> None:
    """Add :class:`PersonalNumberLogFilter` and :class:`OneLineLogFilter` to every handler
    of ``logger`` (the root by default)."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        for kind in (PersonalNumberLogFilter, OneLineLogFilter):
            if not any(isinstance(f, kind) for f in handler.filters):
                handler.addFilter(kind())
