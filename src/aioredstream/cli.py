"""The ``aioredstream`` command (the console script's path; the code lives in
`aioredstream.ops.cli`)."""

from __future__ import annotations

import sys

from .ops.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
