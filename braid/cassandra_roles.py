"""Roles of the local Cassandra with password authentication (BRAID_CASSANDRA_AUTH=true).

- an admin role (BRAID_CASSANDRA_ADMIN_USERNAME) replaces the well-known default superuser `cassandra`, which is
  disabled; only `braid up` signs in with it, to manage roles;
- the owner role (BRAID_CASSANDRA_USERNAME) may create keyspaces, and so owns the one `braid migrate` creates: the
  speed and batch layers write as it;
- the reader role (BRAID_CASSANDRA_READER_USERNAME) may sign in and nothing else until `braid migrate` grants it
  SELECT on each serving table (`grant_reads`): the serving layer reads as it and can change nothing.

Everything here is safe to run again: roles are created when missing, and a role that refuses the settings' password
is given it, so changing a password in the settings and running `braid up` again rotates it. Role management statements cannot be
prepared: role names go in as quoted identifiers and passwords as quoted literals, whatever characters they hold.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from cassandra.cluster import Cluster, Session

from braid.cassandra import authentication_failure, open_cluster
from braid.errors import BraidError
from braid.settings import Settings

DEFAULT_SUPERUSER = "cassandra"  # created by Cassandra itself, with the password "cassandra"


def quote_identifier(name: str) -> str:
    """A CQL quoted identifier: kept exactly as written (case included), double quotes doubled."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    """A CQL string constant: single quotes doubled (CQL has no other escape)."""
    return "'" + value.replace("'", "''") + "'"


def ensure_roles(settings: Settings, *, wait_seconds: float = 60.0) -> list[str]:
    """The admin, owner and reader roles of the settings, on a node that runs; returns what was done, one line each."""
    assert settings.cassandra_admin_password and settings.cassandra_password and settings.cassandra_reader_password
    assert settings.cassandra_username and settings.cassandra_reader_username
    cluster, session, done = _admin_session(settings, wait_seconds)
    try:
        for name, password in (
            (settings.cassandra_username, settings.cassandra_password),
            (settings.cassandra_reader_username, settings.cassandra_reader_password),
        ):
            if session.execute("SELECT role FROM system_auth.roles WHERE role = %s", (name,)).one() is None:
                session.execute(
                    f"CREATE ROLE IF NOT EXISTS {quote_identifier(name)} WITH LOGIN = true AND PASSWORD = {quote_literal(password.get_secret_value())}"
                )
                done.append(f"role {name!r} created")
            elif (signed_in := _sign_in(settings, name, password.get_secret_value())) is not None:
                signed_in[0].shutdown()
                done.append(f"role {name!r} exists")
            else:  # the settings name another password: theirs becomes the role's (Cassandra allows one change per 5 s)
                session.execute(f"ALTER ROLE {quote_identifier(name)} WITH LOGIN = true AND PASSWORD = {quote_literal(password.get_secret_value())}")
                done.append(f"role {name!r} exists; its password is now the one of the settings")
        # The keyspace `braid migrate` creates is then the owner's; one created before auth was on is given to it.
        owner = settings.cassandra_username
        session.execute(f"GRANT CREATE ON ALL KEYSPACES TO {quote_identifier(owner)}")
        keyspace = settings.cassandra_keyspace
        if session.execute("SELECT keyspace_name FROM system_schema.keyspaces WHERE keyspace_name = %s", (keyspace,)).one():
            session.execute(f"GRANT ALL PERMISSIONS ON KEYSPACE {quote_identifier(keyspace)} TO {quote_identifier(owner)}")
            done.append(f"role {owner!r} may create keyspaces, and owns {keyspace}")
        else:
            done.append(f"role {owner!r} may create keyspaces ({keyspace} is then its own)")
    finally:
        cluster.shutdown()
    return done


def grant_reads(session: Session, keyspace: str, reader: str, tables: Iterable[str]) -> list[str]:
    """SELECT on each table to the reader role, and nothing more; run by the owner after the tables exist."""
    granted = []
    for table in sorted(tables):
        session.execute(f"GRANT SELECT ON TABLE {quote_identifier(keyspace)}.{quote_identifier(table)} TO {quote_identifier(reader)}")
        granted.append(table)
    return granted


def _admin_session(settings: Settings, wait_seconds: float) -> tuple[Cluster, Session, list[str]]:
    """Sign in as the admin role; on a new node, as the default superuser, which then hands over to the admin role.

    A new node creates its default superuser a moment after it starts answering, so refusals are retried for a while."""
    assert settings.cassandra_admin_password is not None
    admin, admin_password = settings.cassandra_admin_username, settings.cassandra_admin_password.get_secret_value()
    deadline = time.monotonic() + wait_seconds
    while True:
        signed_in = _sign_in(settings, admin, admin_password)
        if signed_in is not None:
            return signed_in[0], signed_in[1], []
        default = _sign_in(settings, DEFAULT_SUPERUSER, DEFAULT_SUPERUSER)
        if default is not None:
            cluster, session = default
            try:
                session.execute(
                    f"CREATE ROLE IF NOT EXISTS {quote_identifier(admin)} WITH SUPERUSER = true AND LOGIN = true "
                    f"AND PASSWORD = {quote_literal(admin_password)}"
                )
            finally:
                cluster.shutdown()
            signed_in = _sign_in(settings, admin, admin_password)
            if signed_in is None:
                raise BraidError(f"cassandra: the admin role {admin!r} was created but refuses its password")
            cluster, session = signed_in
            # A role cannot take its own superuser status away: the new admin disables the well-known default.
            session.execute(f"ALTER ROLE {quote_identifier(DEFAULT_SUPERUSER)} WITH SUPERUSER = false AND LOGIN = false")
            return cluster, session, [f"role {admin!r} created; the default superuser {DEFAULT_SUPERUSER!r} is disabled"]
        if time.monotonic() > deadline:
            raise BraidError(
                f"cassandra: neither the admin role {admin!r} nor the default superuser could sign in at "
                f"{settings.cassandra_host}:{settings.cassandra_port} within {wait_seconds:.0f}s; is BRAID_CASSANDRA_ADMIN_PASSWORD "
                f"the password the admin role was created with?"
            )
        time.sleep(1.0)


def _sign_in(settings: Settings, username: str, password: str) -> tuple[Cluster, Session] | None:
    """A session as `username`, or None when the node refuses the credentials (any other failure is raised)."""
    cluster = open_cluster(
        [settings.cassandra_host], settings.cassandra_port, local_datacenter=settings.cassandra_local_datacenter,
        username=username, password=password, connect_timeout=5.0,
    )  # fmt: skip
    try:
        return cluster, cluster.connect()
    except Exception as error:
        cluster.shutdown()
        if authentication_failure(error):
            return None
        raise
