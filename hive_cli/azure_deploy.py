"""``amplihack-hive start --target azure``: render a hive's Azure deployment, then run it.

Rendering is offline and writes one file, ``<hive dir>/deploy/azure/parameters.json``
(mode 0600, folder 0700): the ARM parameters of ``deploy/azure/main.bicep``. It holds the
agents split over Container Apps (``agents_per_app`` per app, ``ceil(n / k)`` apps, every agent
exactly once, for any ``n``) and the hive's config as YAML for ``AMPLIHACK_HIVE_CONFIG``,
but never a secret: connection strings reach Azure only through ``deploy.sh``, which reads
them from the environment and hands them to Container Apps as secrets.

A ``local`` hive cannot go to Azure: its agents talk over Unix sockets, which agents in
different apps do not share.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hive_cli.errors import CliFailure, UsageProblem
from hive_cli.render import Renderer
from hive_core.atomic import write_private
from hive_core.hive_config import HiveConfig
from hive_core.transports import azure_names

DEPLOYABLE = ("redis", "azure_event_hubs", "azure_service_bus")
DEFAULT_AGENTS_PER_APP = 5
MAX_AGENTS_PER_APP = 20  # Container Apps allows a bounded number of containers per app
DEFAULT_IMAGE = "amplihack-hive:0.1.0"
STATE_CONTAINER = "hive-state"
HEALTH_PORT_BASE = 8080
PARAMS_SCHEMA = ("https://schema.management.azure.com/schemas/2019-04-01/"
                 "deploymentParameters.json#")
# Settings that name paths on the machine that rendered the deployment: meaningless in a
# container, whose /data starts empty.
_LOCAL_ONLY_KEYS = ("connection_string", "storage_path")


def repo_deploy_dir() -> Path:
    """``deploy/azure`` of this checkout (main.bicep and deploy.sh live there)."""
    override = os.environ.get("AMPLIHACK_AZURE_DEPLOY_DIR")
    if override:
        return Path(override)
    return Path(__file__).resolve().parent.parent / "deploy" / "azure"


def split_agents(agents: list[str], per_app: int) -> list[list[str]]:
    """Agents in consecutive groups of ``per_app``: app ``i`` runs ``[i*k, min((i+1)*k, n))``.

    The last app takes the remainder, so any agent count works (not only multiples of k).
    """
    if per_app < 1:
        raise UsageProblem("--agents-per-app must be at least 1")
    count = math.ceil(len(agents) / per_app)
    return [agents[i * per_app:min((i + 1) * per_app, len(agents))] for i in range(count)]


def app_name_prefix(hive: str) -> str:
    """Container App names: lowercase letters, digits and '-', at most 32 characters with
    the ``-N`` suffix, starting with a letter. Hive names allow '_' and '.', so map them."""
    slug = re.sub(r"[^a-z0-9-]+", "-", hive.lower())
    slug = re.sub(r"-{2,}", "-", slug).strip("-")
    return f"ah-{slug}"[:26].rstrip("-")


def default_resource_group(hive: str) -> str:
    return f"amplihack-{hive}"


@dataclass(frozen=True)
class AzurePlan:
    """What ``start --target azure`` renders (and prints with --json)."""

    hive: str
    image: str
    transport: str
    agents_per_app: int
    apps: list[list[str]]
    state_store: str
    event_hub: str
    topic: str
    reply_queue: str
    config_yaml: str
    resource_group: str
    location: str | None
    options: dict[str, Any] = field(default_factory=dict)  # the hive's transport_options
    notes: list[str] = field(default_factory=list)

    @property
    def agents(self) -> list[str]:
        return [a for app in self.apps for a in app]

    def parameters(self) -> dict[str, Any]:
        """The ARM parameters file of main.bicep (every key is a param of the template)."""
        values: dict[str, Any] = {
            "hiveName": self.hive,
            "image": self.image,
            "transport": self.transport,
            "agents": self.agents,
            # Per agent, the names its transport reads (hive_core.transports.azure_names).
            "consumerGroups": [
                azure_names.consumer_group(self.hive, a, self.options,
                                           app=f"{app_name_prefix(self.hive)}-{i}")
                for i, app in enumerate(self.apps) for a in app],
            "subscriptionNames": [azure_names.subscription_name(self.hive, a)
                                  for a in self.agents],
            "agentsPerApp": self.agents_per_app,
            "appCount": len(self.apps),
            "appAgents": self.apps,
            "appNamePrefix": app_name_prefix(self.hive),
            "healthPortBase": HEALTH_PORT_BASE,
            "hiveConfigYaml": self.config_yaml,
            "stateStore": self.state_store,
            "eventHubName": self.event_hub,
            "topicName": self.topic,
            "replyQueueName": self.reply_queue,
            "stateContainerName": STATE_CONTAINER,
        }
        if self.location:
            values["location"] = self.location
        return {"$schema": PARAMS_SCHEMA, "contentVersion": "1.0.0.0",
                "parameters": {k: {"value": v} for k, v in values.items()}}

    def summary(self, params_path: Path, command: list[str]) -> dict[str, Any]:
        return {
            "hive": self.hive, "target": "azure", "transport": self.transport,
            "image": self.image, "agents_per_app": self.agents_per_app,
            "app_count": len(self.apps), "agents": len(self.agents),
            "apps": [{"app": f"{app_name_prefix(self.hive)}-{i}", "agents": agents}
                     for i, agents in enumerate(self.apps)],
            "state_store": self.state_store, "event_hub": self.event_hub,
            "topic": self.topic, "reply_queue": self.reply_queue,
            "resource_group": self.resource_group,
            "location": self.location, "parameters": str(params_path),
            "deploy_command": " ".join(_quote(c) for c in command), "notes": self.notes,
        }


def plan(config: HiveConfig, *, agents_per_app: int = DEFAULT_AGENTS_PER_APP,
         image: str = DEFAULT_IMAGE, resource_group: str | None = None,
         location: str | None = None) -> AzurePlan:
    """Check that ``config`` can run in Azure and split its agents over apps (no I/O)."""
    if config.transport not in DEPLOYABLE:
        raise CliFailure(
            f"hive {config.name!r} uses transport {config.transport!r}, which cannot run in "
            f"Azure (agents in different apps share no Unix sockets); create it with "
            f"--transport {', '.join(DEPLOYABLE[:-1])} or {DEPLOYABLE[-1]}")
    if not 1 <= agents_per_app <= MAX_AGENTS_PER_APP:
        raise UsageProblem(f"--agents-per-app must be between 1 and {MAX_AGENTS_PER_APP}")
    if not image.strip() or any(c.isspace() for c in image):
        raise UsageProblem(f"invalid --image {image!r}: give a container image reference")
    names = config.agent_names()
    if not names:
        raise CliFailure(f"hive {config.name!r} has no agents to deploy")
    apps = split_agents(names, agents_per_app)
    data = config.to_dict()
    options = data.get("transport_options") or {}
    notes: list[str] = []
    state_store = str(data.get("state_store") or "auto")
    if config.transport != "redis" and len(apps) > 1 and state_store != "blob":
        # The ring view and liveness must be shared by every agent; each app's /data is its
        # own EmptyDir, and only Redis (auto for redis) or a blob container spans apps.
        if state_store != "auto":
            raise CliFailure(
                f"hive {config.name!r} has state_store: {state_store}, but its agents run in "
                f"{len(apps)} apps that share no folder; set state_store: blob in "
                f"{config.config_path}")
        state_store = "blob"
        notes.append(f"state_store auto -> blob: the agents run in {len(apps)} apps, which "
                     f"share state only through the blob container {STATE_CONTAINER!r}")
    event_hub = azure_names.event_hub(config.name, options)
    topic = azure_names.topic(options)
    reply_queue = azure_names.reply_queue(options)
    # The names main.bicep creates are written into the agents' config too, so the two agree
    # even where the transport's own defaults would differ.
    pinned = {"azure_event_hubs": {"eventhub": event_hub},
              "azure_service_bus": {"topic": topic, "reply_queue": reply_queue}
              }.get(config.transport, {})
    return AzurePlan(
        hive=config.name, image=image.strip(), transport=config.transport,
        agents_per_app=agents_per_app, apps=apps, state_store=state_store,
        event_hub=event_hub, topic=topic, reply_queue=reply_queue,
        config_yaml=container_config_yaml(data, state_store, pinned),
        resource_group=resource_group or default_resource_group(config.name),
        location=location, options=dict(options), notes=notes)


def container_config_yaml(data: dict[str, Any], state_store: str,
                          options: dict[str, Any] | None = None) -> str:
    """The hive's config as the containers see it: no secret, no local paths."""
    doc = {k: v for k, v in data.items() if k not in _LOCAL_ONLY_KEYS}
    if "state_store" in doc:
        doc["state_store"] = state_store
    if options:
        doc["transport_options"] = {**(doc.get("transport_options") or {}), **options}
    doc["agents"] = [{k: v for k, v in a.items() if k != "kuzu_db"}
                     for a in data.get("agents") or []]
    return yaml.safe_dump(doc, sort_keys=False)


