"""Where to go for a legal matter that mediation does not take, kept as data.

Each ``*.yml`` here is one topic: a code (recorded with the referral for the reports),
keywords that pick it from the resident's words, and the answer in both languages.
``general`` is the catch-all when no keyword matches. Like the forms, the files are
validated at start-up and an error names the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

REFERRALS_DIR = Path(__file__).resolve().parent
#: The topic used when no topic's keywords are in the words.
GENERAL = "general"


class Topic(BaseModel):
    model_config = ConfigDict(extra="forbid")
    topic: str = Field(pattern=r"^[a-z][a-z_]{1,31}$")
    title: dict[str, str]
    keywords: list[str] = Field(default_factory=list)
    text: dict[str, str]

    def answer(self, language: str) -> str:
        return (self.text.get(language) or self.text["zh"]).strip()


class ReferralsError(Exception):
    """A referral file is malformed; the message names the file and the problem."""


@dataclass(frozen=True, slots=True)
class Referrals:
    """All topics by code; :meth:`pick` chooses one from the resident's words."""

    topics: dict[str, Topic]

    def pick(self, text: str) -> Topic:
        """The topic with the most keyword hits (the earliest hit breaks a tie)."""
        lowered = text.lower()
        best: tuple[int, int, Topic] | None = None
        for topic in self.topics.values():
            hits = [lowered.find(k.lower()) for k in topic.keywords]
            found = [at for at in hits if at >= 0]
            if not found:
                continue
            score = (-len(found), min(found))
            if best is None or score < (best[0], best[1]):
                best = (score[0], score[1], topic)
        return best[2] if best else self.topics[GENERAL]

    def get(self, code: str) -> Topic:
        return self.topics.get(code) or self.topics[GENERAL]


def load_referrals(directory: Path = REFERRALS_DIR) -> Referrals:
    topics: dict[str, Topic] = {}
    for path in sorted(directory.glob("*.yml")):
        try:
            topic = Topic.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
        except (yaml.YAMLError, ValidationError) as error:
            raise ReferralsError(f"{path}: {error}") from None
        for field in ("title", "text"):
            missing = {"zh", "en"} - set(getattr(topic, field))
            if missing:
                raise ReferralsError(f"{path}: {field} needs {sorted(missing)}")
        if topic.topic in topics:
            raise ReferralsError(f"{path}: topic {topic.topic} is defined twice")
        topics[topic.topic] = topic
    if GENERAL not in topics:
        raise ReferralsError(f"{directory}: no {GENERAL}.yml (the catch-all topic)")
    return Referrals(topics)


@cache
def default_referrals() -> Referrals:
    return load_referrals()
