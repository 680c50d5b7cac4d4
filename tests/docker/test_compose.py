"""docker/compose.yaml without a Docker engine: it is a valid Compose document, configures Braid only through real
settings (with values the settings accept and secrets that have no default), pins every image, and calls only real
commands. The schema, settings, tag and command checks are each also shown to refuse something broken on purpose."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from pydantic import SecretStr

from braid.cli import build_parser
from braid.jvm import pinned_versions
from braid.settings import Settings, load_settings
from tests.docker.compose_file import (
    SCHEMA,
    SCHEMA_SHA256,
    DOCKER,
    braid_services,
    commands,
    dockerfile_env,
    environment,
    interpolations,
    load_compose,
    pinned,
    validator,
)

COMPOSE = load_compose()
SETTINGS = {f"BRAID_{name.upper()}" for name in Settings.model_fields}


def _secret_settings() -> set[str]:
    def mentions_secret(annotation) -> bool:
        return annotation is SecretStr or any(mentions_secret(arg) for arg in getattr(annotation, "__args__", ()))

    return {f"BRAID_{name.upper()}" for name, field in Settings.model_fields.items() if mentions_secret(field.annotation)}


# --- the Compose Specification -----------------------------------------------------------------------------------


def test_the_vendored_schema_is_the_file_its_note_names() -> None:
    assert hashlib.sha256(SCHEMA.read_bytes()).hexdigest() == SCHEMA_SHA256


def test_compose_file_validates_against_the_compose_specification() -> None:
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator().iter_errors(COMPOSE)]
    assert errors == []


def _messages(errors) -> list[str]:
    """Every message, those under a oneOf/anyOf included (a oneOf reports only that no branch matched)."""
    found = []
    for error in errors:
        found += [error.message, *_messages(error.context or [])]
    return found


def _broken(path: list, value) -> dict:
    document = copy.deepcopy(COMPOSE)
    target = document
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return document


@pytest.mark.parametrize(
    ("path", "value", "complaint"),
    [
        (["services", "speed", "comand"], ["braid"], "'comand' does not match any of the regexes"),
        (["services", "speed", "healthcheck", "interval"], "fifteen seconds", "is not a 'duration'"),
        (["services", "speed", "depends_on", "braid-init", "condition"], "service_done", "is not one of"),
        (["services", "speed", "deploy", "resources", "limits", "memroy"], "4g", "'memroy' does not match any of the regexes"),
        (["services", "kafka-1", "volumes"], "kafka-1:/data", "is not of type 'array'"),
        (["secretz"], {}, "'secretz' does not match any of the regexes"),
    ],
)
def test_a_broken_document_is_refused(path: list, value, complaint: str) -> None:
    messages = _messages(validator().iter_errors(_broken(path, value)))
    assert any(complaint in message for message in messages), messages


def test_services_depend_only_on_services_that_exist() -> None:
    for name, service in COMPOSE["services"].items():
        assert set(service.get("depends_on", {})) <= set(COMPOSE["services"]), name


def test_named_volumes_are_declared_and_every_declared_one_is_used() -> None:
    used = {v.split(":")[0] for s in COMPOSE["services"].values() for v in s.get("volumes", []) if not v.startswith((".", "/"))}
    assert used == set(COMPOSE["volumes"])


# --- settings ----------------------------------------------------------------------------------------------------


def _braid_variables(document: dict) -> set[str]:
    names = set()
    for service in document["services"].values():
        names |= {name for name in environment(service) if name.startswith("BRAID_")}
        for value in environment(service).values():
            names |= {m["name"] for m in interpolations(value) if m["name"].startswith("BRAID_")}
    return names


def _env_file_variables(path: Path) -> dict[str, str]:
    pairs = [line.split("=", 1) for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    return {name.strip(): value.strip() for name, value in pairs}


def test_every_braid_variable_names_a_setting() -> None:
    variables = _braid_variables(COMPOSE) | {v for v in _env_file_variables(DOCKER / "braid.env.example") if v.startswith("BRAID_")}
    variables |= {name for stage in dockerfile_env().values() for name in stage if name.startswith("BRAID_")}
    assert variables, "no BRAID_ variable found: the reader is broken"
    assert variables <= SETTINGS, sorted(variables - SETTINGS)


def test_a_misspelt_setting_would_be_caught() -> None:
    broken = _broken(["services", "speed", "environment", "BRAID_SPARK_MASTR"], "spark://x:7077")
    assert _braid_variables(broken) - SETTINGS == {"BRAID_SPARK_MASTR"}


def _placeholder(value: str) -> str:
    """A value with each ${VAR...} replaced as Compose would with a variable set: here a made-up secret."""
    for match in reversed(interpolations(value)):
        value = value[: match.start()] + f"test-{match['name'].lower()}" + value[match.end() :]
    return value.replace("$$", "$")


@pytest.mark.parametrize("name", sorted(braid_services(COMPOSE)))
def test_each_braid_service_environment_loads_as_settings(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the container's `load_settings()` would see: the image's ENV, then the service's environment."""
    for variable in [v for v in os.environ if v.startswith("BRAID_")]:
        monkeypatch.delenv(variable)
    image_env = {k: v for k, v in dockerfile_env()["final"].items() if k.startswith("BRAID_")}
    service_env = {k: _placeholder(v) for k, v in environment(COMPOSE["services"][name]).items() if k.startswith("BRAID_")}
    for variable, value in {**image_env, **service_env}.items():
        monkeypatch.setenv(variable, value)
    settings = load_settings()
    if "BRAID_SPARK_MASTER" in service_env:
        assert settings.spark_master == "spark://spark-master:7077"
    if "BRAID_CASSANDRA_CONTACT_POINTS" in service_env:
        assert settings.cassandra_contact_points == ["cassandra-1", "cassandra-2", "cassandra-3"]
        assert (settings.cassandra_replication_factor, settings.cassandra_write_consistency) == (3, "LOCAL_QUORUM")
        assert settings.lake_root.startswith("s3a://") and settings.s3_secret_key is not None