def write_parameters(config: HiveConfig, azure: AzurePlan) -> Path:
    """Atomically write ``<hive dir>/deploy/azure/parameters.json`` (0600 in a 0700 folder)."""
    folder = config.directory / "deploy" / "azure"
    folder.mkdir(parents=True, exist_ok=True)
    for path in (config.directory / "deploy", folder):
        os.chmod(path, 0o700)
    target = folder / "parameters.json"
    write_private(target, json.dumps(azure.parameters(), indent=2) + "\n")
    return target


def deploy_command(params: Path, azure: AzurePlan) -> list[str]:
    """The exact ``deploy.sh`` invocation for ``params`` (secrets come from the environment)."""
    cmd = [str(repo_deploy_dir() / "deploy.sh"), str(params),
           "--resource-group", azure.resource_group]
    if azure.location:
        cmd += ["--location", azure.location]
    return cmd


def require_az() -> None:
    if shutil.which("az") is None:
        raise CliFailure(
            "the Azure CLI `az` is not installed; install it and run `az login`, or use "
            "--dry-run to only render the parameters (then run the deploy command printed "
            "above)")


def run_deploy(command: list[str]) -> int:
    """Run deploy.sh with our stdout/stderr (its output streams); its exit code is ours."""
    require_az()
    script = Path(command[0])
    if not script.exists():
        raise CliFailure(f"{script} not found: run from a checkout of amplihack-hive, or set "
                         "AMPLIHACK_AZURE_DEPLOY_DIR to its deploy/azure folder")
    try:
        return subprocess.run(["bash", *command], check=False).returncode
    except OSError as exc:
        raise CliFailure(f"cannot run {script}: {exc.strerror or exc}") from exc


