"""Errors the store raises; each carries what a caller needs to answer politely."""

from __future__ import annotations


class StoreError(Exception):
    """Base of every error the store raises on purpose."""


class CaseNotFound(StoreError):
    def __init__(self, reference: str) -> None:
        super().__init__(f"no case with reference {reference!r}")
        self.reference = reference


class InvalidTransition(StoreError):
    def __init__(self, reference: str, current: str, wanted: str) -> None:
        super().__init__(f"case {reference} cannot go from {current} to {wanted}")
        self.reference, self.current, self.wanted = reference, current, wanted


class MediatorInactive(StoreError):
    def __init__(self, alias: str) -> None:
        super().__init__(f"mediator {alias!r} is not active")
        self.alias = alias


class MediatorNotFound(StoreError):
    def __init__(self, key: str) -> None:
        super().__init__(f"no mediator {key!r}")
        self.key = key


class AlreadyClaimed(StoreError):
    def __init__(self, reference: str, claimed_by: str | None) -> None:
        super().__init__(f"case {reference} is already claimed by {claimed_by or 'someone'}")
        self.reference, self.claimed_by = reference, claimed_by


class CentreNotFound(StoreError):
    def __init__(self, code: str) -> None:
        super().__init__(f"no centre with code {code!r}")
        self.code = code


class StaleState(StoreError):
    """Someone else saved the conversation first (optimistic concurrency)."""

    def __init__(self, chat_id: str, expected: int) -> None:
        super().__init__(f"conversation {chat_id} changed since version {expected}")
        self.chat_id, self.expected = chat_id, expected


class DirectoryFileError(StoreError):
    """A centre directory file is malformed; the message names the file and line."""
