"""Versioned CQL migrations (`schemas/cql/V<NNN>__<name>.cql`), applied in order, each once.

Applied versions are recorded with a checksum in `schema_migrations`; changing an applied file is refused rather than
silently diverging from what the cluster has.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import schemas
from braid.errors import BraidError

CQL_DIR = Path(schemas.__file__).parent / "cql"
_FILE = re.compile(r"^V(\d{3})__([a-z0-9_]+)\.cql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]
    checksum: str


def load_migrations(directory: Path = CQL_DIR) -> list[Migration]:
    migrations = []
    for file in sorted(directory.glob("*.cql")):
        match = _FILE.match(file.name)
        if not match:
            raise BraidError(f"migrate: {file.name} is not named V<NNN>__<name>.cql")
        text = file.read_text()
        without_comments = "\n".join(line for line in text.splitlines() if not line.strip().startswith("--"))
        statements = tuple(part.strip() for part in without_comments.split(";") if part.strip())
        migrations.append(Migration(int(match[1]), match[2], statements, hashlib.sha256(text.encode()).hexdigest()))
    versions = [migration.version for migration in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise BraidError(f"migrate: versions must run 1, 2, 3... without gaps; found {versions}")
    return migrations


def migrate(session, keyspace: str, replication: dict[str, object], migrations: list[Migration]) -> list[str]:
    """Apply what is not applied yet; returns the names applied now. Safe to run again and again."""
    from braid.cassandra import ensure_keyspace

    ensure_keyspace(session, keyspace, replication)
    session.set_keyspace(keyspace)
    session.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version int PRIMARY KEY, name text, checksum text, applied_at timestamp)"
    )
    applied = {row.version: row for row in session.execute("SELECT version, name, checksum FROM schema_migrations")}
    done = []
    for migration in migrations:
        previous = applied.get(migration.version)
        if previous is not None:
            if previous.checksum != migration.checksum:
                raise BraidError(
                    f"migrate: V{migration.version:03d}__{migration.name}.cql changed after it was applied; add a new migration instead"
                )
            continue
        for statement in migration.statements:
            session.execute(statement, timeout=60)
        session.execute(
            "INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (%s, %s, %s, %s)",
            (migration.version, migration.name, migration.checksum, datetime.now(UTC)),
        )
        done.append(f"V{migration.version:03d}__{migration.name}")
    return done
