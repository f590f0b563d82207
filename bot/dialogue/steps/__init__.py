"""The conversation's steps, one object each, grouped by stage of the intake.

Importing this package registers every step in :data:`bot.dialogue.registry.STEPS`.
"""

from bot.dialogue.steps import contact, describe, finish, form, referral

__all__ = ["contact", "describe", "finish", "form", "referral"]
