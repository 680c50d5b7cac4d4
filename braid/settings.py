"""The one settings object of Braid.

Read once, at start, from environment variables (prefix ``BRAID_``) and, optionally, a TOML file named by
``BRAID_SETTINGS_FILE``; the environment wins over the file. The object is frozen: code that needs a value receives
the value, not the settings (STYLE.md, rule 6). A bad value fails at start with a message naming the setting.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
import json
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

SETTINGS_FILE_VARIABLE = "BRAID_SETTINGS_FILE"

_HOST_PORT = re.compile(r"^(?P<host>[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:]+\]):(?P<port>\d{1,5})$")
_SPARK_MASTER = re.compile(r"^(local(\[(\*|[1-9]\d*)(,[1-9]\d*)?\])?|spark://.+|yarn|k8s://.+|mesos://.+)$")
_LAKE_SCHEMES = ("file://", "s3a://", "s3://", "gs://", "abfss://", "abfs://", "hdfs://")
_MEMORY = re.compile(r"^[1-9]\d*[mMgG]$")


class SettingsError(ValueError):
    """A setting has a bad value; the message names the setting (as its environment variable) and the value."""


def _default_home() -> Path:
    return Path.home() / ".braid"


class Settings(BaseSettings):
    """Every endpoint and knob of a Braid deployment; defaults run everything on this machine."""

    model_config = SettingsConfigDict(env_prefix="BRAID_", frozen=True, extra="forbid", validate_default=True)

    # Where Braid keeps its own state on this machine: the JVM jar cache, local services' data, logs and pids.
    home: Path = Field(default_factory=_default_home)
    jars_dir: Path | None = None
    services_dir: Path | None = None

    java_home: Path | None = None

    kafka_bootstrap_servers: Annotated[list[str], NoDecode] = ["127.0.0.1:9092"]
    kafka_controller_port: int = Field(default=9093, ge=1, le=65535)
    kafka_heap: str = "1g"
    # SASL authentication with Kafka, for every client (producers, admin, consumers, Spark's Kafka source). With
    # SASL_PLAINTEXT the local broker (`braid up`) accepts only authenticated clients, with these credentials.
    kafka_security_protocol: Literal["PLAINTEXT", "SASL_PLAINTEXT"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    kafka_username: str | None = None
    kafka_password: SecretStr | None = None

    events_topic: str = "braid.events"
    dead_letter_topic: str = "braid.events.dead_letter"
    topic_partitions: int = Field(default=6, ge=1, le=10_000)
    topic_replication: int = Field(default=1, ge=1, le=9)
    topic_retention_hours: int = Field(default=168, ge=1)

    ingest_host: str = "127.0.0.1"
    ingest_port: int = Field(default=8088, ge=1, le=65535)
    ingest_max_batch: int = Field(default=1000, ge=1, le=100_000)

    # The time and size rules (handoff bucket, lateness, event size); None = the packaged schemas/rules.toml. Every
    # process of one deployment must read the same file: the bucket length is part of the merge contract.
    rules_file: Path | None = None

    speed_trigger_seconds: float = Field(default=0.25, ge=0, le=3600)  # the view path's micro-batch interval
    speed_archive_seconds: float = Field(default=10.0, gt=0, le=3600)  # micro-batches gathered into one Delta commit
    speed_archive_max_seconds: float = Field(default=30.0, gt=0, le=3600)  # the longest a busy lake stretches that wait
    speed_archive_max_pending_rows: int = Field(default=1_000_000, ge=1)  # back-pressure on the view path beyond this
    speed_max_offsets_per_trigger: int | None = Field(default=500_000, ge=1)
    speed_dedup_horizon_minutes: int = Field(default=60, ge=0)
    speed_dead_letter: bool = False  # also send quarantined records to the dead-letter topic (at least once)

    cassandra_contact_points: Annotated[list[str], NoDecode] = ["127.0.0.1"]
    cassandra_port: int = Field(default=9042, ge=1, le=65535)
    cassandra_storage_port: int = Field(default=7000, ge=1, le=65535)
    cassandra_keyspace: str = "braid"
    cassandra_replication_class: Literal["SimpleStrategy", "NetworkTopologyStrategy"] = "SimpleStrategy"
    cassandra_replication_factor: int = Field(default=1, ge=1, le=9)
    cassandra_local_datacenter: str = "datacenter1"
    # Credentials of this process: the owner role (migrations, speed and batch layers), and the reader role the serving
    # layer uses when set (it may only SELECT the serving tables).
    cassandra_username: str | None = None
    cassandra_password: SecretStr | None = None
    cassandra_reader_username: str | None = None
    cassandra_reader_password: SecretStr | None = None
    # Password authentication of the local Cassandra (`braid up`): PasswordAuthenticator and CassandraAuthorizer, an
    # admin role in place of the well-known default superuser, and the owner and reader roles above, created by it.
    cassandra_auth: bool = False
    cassandra_admin_username: str = "braid_admin"
    cassandra_admin_password: SecretStr | None = None
    cassandra_heap: str = "2g"
    # LOCAL_QUORUM is one node locally and a majority of replicas in a cluster: reads see every acknowledged write.
    cassandra_write_consistency: Literal["ONE", "LOCAL_ONE", "LOCAL_QUORUM", "QUORUM", "EACH_QUORUM", "ALL"] = "LOCAL_QUORUM"
    cassandra_read_consistency: Literal["ONE", "LOCAL_ONE", "LOCAL_QUORUM", "QUORUM", "ALL"] = "LOCAL_QUORUM"

    delta_root: str | None = None
    checkpoint_root: str | None = None

    # The batch layer: how often Airflow recomputes, and how long a superseded version (and the speed rows it still
    # needs) stays readable for queries that started before the switch.
    batch_schedule: str = "@hourly"
    batch_retire_grace_seconds: int = Field(default=600, ge=0)
    batch_publish_concurrency: int = Field(default=64, ge=1, le=1024)
    # Airflow's wait before it retries a failed stage (doubling on each retry): long enough for a restarted service.
    batch_retry_delay_seconds: int = Field(default=30, ge=0)
    delta_vacuum_retention_hours: int = Field(default=168, ge=168)  # Delta refuses less by default, and so do we
    quality_dir: Path | None = None  # Great Expectations project and Data Docs; default <home>/quality

    # The serving API and dashboard.
    serving_host: str = "127.0.0.1"
    serving_port: int = Field(default=8080, ge=1, le=65535)
    # Bearer tokens of the HTTP APIs; with neither set, both APIs are open. A read token may query (serving /v1 and
    # /metrics); the write token may also send events (ingest POST /v1/events).
    api_read_token: SecretStr | None = None
    api_write_token: SecretStr | None = None
    serving_max_windows: int = Field(default=10_080, ge=1, le=1_000_000)  # windows one query may span
    serving_refresh_seconds: float = Field(default=5.0, gt=0, le=3600)  # the dashboard's refresh period

    spark_master: str = "local[*]"
    spark_driver_memory: str = "4g"
    spark_shuffle_partitions: int = Field(default=4, ge=1, le=100_000)
    spark_ui_enabled: bool = False
    # Drivers map Spark's classes from the archive `braid jars` makes (braid/jvm/cds.py): a quarter off a cold start.
    spark_class_data_sharing: bool = True
    # More JVM options for every Spark driver Braid starts (speed job, batch stages, API-less CLI runs), after the
    # archive's. E.g. `-XX:TieredStopAtLevel=1` where drivers live seconds on few cores (the test stack's short jobs).
    spark_driver_jvm_options: str = Field(default="", max_length=2000)
    # On a cluster only (local[*] ignores both): each executor's heap, and the cores one application may hold. A
    # standalone master gives an application every free core unless capped, so the always-on speed job would leave
    # none for the batch runs.
    spark_executor_memory: str | None = None
    spark_cores_max: int | None = Field(default=None, ge=1, le=100_000)

    # Object storage for a lake on s3a:// (MinIO or any S3 API). Unset, Hadoop's S3A defaults apply (AWS endpoints,
    # the AWS credential chain).
    s3_endpoint: str | None = None
    s3_region: str = "us-east-1"
    s3_access_key: str | None = None
    s3_secret_key: SecretStr | None = None
    s3_path_style_access: bool = False  # MinIO serves buckets as paths unless its domain is configured

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _TomlFileSource(settings_cls)

    @field_validator("kafka_bootstrap_servers", mode="before")
    @classmethod
    def _split_servers(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator("cassandra_contact_points", mode="before")
    @classmethod
    def _split_points(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _check_servers(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("expected at least one host:port")
        for server in value:
            match = _HOST_PORT.match(server)
            if not match or not 0 < int(match["port"]) < 65536:
                raise ValueError(f"{server!r} is not host:port (e.g. 127.0.0.1:9092)")
        return value

    @field_validator("cassandra_contact_points")
    @classmethod
    def _check_points(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("expected at least one host")
        for point in value:
            if not re.fullmatch(r"[A-Za-z0-9.\-:]+", point):
                raise ValueError(f"{point!r} is not a host name or address")
        return value

    @field_validator("events_topic", "dead_letter_topic")
    @classmethod
    def _check_topic(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,249}", value):
            raise ValueError(f"{value!r} is not a Kafka topic name (letters, digits, . _ -; 249 at most)")
        return value

    @field_validator("cassandra_keyspace")
    @classmethod
    def _check_keyspace(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,47}", value):
            raise ValueError(f"{value!r} is not a keyspace name (lower case letters, digits, _; 48 at most)")
        return value

    @field_validator("spark_master")
    @classmethod
    def _check_master(cls, value: str) -> str:
        if not _SPARK_MASTER.match(value):
            raise ValueError(f"{value!r} is not a Spark master URL (local[*], local[N], spark://host:port, yarn, k8s://...)")
        return value

    @field_validator("kafka_heap", "cassandra_heap", "spark_driver_memory")
    @classmethod
    def _check_memory(cls, value: str) -> str:
        if not _MEMORY.match(value):
            raise ValueError(f"{value!r} is not a JVM memory size such as 512m or 2g")
        return value

    @field_validator("spark_executor_memory")
    @classmethod
    def _check_optional_memory(cls, value: str | None) -> str | None:
        if value is not None and not _MEMORY.match(value):
            raise ValueError(f"{value!r} is not a JVM memory size such as 512m or 2g")
        return value

    @field_validator("s3_endpoint")
    @classmethod
    def _check_endpoint(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"https?://[A-Za-z0-9.\-]+(:\d{1,5})?/?", value):
            raise ValueError(f"{value!r} is not an endpoint URL such as http://minio:9000")
        return value

    @field_validator("delta_root", "checkpoint_root")
    @classmethod
    def _check_storage_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if "://" in value and not value.startswith(_LAKE_SCHEMES):
            raise ValueError(f"{value!r} has an unsupported scheme (expected a local path or one of {', '.join(_LAKE_SCHEMES)})")
        return value

    @field_validator("java_home")
    @classmethod
    def _check_java_home(cls, value: Path | None) -> Path | None:
        if value is not None and not (value / "bin" / "java").exists():
            raise ValueError(f"{str(value)!r} has no bin/java")
        return value

    @field_validator("kafka_username")
    @classmethod
    def _check_kafka_username(cls, value: str | None) -> str | None:
        # The name becomes a key of the local broker's JAAS options (user_<name>): plain characters only.
        if value is not None and not re.fullmatch(r"[A-Za-z0-9._-]{1,128}", value):
            raise ValueError(f"{value!r} is not a Kafka user name (letters, digits, . _ -; 128 at most)")
        return value

    @field_validator("api_read_token", "api_write_token")
    @classmethod
    def _check_token(cls, value: SecretStr | None) -> SecretStr | None:
        # A bearer token as RFC 6750 spells one (e.g. secrets.token_urlsafe(32)), long enough not to be guessed.
        if value is not None and not re.fullmatch(r"[A-Za-z0-9\-._~+/]{24,4096}=*", value.get_secret_value()):
            raise ValueError("expected at least 24 characters from A-Z a-z 0-9 - . _ ~ + / (e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')")
        return value

    @field_validator("kafka_password", "cassandra_password", "cassandra_reader_password", "cassandra_admin_password")
    @classmethod
    def _check_password(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and (not value.get_secret_value() or any(ord(c) < 32 or ord(c) == 127 for c in value.get_secret_value())):
            raise ValueError("expected a non-empty password without control characters (newlines, tabs)")
        return value

    @model_validator(mode="after")
    def _check_credentials(self) -> Settings:
        pairs = (
            ("CASSANDRA_USERNAME", self.cassandra_username, "CASSANDRA_PASSWORD", self.cassandra_password),
            ("CASSANDRA_READER_USERNAME", self.cassandra_reader_username, "CASSANDRA_READER_PASSWORD", self.cassandra_reader_password),
            ("KAFKA_USERNAME", self.kafka_username, "KAFKA_PASSWORD", self.kafka_password),
            ("S3_ACCESS_KEY", self.s3_access_key, "S3_SECRET_KEY", self.s3_secret_key),
        )
        for name, value, secret_name, secret in pairs:
            if (value is None) != (secret is None):
                raise ValueError(f"BRAID_{name} and BRAID_{secret_name} must be set together")
        if self.kafka_security_protocol == "SASL_PLAINTEXT" and self.kafka_username is None:
            raise ValueError("BRAID_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT needs BRAID_KAFKA_USERNAME and BRAID_KAFKA_PASSWORD")
        if self.kafka_security_protocol == "PLAINTEXT" and self.kafka_username is not None:
            raise ValueError("BRAID_KAFKA_USERNAME is set but BRAID_KAFKA_SECURITY_PROTOCOL is PLAINTEXT: set it to SASL_PLAINTEXT to use it")
        if self.api_read_token is not None and self.api_read_token == self.api_write_token:
            raise ValueError("BRAID_API_READ_TOKEN and BRAID_API_WRITE_TOKEN must differ, or the read token could write")
        if self.cassandra_auth:
            self._check_cassandra_roles()
        return self

    def _check_cassandra_roles(self) -> None:
        needed = {
            "BRAID_CASSANDRA_ADMIN_PASSWORD": self.cassandra_admin_password,
            "BRAID_CASSANDRA_USERNAME": self.cassandra_username,
            "BRAID_CASSANDRA_READER_USERNAME": self.cassandra_reader_username,
        }
        missing = [name for name, value in needed.items() if value is None]
        if missing:
            raise ValueError(f"BRAID_CASSANDRA_AUTH=true needs {', '.join(missing)} (with their passwords); none has a default")
        roles = [self.cassandra_admin_username, self.cassandra_username, self.cassandra_reader_username]
        if len(set(roles)) != 3 or "cassandra" in roles:
            raise ValueError(
                f"BRAID_CASSANDRA_ADMIN_USERNAME, BRAID_CASSANDRA_USERNAME and BRAID_CASSANDRA_READER_USERNAME must be three "
                f"different roles, none of them 'cassandra' (the default superuser, disabled); got {roles}"
            )

    # Derived locations: one place decides where each kind of state lives.
    @property
    def jar_cache(self) -> Path:
        return self.jars_dir or self.home / "jars"

    @property
    def service_root(self) -> Path:
        return self.services_dir or self.home / "services"

    @property
    def lake_root(self) -> str:
        return self.delta_root or str(self.home / "lake")

    @property
    def quality_root(self) -> Path:
        return self.quality_dir or self.home / "quality"

    @property
    def checkpoints(self) -> str:
        return self.checkpoint_root or str(self.home / "checkpoints")

    @property
    def kafka_host_port(self) -> tuple[str, int]:
        """The first bootstrap server: where a local broker listens."""
        match = _HOST_PORT.match(self.kafka_bootstrap_servers[0])
        assert match is not None  # checked by the validator
        return match["host"].strip("[]"), int(match["port"])

    @property
    def cassandra_host(self) -> str:
        return self.cassandra_contact_points[0]


class _TomlFileSource(PydanticBaseSettingsSource):
    """Values from the TOML file named by BRAID_SETTINGS_FILE, keys as the field names (``kafka_heap = "2g"``)."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        name = os.environ.get(SETTINGS_FILE_VARIABLE)
        self._values: dict[str, Any] = {}
        if name:
            path = Path(name)
            if not path.is_file():
                raise SettingsError(f"{SETTINGS_FILE_VARIABLE}={name!r}: no such file")
            try:
                self._values = tomllib.loads(path.read_text())
            except tomllib.TOMLDecodeError as error:
                raise SettingsError(f"{SETTINGS_FILE_VARIABLE}={name!r}: not valid TOML ({error})") from error

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._values)


