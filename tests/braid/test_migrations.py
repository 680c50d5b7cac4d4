"""`braid migrate`: versioned CQL applied once each, in order; a changed applied file is refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from braid.cassandra import replication_map
from braid.errors import BraidError
from braid.migrations import load_migrations, migrate

pytestmark = pytest.mark.services


def test_cli_applies_then_is_up_to_date(services, cassandra_session) -> None:
    env = {**os.environ, "BRAID_CASSANDRA_KEYSPACE": "migrate_cli"}
    first = subprocess.run([sys.executable, "-m", "braid.cli", "migrate"], env=env, capture_output=True, text=True)
    second = subprocess.run([sys.executable, "-m", "braid.cli", "migrate"], env=env, capture_output=True, text=True)
    names = [f"V{m.version:03d}__{m.name}" for m in load_migrations()]
    assert first.stdout.strip() == f"migrate: migrate_cli: applied {', '.join(names)}"
    assert second.stdout.strip() == "migrate: migrate_cli: up to date"
    tables = {row.table_name for row in cassandra_session.execute("SELECT table_name FROM system_schema.tables WHERE keyspace_name = 'migrate_cli'")}
    assert {"speed_views", "batch_views", "batch_versions", "batch_runs", "batch_pointer", "pipeline_progress", "speed_batches", "schema_migrations"} <= tables
    assert "speed_view_rows" not in tables  # V003 replaced it
    columns = {row.column_name for row in cassandra_session.execute(
        "SELECT column_name FROM system_schema.columns WHERE keyspace_name = 'migrate_cli' AND table_name = 'speed_batches'")}  # fmt: skip
    assert {"freshness_p95_ms", "freshness_p99_ms"} <= columns  # V002 ran after V001


def test_a_changed_applied_migration_is_refused(services, tmp_path: Path) -> None:
    from braid.cassandra import cluster_from_settings

    cluster = cluster_from_settings(services)
    session = cluster.connect()  # its own session: migrate() switches the session's keyspace
    (tmp_path / "V001__first.cql").write_text("CREATE TABLE IF NOT EXISTS t1 (id int PRIMARY KEY);\n")
    replication = replication_map("SimpleStrategy", 1, "dc")
    assert migrate(session, "migrate_changed", replication, load_migrations(tmp_path)) == ["V001__first"]
    (tmp_path / "V001__first.cql").write_text("CREATE TABLE IF NOT EXISTS t1 (id int PRIMARY KEY, x int);\n")
    with pytest.raises(BraidError, match=r"V001__first.cql changed after it was applied; add a new migration instead"):
        migrate(session, "migrate_changed", replication, load_migrations(tmp_path))
    cluster.shutdown()


@pytest.mark.parametrize(("files", "message"), [(["V001__a.cql", "V003__c.cql"], "without gaps"), (["001_a.cql"], "is not named V<NNN>__<name>.cql")])
def test_badly_named_migrations_are_refused(tmp_path: Path, files: list[str], message: str) -> None:
    for name in files:
        (tmp_path / name).write_text("SELECT now() FROM system.local;")
    with pytest.raises(BraidError, match=message):
        load_migrations(tmp_path)
