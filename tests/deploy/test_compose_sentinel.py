"""The compose file's `sentinel` profile (a replica and three sentinels) and the override
pointing synthgate at it; the sentinels' configuration, run with this machine's
redis-server on loopback, promotes the replica when the primary dies."""

from __future__ import annotations

import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from fixtures.processes import free_port, wait_until

from taskcore.settings import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
COMPOSE_FILE = DEPLOY / "compose.yaml"
OVERRIDE_FILE = DEPLOY / "compose.sentinel.yaml"
SYNTHGATE = ("gateway", "worker-upstream", "worker-gpu")
SENTINELS = ("sentinel-1", "sentinel-2", "sentinel-3")


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    return services


@pytest.fixture(scope="module")
def override() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = yaml.safe_load(OVERRIDE_FILE.read_text())["services"]
    return services


def sentinel_config(service: dict[str, Any]) -> list[str]:
    """The lines a sentinel container writes into its sentinel.conf (compose's $$ is $)."""
    script = service["command"][0].replace("$$", "$")
    printed = script.split("printf '%s\\n'", 1)[1].split(" > /data/sentinel.conf", 1)[0]
    return shlex.split(printed)


def monitored(lines: list[str]) -> tuple[str, str, int, int]:
    """The master name, host, port and quorum of the `sentinel monitor` line."""
    (line,) = [line for line in lines if line.startswith("sentinel monitor ")]
    _, _, name, host, port, quorum = line.split()
    return name, host, int(port), int(quorum)


def test_the_profile_adds_a_replica_and_three_sentinels_started_only_on_demand(
    services: dict[str, dict[str, Any]],
) -> None:
    profiled = {name for name, service in services.items() if "profiles" in service}
    assert profiled == {"redis-replica", *SENTINELS}
    for name in profiled:
        assert services[name]["profiles"] == ["sentinel"], name
        assert services[name]["image"] == services["redis"]["image"], name
        assert "ports" not in services[name], name  # inside the compose network only


def test_the_replica_follows_the_primary_and_keeps_its_data_the_same_way(
    services: dict[str, dict[str, Any]],
) -> None:
    replica = " ".join(services["redis-replica"]["command"])
    primary = " ".join(services["redis"]["command"])
    assert replica.startswith(primary)  # append-only file, fsync every second, noeviction
    assert "--replicaof redis 6379" in replica
    assert "--replica-announce-ip redis-replica" in replica
    assert services["redis-replica"]["volumes"] == ["redis-replica-data:/data"]
    assert services["redis-replica"]["depends_on"] == {"redis": {"condition": "service_healthy"}}


def test_three_sentinels_watch_the_primary_by_name_with_a_majority_quorum(
    services: dict[str, dict[str, Any]],
) -> None:
    names, volumes = set(), set()
    for name in SENTINELS:
        service = services[name]
        lines = sentinel_config(service)
        assert monitored(lines) == ("synthgate", "redis", 6379, 2), name
        assert "sentinel resolve-hostnames yes" in lines
        assert "sentinel announce-hostnames yes" in lines
        assert "port 26379" in lines
        names.add(service["environment"]["SENTINEL_NAME"])
        volumes.update(service["volumes"])
        assert service["depends_on"] == {
            "redis": {"condition": "service_healthy"},
            "redis-replica": {"condition": "service_healthy"},
        }
        assert " ".join(service["healthcheck"]["test"]) == "CMD redis-cli -p 26379 ping"
        # Its state (the current primary after a failover) survives a restart.
        assert service["command"][0].startswith("[ -f /data/sentinel.conf ] ||")
    assert names == set(SENTINELS)  # each announces its own name
    assert len(volumes) == 3


