"""The local broker's configuration without starting it: listeners with and without SASL, the JAAS entries as Java
reads them back from the properties file, and a file only its owner may read (the real broker is started with it in
tests/braid/services/test_secured_stack.py)."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest
from pydantic import SecretStr

from braid.kafka import KafkaSecurity
from braid.services.kafka import _write_private, properties_value, server_properties

PASSWORD = 'p"ss\\wörd 🙂 $x=1'


def java_properties(text: str) -> dict[str, str]:
    """What java.util.Properties.load reads from `text` (one key=value per line, the escapes this module writes)."""
    values = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, raw = line.partition("=")
        units = re.sub(r"\\u([0-9a-f]{4})|\\(.)", lambda m: chr(int(m[1], 16)) if m[1] else m[2], raw)
        values[key] = units.encode("utf-16", "surrogatepass").decode("utf-16")  # join surrogate pairs
    return values


def _properties(security: KafkaSecurity = KafkaSecurity()) -> dict[str, str]:
    return java_properties(server_properties(host="127.0.0.1", port=9092, controller_port=9093, log_dir=Path("/data"), security=security))


def test_without_sasl_the_broker_listens_in_plaintext() -> None:
    values = _properties()
    assert values["listeners"] == "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    assert values["listener.security.protocol.map"] == "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
    assert not [key for key in values if "sasl" in key]


def test_with_sasl_every_listener_authenticates() -> None:
    values = _properties(KafkaSecurity("SASL_PLAINTEXT", "SCRAM-SHA-512", "braid", SecretStr(PASSWORD)))
    assert values["listeners"] == "SASL_PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    assert values["advertised.listeners"] == "SASL_PLAINTEXT://127.0.0.1:9092"
    assert values["listener.security.protocol.map"] == "SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT"
    assert values["sasl.enabled.mechanisms"] == "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512"
    assert (values["sasl.mechanism.inter.broker.protocol"], values["sasl.mechanism.controller.protocol"]) == ("PLAIN", "PLAIN")
    assert values["listener.name.controller.sasl.enabled.mechanisms"] == "PLAIN"
    escaped = 'p\\"ss\\\\wörd 🙂 $x=1'  # JAAS escaping, as the login module's tokenizer undoes it
    plain = f'org.apache.kafka.common.security.plain.PlainLoginModule required username="braid" password="{escaped}" user_braid="{escaped}";'
    assert values["listener.name.sasl_plaintext.plain.sasl.jaas.config"] == plain
    assert values["listener.name.controller.plain.sasl.jaas.config"] == plain
    scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    assert values["listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config"] == scram


@pytest.mark.parametrize(
    ("text", "written"),
    [
        ("plain ascii", "plain ascii"),
        ("back\\slash", "back\\\\slash"),
        ("ö", "\\u00f6"),
        ("🙂", "\\ud83d\\ude42"),  # beyond the BMP: a surrogate pair, as Java strings hold it
        ("tab\there", "tab\\u0009here"),
    ],
)
def test_properties_values_stay_ascii_and_unambiguous(text: str, written: str) -> None:
    assert properties_value(text) == written
    assert java_properties(f"k={written}") == {"k": text}


def test_the_properties_file_is_private_even_when_it_existed(tmp_path: Path) -> None:
    path = tmp_path / "server.properties"
    path.write_text("old")
    path.chmod(0o644)
    _write_private(path, "secret=1\n")
    assert (path.read_text(), stat.S_IMODE(path.stat().st_mode)) == ("secret=1\n", 0o600)
