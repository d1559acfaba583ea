"""A local Apache Kafka 4 node (KRaft, broker+controller in one JVM) for tests and development.

The jars come from Maven Central through Maven (no Docker, no tarball), are cached per Kafka
version for every run on the machine, and the node keeps its data and a small state record
in `home`, so a second `start` finds the running broker instead of launching another.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import platformdirs
import structlog
from pydantic import SecretStr

from infra.devservices.kafka import config
from infra.devservices.kafka.errors import KafkaLauncherError, file_tail
from infra.devservices.kafka.locking import file_lock
from infra.devservices.kafka.processes import is_broker_process, terminate
from infra.devservices.kafka.readiness import NotReadyError, wait_until_ready
from infra.devservices.kafka.state import (
    BrokerState,
    load_state,
    pick_free_ports,
    ports_available,
    save_state,
)
from infra.devservices.kafka.tools import ensure_jars, find_java, storage_tool
from infra.settings_kafka import KafkaConnection

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["BrokerStatus", "KafkaLauncherError", "LocalKafka", "default_home", "default_jar_cache"]

APP_NAME = "portfolio-strategies"
_CLUSTER_ID = re.compile(r"^[A-Za-z0-9_-]{22}$")
_KILL_GRACE_SECONDS = 10.0

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class BrokerStatus:
    running: bool
    pid: int | None
    bootstrap: str | None
    log_path: Path


def default_home() -> Path:
    """`$STRATEGIES_DATA_DIR/kafka`, else the per-user data folder: state outlives a checkout."""
    base = os.environ.get("STRATEGIES_DATA_DIR")
    root = Path(base) if base else Path(platformdirs.user_data_dir(APP_NAME))
    return root / "kafka"


def default_jar_cache(version: str | None = None) -> Path:
    """One download per Kafka version per machine, shared by every test and CI run."""
    version = version or config.kafka_version()
    return Path(platformdirs.user_cache_dir(APP_NAME)) / f"kafka-{version}"


class LocalKafka:
    """Start, find, and stop the one broker that lives in `home`.

    Used as a context manager it starts on entry and, on exit, stops the broker only if this
    object launched it: entering while a CLI-started broker runs leaves that broker alone.
    """

    def __init__(
        self,
        home: Path | None = None,
        jar_cache: Path | None = None,
        *,
        heap: str = config.DEFAULT_HEAP,
        download_timeout: float = 900.0,
        sasl_plain: tuple[str, str] | None = None,
    ) -> None:
        """`sasl_plain` (user, password): clients must log in with SASL/PLAIN as that user
        (`client_connection`); the default listener is plain."""
        self.version = config.kafka_version()
        # Absolute, because the path is matched against the broker's command line.
        self.home = (home or default_home()).expanduser().absolute()
        self.jar_cache = (jar_cache or default_jar_cache(self.version)).expanduser().absolute()
        self.heap = heap
        self.download_timeout = download_timeout
        self.sasl_plain = sasl_plain
        self._process: subprocess.Popen[bytes] | None = None
        self._launched = False

    @property
    def log_path(self) -> Path:
        return self.home / "broker.log"

    @property
    def state_path(self) -> Path:
        return self.home / "state.json"

    @property
    def properties_path(self) -> Path:
        return self.home / "server.properties"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def client_connection(self) -> KafkaConnection:
        """What a client needs to be let in."""
        if self.sasl_plain is None:
            return KafkaConnection()
        user, password = self.sasl_plain
        return KafkaConnection(
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism="PLAIN",
            sasl_username=user,
            sasl_password=SecretStr(password),
        )

    @property
    def bootstrap(self) -> str:
        bootstrap = self.status().bootstrap
        if bootstrap is None:
            msg = f"no Kafka broker is running in {self.home}; call start() first"
            raise KafkaLauncherError(msg)
        return bootstrap

    def __enter__(self) -> LocalKafka:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._launched:
            self.stop()

    def start(self, timeout: float = 90) -> str:
        """Return the bootstrap address, launching the broker unless it already runs.

        `timeout` bounds the broker's own start-up; a first-time jar download has its own
        budget (`download_timeout`) because it depends on the network, not on us.
        """
        began = time.monotonic()
        self.home.mkdir(parents=True, exist_ok=True)
        with file_lock(self.home / ".lock", timeout, "starting or stopping the broker"):
            state = load_state(self.state_path)
            if state is not None and state.pid is not None and self._is_ours(state.pid):
                return self._await_existing(state, state.pid, began + timeout)
            java = find_java()
            libs = ensure_jars(self.jar_cache, timeout=self.download_timeout)
            bootstrap = self._launch(java, libs, state, time.monotonic() + timeout)
        log.info("kafka.started", bootstrap=bootstrap, seconds=round(time.monotonic() - began, 2))
        return bootstrap

    def stop(self, timeout: float = 30) -> bool:
        """Stop the broker (SIGTERM, then SIGKILL after `timeout`); True if one was running."""
        self.home.mkdir(parents=True, exist_ok=True)
        with file_lock(self.home / ".lock", timeout, "starting or stopping the broker"):
            state = load_state(self.state_path)
            if state is None or state.pid is None:
                return False
            running = self._is_ours(state.pid)
            if running:
                self._terminate(state.pid, timeout)
                log.info("kafka.stopped", pid=state.pid)
            save_state(self.state_path, state.with_pid(None))
            self._launched = False
            return running

    def status(self) -> BrokerStatus:
        """Whether the recorded broker process is alive (a cheap check: no network request)."""
        state = load_state(self.state_path)
        if state is None or state.pid is None or not self._is_ours(state.pid):
            return BrokerStatus(running=False, pid=None, bootstrap=None, log_path=self.log_path)
        return BrokerStatus(
            running=True, pid=state.pid, bootstrap=state.ports.bootstrap, log_path=self.log_path
        )

    def _await_existing(self, state: BrokerState, pid: int, deadline: float) -> str:
        # Possibly launched a moment ago by another process and still booting: wait, not relaunch.
        try:
            wait_until_ready(
                state.ports.bootstrap,
                deadline,
                lambda: self._is_ours(pid),
                self.client_connection,
            )
        except NotReadyError as exc:
            msg = (
                f"the Kafka broker recorded in {self.home} (pid {pid}) is not answering at "
                f"{state.ports.bootstrap}: {exc}. Stop it with `strategies kafka stop "
                f"--home {self.home}`. Last lines of {self.log_path}:\n{file_tail(self.log_path)}"
            )
            raise KafkaLauncherError(msg) from None
        return state.ports.bootstrap

    def _launch(self, java: str, libs: Path, state: BrokerState | None, deadline: float) -> str:
        if state is not None and self._reusable(state):
            self._write_properties(state)
            try:
                return self._run_until_ready(java, libs, state, deadline)
            except _BrokerExitedError:
                # The formatted data may be damaged (killed mid-write, disk full): a test broker's
                # data is disposable, so start clean rather than make someone delete it by hand.
                log.warning("kafka.reformatting", broker_log=file_tail(self.log_path, 5))
        state = self._format(java, libs, deadline)
        try:
            return self._run_until_ready(java, libs, state, deadline)
        except _BrokerExitedError as exc:
            raise KafkaLauncherError(str(exc)) from None

    def _reusable(self, state: BrokerState) -> bool:
        """Restart on the existing data only if it is ours, intact, and its ports are free."""
        meta = self.data_dir / "meta.properties"
        try:
            formatted = f"cluster.id={state.cluster_id}" in meta.read_text(encoding="utf-8")
        except OSError:
            formatted = False
        return formatted and state.kafka_version == self.version and ports_available(state.ports)

    def _format(self, java: str, libs: Path, deadline: float) -> BrokerState:
        shutil.rmtree(self.data_dir, ignore_errors=True)
        tool_log4j = self.home / "log4j2-tools.properties"
        tool_log4j.write_text(config.log4j2_properties("warn", to_stderr=True), encoding="utf-8")
        output = storage_tool(java, libs, tool_log4j, "random-uuid", timeout=_left(deadline))
        cluster_id = output.strip().splitlines()[-1].strip() if output.strip() else ""
        if not _CLUSTER_ID.match(cluster_id):
            msg = f"StorageTool random-uuid printed no cluster id:\n{output}"
            raise KafkaLauncherError(msg)
        ports = pick_free_ports()
        state = BrokerState(self.version, cluster_id, ports.client, ports.controller)
        self._write_properties(state)
        args = config.format_args(cluster_id, self.properties_path)
        storage_tool(java, libs, tool_log4j, *args, timeout=_left(deadline))
        save_state(self.state_path, state)
        log.info("kafka.formatted", cluster_id=cluster_id, data_dir=str(self.data_dir))
        return state

    def _write_properties(self, state: BrokerState) -> None:
        text = config.server_properties(state.ports, self.data_dir, sasl_plain=self.sasl_plain)
        self.properties_path.write_text(text, encoding="utf-8")

    def _run_until_ready(self, java: str, libs: Path, state: BrokerState, deadline: float) -> str:
        process = self._spawn(java, libs)
        save_state(self.state_path, state.with_pid(process.pid))
        bootstrap = state.ports.bootstrap
        try:
            waited = wait_until_ready(
                bootstrap, deadline, lambda: process.poll() is None, self.client_connection
            )
        except NotReadyError as exc:
            if not exc.exited:
                self._terminate(process.pid, _KILL_GRACE_SECONDS)
            save_state(self.state_path, state.with_pid(None))
            reason = f"exited with code {process.poll()}" if exc.exited else str(exc)
            msg = (
                f"the Kafka broker in {self.home} did not start ({reason}). "
                f"Last lines of {self.log_path}:\n{file_tail(self.log_path)}"
            )
            raise (_BrokerExitedError(msg) if exc.exited else KafkaLauncherError(msg)) from None
        self._launched = True
        log.info("kafka.ready", bootstrap=bootstrap, pid=process.pid, waited=round(waited, 2))
        return bootstrap

    def _spawn(self, java: str, libs: Path) -> subprocess.Popen[bytes]:
        broker_log4j = self.home / "log4j2.properties"
        broker_log4j.write_text(config.log4j2_properties("info"), encoding="utf-8")
        command = config.broker_command(
            java, libs, self.properties_path, broker_log4j, heap=self.heap
        )
        with self.log_path.open("wb") as output:
            # Own session: Ctrl-C in the launching terminal or test run must not kill the broker
            # behind our back; stop() is the one way it ends.
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd=self.home,
                start_new_session=True,
            )
        return self._process

    def _is_ours(self, pid: int) -> bool:
        if self._process is not None and self._process.pid == pid:
            self._process.poll()  # reap our own child so it cannot linger as a zombie
        return is_broker_process(pid, self.properties_path)

    def _terminate(self, pid: int, timeout: float) -> None:
        terminate(pid, timeout, lambda: self._is_ours(pid))


class _BrokerExitedError(KafkaLauncherError):
    """Raised when the broker process died during start-up (as opposed to being slow)."""


def _left(deadline: float) -> float:
    return max(deadline - time.monotonic(), 1.0)
