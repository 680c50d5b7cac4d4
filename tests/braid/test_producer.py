"""The producer library on the real broker: exact counts per partition and key, rejections and failures reported."""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime

import msgspec
import pytest
from kafka import KafkaConsumer, TopicPartition

from braid.generator import EventGenerator, GeneratorConfig
from braid.kafka import create_topic
from braid.producer import EventProducer
from schemas.contracts import default_contracts, rules
from schemas.validation import Validator

pytestmark = pytest.mark.services


def consume_all(bootstrap: list[str], topic: str) -> list:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
    consumer.assign(partitions)
    ends = consumer.end_offsets(partitions)
    records = []
    while any(consumer.position(tp) < ends[tp] for tp in partitions):
        for batch in consumer.poll(timeout_ms=1000).values():
            records.extend(batch)
    consumer.close()
    return records


def test_round_trip_exact_per_partition_and_key(services) -> None:
    topic = f"events-{uuid.uuid4().hex[:8]}"
    create_topic(services.kafka_bootstrap_servers, topic, partitions=4, replication=1)
    now = datetime.now(UTC)
    records = list(EventGenerator(GeneratorConfig(seed=21, count=3000, start=now, duplicate_fraction=0, malformed_fraction=0)).records())
    events = [record.event for record in records]
    bad = dict(events[10])
    bad["payload"] = {**bad["payload"], "user_id": 42}
    registry = default_contracts()
    with EventProducer(services.kafka_bootstrap_servers, topic, registry=registry, validator=Validator(registry, rules())) as producer:
        report = producer.send_many([*events, bad])
    assert report.sent == len(events) and report.failed == []
    assert [(index, rejection.reason) for index, rejection in report.rejected] == [(len(events), "wrong_type")]

    consumed = consume_all(services.kafka_bootstrap_servers, topic)
    decoded = [msgspec.json.decode(record.value) for record in consumed]
    assert sorted(e["event_id"] for e in decoded) == sorted(e["event_id"] for e in events)  # nothing lost, nothing twice
    assert all(record.key == msgspec.json.decode(record.value)["payload"]["user_id"].encode() for record in consumed)
    partitions_by_key = defaultdict(set)
    for record in consumed:
        partitions_by_key[record.key].add(record.partition)
    assert all(len(partitions) == 1 for partitions in partitions_by_key.values())
    assert Counter(r.key for r in consumed) == Counter(e["payload"]["user_id"].encode() for e in events)
    per_partition = Counter(record.partition for record in consumed)
    expected_per_partition = Counter()
    for key, count in Counter(r.key for r in consumed).items():
        expected_per_partition[next(iter(partitions_by_key[key]))] += count
    assert per_partition == expected_per_partition and len(per_partition) == 4
    # per partition, offsets are dense: no gap, no duplicate
    for partition in per_partition:
        offsets = sorted(r.offset for r in consumed if r.partition == partition)
        assert offsets == list(range(offsets[0], offsets[0] + len(offsets)))


def test_a_delivery_failure_is_reported_not_dropped(services) -> None:
    registry = default_contracts()
    event = next(EventGenerator(GeneratorConfig(seed=1, count=1, malformed_fraction=0, duplicate_fraction=0)).records()).event
    # auto-creation is off, so a topic that does not exist never gets metadata: the send must fail visibly.
    producer = EventProducer(services.kafka_bootstrap_servers, "no-such-topic-" + uuid.uuid4().hex[:6], registry=registry, validator=None, max_block_ms=1500)
    report = producer.send_many([event, event])
    producer.close(timeout=5)
    assert report.sent == 0 and [index for index, _ in report.failed] == [0, 1]
    assert all("KafkaTimeoutError" in reason for _, reason in report.failed)