def test_the_override_points_every_synthgate_service_at_the_sentinels(
    services: dict[str, dict[str, Any]],
    override: dict[str, dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert set(override) == set(SYNTHGATE)
    master, *_ = monitored(sentinel_config(services["sentinel-1"]))
    for name in SYNTHGATE:
        environment = override[name]["environment"]
        hosts = environment["SYNTHGATE_REDIS_SENTINELS"].split(",")
        assert hosts == [f"{sentinel}:26379" for sentinel in SENTINELS], name
        assert environment["SYNTHGATE_REDIS_SENTINEL_MASTER"] == master, name
        assert environment["SYNTHGATE_REDIS_MIN_REPLICAS"] == "1", name
        healthy = {"condition": "service_healthy"}
        assert override[name]["depends_on"] == dict.fromkeys(SENTINELS, healthy), name
    for variable, value in override["gateway"]["environment"].items():
        monkeypatch.setenv(variable, value)
    settings = Settings.from_env()
    assert settings.redis_url == "redis://synthgate:6379/0"
    assert settings.sentinel_hosts == [(sentinel, 26379) for sentinel in SENTINELS]
    assert settings.redis_sentinel_master == master
    assert settings.redis_replicas_to_wait == 1


class _Servers:
    """redis-server processes on loopback, stopped at the end."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed (make test installs it)"
        process = subprocess.Popen([binary, *args], stdout=subprocess.DEVNULL, cwd=self.folder)
        self.processes.append(process)
        return process

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait()


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[_Servers]:
    running = _Servers(tmp_path)
    yield running
    running.stop()


def _answers(port: int) -> bool:
    try:
        return bool(redis.Redis(port=port, socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False


def _master(sentinel_port: int) -> tuple[str, int] | None:
    """Where a sentinel says the primary is (SENTINEL GET-MASTER-ADDR-BY-NAME)."""
    client = redis.Redis(port=sentinel_port, socket_timeout=1)
    try:
        reply = client.execute_command(  # type: ignore[no-untyped-call]
            "SENTINEL", "GET-MASTER-ADDR-BY-NAME", "synthgate"
        )
    except redis.RedisError:
        return None
    return (reply[0].decode(), int(reply[1])) if reply else None


def _role(port: int) -> str:
    try:
        info = redis.Redis(port=port, socket_timeout=1).info("replication")
    except redis.RedisError:
        return "down"
    return str(info["role"])


def test_the_sentinels_configuration_promotes_the_replica_when_the_primary_dies(
    services: dict[str, dict[str, Any]], servers: _Servers, tmp_path: Path
) -> None:
    """The profile's sentinel.conf as is, but for loopback addresses and free ports."""
    primary_port, replica_port = free_port(), free_port()
    primary = servers.start("--port", str(primary_port), "--bind", "127.0.0.1", "--save", "")
    wait_until(lambda: _answers(primary_port), 10, "the primary")
    servers.start(
        *("--port", str(replica_port), "--bind", "127.0.0.1", "--save", ""),
        *("--replicaof", "127.0.0.1", str(primary_port)),
    )
    wait_until(lambda: _answers(replica_port), 10, "the replica")
    sentinel_ports = []
    for name in SENTINELS:
        port = free_port()
        folder = tmp_path / name
        folder.mkdir()
        lines = [
            line.replace("port 26379", f"port {port}")
            .replace("dir /data", f"dir {folder}")
            .replace("$SENTINEL_NAME", "127.0.0.1")
            .replace("synthgate redis 6379", f"synthgate 127.0.0.1 {primary_port}")
            for line in sentinel_config(services[name])
        ]
        (folder / "sentinel.conf").write_text("\n".join(lines) + "\n")
        servers.start(str(folder / "sentinel.conf"), "--sentinel")
        sentinel_ports.append(port)
    for port in sentinel_ports:
        wait_until(lambda p=port: _master(p) == ("127.0.0.1", primary_port), 10, "a sentinel")

    primary.send_signal(signal.SIGKILL)
    primary.wait()
    killed = time.monotonic()
    # down-after-milliseconds (5 s), then the sentinels agree and promote the replica.
    for port in sentinel_ports:
        wait_until(lambda p=port: _master(p) == ("127.0.0.1", replica_port), 30, "the failover")
    assert _role(replica_port) == "master"
    assert time.monotonic() - killed < 30
    # The old primary, started again, is made a replica of the new one by the sentinels.
    servers.start("--port", str(primary_port), "--bind", "127.0.0.1", "--save", "")
    wait_until(lambda: _role(primary_port) == "slave", 30, "the old primary to rejoin")
    assert all(_master(port) == ("127.0.0.1", replica_port) for port in sentinel_ports)
