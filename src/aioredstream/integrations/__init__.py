"""Integrations with other libraries, each an optional extra.

``aioredstream.integrations.sqlalchemy`` (extra ``sqlalchemy``): delay and queue
messages written from SQLAlchemy ``AsyncSession`` flushes and commits.
"""

from __future__ import annotations