def _split_list(value: Any) -> Any:
    """Accept ``a,b`` as well as a JSON list, as people write lists in environment variables both ways."""
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith("["):
            return json.loads(stripped)
        return [part.strip() for part in stripped.split(",") if part.strip()]
    return value


# Settings that were renamed: the old name is refused with the new one, rather than ignored.
RENAMED = {"serving_token": "BRAID_API_READ_TOKEN (read access; BRAID_API_WRITE_TOKEN gives write access too)"}


def load_settings(**overrides: Any) -> Settings:
    """Build the settings, turning a validation failure into one message per bad setting, each named as a variable."""
    known = {f"BRAID_{name.upper()}" for name in Settings.model_fields} | {SETTINGS_FILE_VARIABLE}
    for old, new in RENAMED.items():
        if f"BRAID_{old.upper()}" in os.environ:
            raise SettingsError(f"BRAID_{old.upper()}: renamed {new}")
    unknown = sorted(name for name in os.environ if name.startswith("BRAID_") and name not in known)
    if unknown:
        # A misspelt variable would otherwise be ignored and its default used silently.
        raise SettingsError(f"{', '.join(unknown)}: not a Braid setting (known: {', '.join(sorted(known))})")
    try:
        return Settings(**overrides)
    except ValidationError as error:
        problems = []
        for item in error.errors():
            name = str(item["loc"][0]) if item["loc"] else ""
            where = f"BRAID_{name.upper()}" if name else "settings"
            message = str(item["msg"]).removeprefix("Value error, ")
            if name in RENAMED:
                message = f"renamed {RENAMED[name]}"
            given = item.get("input")
            secret = any(word in name for word in ("password", "secret", "token"))
            shown = "" if secret or isinstance(given, dict) or given is None or repr(given) in message else f" (got {given!r})"
            problems.append(f"{where}: {message}{shown}")
        raise SettingsError("; ".join(problems)) from None