def secret_variables(transport: str) -> list[str]:
    """The environment variables deploy.sh reads the broker's secret from, in order."""
    own = {"azure_event_hubs": ["AMPLIHACK_EH_CONNECTION_STRING"],
           "azure_service_bus": ["AMPLIHACK_SB_CONNECTION_STRING"]}.get(transport, [])
    return [*own, "AMPLIHACK_MEMORY_CONNECTION_STRING"]


def _quote(arg: str) -> str:
    return arg if re.fullmatch(r"[A-Za-z0-9_@%+=:,./-]+", arg) else "'" + \
        arg.replace("'", "'\"'\"'") + "'"


def start(config: HiveConfig, out: Renderer, *, dry_run: bool, agents_per_app: int,
          image: str, resource_group: str | None, location: str | None) -> int:
    """Render the parameters; unless ``dry_run``, run deploy.sh. Returns the exit code."""
    azure = plan(config, agents_per_app=agents_per_app, image=image,
                 resource_group=resource_group, location=location)
    params = write_parameters(config, azure)
    command = deploy_command(params, azure)
    doc = azure.summary(params, command)
    doc["dry_run"] = dry_run
    if out.json_mode:
        out.json(doc)
    else:
        _print_plan(out, azure, params, command)
    if dry_run:
        return 0
    require_az()
    out.note(f"deploying hive {azure.hive} with {command[0]} ...")
    return run_deploy(command)


def _print_plan(out: Renderer, azure: AzurePlan, params: Path, command: list[str]) -> None:
    n, apps = len(azure.agents), len(azure.apps)
    out.message(f"rendered the Azure deployment of hive {azure.hive}: {n} agent(s) in "
                f"{apps} container app(s), {azure.agents_per_app} per app, transport "
                f"{azure.transport}, image {azure.image}")
    out.message(f"  wrote {params} (mode 0600, no secrets)")
    prefix = app_name_prefix(azure.hive)
    for i, agents in enumerate(azure.apps):
        out.message(f"  app {prefix}-{i}: {', '.join(agents)}")
    for note in azure.notes:
        out.message(f"  note: {note}")
    secrets = " or ".join(secret_variables(azure.transport))
    blob = ("; and AMPLIHACK_BLOB_CONNECTION_STRING, or a storage account is created"
            if azure.state_store == "blob" else "")
    out.message(f"deploy with (secrets are read from the environment: {secrets}{blob}; the "
                "message key from AMPLIHACK_HIVE_SECRET or the hive's secret.json):")
    out.message("  " + " ".join(_quote(c) for c in command))
