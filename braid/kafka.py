"""Kafka administration and clients (kafka-python), built from values the settings hold."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError
from pydantic import SecretStr

from braid.errors import BraidError
from braid.settings import Settings

# kafka-python logs each refused connection while a broker boots; that is expected, not a warning to the user.
logging.getLogger("kafka").setLevel(logging.ERROR)

PLAIN_LOGIN_MODULE = "org.apache.kafka.common.security.plain.PlainLoginModule"
SCRAM_LOGIN_MODULE = "org.apache.kafka.common.security.scram.ScramLoginModule"
SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")


class CredentialsRefused(BraidError):
    """A broker answers, but the SASL sign-in with the settings' credentials did not complete."""


@dataclass(frozen=True)
class KafkaSecurity:
    """How a client authenticates with Kafka: not at all (PLAINTEXT), or SASL with a user name and a password.

    One value for every kind of client: kafka-python's (`client_config()`) and Spark's Kafka source (`spark_options()`).
    The password stays a SecretStr until the moment a client is built, so a repr or a log line never shows it."""

    protocol: str = "PLAINTEXT"
    mechanism: str = "SCRAM-SHA-512"
    username: str | None = None
    password: SecretStr | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> KafkaSecurity:
        return cls(settings.kafka_security_protocol, settings.kafka_sasl_mechanism, settings.kafka_username, settings.kafka_password)

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    def client_config(self) -> dict[str, Any]:
        """Keyword arguments for kafka-python's KafkaProducer, KafkaConsumer and KafkaAdminClient."""
        if not self.sasl:
            return {}
        assert self.username is not None and self.password is not None  # the settings refuse SASL without them
        return {
            "security_protocol": self.protocol,
            "sasl_mechanism": self.mechanism,
            "sasl_plain_username": self.username,
            "sasl_plain_password": self.password.get_secret_value(),
        }

    def spark_options(self) -> dict[str, str]:
        """Options for Spark's Kafka source and sink (`kafka.` + a Kafka client property)."""
        if not self.sasl:
            return {}
        assert self.username is not None and self.password is not None
        module = PLAIN_LOGIN_MODULE if self.mechanism == "PLAIN" else SCRAM_LOGIN_MODULE
        return {
            "kafka.security.protocol": self.protocol,
            "kafka.sasl.mechanism": self.mechanism,
            "kafka.sasl.jaas.config": jaas_config(module, username=self.username, password=self.password.get_secret_value()),
        }


def jaas_quote(value: str) -> str:
    """A JAAS option value: double-quoted, with backslashes and double quotes escaped (Java's StreamTokenizer rules)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def jaas_config(module: str, **options: str) -> str:
    """One JAAS login module entry, as Kafka's `sasl.jaas.config` takes it."""
    return f"{module} required " + " ".join(f"{name}={jaas_quote(value)}" for name, value in options.items()) + ";"


def admin_client(bootstrap_servers: list[str] | str, security: KafkaSecurity = KafkaSecurity(), **config: Any) -> KafkaAdminClient:
    """An admin client; CredentialsRefused when a broker answers but does not let it sign in."""
    try:
        return KafkaAdminClient(bootstrap_servers=bootstrap_servers, **security.client_config(), **config)
    except KafkaError:
        if security.sasl and broker_answers(bootstrap_servers):
            raise CredentialsRefused(refused_message(bootstrap_servers, security)) from None
        raise


def broker_answers(bootstrap_servers: list[str] | str, timeout: float = 2.0) -> bool:
    """Whether the first bootstrap server accepts a TCP connection: then a client that could not bootstrap with SASL
    was refused its sign-in. (kafka-python itself reports only a timeout: when the broker's refusal and its closing of
    the connection arrive together, it drops the refusal.)"""
    import socket

    first = bootstrap_servers if isinstance(bootstrap_servers, str) else bootstrap_servers[0]
    host, _, port = first.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return True
    except OSError:
        return False


def refused_message(bootstrap_servers: list[str] | str, security: KafkaSecurity) -> str:
    servers = bootstrap_servers if isinstance(bootstrap_servers, str) else ",".join(bootstrap_servers)
    return (
        f"kafka: {servers} answers but refused the {security.mechanism} sign-in of user {security.username!r}; "
        f"check BRAID_KAFKA_USERNAME and BRAID_KAFKA_PASSWORD (and BRAID_KAFKA_SASL_MECHANISM)"
    )


def create_topic(
    bootstrap_servers: list[str],
    name: str,
    *,
    partitions: int,
    replication: int,
    config: dict[str, str] | None = None,
    security: KafkaSecurity = KafkaSecurity(),
) -> bool:
    """Create `name` unless it exists; returns True when it was created now."""
    admin = admin_client(bootstrap_servers, security, request_timeout_ms=15000, bootstrap_timeout_ms=10000)
    try:
        admin.create_topics([NewTopic(name, partitions, replication, topic_configs=config or {})])
        return True
    except TopicAlreadyExistsError:
        return False
    finally:
        admin.close()


def ensure_scram_credentials(bootstrap_servers: list[str], security: KafkaSecurity) -> None:
    """Give the user of `security` SCRAM credentials (both mechanisms) with its password, inserted or updated, on a
    broker that also accepts PLAIN for it: the local broker keeps SCRAM credentials in its metadata, not in a file, so
    they are set through it. Only salted passwords travel (kafka-python derives them)."""
    from kafka.admin import UserScramCredentialUpsertion

    assert security.username is not None and security.password is not None
    plain = KafkaSecurity(security.protocol, "PLAIN", security.username, security.password)
    admin = admin_client(bootstrap_servers, plain, request_timeout_ms=15000, bootstrap_timeout_ms=10000)
    try:
        errors = {}
        for mechanism in SCRAM_MECHANISMS:  # one request each: Kafka refuses two changes of one user in a request
            upsertion = UserScramCredentialUpsertion(security.username, mechanism, security.password.get_secret_value(), iterations=8192)
            errors.update({f"{user} ({mechanism})": error for user, error in admin.alter_user_scram_credentials([upsertion]).items() if error})
    finally:
        admin.close()
    if errors:
        raise BraidError(f"kafka: setting the SCRAM credentials of {security.username!r} failed: {errors}")
