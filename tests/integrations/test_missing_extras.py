"""An integration imported without its extra says what to install (and is still an
ImportError); the missing module is simulated with ``sys.modules[name] = None``."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from aioredstream.testing import free_port

ROOT = Path(__file__).resolve().parents[2]

IMPORT = textwrap.dedent(
    """
    import sys
    sys.modules[sys.argv[1]] = None  # not installed
    try:
        import aioredstream.integrations.{module}
    except ModuleNotFoundError as exc:
        from aioredstream import MissingExtraError, RedstreamError
        assert isinstance(exc, MissingExtraError) and isinstance(exc, RedstreamError)
        print(exc.name, exc.extra, exc, sep="|")
    """
)


def python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("module", "missing", "extra"),
    [
        ("sqlalchemy", "sqlalchemy", "sqlalchemy"),
        ("otel", "opentelemetry", "otel"),
        ("prometheus", "prometheus_client", "prometheus"),
    ],
)
def test_an_integration_without_its_extra_names_the_pip_install(
    module: str, missing: str, extra: str
) -> None:
    done = python(IMPORT.replace("{module}", module), missing)
    assert done.returncode == 0, done.stderr
    name, got_extra, message = done.stdout.strip().split("|")
    assert (name, got_extra) == (missing, extra)
    assert message.startswith(f"aioredstream.integrations.{module} needs the extra {extra!r} (")
    assert message.endswith(f"): pip install 'aioredstream[{extra}]'")


def test_status_prometheus_without_the_extra_is_one_line_and_exit_1() -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["prometheus_client"] = None
        from aioredstream.cli import main
        sys.exit(main(sys.argv[1:]))
        """
    )
    done = python(code, "status", "--prometheus", "--url", f"redis://127.0.0.1:{free_port()}/0")
    assert done.returncode == 1
    assert done.stderr.startswith("aioredstream: error: aioredstream.integrations.prometheus ")
    assert done.stderr.strip().endswith("pip install 'aioredstream[prometheus]'")
    assert done.stderr.count("\n") == 1
