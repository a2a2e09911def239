"""Integrations with other libraries, each an optional extra.

``aioredstream.integrations.sqlalchemy`` (extra ``sqlalchemy``): delay and queue
messages written from SQLAlchemy ``AsyncSession`` flushes and commits.

Imported without its extra, an integration raises ``MissingExtraError`` (an
``ImportError``) that names the ``pip install 'aioredstream[...]'`` to run.
"""

from __future__ import annotations
