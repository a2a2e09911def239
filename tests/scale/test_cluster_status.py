"""``aioredstream status`` pointed at one node of a cluster: every primary, hash-tagged keys."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import anyio
import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from aioredstream import Consumer, Delayer, Keys, Message, Producer, ServerError
from aioredstream.ops._cli_common import connect
from aioredstream.ops.cli import main
from aioredstream.testing import ClusterDeployment

from ..helpers import User
from ..test_cli_workers import ROOT, SCRIPT, WAIT_S
from .test_cluster import SHARDS, Item


async def ignore(messages: list[Message]) -> None:
    pass


async def test_status_on_a_cluster_finds_every_primarys_streams_and_groups_shards(
    cluster: ClusterDeployment, cluster_client: RedisCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    producer = Producer(cluster_client, namespace="shop")
    await producer.bulk_queue([Item(i) for i in range(120)])
    await producer.delay(User(1))
    for shard in (0, 5):
        consumer = Consumer(
            cluster_client, stream_name=f"items-{shard}", name="indexer", namespace="shop"
        )
        consumer.batch_size = 1
        await consumer.run_once(ignore)
    delayer = Delayer(cluster_client, stream_name="users", delay=3600, namespace="shop")
    await delayer.consumer.commit("0-1")

    url = cluster.nodes[-1].url  # a replica: the client still finds every primary
    assert (
        await asyncio.to_thread(main, ["status", "--url", url, "--namespace", "shop", "--json"])
        == 0
    )
    report: dict[str, Any] = json.loads(capsys.readouterr().out)
    names = [s["name"] for s in report["streams"]]
    assert names == [f"items-{n}" for n in range(SHARDS)] + ["users"]
    streams = {s["name"]: s for s in report["streams"]}
    assert streams["users"]["delay_length"] == 1
    assert [(c["name"], c["offset"]) for c in streams["users"]["delay_consumers"]] == [
        ("delayer", "0-1")
    ]
    assert [c["name"] for c in streams["items-5"]["consumers"]] == ["indexer"]
    [group] = report["groups"]
    assert (group["name"], group["length"], len(group["shards"])) == ("items", 120, SHARDS)
    lag_0 = streams["items-0"]["consumers"][0]["lag"]
    lag_5 = streams["items-5"]["consumers"][0]["lag"]
    assert group["lag"] == {"indexer": lag_0 + lag_5}
    assert lag_0 == streams["items-0"]["length"] - 1


async def test_a_cluster_node_url_gives_a_cluster_client(cluster: ClusterDeployment) -> None:
    plain = Redis.from_url(cluster.nodes[0].url)
    client = await connect(plain, cluster.nodes[0].url, "test")
    try:
        assert isinstance(client, RedisCluster)
        assert len(client.get_primaries()) == 3
    finally:
        await client.aclose()


async def test_consume_with_shards_runs_one_consumer_per_shard_on_a_cluster(
    cluster: ClusterDeployment, cluster_client: RedisCluster, tmp_path: Path
) -> None:
    await Producer(cluster_client).bulk_queue([Item(i) for i in range(60)])
    handled = tmp_path / "handled.jsonl"
    argv = ["consume", "items", "--shards", str(SHARDS), "--name", "indexer"]
    argv += ["--handler", "tests.cli_handlers:record", "--url", cluster.nodes[0].url]
    proc = await asyncio.create_subprocess_exec(
        str(SCRIPT),
        *argv,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "HANDLED_FILE": str(handled)},
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        with anyio.fail_after(WAIT_S):
            while sorted(read_ids(handled)) != list(range(60)):
                assert proc.returncode is None
                await anyio.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(proc.communicate(), WAIT_S)
    stderr = err.decode()
    assert proc.returncode == 0, stderr
    assert f"consumer indexer on items ({SHARDS} shards: items-0 .. items-11) stopped" in stderr
    for shard in range(SHARDS):
        key = Keys(hash_tags=True).offset(f"items-{shard}", "indexer")
        assert await cluster_client.exists(key) == 1  # each shard committed, tagged layout


def read_ids(path: Path) -> list[int]:
    if not path.exists():
        return []
    text = path.read_text()  # polled while the handler appends: a last line may be partial
    return [json.loads(line)["id"] for line in text[: text.rfind("\n") + 1].splitlines()]


async def test_a_cluster_node_url_with_a_database_other_than_0_fails_clearly(
    cluster: ClusterDeployment,
) -> None:
    url = cluster.nodes[0].url.rsplit("/", 1)[0] + "/3"
    plain = Redis.from_url(url)
    # Redis: "SELECT is not allowed in cluster mode"; Valkey: "DB index is out of range"
    with pytest.raises(ServerError, match=r"^test: (SELECT is not allowed|DB index is out)"):
        await connect(plain, url, "test")
    await plain.aclose()
