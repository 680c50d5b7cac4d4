"""docker/Dockerfile and the image's extra jars without a Docker engine: pinned base images, the packages and files
the build copies, and an S3 filesystem built for the Hadoop that pyspark ships."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from xml.etree import ElementTree

import pyspark
import pytest

from tests.docker.compose_file import DOCKER, dockerfile_env, pinned

ROOT = DOCKER.parent
DOCKERFILE = (DOCKER / "Dockerfile").read_text()
_MAVEN = {"m": "http://maven.apache.org/POM/4.0.0"}


def _from_lines(text: str) -> list[tuple[str, str | None]]:
    """(image, stage name) of each FROM."""
    found = []
    for match in re.finditer(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?\s*$", text, flags=re.MULTILINE | re.IGNORECASE):
        found.append((match[1], match[2]))
    return found


def test_base_images_are_pinned_to_exact_versions() -> None:
    images = [image for image, _ in _from_lines(DOCKERFILE)]
    assert len(images) >= 2
    assert all(pinned(image) for image in images), images


@pytest.mark.parametrize("text", ["FROM python:3.11-slim\n", "FROM python\n", "FROM eclipse-temurin:17 AS jdk\n"])
def test_a_floating_base_image_is_refused(text: str) -> None:
    assert not all(pinned(image) for image, _ in _from_lines(text))


def test_python_is_3_11_and_java_is_17() -> None:
    images = [image for image, _ in _from_lines(DOCKERFILE)]
    assert {i.split(":")[1].split("-")[0].rsplit(".", 1)[0] for i in images if i.startswith("python:")} == {"3.11"}
    assert all(re.search(r"(temurin-17|temurin:17\.)", i) for i in images if "temurin" in i)


def test_every_stage_copied_from_exists() -> None:
    stages = {name for _, name in _from_lines(DOCKERFILE) if name}
    copied = set(re.findall(r"COPY --from=(\S+)", DOCKERFILE))
    assert copied and copied <= stages


def test_the_build_copies_every_package_the_project_installs() -> None:
    includes = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {pattern.rstrip("*") for pattern in includes}
    copied = set(re.findall(r"^COPY (\w+) \1$", DOCKERFILE, flags=re.MULTILINE))
    assert packages <= copied, packages - copied
    for path in ["requirements.lock", "docker/requirements.txt", "pyproject.toml", "README.md", "docker/jvm", "dags"]:
        assert path in DOCKERFILE and (ROOT / path).exists(), path


def test_the_image_points_spark_and_braid_at_what_it_built() -> None:
    env = dockerfile_env()["final"]
    site = "/opt/braid/venv/lib/python3.11/site-packages"
    assert env["SPARK_HOME"] == f"{site}/pyspark" and env["PYSPARK_PYTHON"] == "/opt/braid/venv/bin/python"
    assert env["BRAID_JARS_DIR"] == dockerfile_env()["build"]["BRAID_JARS_DIR"]  # where `braid jars` put them
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == "/opt/braid/dags" and "COPY dags /opt/braid/dags" in DOCKERFILE


def test_image_only_requirements_are_pinned() -> None:
    lines = [line for line in (DOCKER / "requirements.txt").read_text().splitlines() if line and not line.startswith("#")]
    assert lines and all(re.fullmatch(r"[A-Za-z0-9_.-]+==[\w.]+", line) for line in lines)


def test_the_s3_jars_match_the_hadoop_that_pyspark_ships() -> None:
    pom = ElementTree.parse(DOCKER / "jvm" / "pom.xml").getroot()
    hadoop = pom.find("m:properties/m:hadoop.version", _MAVEN).text
    (client,) = (Path(pyspark.__file__).parent / "jars").glob("hadoop-client-api-*.jar")
    assert client.name == f"hadoop-client-api-{hadoop}.jar"
    dependencies = {(d.find("m:groupId", _MAVEN).text, d.find("m:artifactId", _MAVEN).text) for d in pom.iterfind("m:dependencies/m:dependency", _MAVEN)}
    assert dependencies == {("org.apache.hadoop", "hadoop-aws")}


def test_the_s3_pom_inherits_the_braid_pins_without_joining_the_local_jar_cache() -> None:
    pom = ElementTree.parse(DOCKER / "jvm" / "pom.xml").getroot()
    parent = (DOCKER / "jvm" / pom.find("m:parent/m:relativePath", _MAVEN).text).resolve()
    assert parent == (ROOT / "braid" / "jvm" / "pom.xml").resolve()
    modules = [m.text for m in ElementTree.parse(parent).getroot().iterfind("m:modules/m:module", _MAVEN)]
    assert "s3" not in modules and pom.find("m:artifactId", _MAVEN).text == "s3"  # `braid jars` never resolves it
