"""Word tokens for Chinese and English: jieba plus the mediation domain dictionary.

jieba alone splits 二房东, 劳动仲裁 or 高空坠物 into pieces that mean something else;
the domain dictionary (the same folder Rasa's JiebaTokenizer reads) keeps them whole.
"""

from __future__ import annotations

import logging
from functools import cache
from pathlib import Path

import jieba

jieba.setLogLevel(logging.WARNING)


@cache
def _tokenizer(dictionary_dir: str | None) -> jieba.Tokenizer:
    tokenizer = jieba.Tokenizer()
    tokenizer.initialize()
    if dictionary_dir:
        for file in sorted(Path(dictionary_dir).glob("*.txt")):
            tokenizer.load_userdict(str(file))
    return tokenizer


def tokenise(text: str, dictionary_dir: Path | str | None = None) -> list[str]:
    """Tokens of normalised ``text`` without blanks and lone punctuation."""
    tokenizer = _tokenizer(str(dictionary_dir) if dictionary_dir else None)
    return [tok for tok in tokenizer.lcut(text, HMM=True) if tok.strip() and _is_word(tok)]


def _is_word(token: str) -> bool:
    return any(char.isalnum() for char in token)
