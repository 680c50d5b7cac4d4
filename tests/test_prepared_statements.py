"""No statement is built from a value by string formatting: values go in as bind markers of prepared statements (or
the driver's own parameters). The only pieces ever pasted into a statement are listed here, each with why it is safe;
a new one fails this test until it is prepared or shown to be safe."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("braid", "batch", "speed", "serving", "dags", "schemas")
CALLS = {"execute", "execute_async", "prepare", "sql"}

# Expressions that may be formatted into a statement anywhere, and why.
SAFE = {
    "settings.cassandra_keyspace": "checked by Settings: [a-z][a-z0-9_]{0,47}",
    "DEMO_KEYSPACE": "a constant",
}
SAFE_CALLS = {"quote_identifier": "a quoted identifier, double quotes doubled", "quote_literal": "a string constant, quotes doubled"}
# Expressions safe in one file only.
SAFE_IN = {
    ("braid/cassandra.py", "keyspace"): "ensure_keyspace: a keyspace name from Settings (DDL cannot be prepared)",
    ("braid/cassandra.py", "options"): "ensure_keyspace: the replication map replication_map builds from validated settings",
    ("braid/smoke.py", "keyspace"): "settings.cassandra_keyspace",
    ("braid/smoke.py", "table"): "the smoke run's own Delta path (DESCRIBE HISTORY)",
    ("braid/bench_batch.py", "view.name"): "DuckDB over the benchmark's files; view names are declared and checked",
    ("braid/bench_batch.py", "duckdb_view_sql(view, files_by_type, cutoff, kinds)"): "DuckDB SQL compiled from a view declaration",
    ("braid/bench_batch.py", "', '.join((f'sum(CAST({m} AS DOUBLE))' for m in metrics))"): "metric names of a declared view",
}


def formatted_pieces(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, expression) for every value formatted into the statement argument of a call in CALLS; a statement
    built with % or .format() or + of a non-constant is reported whole."""
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in CALLS and node.args):
            continue
        statement = node.args[0]
        if isinstance(statement, ast.JoinedStr):
            for part in statement.values:
                if isinstance(part, ast.FormattedValue):
                    found.append((node.lineno, ast.unparse(part.value)))
        elif isinstance(statement, ast.BinOp) or (
            isinstance(statement, ast.Call) and isinstance(statement.func, ast.Attribute) and statement.func.attr == "format"
        ):
            found.append((node.lineno, ast.unparse(statement)))
    return found


def _unsafe(path: str, source: str) -> list[str]:
    problems = []
    for line, expression in formatted_pieces(ast.parse(source)):
        call = expression.split("(", 1)[0]
        if expression in SAFE or call in SAFE_CALLS or (path, expression) in SAFE_IN:
            continue
        problems.append(f"{path}:{line}: {expression}")
    return problems


def test_no_statement_is_formatted_from_a_value() -> None:
    problems, seen = [], set()
    files = [file for package in PACKAGES for file in sorted((ROOT / package).rglob("*.py"))]
    assert len(files) > 40  # the scan reads the code base, not an empty folder
    for file in files:
        path, source = str(file.relative_to(ROOT)), file.read_text()
        problems += _unsafe(path, source)
        seen |= {(path, expression) for _, expression in formatted_pieces(ast.parse(source))}
    assert problems == []
    assert set(SAFE_IN) - seen == set()  # an exception no code needs any more is removed, not kept "just in case"


def test_the_scan_finds_what_it_must_refuse() -> None:
    source = '''
session.execute(f"SELECT * FROM t WHERE k = '{key}'")
session.execute("SELECT * FROM t WHERE k = '%s'" % key)
session.prepare("SELECT * FROM {} WHERE k = ?".format(table))
session.execute("SELECT * FROM t WHERE k = '" + key + "'")
session.execute("SELECT * FROM t WHERE k = %s", (key,))
session.execute(f"SELECT * FROM {settings.cassandra_keyspace}.t WHERE k = ?")
session.execute(f"GRANT SELECT ON TABLE t TO {quote_identifier(role)}")
'''
    assert _unsafe("example.py", source) == [
        "example.py:2: key",
        "example.py:3: \"SELECT * FROM t WHERE k = '%s'\" % key",
        "example.py:4: 'SELECT * FROM {} WHERE k = ?'.format(table)",
        'example.py:5: "SELECT * FROM t WHERE k = \'" + key + "\'"',
    ]
