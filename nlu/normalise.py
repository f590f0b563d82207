"""Text normalisation that remembers where every character came from.

Residents type full-width digits, Traditional characters, emoji and stray control
characters. The classifier and the rules want one plain form, but entity offsets must
point into the text the resident actually wrote, so every normalised character keeps
the index of the original character it came from.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import cache

import emoji
import opencc

#: The classifier never sees more than this many characters: bounded time for any input.
CLASSIFIER_MAX_CHARS = 2000
#: Rules and entity extraction look further, so a risk at the end of a long story counts.
SCAN_MAX_CHARS = 20000


@dataclass(frozen=True, slots=True)
class Normalised:
    """Normalised ``text`` plus ``origin[i]``: the original index of ``text[i]``."""

    text: str
    origin: tuple[int, ...]
    original_length: int

    def span(self, start: int, end: int) -> tuple[int, int]:
        """Map a ``[start, end)`` span of the normalised text back onto the original."""
        if start >= len(self.origin):
            return self.original_length, self.original_length
        original_start = self.origin[start]
        original_end = self.origin[end - 1] + 1 if end > start else original_start
        return original_start, original_end


@cache
def _converter() -> opencc.OpenCC:
    # 't2s' is the config name the pip wheel of OpenCC 1.1.x accepts (with or without .json).
    return opencc.OpenCC("t2s")


def to_simplified(text: str) -> str:
    """Traditional → Simplified Chinese (OpenCC ``t2s``)."""
    return _converter().convert(text)


def _emoji_names(text: str) -> dict[int, tuple[int, str]]:
    """Start index → (end index, ``:name:``) for each emoji (ZWJ sequences count once)."""
    if text.isascii():
        return {}
    return {
        found["match_start"]: (found["match_end"], emoji.demojize(found["emoji"]))
        for found in emoji.emoji_list(text)
    }


def _plain_chars(text: str) -> tuple[list[str], list[int]]:
    """Width-fold, lowercase, drop control/format characters, emoji → `` :name: ``.

    An emoji carries meaning (👍 is a yes, 🔪 may be a threat), so it becomes a word the
    classifier and the rules can see rather than disappearing.
    """
    emoji_at = _emoji_names(text)
    chars: list[str] = []
    origin: list[int] = []
    index = 0
    while index < len(text):
        char = text[index]
        if index in emoji_at:
            end, name = emoji_at[index]
            folded = f" {name.lower()} "
            next_index = end
        else:
            next_index = index + 1
            if char.isascii():
                folded = char.lower() if char.isprintable() else " "
            else:
                category = unicodedata.category(char)
                if category[0] in "CZ" or char == "\ufffd":
                    folded = " "
                else:
                    # NFKC folds full-width ASCII (８０００元 → 8000元) and compatibility forms.
                    folded = unicodedata.normalize("NFKC", char).lower()
        for piece in folded:
            chars.append(piece)
            origin.append(index)
        index = next_index
    return chars, origin


def _simplify(chars: list[str]) -> list[str]:
    """Traditional → Simplified, keeping one output character per input character.

    OpenCC converts phrases too; when a whole-text conversion changes the length (rare),
    convert character by character so the offsets still line up.
    """
    joined = "".join(chars)
    converted = to_simplified(joined)
    if len(converted) == len(joined):
        return list(converted)
    out: list[str] = []
    for char in chars:
        single = to_simplified(char)
        out.append(single if len(single) == 1 else char)
    return out


def normalise(text: str, limit: int = SCAN_MAX_CHARS) -> Normalised:
    """The one normal form everything downstream sees (at most ``limit`` characters read)."""
    if not isinstance(text, str):
        text = str(text)
    original_length = len(text)
    source = text[:limit]
    chars, origin = _plain_chars(source)
    if chars and not "".join(chars).isascii():
        chars = _simplify(chars)
    # Collapse runs of whitespace and trim, keeping the origin of the first blank.
    out_chars: list[str] = []
    out_origin: list[int] = []
    for char, index in zip(chars, origin, strict=True):
        if char.isspace():
            if not out_chars or out_chars[-1] == " ":
                continue
            char = " "
        out_chars.append(char)
        out_origin.append(index)
    if out_chars and out_chars[-1] == " ":
        out_chars.pop()
        out_origin.pop()
    return Normalised("".join(out_chars), tuple(out_origin), original_length)


def normalise_text(text: str) -> str:
    """Just the normalised string (training data, lookup tables)."""
    return normalise(text).text