def test_a_bad_setting_value_in_a_service_would_be_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in [v for v in os.environ if v.startswith("BRAID_")]:
        monkeypatch.delenv(variable)
    monkeypatch.setenv("BRAID_CASSANDRA_REPLICATION_CLASS", "NetworkTopology")
    with pytest.raises(ValueError, match="BRAID_CASSANDRA_REPLICATION_CLASS"):
        load_settings()


def test_secrets_come_only_from_variables_without_defaults() -> None:
    secret_names = _secret_settings() | {"MINIO_ROOT_PASSWORD", "AIRFLOW_POSTGRES_PASSWORD", "AIRFLOW_FERNET_KEY", "AIRFLOW_JWT_SECRET", "AIRFLOW_API_SECRET_KEY"}
    assert {"BRAID_S3_SECRET_KEY", "BRAID_API_READ_TOKEN", "BRAID_API_WRITE_TOKEN", "BRAID_CASSANDRA_PASSWORD"} <= secret_names
    for service_name, service in COMPOSE["services"].items():
        for variable, value in environment(service).items():
            found = interpolations(value)
            for match in found:
                if match["name"] in secret_names:
                    assert match["op"] in (":?", "?"), f"{service_name}: ${{{match['name']}}} must be required, not defaulted"
            if variable in secret_names:
                assert found and all(m["name"] in secret_names for m in found), f"{service_name}: {variable} is written in the file"


def test_the_env_example_names_every_variable_the_file_needs_and_holds_no_value() -> None:
    example = _env_file_variables(DOCKER / "braid.env.example")
    needed = {m["name"] for s in COMPOSE["services"].values() for v in environment(s).values() for m in interpolations(v)}
    assert set(example) == needed
    assert all(value == "" for value in example.values())
    assert ".env" in (DOCKER / ".gitignore").read_text().split()


# --- images ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("image", ["braid:latest", "apache/kafka", "cassandra:5.0", "cassandra:5", "minio/minio:latest", "postgres:16"])
def test_a_floating_tag_is_refused(image: str) -> None:
    assert not pinned(image)


def test_every_image_is_pinned_to_an_exact_version() -> None:
    images = {s["image"] for s in COMPOSE["services"].values()}
    assert images and all(pinned(image) for image in images), sorted(i for i in images if not pinned(i))


def test_kafka_and_cassandra_images_are_the_versions_braid_pins() -> None:
    pins = pinned_versions()
    services = COMPOSE["services"]
    assert {services[f"kafka-{n}"]["image"] for n in (1, 2, 3)} == {f"apache/kafka:{pins['kafka.version']}"}
    assert {services[f"cassandra-{n}"]["image"] for n in (1, 2, 3)} == {f"cassandra:{pins['cassandra.version']}"}


