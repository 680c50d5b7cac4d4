"""kafka-python against the real broker: keyed partitioning, consumer groups, committed offsets and resumption."""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict

import pytest
from kafka import KafkaConsumer, KafkaProducer

from braid.kafka import create_topic

pytestmark = pytest.mark.services


def _drain(consumer: KafkaConsumer, expected: int) -> list:
    records = []
    for _ in range(60):
        for batch in consumer.poll(timeout_ms=1000).values():
            records.extend(batch)
        if len(records) >= expected:
            # one more poll proves nothing beyond the expected records is waiting
            for batch in consumer.poll(timeout_ms=1000).values():
                records.extend(batch)
            break
    return records


def test_create_topic_is_idempotent(services) -> None:
    name = f"idempotent-{uuid.uuid4().hex[:8]}"
    assert create_topic(services.kafka_bootstrap_servers, name, partitions=2, replication=1) is True
    assert create_topic(services.kafka_bootstrap_servers, name, partitions=2, replication=1) is False


def test_keyed_records_are_consumed_once_and_a_restarted_group_resumes(services) -> None:
    topic = f"orders-{uuid.uuid4().hex[:8]}"
    group = f"group-{topic}"
    create_topic(services.kafka_bootstrap_servers, topic, partitions=4, replication=1)
    producer = KafkaProducer(bootstrap_servers=services.kafka_bootstrap_servers, acks="all", enable_idempotence=True)
    first = [(f"user-{i % 7}", f"order-{i}") for i in range(300)]
    for key, value in first:
        producer.send(topic, key=key.encode(), value=value.encode())
    producer.flush()

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=services.kafka_bootstrap_servers,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    records = _drain(consumer, len(first))
    consumer.commit()
    consumer.close()

    assert sorted((r.key.decode(), r.value.decode()) for r in records) == sorted(first)
    partitions_per_key = defaultdict(set)
    for record in records:
        partitions_per_key[record.key].add(record.partition)
    assert all(len(partitions) == 1 for partitions in partitions_per_key.values())  # one key, one partition
    assert len({record.partition for record in records}) > 1  # and the keys are spread over partitions
    assert Counter(r.key.decode() for r in records) == Counter(key for key, _ in first)

    second = [(f"user-{i % 7}", f"order-{i}") for i in range(300, 350)]
    for key, value in second:
        producer.send(topic, key=key.encode(), value=value.encode())
    producer.flush()
    producer.close()

    resumed = KafkaConsumer(
        topic,
        bootstrap_servers=services.kafka_bootstrap_servers,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    later = _drain(resumed, len(second))
    resumed.close()
    assert sorted((r.key.decode(), r.value.decode()) for r in later) == sorted(second)
