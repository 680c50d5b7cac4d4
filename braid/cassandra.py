"""Connections to Cassandra (cassandra-driver), built from values the settings hold."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, Session
from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy

from braid.settings import Settings

# The driver logs every failed connection attempt as a warning; a service that is still booting is not news.
logging.getLogger("cassandra").setLevel(logging.ERROR)


@dataclass(frozen=True)
class Pointer:
    """The batch version readers are served (`batch_pointer`): written by the batch layer, read by the serving one."""

    version: int
    cutoff: int
    published_at: datetime


def as_utc(value: datetime | None) -> datetime | None:
    """The driver returns timestamps as naive datetimes in UTC."""
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def open_cluster(
    contact_points: list[str],
    port: int,
    *,
    local_datacenter: str,
    username: str | None = None,
    password: str | None = None,
    connect_timeout: float = 10.0,
    request_timeout: float = 10.0,
) -> Cluster:
    profile = ExecutionProfile(
        load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc=local_datacenter)),
        request_timeout=request_timeout,
    )
    auth = PlainTextAuthProvider(username=username, password=password) if username else None
    return Cluster(
        contact_points=contact_points,
        port=port,
        auth_provider=auth,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        protocol_version=5,
        connect_timeout=connect_timeout,
    )


def cluster_from_settings(settings: Settings, *, connect_timeout: float = 10.0) -> Cluster:
    password = settings.cassandra_password.get_secret_value() if settings.cassandra_password else None
    return open_cluster(
        settings.cassandra_contact_points,
        settings.cassandra_port,
        local_datacenter=settings.cassandra_local_datacenter,
        username=settings.cassandra_username,
        password=password,
        connect_timeout=connect_timeout,
    )


def replication_map(replication_class: str, replication_factor: int, datacenter: str) -> dict[str, object]:
    if replication_class == "NetworkTopologyStrategy":
        return {"class": replication_class, datacenter: replication_factor}
    return {"class": replication_class, "replication_factor": replication_factor}


def ensure_keyspace(session: Session, keyspace: str, replication: dict[str, object]) -> None:
    options = ", ".join(f"'{key}': {value!r}" if isinstance(value, str) else f"'{key}': {value}" for key, value in replication.items())
    # DDL cannot be prepared; the keyspace name is validated by Settings and the options are ours.
    session.execute(f"CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = {{{options}}}")


def probe_query(contact_points: list[str], port: int, local_datacenter: str, username: str | None, password: str | None):
    """A function that opens a short-lived connection and runs one query: used to tell when a node is ready."""

    def run(query: str) -> None:
        cluster = open_cluster(
            contact_points, port, local_datacenter=local_datacenter, username=username, password=password, connect_timeout=3.0
        )
        try:
            cluster.connect().execute(query)
        finally:
            cluster.shutdown()

    return run
