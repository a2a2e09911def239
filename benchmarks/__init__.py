"""Benchmarks (``make bench``). ``BENCH_ENCODER=json`` hides orjson from the whole process
before anything imports aioredstream, so payloads are encoded by the standard library."""

import os
import sys

if os.environ.get("BENCH_ENCODER") == "json":
    sys.modules["orjson"] = None  # type: ignore[assignment]  # an ImportError from now on
