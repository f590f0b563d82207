"""Every table of the store, gathered in one place so Alembic and the tests see them all.

Areas of the application keep their tables in their own modules (accounts of the web
workspace, WeChat tokens, the review inbox …) instead of one ever-growing file; each
such module is imported here, once, so its tables join ``Base.metadata``.
"""

from __future__ import annotations

from storage import models, nlu_registry, outbox, review, wechat
from storage.models import Base

__all__ = ["Base", "models", "nlu_registry", "outbox", "review", "wechat"]
