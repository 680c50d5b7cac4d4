"""KafkaSecurity without a broker: the client arguments and Spark options it gives, quoting, and that it never shows
its password (the real broker's answers are in tests/braid/services/test_secured_stack.py)."""

from __future__ import annotations

import pickle

import pytest
from pydantic import SecretStr

from braid.kafka import KafkaSecurity, jaas_config, jaas_quote
from braid.settings import load_settings

PASSWORD = 'p"ss\\w\'rd ö🙂'
SASL = KafkaSecurity("SASL_PLAINTEXT", "SCRAM-SHA-512", "braid", SecretStr(PASSWORD))


def test_plaintext_adds_nothing_to_any_client() -> None:
    assert (KafkaSecurity().client_config(), KafkaSecurity().spark_options()) == ({}, {})


def test_sasl_gives_kafka_python_its_four_arguments() -> None:
    assert SASL.client_config() == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "braid",
        "sasl_plain_password": PASSWORD,
    }


@pytest.mark.parametrize(
    ("mechanism", "module"),
    [
        ("PLAIN", "org.apache.kafka.common.security.plain.PlainLoginModule"),
        ("SCRAM-SHA-256", "org.apache.kafka.common.security.scram.ScramLoginModule"),
        ("SCRAM-SHA-512", "org.apache.kafka.common.security.scram.ScramLoginModule"),
    ],
)
def test_sasl_gives_spark_the_kafka_prefixed_properties(mechanism: str, module: str) -> None:
    security = KafkaSecurity("SASL_PLAINTEXT", mechanism, "braid", SecretStr("plain-secret"))
    assert security.spark_options() == {
        "kafka.security.protocol": "SASL_PLAINTEXT",
        "kafka.sasl.mechanism": mechanism,
        "kafka.sasl.jaas.config": f'{module} required username="braid" password="plain-secret";',
    }


@pytest.mark.parametrize(
    ("value", "quoted"),
    [
        ("plain", '"plain"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("back\\slash", '"back\\\\slash"'),
        ("it's; fine", '"it\'s; fine"'),  # inside double quotes, ' and ; are plain characters
        ("ö🙂", '"ö🙂"'),
    ],
)
def test_jaas_values_are_quoted_and_escaped(value: str, quoted: str) -> None:
    assert jaas_quote(value) == quoted


def test_a_jaas_entry_lists_its_options_in_order() -> None:
    assert jaas_config("a.Module", username="u", password='p"') == 'a.Module required username="u" password="p\\"";'


def test_the_password_is_in_no_repr_and_survives_pickling() -> None:
    """The generator sends from several processes: the security value is pickled to them."""
    assert PASSWORD not in repr(SASL) and PASSWORD not in str(SASL)
    copy = pickle.loads(pickle.dumps(SASL))
    assert copy == SASL and copy.client_config()["sasl_plain_password"] == PASSWORD


def test_from_settings() -> None:
    security = KafkaSecurity.from_settings(
        load_settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="PLAIN", kafka_username="u1", kafka_password="pw-1")
    )
    assert (security.protocol, security.mechanism, security.username, security.password) == ("SASL_PLAINTEXT", "PLAIN", "u1", SecretStr("pw-1"))
    assert KafkaSecurity.from_settings(load_settings(kafka_security_protocol="PLAINTEXT")).sasl is False
