"""Kafka administration and clients (kafka-python), built from values the settings hold."""

from __future__ import annotations

import logging

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

# kafka-python logs each refused connection while a broker boots; that is expected, not a warning to the user.
logging.getLogger("kafka").setLevel(logging.ERROR)


def create_topic(
    bootstrap_servers: list[str], name: str, *, partitions: int, replication: int, config: dict[str, str] | None = None
) -> bool:
    """Create `name` unless it exists; returns True when it was created now."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=15000, bootstrap_timeout_ms=10000)
    try:
        admin.create_topics([NewTopic(name, partitions, replication, topic_configs=config or {})])
        return True
    except TopicAlreadyExistsError:
        return False
    finally:
        admin.close()
