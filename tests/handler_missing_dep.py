"""A handler module whose own import fails: the CLI names that import, not the module."""

from __future__ import annotations

import nosuch_dependency_xyz  # type: ignore[import-not-found]  # noqa: F401
