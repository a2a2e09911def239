"""What operators run: status, its table, the runner of workers, and the CLI.

Import ``status``/``run_workers`` from `aioredstream`; the console script is
``aioredstream`` (``aioredstream.cli:main``). This package is the inside.
"""
