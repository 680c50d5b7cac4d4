"""Reading docker/: the compose file as Compose would see it (YAML merge keys resolved), its variables and commands.

Shared by the compose and image tests and by the Spark standalone test, which starts the master and worker with the
compose file's own commands.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import jsonschema
import yaml

DOCKER = Path(__file__).resolve().parents[2] / "docker"
COMPOSE = DOCKER / "compose.yaml"
# Vendored from the PyPI wheel docker-compose==1.29.2, file compose/config/compose_spec.json (the Compose
# Specification's schema as that release shipped it; sha256 0dc04bd3...2bac). No newer copy is reachable offline here.
SCHEMA = DOCKER / "compose-spec.json"
SCHEMA_SHA256 = "0dc04bd346dcfee1b1419628fff79937bbf076925f298f272a2b490e2b112bac"

# ${NAME}, ${NAME:?message}, ${NAME?message}, ${NAME:-default}, ${NAME-default}; $$ is a literal dollar.
INTERPOLATION = re.compile(r"(?<!\$)\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[?-])?(?P<arg>[^}]*)\}")
_DURATION = re.compile(r"^(\d+(\.\d+)?(ns|us|ms|s|m|h))+$")
_EXACT_TAG = re.compile(r"RELEASE\.\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ|\d+\.\d+\.\d+([._-][\w.-]+)?")


def load_compose(path: Path = COMPOSE) -> dict:
    return yaml.safe_load(path.read_text())


def validator() -> jsonschema.protocols.Validator:
    """The schema's validator, with the one format Compose itself enforces: Go durations such as 10s or 1m30s."""
    schema = json.loads(SCHEMA.read_text())
    formats = jsonschema.FormatChecker(formats=())
    formats.checks("duration")(lambda value: not isinstance(value, str) or bool(_DURATION.match(value)))
    # the file says draft 2019-09 in a spelling jsonschema does not resolve; name the draft rather than guess
    return jsonschema.Draft201909Validator(schema, format_checker=formats)


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(key): "" if value is None else str(value) for key, value in env.items()}


def interpolations(text: str) -> list[re.Match]:
    return list(INTERPOLATION.finditer(text))


def commands(service: dict) -> list[list[str]]:
    """The programs a service runs: its command, or each `&&` step of a `sh -c` script, as argument lists."""
    command = service.get("command")
    if command is None:
        return []
    argv = shlex.split(command) if isinstance(command, str) else [str(part) for part in command]
    if argv[:2] == ["sh", "-c"] and len(argv) == 3:
        return [shlex.split(step) for step in argv[2].split("&&")]
    return [argv]


def braid_services(document: dict) -> dict[str, dict]:
    """The services that run the platform image (the one the Dockerfile builds)."""
    return {name: service for name, service in document["services"].items() if "build" in service}


def dockerfile_env(path: Path = DOCKER / "Dockerfile") -> dict[str, dict[str, str]]:
    """ENV instructions of each stage of the Dockerfile, by stage (the unnamed last stage is 'final')."""
    text = path.read_text().replace("\\\n", " ")
    stages: dict[str, dict[str, str]] = {}
    current = None
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0] == "FROM":
            current = words[3] if len(words) >= 4 and words[2].upper() == "AS" else "final"
            stages[current] = {}
        elif words[0] == "ENV" and current is not None:
            for pair in words[1:]:
                name, _, value = pair.partition("=")
                stages[current][name] = value
    return stages


def pinned(image: str) -> bool:
    """An exact version: not latest, no tag, nor a bare major or major.minor such as 5 or 5.0 that moves."""
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag:
        return False
    if name == "postgres":
        return bool(re.fullmatch(r"\d+\.\d+", tag))  # PostgreSQL's own versions are major.minor: 16.9 is exact
    return bool(_EXACT_TAG.fullmatch(tag))
