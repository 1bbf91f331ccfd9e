"""The container image and the Azure deployment, checked offline.

Nothing here reaches Azure (no ``az``, no Bicep, no image pulls): ``start --target azure
--dry-run`` is run for real, the Dockerfile, deploy.sh and main.bicep are read as text (and
``bash -n``), a fake ``az`` on PATH stands in where deploy.sh must run, and the health
endpoint is exercised on a real agent process configured only by the environment.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from cli_helpers import cli, cli_process

from agent_runtime import health
from agent_runtime.env_config import config_from_text, load_hive_config
from hive_core.errors import ConfigError
from hive_core.hive_config import AgentConfig, HiveConfig
from hive_core.transports import azure_names

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy" / "azure"
PASSWORD = "s3cr%2Ft"
REDIS_URL = f"redis://:{PASSWORD}@127.0.0.1:6379/0"
SECRET_MARKERS = (PASSWORD, "s3cr", "redis://", "SharedAccessKey", "AccountKey")


def create(capsys, name: str, agents: int, transport: str = "redis") -> None:
    args = ["create", "--name", name, "--agents", str(agents), "--transport", transport]
    if transport == "redis":
        args += ["--connection-string", REDIS_URL]
    result = cli(capsys, *args)
    assert result.code == 0, result.err


def params_path(home: Path, hive: str) -> Path:
    return home / "hives" / hive / "deploy" / "azure" / "parameters.json"


def values(path: Path) -> dict:
    return {k: v["value"] for k, v in json.loads(path.read_text())["parameters"].items()}


def assert_no_secret(text: str) -> None:
    for marker in SECRET_MARKERS:
        assert marker not in text, f"secret marker {marker!r} leaked"


# -- start --target azure --dry-run ----------------------------------------------------------
@pytest.mark.parametrize("count", [1, 5, 7, 20, 100])
def test_dry_run_splits_every_agent_exactly_once(capsys, amplihack_home, count) -> None:
    hive = f"az{count}"
    create(capsys, hive, count)
    result = cli(capsys, "start", "--hive", hive, "--target", "azure", "--dry-run",
                 "--agents-per-app", "5")
    assert result.code == 0, result.err
    path = params_path(amplihack_home, hive)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700

    v = values(path)
    names = [f"agent_{i}" for i in range(count)]
    assert v["hiveName"] == hive and v["transport"] == "redis" and v["agentsPerApp"] == 5
    assert v["appCount"] == math.ceil(count / 5) == len(v["appAgents"])
    flat = [a for app in v["appAgents"] for a in app]
    assert flat == names and sorted(set(flat)) == sorted(names)  # each once, in order
    assert all(1 <= len(app) <= 5 for app in v["appAgents"])
    assert all(len(app) == 5 for app in v["appAgents"][:-1])  # only the last is short
    assert v["agents"] == names

    container_config = yaml.safe_load(v["hiveConfigYaml"])
    assert container_config["name"] == hive and "connection_string" not in container_config
    assert [a["name"] for a in container_config["agents"]] == names

    assert_no_secret(path.read_text())
    assert_no_secret(result.out + result.err)
    assert str(path) in result.out
    assert "deploy.sh" in result.out and "--resource-group" in result.out


def test_dry_run_json_summary(capsys, amplihack_home) -> None:
    create(capsys, "aj", 7)
    result = cli(capsys, "start", "--hive", "aj", "--target", "azure", "--dry-run", "--json",
                 "--image", "myacr.azurecr.io/amplihack-hive:1", "--location", "westeurope")
    assert result.code == 0, result.err
    doc = result.json()
    assert doc["app_count"] == 2 and doc["agents"] == 7 and doc["dry_run"] is True
    assert [len(a["agents"]) for a in doc["apps"]] == [5, 2]
    assert doc["image"] == "myacr.azurecr.io/amplihack-hive:1"
    assert doc["parameters"] == str(params_path(amplihack_home, "aj"))
    assert doc["resource_group"] == "amplihack-aj"
    assert values(params_path(amplihack_home, "aj"))["location"] == "westeurope"
    assert_no_secret(result.out)


def test_event_hubs_names_and_blob_state_across_apps(capsys, amplihack_home,
                                                     monkeypatch) -> None:
    """An Event Hubs hive in 3 apps: the state moves to blob, the hub name is pinned."""
    secret = "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=x"
    monkeypatch.setenv("AMPLIHACK_EH_CONNECTION_STRING", secret)
    config = HiveConfig(name="eh", transport="azure_event_hubs",
                        agents=tuple(AgentConfig(f"agent_{i}") for i in range(11)))
    config.save()
    result = cli(capsys, "start", "--hive", "eh", "--target", "azure", "--dry-run")
    assert result.code == 0, result.err
    v = values(params_path(amplihack_home, "eh"))
    assert v["appCount"] == 3 and v["eventHubName"] == "hive-shards-eh"
    assert v["stateStore"] == "blob" and "blob" in result.out
    rendered = yaml.safe_load(v["hiveConfigYaml"])
    assert rendered["state_store"] == "blob"
    assert rendered["transport_options"]["eventhub"] == "hive-shards-eh"
    assert "SharedAccessKey" not in params_path(amplihack_home, "eh").read_text()
    assert "AMPLIHACK_EH_CONNECTION_STRING" in result.out
    # The consumer groups main.bicep creates are the ones the transport reads in.
    broker_groups = [azure_names.consumer_group("eh", f"agent_{i}", {}) for i in range(11)]
    assert v["consumerGroups"] == broker_groups == [f"agent_{i}" for i in range(11)]


def test_service_bus_subscriptions_are_the_transports_names(capsys, amplihack_home,
                                                            monkeypatch) -> None:
    monkeypatch.setenv("AMPLIHACK_SB_CONNECTION_STRING",
                       "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=k;"
                       "SharedAccessKey=x")
    long_agent = "a" * 60
    config = HiveConfig(name="sb", transport="azure_service_bus",
                        agents=(AgentConfig("agent_0"), AgentConfig(long_agent)))
    config.save()
    result = cli(capsys, "start", "--hive", "sb", "--target", "azure", "--dry-run")
    assert result.code == 0, result.err
    v = values(params_path(amplihack_home, "sb"))
    assert v["subscriptionNames"][0] == "sb.agent_0"
    assert v["subscriptionNames"][1] == azure_names.subscription_name("sb", long_agent)
    assert all(len(n) <= 50 for n in v["subscriptionNames"])


def test_every_rendered_parameter_is_declared_in_the_template(capsys, amplihack_home) -> None:
    create(capsys, "decl", 3)
    assert cli(capsys, "start", "--hive", "decl", "--target", "azure", "--dry-run").code == 0
    bicep = (ROOT / "deploy" / "azure" / "main.bicep").read_text()
    declared = set(re.findall(r"^param (\w+) ", bicep, re.M))
    assert set(values(params_path(amplihack_home, "decl"))) <= declared


def test_local_hive_is_refused(capsys, amplihack_home) -> None:
    create(capsys, "loc", 3, transport="local")
    result = cli(capsys, "start", "--hive", "loc", "--target", "azure", "--dry-run")
    assert result.code == 1
    assert len(result.err.strip().splitlines()) == 1
    for name in ("redis", "azure_event_hubs", "azure_service_bus"):
        assert name in result.err
    assert not params_path(amplihack_home, "loc").exists()


def test_bad_target_and_options(capsys, amplihack_home) -> None:
    create(capsys, "bad", 2)
    assert cli(capsys, "start", "--hive", "bad", "--target", "gcp").code == 2
    assert cli(capsys, "start", "--hive", "bad", "--target", "azure", "--dry-run",
               "--agents-per-app", "0").code == 2
    assert cli(capsys, "start", "--hive", "bad", "--target", "azure", "--dry-run",
               "--agents", "agent_0").code == 2
    assert cli(capsys, "start", "--hive", "bad", "--dry-run").code == 2


def test_without_az_the_parameters_are_written_and_the_error_is_one_line(
        amplihack_home, tmp_path) -> None:
    bare = tmp_path / "bin"
    bare.mkdir()
    made = cli_process(amplihack_home, "create", "--name", "noaz", "--agents", "6",
                       "--transport", "redis", "--connection-string", REDIS_URL)
    assert made.code == 0, made.err
    env = {"PATH": f"{bare}{os.pathsep}/usr/bin:/bin"}
    result = cli_process(amplihack_home, "start", "--hive", "noaz", "--target", "azure",
                         env=env)
    assert result.code == 1
    assert "`az` is not installed" in result.err and "--dry-run" in result.err
    assert len(result.err.strip().splitlines()) == 1
    assert params_path(amplihack_home, "noaz").exists()
    assert_no_secret(result.out + result.err)


def test_with_az_deploy_sh_runs_and_its_exit_code_is_ours(amplihack_home, tmp_path) -> None:
    """A fake ``az`` records its arguments: the secret goes to az as a parameter, never to
    the output; deploy.sh's failure is the CLI's exit code."""
    fake = tmp_path / "bin"
    fake.mkdir()
    calls = tmp_path / "az-calls"
    (fake / "az").write_text(
        "#!/usr/bin/env bash\n"
        f'echo "$*" >> {shlex.quote(str(calls))}\n'
        '[[ "$1 $2" == "group show" ]] && exit 0\n'
        'echo \'{"appNames": {"value": []}}\'\n'
        'exit "${FAKE_AZ_EXIT:-0}"\n')
    (fake / "az").chmod(0o755)
    made = cli_process(amplihack_home, "create", "--name", "withaz", "--agents", "3",
                       "--transport", "redis", "--connection-string", REDIS_URL)
    assert made.code == 0, made.err
    env = {"PATH": f"{fake}{os.pathsep}{os.environ['PATH']}",
           "AMPLIHACK_MEMORY_CONNECTION_STRING": REDIS_URL}
    ok = cli_process(amplihack_home, "start", "--hive", "withaz", "--target", "azure", env=env)
    assert ok.code == 0, ok.err
    assert "deploying hive withaz" in ok.out
    assert_no_secret(ok.out + ok.err)
    recorded = calls.read_text()
    assert "deployment group create" in recorded and f"connectionString={REDIS_URL}" in recorded
    # The hive's message key goes to az the same way, read from its secret.json, never shown.
    key = json.loads((amplihack_home / "hives" / "withaz" / "secret.json").read_text())["current"]
    assert f"hiveSecret={key}" in recorded and key not in ok.out + ok.err
    assert f"@{params_path(amplihack_home, 'withaz')}" in recorded

    failed = cli_process(amplihack_home, "start", "--hive", "withaz", "--target", "azure",
                         env={**env, "FAKE_AZ_EXIT": "7"})
    assert failed.code == 7


# -- the Dockerfile --------------------------------------------------------------------------
def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pending = f"{pending} {line[:-1].strip()}" if line.endswith("\\") else \
            f"{pending} {line}"
        if line.endswith("\\"):
            continue
        word, _, rest = pending.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        pending = ""
    return out


def test_dockerfile() -> None:
    steps = dockerfile_instructions()
    kinds = [k for k, _ in steps]
    assert steps[0] == ("FROM", "python:3.11-slim")
    install = next(i for i, (k, a) in enumerate(steps) if k == "RUN" and "pip install" in a)
    users = [i for i, k in enumerate(kinds) if k == "USER"]
    assert users, "no USER: the agent would run as root"
    user = steps[users[-1]][1].split(":")[0]
    runs = [i for i, k in enumerate(kinds) if k == "RUN"]
    assert user not in ("root", "0") and users[-1] > max(runs) >= install
    health_step = [a for k, a in steps if k == "HEALTHCHECK"]
    assert len(health_step) == 1 and "agent_runtime.health" in health_step[0]
    volumes = [a for k, a in steps if k == "VOLUME"]
    assert any("/data" in a for a in volumes)
    entry = [a for k, a in steps if k == "ENTRYPOINT"]
    assert len(entry) == 1 and json.loads(entry[0]) == ["python", "-m", "agent_runtime"]
    env = " ".join(a for k, a in steps if k == "ENV")
    assert "AMPLIHACK_HOME=/data/home" in env and "AMPLIHACK_HEALTH_PORT=" in env
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".git", ".pytest_cache", "tests"} <= set(ignored)


# -- deploy.sh and main.bicep ----------------------------------------------------------------
def test_deploy_sh_parses_and_needs_arguments(tmp_path) -> None:
    script = DEPLOY / "deploy.sh"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    text = script.read_text()
    assert "set -euo pipefail" in text and "set +x" in text
    for argv in ([], ["--bogus"], ["p.json", "--status", "--cleanup"],
                 ["p.json", "--resource-group"]):
        proc = subprocess.run(["bash", str(script), *argv], capture_output=True, text=True,
                              timeout=30, cwd=tmp_path)
        assert proc.returncode == 2, (argv, proc.stderr)
        assert "usage: deploy.sh PARAMS_JSON" in proc.stderr
    # Secrets are never echoed: no echo/printf line expands a secret variable.
    for line in text.splitlines():
        if re.search(r"\b(echo|printf)\b", line):
            assert not re.search(r"\$\{?(broker|AMPLIHACK_\w*(CONNECTION_STRING|PASSWORD))",
                                 line), line


def test_bicep_keeps_secrets_secret() -> None:
    text = (DEPLOY / "main.bicep").read_text()
    for param in ("connectionString", "blobConnectionString", "registryPassword", "hiveSecret"):
        declared = re.search(rf"@secure\(\)\s*\n(?:@description\([^\n]*\)\s*\n)?param {param} "
                             r"string", text)
        assert declared, f"{param} is not a @secure() param"
    # Connection strings reach containers only as secretRef, never as a plain env value.
    for m in re.finditer(r"name: '(AMPLIHACK_\w*(?:CONNECTION_STRING|HIVE_SECRET))'\s*\n\s*"
                         r"(\w+):", text):
        assert m.group(2) == "secretRef", m.group(1)
    for line in text.splitlines():
        if re.match(r"\s*value:", line):
            assert not re.search(r"(?i)connectionString|listKeys", line) or \
                line.strip() in ("value: brokerSecret", "value: blobSecret"), line
    assert "for i in range(0, checkedAppCount)" in text
    assert "(agentCount + agentsPerApp - 1) / agentsPerApp" in text
    assert "storageType: 'EmptyDir'" in text and "mountPath: '/data'" in text
    assert "maxReplicas: 1" in text
    for probe in ("Liveness", "Readiness"):
        assert f"type: '{probe}'" in text
    assert "port: healthPortBase + j" in text
    assert "requiresSession: true" in text and "CorrelationFilter" in text


# -- the agent configured by the environment -------------------------------------------------
def container_yaml(capsys, amplihack_home, hive: str) -> str:
    create(capsys, hive, 4)
    assert cli(capsys, "start", "--hive", hive, "--target", "azure", "--dry-run").code == 0
    return values(params_path(amplihack_home, hive))["hiveConfigYaml"]


def test_env_config_builds_the_hive_config(capsys, amplihack_home) -> None:
    text = container_yaml(capsys, amplihack_home, "envc")
    env = {"AMPLIHACK_MEMORY_CONNECTION_STRING": REDIS_URL,
           "AMPLIHACK_MEMORY_KEY_PREFIX": "prod"}
    config = config_from_text("envc", text, env)
    assert config.connection_string == REDIS_URL and config.transport == "redis"
    assert config.key_prefix == "prod"  # AMPLIHACK_MEMORY_* overrides still apply
    assert config.agent_names() == [f"agent_{i}" for i in range(4)]
    assert config.to_dict()["agents"] == HiveConfig.load("envc").to_dict()["agents"]

    via_env = load_hive_config("envc", {**env, "AMPLIHACK_HIVE_CONFIG": text})
    assert via_env == config
    from_file = load_hive_config("envc", {})  # no variable: the file, as before
    assert from_file == HiveConfig.load("envc")

    with pytest.raises(ConfigError, match="hive 'other'"):
        config_from_text("other", text, env)
    with pytest.raises(ConfigError, match="not valid YAML"):
        config_from_text("envc", "name: [unclosed", env)
    with pytest.raises(ConfigError, match="mapping"):
        config_from_text("envc", "- a list", env)


# -- the health endpoint ---------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(port: int, path: str, method: str = "GET") -> tuple[int, dict]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                     data=b"x" * 10 if method == "POST" else None)
    try:
        with opener.open(request, timeout=3) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_health_server_answers_ready_only_after_start() -> None:
    state = health.HealthState("a0")
    server = health.HealthServer(state, 0, host="127.0.0.1").start()
    try:
        assert get(server.port, "/healthz") == (503, {"agent": "a0", "ready": False,
                                                      "pid": os.getpid()})
        assert get(server.port, "/livez")[0] == 200
        assert health.probe(server.port) is not None
        state.set_ready(True)
        assert get(server.port, "/healthz")[1]["ready"] is True
        assert health.probe(server.port) is None
        assert get(server.port, "/nope")[0] == 404
        assert get(server.port, "/healthz", method="POST")[0] == 405
    finally:
        server.stop()
    assert not state.ready
    assert health.probe(server.port, timeout=1.0) is not None


def test_health_port_must_be_a_port() -> None:
    assert health.port_from_env({}) is None
    assert health.port_from_env({"AMPLIHACK_HEALTH_PORT": "8081"}) == 8081
    for bad in ("http", "0", "70000", "-1"):
        with pytest.raises(ValueError, match="AMPLIHACK_HEALTH_PORT"):
            health.port_from_env({"AMPLIHACK_HEALTH_PORT": bad})


def health_check(port: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "AMPLIHACK_HEALTH_PORT": str(port)}
    return subprocess.run([sys.executable, "-m", "agent_runtime.health"], env=env,
                          capture_output=True, text=True, timeout=20)


@pytest.mark.slow
def test_agent_process_configured_by_env_serves_healthz(amplihack_home, tmp_path) -> None:
    """As in a container: no config file, no flags; AMPLIHACK_* variables only."""
    config = HiveConfig(name="hc", shard_backend="memory", replication_factor=1,
                        agents=(AgentConfig("a0"), AgentConfig("a1")))
    port = free_port()
    env = {**os.environ, "AMPLIHACK_HOME": str(amplihack_home), "AMPLIHACK_HIVE": "hc",
           "AMPLIHACK_AGENT_NAME": "a0", "AMPLIHACK_HEALTH_PORT": str(port),
           "AMPLIHACK_HIVE_CONFIG": yaml.safe_dump(config.to_dict()),
           "AMPLIHACK_HIVE_SECRET": os.urandom(32).hex()}  # a Container Apps secret there
    env.pop("ANTHROPIC_API_KEY", None)
    log = tmp_path / "agent.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "agent_runtime"], env=env, stdout=fh,
                                stderr=fh)
    try:
        deadline = time.monotonic() + 60
        status = None
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"agent exited early:\n{log.read_text()}"
            try:
                status = get(port, "/healthz")
            except OSError:
                status = None
            if status and status[0] == 200:
                break
            time.sleep(0.1)
        assert status == (200, {"agent": "a0", "ready": True, "pid": proc.pid}), \
            log.read_text()
        ok = health_check(port)
        assert ok.returncode == 0, ok.stderr
        assert not (amplihack_home / "hives" / "hc" / "config.yaml").exists()
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()
        assert "stopped cleanly" in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    down = health_check(port)
    assert down.returncode == 1
    assert len(down.stderr.strip().splitlines()) == 1 and "unhealthy" in down.stderr
    unset = subprocess.run([sys.executable, "-m", "agent_runtime.health"],
                           env={k: v for k, v in os.environ.items()
                                if k != "AMPLIHACK_HEALTH_PORT"},
                           capture_output=True, text=True, timeout=20)
    assert unset.returncode == 1 and "AMPLIHACK_HEALTH_PORT" in unset.stderr


def test_per_app_consumer_groups_match_what_each_agent_reads(capsys, amplihack_home,
                                                             monkeypatch) -> None:
    monkeypatch.setenv("AMPLIHACK_EH_CONNECTION_STRING",
                       "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=k;"
                       "SharedAccessKey=x")
    HiveConfig(name="pa", transport="azure_event_hubs",
               transport_options={"consumer_group": "{app}"}, state_store="blob",
               agents=tuple(AgentConfig(f"agent_{i}") for i in range(7))).save()
    assert cli(capsys, "start", "--hive", "pa", "--target", "azure", "--dry-run").code == 0
    v = values(params_path(amplihack_home, "pa"))
    assert v["consumerGroups"] == ["ah-pa-0"] * 5 + ["ah-pa-1"] * 2
    # In the container of app 1, the transport computes the same name from AMPLIHACK_APP.
    monkeypatch.setenv("AMPLIHACK_APP", "ah-pa-1")
    assert azure_names.consumer_group("pa", "agent_6", {"consumer_group": "{app}"}) == \
        "ah-pa-1"
    with pytest.raises(ConfigError, match="not a valid template"):
        azure_names.consumer_group("pa", "agent_6", {"consumer_group": "{nope}"})
