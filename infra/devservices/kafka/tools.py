"""The external programs the launcher needs: Java to run Kafka, Maven to fetch its jars."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import structlog

from infra.devservices.kafka import config
from infra.devservices.kafka.errors import KafkaLauncherError, tail
from infra.devservices.kafka.locking import file_lock

log = structlog.get_logger(__name__)

_MARKER = ".complete"


def find_java() -> str:
    """JAVA_HOME first (as Kafka's own scripts do), then PATH; refuse anything before 17."""
    java_home = os.environ.get("JAVA_HOME")
    candidate = Path(java_home, "bin", "java") if java_home else None
    java = str(candidate) if candidate and candidate.is_file() else shutil.which("java")
    if java is None:
        msg = (
            f"`java` was not found on PATH (and JAVA_HOME is unset). The local Kafka broker "
            f"needs a Java {config.MIN_JAVA}+ runtime: install one, e.g. "
            f"`apt-get install openjdk-{config.MIN_JAVA}-jre-headless` or `brew install openjdk`."
        )
        raise KafkaLauncherError(msg)
    output = _run([java, "-version"], timeout=30, what="java -version").stderr
    major = config.java_major_version(output)
    if major is None or major < config.MIN_JAVA:
        msg = (
            f"{java} is Java {major or 'of unknown version'}; Kafka 4 needs Java "
            f"{config.MIN_JAVA}+. Install a newer JDK or point JAVA_HOME at one.\n{tail(output)}"
        )
        raise KafkaLauncherError(msg)
    return java


def ensure_jars(jar_cache: Path, *, pom: Path = config.POM_PATH, timeout: float = 900) -> Path:
    """Return `<jar_cache>/libs`, downloading with Maven only if no complete copy is there.

    The marker holds the pom's hash and is written last, so an interrupted download (or a
    changed pom) is redone from scratch instead of leaving a classpath with missing jars.
    """
    libs = jar_cache / "libs"
    fingerprint = hashlib.sha256(pom.read_bytes()).hexdigest()
    if _is_complete(jar_cache, fingerprint):
        return libs
    with file_lock(jar_cache.with_name(jar_cache.name + ".lock"), timeout, "downloading jars"):
        if _is_complete(jar_cache, fingerprint):  # another process finished it meanwhile
            return libs
        mvn = shutil.which("mvn")
        if mvn is None:
            msg = (
                "`mvn` was not found on PATH. The local Kafka broker's jars come from Maven "
                "Central through Maven: install it, e.g. `apt-get install maven` or "
                "`brew install maven`."
            )
            raise KafkaLauncherError(msg)
        (jar_cache / _MARKER).unlink(missing_ok=True)
        shutil.rmtree(libs, ignore_errors=True)
        jar_cache.mkdir(parents=True, exist_ok=True)
        log.info("kafka.jars.downloading", pom=str(pom), into=str(libs))
        started = time.monotonic()
        _run(config.maven_command(mvn, pom, libs), timeout=timeout, what="Maven")
        if not any(libs.glob("kafka_2.13-*.jar")):
            msg = f"Maven finished but {libs} holds no kafka_2.13 jar; check {pom}"
            raise KafkaLauncherError(msg)
        (jar_cache / _MARKER).write_text(fingerprint + "\n", encoding="utf-8")
        log.info("kafka.jars.ready", seconds=round(time.monotonic() - started, 1))
    return libs


def storage_tool(java: str, libs: Path, log4j: Path, *args: str, timeout: float) -> str:
    """Run kafka.tools.StorageTool and return its stdout (its log lines go to stderr)."""
    command = config.tool_command(java, libs, log4j, *args)
    return _run(command, timeout=timeout, what=f"StorageTool {args[0]}").stdout


def _is_complete(jar_cache: Path, fingerprint: str) -> bool:
    marker = jar_cache / _MARKER
    try:
        return marker.read_text(encoding="utf-8").strip() == fingerprint
    except FileNotFoundError:
        return False


def _run(command: list[str], *, timeout: float, what: str) -> subprocess.CompletedProcess[str]:
    """Run to completion with a deadline; on failure, raise with the output's tail."""
    try:
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=max(timeout, 1),
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        output = _text(exc.stdout) + _text(exc.stderr)
        msg = f"{what} did not finish within {timeout:.0f}s.\n{tail(output)}"
        raise KafkaLauncherError(msg) from None
    except OSError as exc:
        msg = f"{what} could not be run ({command[0]}): {exc}"
        raise KafkaLauncherError(msg) from exc
    if result.returncode != 0:
        msg = (
            f"{what} failed with exit code {result.returncode}:\n"
            f"{tail(result.stdout + result.stderr)}"
        )
        raise KafkaLauncherError(msg)
    return result


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode(errors="replace")
