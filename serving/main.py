"""Entry point of the serving API and dashboard.

    braid serve                                   # http://127.0.0.1:8080/ (BRAID_SERVING_HOST / _PORT)
    BRAID_CASSANDRA_CONTACT_POINTS=c1,c2,c3 BRAID_SERVING_HOST=0.0.0.0 braid serve   # against a cluster
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from braid.auth import ApiTokens
from braid.cassandra import cluster_from_settings
from braid.settings import Settings
from schemas.contracts import rules
from schemas.views import default_views
from serving.queries import Queries
from serving.store import ServingStore


@contextmanager
def open_queries(settings: Settings) -> Iterator[Queries]:
    cluster = cluster_from_settings(settings, reader=True)  # the reader role, when one is configured: SELECT only
    try:
        store = ServingStore(cluster.connect(settings.cassandra_keyspace), settings.cassandra_read_consistency)
        yield Queries(store, default_views(), rules(settings.rules_file), max_windows=settings.serving_max_windows)
    finally:
        cluster.shutdown()


def create_serving_app(settings: Settings, queries: Queries):
    from serving.api import create_app
    from serving.metrics import pipeline_status

    bucket = rules(settings.rules_file).handoff_bucket_seconds
    return create_app(
        queries, tokens=ApiTokens.from_settings(settings), pipeline=lambda: pipeline_status(queries.store, bucket), refresh_seconds=settings.serving_refresh_seconds
    )


def run_api(settings: Settings) -> None:
    import uvicorn

    with open_queries(settings) as queries:
        uvicorn.run(create_serving_app(settings, queries), host=settings.serving_host, port=settings.serving_port, log_level="warning")