def test_braid_services_run_the_image_of_this_version() -> None:
    from importlib.metadata import version

    assert {s["image"] for s in braid_services(COMPOSE).values()} == {f"braid:{version('braid')}"}
    # Spark's master and workers are the image's own pyspark: the same Spark as every driver
    assert {"spark-master", "spark-worker-1", "spark-worker-2", "speed", "serving", "airflow-scheduler"} <= set(braid_services(COMPOSE))


# --- topology ----------------------------------------------------------------------------------------------------


def test_the_cluster_has_the_promised_shape() -> None:
    services = COMPOSE["services"]
    kafka = [s for n, s in services.items() if n.startswith("kafka-")]
    assert len(kafka) == 3 and {environment(s)["KAFKA_PROCESS_ROLES"] for s in kafka} == {"broker,controller"}
    assert {environment(s)["KAFKA_NODE_ID"] for s in kafka} == {"1", "2", "3"}
    assert len([n for n in services if n.startswith("cassandra-")]) == 3
    assert len([n for n in services if n.startswith("spark-worker-")]) == 2
    speed = environment(services["speed"])
    assert speed["BRAID_TOPIC_REPLICATION"] == speed["BRAID_CASSANDRA_REPLICATION_FACTOR"] == "3"


def test_every_long_running_service_has_a_health_check_and_every_service_a_limit() -> None:
    for name, service in COMPOSE["services"].items():
        limits = service.get("deploy", {}).get("resources", {}).get("limits", {})
        assert {"cpus", "memory"} <= set(limits), name
        if service.get("restart") != "no":
            assert service.get("healthcheck", {}).get("test"), name


# --- commands ----------------------------------------------------------------------------------------------------


def _all_commands() -> list[tuple[str, list[str]]]:
    found = []
    for name, service in braid_services(COMPOSE).items():
        found += [(name, argv) for argv in commands(service)]
        test = service.get("healthcheck", {}).get("test", [])
        if test[:1] == ["CMD-SHELL"]:
            found.append((name, [part.replace('"$${HOSTNAME}"', "host") for part in test[1].split()]))
    return found


def test_braid_commands_are_real_subcommands() -> None:
    braid = [(name, argv) for name, argv in _all_commands() if argv[0] == "braid"]
    assert {" ".join(argv) for _, argv in braid} == {"braid topics create", "braid migrate", "braid speed run", "braid serve", "braid ingest"}
    for name, argv in braid:
        build_parser().parse_args(argv[1:])  # exits (SystemExit 2) on anything the CLI does not have


def test_a_command_the_cli_lacks_is_refused() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["speed", "go"])


def test_airflow_commands_are_real_airflow_commands(tmp_path: Path) -> None:
    airflow = [argv[1:] for _, argv in _all_commands() if argv[0] == "airflow"]
    assert {argv[0] for argv in airflow} == {"db", "api-server", "scheduler", "dag-processor", "jobs"}
    script = (
        "import json, sys\nfrom airflow.cli.cli_parser import get_parser\nbad = []\n"
        "for argv in json.loads(sys.argv[1]):\n"
        "    try:\n        get_parser().parse_args(argv)\n    except SystemExit:\n        bad.append(argv)\n"
        "print(json.dumps(bad))\n"
    )

    probe = airflow + [["schedulr"]]  # one that must be refused, so the probe is known to tell
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", script, json.dumps(probe)], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [["schedulr"]]


def test_spark_commands_name_classes_of_the_installed_spark() -> None:
    import pyspark

    spark = [argv for _, argv in _all_commands() if argv[0] == "spark-class"]
    assert {argv[1] for argv in spark} == {"org.apache.spark.deploy.master.Master", "org.apache.spark.deploy.worker.Worker"}
    (core,) = (Path(pyspark.__file__).parent / "jars").glob("spark-core_*.jar")
    classes = set(zipfile.ZipFile(core).namelist())
    for argv in spark:
        assert argv[1].replace(".", "/") + ".class" in classes
    assert "org/apache/spark/deploy/master/Mastr.class" not in classes


def test_every_braid_image_command_is_one_the_tests_know() -> None:
    programs = {argv[0] for _, argv in _all_commands()}
    assert programs == {"braid", "airflow", "spark-class"}
