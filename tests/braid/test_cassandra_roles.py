"""Cassandra's roles with password authentication on (tests/secured_stack.py): the reader may SELECT the serving
tables and nothing else, the owner writes but manages no role, the default superuser is gone; and the quoting that
puts names and passwords into role statements."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from cassandra import Unauthorized

from braid.cassandra import authentication_failure, cluster_from_settings, open_cluster
from braid.cassandra_roles import quote_identifier, quote_literal
from serving.store import READ_TABLES
from tests.secured_stack import SecuredStack


@pytest.mark.parametrize(
    ("name", "quoted"),
    [("braid_reader", '"braid_reader"'), ("Mixed Case", '"Mixed Case"'), ('evil"; DROP ROLE x; --', '"evil""; DROP ROLE x; --"')],
)
def test_identifiers_are_quoted_exactly(name: str, quoted: str) -> None:
    assert quote_identifier(name) == quoted


@pytest.mark.parametrize(("value", "quoted"), [("plain", "'plain'"), ("it's", "'it''s'"), ("'; DROP ROLE x; --", "'''; DROP ROLE x; --'")])
def test_passwords_are_string_constants(value: str, quoted: str) -> None:
    assert quote_literal(value) == quoted


@pytest.fixture(scope="module")
def reader(secured_stack: SecuredStack) -> Iterator:
    cluster = cluster_from_settings(secured_stack.settings, reader=True)
    yield cluster.connect(secured_stack.settings.cassandra_keyspace)
    cluster.shutdown()


@pytest.fixture(scope="module")
def owner(secured_stack: SecuredStack) -> Iterator:
    cluster = cluster_from_settings(secured_stack.settings)
    yield cluster.connect(secured_stack.settings.cassandra_keyspace)
    cluster.shutdown()


@pytest.mark.services
def test_migrate_granted_the_reader_exactly_the_serving_tables(secured_stack: SecuredStack, reader) -> None:
    assert f"migrate: role 'braid_reader' may SELECT {', '.join(sorted(READ_TABLES))}" in secured_stack.migrate_output
    rows = reader.execute("LIST ALL PERMISSIONS OF braid_reader")  # a role may list its own
    assert {(row.resource, row.permission) for row in rows} == {
        (f"<table {secured_stack.settings.cassandra_keyspace}.{table}>", "SELECT") for table in READ_TABLES
    }


@pytest.mark.services
@pytest.mark.parametrize("table", READ_TABLES)
def test_the_reader_may_select_each_serving_table(reader, table: str) -> None:
    assert list(reader.execute(f"SELECT * FROM {table} LIMIT 1")) is not None


@pytest.mark.services
@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO batch_pointer (pipeline, version, cutoff) VALUES ('views', 999, 999)",
        "UPDATE pipeline_progress SET last_batch = 999 WHERE job = 'speed'",
        "DELETE FROM speed_views WHERE view_name = 'x' AND handoff_bucket = 1 AND shard = 0",
        "TRUNCATE batch_views",
        "DROP TABLE batch_views",
        "ALTER TABLE batch_views ADD note text",
        "CREATE TABLE stolen (k text PRIMARY KEY)",
        "CREATE KEYSPACE stolen WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
        "DROP KEYSPACE braid_secured",
        "SELECT * FROM schema_migrations",  # not a serving table
        "SELECT * FROM batch_runs",
        "CREATE ROLE intruder WITH LOGIN = true AND PASSWORD = 'x'",
        "GRANT SELECT ON KEYSPACE braid_secured TO braid_reader",
        "ALTER ROLE braid_owner WITH PASSWORD = 'taken-over'",
    ],
)
def test_the_reader_may_change_nothing_and_read_nothing_else(reader, statement: str) -> None:
    with pytest.raises(Unauthorized):
        reader.execute(statement)


@pytest.mark.services
def test_the_owner_writes_the_serving_tables_but_manages_no_role(owner) -> None:
    owner.execute("UPDATE pipeline_progress SET updated_at = toTimestamp(now()) WHERE job = 'roles-test'")
    assert owner.execute("SELECT job FROM pipeline_progress WHERE job = 'roles-test'").one().job == "roles-test"
    owner.execute("DELETE FROM pipeline_progress WHERE job = 'roles-test'")
    assert owner.execute("SELECT count(*) FROM schema_migrations").one()[0] >= 4
    with pytest.raises(Unauthorized):
        owner.execute("CREATE ROLE intruder WITH LOGIN = true AND PASSWORD = 'x'")


@pytest.mark.services
def test_the_default_superuser_is_disabled(secured_stack: SecuredStack) -> None:
    settings = secured_stack.settings
    cluster = open_cluster([settings.cassandra_host], settings.cassandra_port, local_datacenter="datacenter1", username="cassandra", password="cassandra")
    try:
        with pytest.raises(Exception) as refused:
            cluster.connect()
    finally:
        cluster.shutdown()
    assert authentication_failure(refused.value) is not None


@pytest.mark.services
def test_a_wrong_reader_password_is_one_clear_line(secured_stack: SecuredStack) -> None:
    wrong = "not-the-reader-password"
    result = secured_stack.cli("query", "views", cassandra_reader_password=wrong)
    assert result.returncode == 2
    assert result.stderr == (
        f"braid: cassandra: 127.0.0.1:{secured_stack.settings.cassandra_port} refused the credentials (Provided username braid_reader "
        "and/or password are incorrect); check BRAID_CASSANDRA_USERNAME and BRAID_CASSANDRA_PASSWORD (the serving layer uses "
        "BRAID_CASSANDRA_READER_USERNAME and BRAID_CASSANDRA_READER_PASSWORD when set)\n"
    )


def _signs_in(settings, username: str, password: str) -> bool:
    cluster = open_cluster([settings.cassandra_host], settings.cassandra_port, local_datacenter="datacenter1", username=username, password=password)
    try:
        cluster.connect()
        return True
    except Exception as error:
        assert authentication_failure(error) is not None, error
        return False
    finally:
        cluster.shutdown()


@pytest.mark.services
def test_a_password_changed_in_the_settings_becomes_the_roles_on_the_next_up(secured_stack: SecuredStack) -> None:
    """Rotation: `braid up` gives a role that refuses the settings' password that password, and back again (in a
    `finally`, so the tests after it sign in with the stack's password whatever happened)."""
    import time

    from pydantic import SecretStr

    from braid.cassandra_roles import ensure_roles

    settings = secured_stack.settings
    old, new = settings.cassandra_reader_password.get_secret_value(), f"rotated-{uuid.uuid4().hex}-'q"
    rotated = settings.model_copy(update={"cassandra_reader_password": SecretStr(new)})

    def eventually(condition) -> bool:  # a node keeps a role's credential cached for credentials_validity (2 s)
        deadline = time.monotonic() + 10
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.5)
        return condition()

    time.sleep(5)  # Cassandra takes one password change per role every 5 s
    try:
        assert "role 'braid_reader' exists; its password is now the one of the settings" in ensure_roles(rotated)
        assert eventually(lambda: _signs_in(settings, "braid_reader", new))
        assert eventually(lambda: not _signs_in(settings, "braid_reader", old))
    finally:
        time.sleep(5)
        back = ensure_roles(settings)
    assert "role 'braid_reader' exists; its password is now the one of the settings" in back
    assert eventually(lambda: _signs_in(settings, "braid_reader", old))
