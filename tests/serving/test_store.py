"""The serving store's statements without Cassandra: the tables they read are exactly READ_TABLES, the list the
reader role is granted SELECT on (a statement on a new table would otherwise fail only with password auth on)."""

from __future__ import annotations

import re

from serving.store import READ_TABLES, ServingStore


class RecordingSession:
    def __init__(self) -> None:
        self.prepared: list[str] = []

    def prepare(self, query: str):
        self.prepared.append(query)
        return type("Prepared", (), {})()


def test_the_store_reads_exactly_the_tables_the_reader_may_select() -> None:
    session = RecordingSession()
    ServingStore(session)
    assert len(session.prepared) >= 8
    assert all(query.startswith("SELECT ") for query in session.prepared)  # reads only
    assert {re.search(r"\bFROM (\w+)", query)[1] for query in session.prepared} == set(READ_TABLES)
