"""Settings: defaults, both list spellings, the TOML file, and bad values failing with the setting named."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from braid.settings import SettingsError, load_settings


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in [name for name in os.environ if name.startswith("BRAID_")]:
        monkeypatch.delenv(name)
    return monkeypatch


def test_defaults_run_everything_on_this_machine(env: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert settings.kafka_bootstrap_servers == ["127.0.0.1:9092"]
    assert settings.kafka_host_port == ("127.0.0.1", 9092)
    assert (settings.cassandra_contact_points, settings.cassandra_port) == (["127.0.0.1"], 9042)
    assert settings.spark_master == "local[*]"
    assert settings.lake_root == str(Path.home() / ".braid" / "lake")
    assert settings.checkpoints == str(Path.home() / ".braid" / "checkpoints")
    assert settings.jar_cache == Path.home() / ".braid" / "jars"


@pytest.mark.parametrize("spelling", ["kafka-1:9092, kafka-2:9093", '["kafka-1:9092", "kafka-2:9093"]'])
def test_lists_accept_commas_or_json(env: pytest.MonkeyPatch, spelling: str) -> None:
    env.setenv("BRAID_KAFKA_BOOTSTRAP_SERVERS", spelling)
    env.setenv("BRAID_CASSANDRA_CONTACT_POINTS", "10.0.0.1,10.0.0.2,10.0.0.3")
    settings = load_settings()
    assert settings.kafka_bootstrap_servers == ["kafka-1:9092", "kafka-2:9093"]
    assert settings.cassandra_contact_points == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    assert settings.kafka_host_port == ("kafka-1", 9092)


def test_file_values_are_used_and_environment_wins(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    file = tmp_path / "braid.toml"
    file.write_text('spark_master = "spark://master:7077"\ncassandra_replication_factor = 3\ndelta_root = "s3a://lake/braid"\n')
    env.setenv("BRAID_SETTINGS_FILE", str(file))
    env.setenv("BRAID_CASSANDRA_REPLICATION_FACTOR", "2")
    settings = load_settings()
    assert settings.spark_master == "spark://master:7077"
    assert settings.cassandra_replication_factor == 2
    assert settings.lake_root == "s3a://lake/braid"


def test_settings_are_frozen(env: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    with pytest.raises(Exception, match="frozen"):
        settings.spark_master = "yarn"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("BRAID_KAFKA_BOOTSTRAP_SERVERS", "broker-without-port", r"BRAID_KAFKA_BOOTSTRAP_SERVERS: 'broker-without-port' is not host:port"),
        ("BRAID_KAFKA_BOOTSTRAP_SERVERS", "", r"BRAID_KAFKA_BOOTSTRAP_SERVERS: expected at least one host:port"),
        ("BRAID_CASSANDRA_PORT", "ninety", r"BRAID_CASSANDRA_PORT: .*integer.*'ninety'"),
        ("BRAID_CASSANDRA_PORT", "70000", r"BRAID_CASSANDRA_PORT: .*65535"),
        ("BRAID_CASSANDRA_KEYSPACE", "Bad-Name", r"BRAID_CASSANDRA_KEYSPACE: 'Bad-Name' is not a keyspace name"),
        ("BRAID_CASSANDRA_REPLICATION_CLASS", "Everywhere", r"BRAID_CASSANDRA_REPLICATION_CLASS: .*SimpleStrategy"),
        ("BRAID_SPARK_MASTER", "locall", r"BRAID_SPARK_MASTER: 'locall' is not a Spark master URL"),
        ("BRAID_DELTA_ROOT", "ftp://lake", r"BRAID_DELTA_ROOT: 'ftp://lake' has an unsupported scheme"),
        ("BRAID_KAFKA_HEAP", "lots", r"BRAID_KAFKA_HEAP: 'lots' is not a JVM memory size"),
        ("BRAID_JAVA_HOME", "/nonexistent/jdk", r"BRAID_JAVA_HOME: '/nonexistent/jdk' has no bin/java"),
        ("BRAID_KAFKA_HEEP", "1g", r"BRAID_KAFKA_HEEP: not a Braid setting"),
    ],
)
def test_bad_value_names_the_setting(env: pytest.MonkeyPatch, variable: str, value: str, message: str) -> None:
    env.setenv(variable, value)
    with pytest.raises(SettingsError, match=message):
        load_settings()


def test_credentials_go_together_and_the_password_is_never_shown(env: pytest.MonkeyPatch) -> None:
    env.setenv("BRAID_CASSANDRA_USERNAME", "reader")
    with pytest.raises(SettingsError, match="BRAID_CASSANDRA_USERNAME and BRAID_CASSANDRA_PASSWORD must be set together"):
        load_settings()
    env.setenv("BRAID_CASSANDRA_PASSWORD", "s3cret-value")
    settings = load_settings()
    assert settings.cassandra_password is not None
    assert settings.cassandra_password.get_secret_value() == "s3cret-value"
    assert "s3cret-value" not in repr(settings)


def test_missing_settings_file_is_named(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env.setenv("BRAID_SETTINGS_FILE", str(tmp_path / "absent.toml"))
    with pytest.raises(SettingsError, match=r"BRAID_SETTINGS_FILE=.*absent.toml.*no such file"):
        load_settings()


def test_object_storage_credentials_go_together_and_a_bad_secret_is_never_shown(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env.setenv("BRAID_S3_ACCESS_KEY", "braid")
    with pytest.raises(SettingsError, match="BRAID_S3_ACCESS_KEY and BRAID_S3_SECRET_KEY must be set together"):
        load_settings()
    file = tmp_path / "settings.toml"
    file.write_text("s3_secret_key = 918273645\napi_read_token = 564738291\n")  # numbers, not strings: refused
    env.setenv("BRAID_SETTINGS_FILE", str(file))
    with pytest.raises(SettingsError, match="BRAID_S3_SECRET_KEY: Input should be a valid string") as refused:
        load_settings()
    assert "918273645" not in str(refused.value) and "564738291" not in str(refused.value)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("BRAID_SPARK_EXECUTOR_MEMORY", "lots", "BRAID_SPARK_EXECUTOR_MEMORY: 'lots' is not a JVM memory size"),
        ("BRAID_SPARK_CORES_MAX", "0", "BRAID_SPARK_CORES_MAX: Input should be greater than or equal to 1"),
        ("BRAID_S3_ENDPOINT", "minio:9000", "BRAID_S3_ENDPOINT: 'minio:9000' is not an endpoint URL such as http://minio:9000"),
    ],
)
def test_cluster_settings_fail_fast(env: pytest.MonkeyPatch, variable: str, value: str, message: str) -> None:
    env.setenv(variable, value)
    with pytest.raises(SettingsError, match=message):
        load_settings()


# -- security settings --------------------------------------------------------------------------------------------

SECURE = {
    "BRAID_API_READ_TOKEN": "read-token-0123456789abcdefghij",
    "BRAID_API_WRITE_TOKEN": "write-token-0123456789abcdefghij",
    "BRAID_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
    "BRAID_KAFKA_USERNAME": "braid",
    "BRAID_KAFKA_PASSWORD": "kafka-pass-3141",
    "BRAID_CASSANDRA_AUTH": "true",
    "BRAID_CASSANDRA_ADMIN_PASSWORD": "admin-pass-2718",
    "BRAID_CASSANDRA_USERNAME": "braid_owner",
    "BRAID_CASSANDRA_PASSWORD": "owner-pass-1618",
    "BRAID_CASSANDRA_READER_USERNAME": "braid_reader",
    "BRAID_CASSANDRA_READER_PASSWORD": "reader-pass-1414",
}
SECRETS = [value for name, value in SECURE.items() if "PASSWORD" in name or "TOKEN" in name]


def test_security_settings_load_and_no_secret_is_in_the_repr(env: pytest.MonkeyPatch) -> None:
    for name, value in SECURE.items():
        env.setenv(name, value)
    settings = load_settings()
    assert (settings.kafka_security_protocol, settings.kafka_sasl_mechanism, settings.kafka_username) == ("SASL_PLAINTEXT", "SCRAM-SHA-512", "braid")
    assert settings.cassandra_auth and settings.cassandra_admin_username == "braid_admin"
    assert settings.api_write_token is not None and settings.api_write_token.get_secret_value() == SECURE["BRAID_API_WRITE_TOKEN"]
    shown = repr(settings) + str(settings) + repr(settings.model_dump())
    assert [secret for secret in SECRETS if secret in shown] == []


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"BRAID_KAFKA_USERNAME": None, "BRAID_KAFKA_PASSWORD": None}, "BRAID_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT needs BRAID_KAFKA_USERNAME and BRAID_KAFKA_PASSWORD"),
        ({"BRAID_KAFKA_PASSWORD": None}, "BRAID_KAFKA_USERNAME and BRAID_KAFKA_PASSWORD must be set together"),
        ({"BRAID_KAFKA_SECURITY_PROTOCOL": None}, "BRAID_KAFKA_USERNAME is set but BRAID_KAFKA_SECURITY_PROTOCOL is PLAINTEXT"),
        ({"BRAID_KAFKA_SECURITY_PROTOCOL": "SSL"}, "BRAID_KAFKA_SECURITY_PROTOCOL: Input should be 'PLAINTEXT' or 'SASL_PLAINTEXT'"),
        ({"BRAID_KAFKA_SASL_MECHANISM": "GSSAPI"}, "BRAID_KAFKA_SASL_MECHANISM: Input should be 'PLAIN', 'SCRAM-SHA-256' or 'SCRAM-SHA-512'"),
        ({"BRAID_KAFKA_USERNAME": "braid user"}, "BRAID_KAFKA_USERNAME: 'braid user' is not a Kafka user name"),
        ({"BRAID_CASSANDRA_ADMIN_PASSWORD": None}, "BRAID_CASSANDRA_AUTH=true needs BRAID_CASSANDRA_ADMIN_PASSWORD .*none has a default"),
        (
            {"BRAID_CASSANDRA_READER_USERNAME": None, "BRAID_CASSANDRA_READER_PASSWORD": None},
            "BRAID_CASSANDRA_AUTH=true needs BRAID_CASSANDRA_READER_USERNAME",
        ),
        ({"BRAID_CASSANDRA_READER_USERNAME": "braid_owner"}, r"must be three different roles.*\['braid_admin', 'braid_owner', 'braid_owner'\]"),
        ({"BRAID_CASSANDRA_ADMIN_USERNAME": "cassandra"}, "none of them 'cassandra'"),
        ({"BRAID_API_WRITE_TOKEN": SECURE["BRAID_API_READ_TOKEN"]}, "BRAID_API_READ_TOKEN and BRAID_API_WRITE_TOKEN must differ"),
        ({"BRAID_API_READ_TOKEN": "short-token-9"}, "BRAID_API_READ_TOKEN: expected at least 24 characters"),
        ({"BRAID_API_WRITE_TOKEN": "has spaces in it but it is long"}, "BRAID_API_WRITE_TOKEN: expected at least 24 characters"),
        ({"BRAID_KAFKA_PASSWORD": "two\nlines-of-password"}, "BRAID_KAFKA_PASSWORD: expected a non-empty password without control characters"),
        ({"BRAID_SERVING_TOKEN": "old-name-token-0123456789abc"}, "BRAID_SERVING_TOKEN: renamed BRAID_API_READ_TOKEN"),
    ],
)
def test_bad_security_settings_fail_fast_and_never_echo_a_secret(env: pytest.MonkeyPatch, changes: dict, message: str) -> None:
    values = {**SECURE, **changes}
    for name, value in values.items():
        if value is not None:
            env.setenv(name, value)
    with pytest.raises(SettingsError, match=message) as refused:
        load_settings()
    offered = [value for name, value in values.items() if value and ("PASSWORD" in name or "TOKEN" in name)]
    assert [secret for secret in offered if secret in str(refused.value)] == []


def test_the_old_token_name_in_a_settings_file_is_refused_with_the_new_one(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    file = tmp_path / "settings.toml"
    file.write_text('serving_token = "old-name-token-0123456789abc"\n')
    env.setenv("BRAID_SETTINGS_FILE", str(file))
    with pytest.raises(SettingsError, match="BRAID_SERVING_TOKEN: renamed BRAID_API_READ_TOKEN") as refused:
        load_settings()
    assert "old-name-token" not in str(refused.value)
