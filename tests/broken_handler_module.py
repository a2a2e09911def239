"""A handler module that fails while being imported (the CLI reports it in one line)."""

from __future__ import annotations

raise RuntimeError("configuration missing")
