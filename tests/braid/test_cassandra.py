"""cassandra-driver against the real node: keyspace, table, prepared writes and reads with exact values back."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from braid.cassandra import ensure_keyspace, open_cluster, replication_map

pytestmark = pytest.mark.services


@pytest.mark.parametrize(
    ("replication", "expected"),
    [
        (("SimpleStrategy", 1, "dc1"), {"class": "SimpleStrategy", "replication_factor": 1}),
        (("NetworkTopologyStrategy", 3, "dc-east"), {"class": "NetworkTopologyStrategy", "dc-east": 3}),
    ],
)
def test_replication_map(replication, expected) -> None:
    assert replication_map(*replication) == expected


def test_a_lost_node_is_retried_within_seconds_not_the_drivers_ten_minutes() -> None:
    policy = open_cluster(["127.0.0.1"], 9042, local_datacenter="dc").reconnection_policy
    delays = list(zip(range(20), policy.new_schedule()))
    assert delays[0][1] <= 1.0 and max(delay for _, delay in delays) <= 5.0 and sum(delay for _, delay in delays) < 120


def test_keyspace_is_created_with_the_replication_asked_for(cassandra_session) -> None:
    ensure_keyspace(cassandra_session, "braid_test_nts", replication_map("NetworkTopologyStrategy", 1, "datacenter1"))
    ensure_keyspace(cassandra_session, "braid_test_nts", replication_map("NetworkTopologyStrategy", 1, "datacenter1"))
    row = cassandra_session.execute(
        "SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = 'braid_test_nts'"
    ).one()
    assert row.replication == {"class": "org.apache.cassandra.locator.NetworkTopologyStrategy", "datacenter1": "1"}


def test_prepared_writes_read_back_exactly(cassandra_session) -> None:
    cassandra_session.execute(
        "CREATE TABLE IF NOT EXISTS merchant_minutes ("
        " merchant text, minute timestamp, payments bigint, revenue decimal, currencies map<text, int>,"
        " PRIMARY KEY ((merchant), minute)) WITH CLUSTERING ORDER BY (minute DESC)"
    )
    insert = cassandra_session.prepare(
        "INSERT INTO merchant_minutes (merchant, minute, payments, revenue, currencies) VALUES (?, ?, ?, ?, ?)"
    )
    rows = [
        ("m'1; DROP TABLE x", datetime(2026, 11, 24, 12, minute, tzinfo=UTC), 10 + minute, Decimal(f"{minute}.05"), {"EUR": minute})
        for minute in range(5)
    ]
    for row in rows:
        cassandra_session.execute(insert, row)
    select = cassandra_session.prepare(
        "SELECT merchant, minute, payments, revenue, currencies FROM merchant_minutes WHERE merchant = ? AND minute >= ?"
    )
    got = list(cassandra_session.execute(select, ("m'1; DROP TABLE x", datetime(2026, 11, 24, 12, 2, tzinfo=UTC))))
    expected = [row for row in rows if row[1] >= datetime(2026, 11, 24, 12, 2, tzinfo=UTC)]
    expected.sort(key=lambda row: row[1], reverse=True)  # the clustering order
    assert [(r.merchant, r.minute.replace(tzinfo=UTC), r.payments, r.revenue, dict(r.currencies)) for r in got] == expected


def test_partition_batches_write_every_row_once_in_batches_of_one_partition(cassandra_session) -> None:
    from cassandra.concurrent import execute_concurrent

    from braid.cassandra import partition_batches

    cassandra_session.execute(
        "CREATE TABLE IF NOT EXISTS batched (bucket bigint, shard int, key text, hits map<text, bigint>, PRIMARY KEY ((bucket, shard), key))"
    )
    insert = cassandra_session.prepare("INSERT INTO batched (bucket, shard, key, hits) VALUES (?, ?, ?, ?)")
    sizes = {(7, 0): 250, (7, 1): 100, (8, 0): 1}  # more than a batch, exactly one, a single row
    rows = [(bucket, shard, f"key-{n:03d}" + "x" * 2000 * (n % 2), {"n": n}) for (bucket, shard), count in sizes.items() for n in range(count)]
    batches = partition_batches(insert, reversed(rows), lambda row: row[:2])  # arrival order must not matter
    assert len(batches) == 3 + 1 + 1  # ceil(250/100) + 1 + 1: rows of two partitions never share a batch
    execute_concurrent(cassandra_session, [(batch, ()) for batch in batches], raise_on_first_error=True)
    read = cassandra_session.execute("SELECT bucket, shard, key, hits FROM batched")
    assert sorted((r.bucket, r.shard, r.key, r.hits) for r in read) == sorted(rows)  # 1 MB in 100-row batches: no size limit hit


def test_partition_batches_refuse_an_empty_batch_size() -> None:
    from braid.cassandra import partition_batches

    with pytest.raises(ValueError, match="size must be at least 1, got 0"):
        partition_batches(None, [], lambda row: row, size=0)
