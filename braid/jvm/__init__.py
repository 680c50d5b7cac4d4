"""The JVM side of Braid: jars resolved once from Maven Central by `pom.xml` here, and the Java that runs them.

Each module of the pom (spark, kafka, cassandra) lands in ``<jar cache>/<module>/``. The cache is stamped with a hash
of the poms and the pyspark version, so a second call does nothing and needs no network.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

from braid.errors import BraidError

POM_DIR = Path(__file__).parent
MODULES = ("spark", "kafka", "cassandra")
_STAMP = ".stamp"
_JAR_VERSION = re.compile(r"-\d[^-]*(-\d+)?(-[A-Za-z][\w.]*)?\.jar$")


def pinned_versions() -> dict[str, str]:
    """The versions pinned in the parent pom's <properties>, e.g. {'spark.version': '4.1.1', ...}."""
    namespace = {"m": "http://maven.apache.org/POM/4.0.0"}
    properties = ElementTree.parse(POM_DIR / "pom.xml").getroot().find("m:properties", namespace)
    assert properties is not None
    return {element.tag.split("}")[1]: (element.text or "").strip() for element in properties}


def _pyspark_jars() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent / "jars"


def stamp_text() -> str:
    digest = hashlib.sha256()
    for pom in sorted(POM_DIR.rglob("pom.xml")):
        digest.update(pom.read_bytes())
    import pyspark

    digest.update(pyspark.__version__.encode())
    return digest.hexdigest()


def jars_ready(cache: Path) -> bool:
    stamp = cache / _STAMP
    return stamp.is_file() and stamp.read_text() == stamp_text()


def ensure_jars(cache: Path, *, log=lambda message: print(message, file=sys.stderr)) -> Path:
    """Resolve every pinned jar into `cache` unless it is already there; returns `cache`."""
    if jars_ready(cache):
        return cache
    maven = shutil.which("mvn")
    if maven is None:
        raise BraidError("jars: Maven ('mvn') is not on PATH; install it (apt-get install maven) and run again")
    log(f"jars: resolving the pinned JVM artifacts into {cache} with Maven (first run only, ~250 MB)...")
    cache.mkdir(parents=True, exist_ok=True)
    for module in MODULES:
        shutil.rmtree(cache / module, ignore_errors=True)
    command = [maven, "-B", "-q", "-f", str(POM_DIR / "pom.xml"), f"-Djars.dir={cache}", "dependency:copy-dependencies"]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise BraidError(f"jars: Maven failed (exit {result.returncode}):\n{tail}")
    removed = _drop_jars_spark_ships(cache / "spark", _pyspark_jars())
    (cache / _STAMP).write_text(stamp_text())
    counts = ", ".join(f"{module} {len(list((cache / module).glob('*.jar')))}" for module in MODULES)
    log(f"jars: ready ({counts} jars; {removed} already shipped by pyspark left out)")
    return cache


def _artifact_name(jar_name: str) -> str:
    return _JAR_VERSION.sub("", jar_name)


def _drop_jars_spark_ships(folder: Path, pyspark_jars: Path) -> int:
    """Delete jars whose artifact pyspark already ships: two versions of one library on a classpath break at random."""
    shipped = {_artifact_name(jar.name) for jar in pyspark_jars.glob("*.jar")}
    removed = 0
    for jar in folder.glob("*.jar"):
        if _artifact_name(jar.name) in shipped:
            jar.unlink()
            removed += 1
    return removed


def module_jars(cache: Path, module: str) -> list[Path]:
    jars = sorted((cache / module).glob("*.jar"))
    if not jars:
        raise BraidError(f"jars: no {module} jars in {cache / module}; run 'braid jars' first")
    return jars


def java_executable(java_home: Path | None) -> Path:
    """The java to run services with: BRAID_JAVA_HOME, else JAVA_HOME, else the one on PATH."""
    home = java_home or (Path(os.environ["JAVA_HOME"]) if os.environ.get("JAVA_HOME") else None)
    if home is not None:
        return home / "bin" / "java"
    found = shutil.which("java")
    if found is None:
        raise BraidError("java: no JDK found; set BRAID_JAVA_HOME to a JDK 17")
    return Path(found)


def java_major_version(java: Path) -> int:
    result = subprocess.run([str(java), "-version"], capture_output=True, text=True)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', result.stderr)
    if not match:
        raise BraidError(f"java: cannot read the version of {java}: {result.stderr.strip()[:200]}")
    major = int(match[1])
    return int(match[2]) if major == 1 and match[2] else major
