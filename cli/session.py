"""Which stack the command reads, and its connections: the stack file of this checkout, the caller's AWS identity,
the cluster's API when it can be reached.

The stack is, in this order: `--stack`, the SIMFLEET_STACK environment variable, or the stack Pulumi has selected for
this project (`pulumi stack select`, which Pulumi records in `$PULUMI_HOME/workspaces/<project>-<sha1 of the
Pulumi.yaml path>-workspace.json`, PULUMI_HOME defaulting to ~/.pulumi). The stack file `Pulumi.<stack>.yaml` is read
from the project directory: `--project-dir`, else the nearest directory holding Pulumi.yaml from the current one up,
else the checkout this command was installed from.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from cli import plan_cache
from config import PROJECT_ROOT, load_stack_file
from config.sources import RUN_FILES_KEY, load_yaml, read_stack_file
from workloads import eks_auth
from workloads.observe.cluster import ClusterError, ClusterReader
from workloads.observe.fleet import Declared, Fleet, fleet_from

STACK_ENV = "SIMFLEET_STACK"
KUBECONFIG_ENV = "SIMFLEET_KUBECONFIG"
CACHE_ENV = "SIMFLEET_CACHE_DIR"


class UsageProblem(click.UsageError):
    """Something the caller asked for that cannot be (exit 2)."""


def project_dir(given: Path | None) -> Path:
    if given is not None:
        return given.resolve()
    here = Path.cwd().resolve()
    for candidate in (here, *here.parents):
        if (candidate / "Pulumi.yaml").is_file():
            return candidate
    return PROJECT_ROOT


def selected_stack(project: Path) -> str | None:
    """The stack `pulumi stack select` chose for this project, as Pulumi records it; None when there is none."""
    pulumi_yaml = project / "Pulumi.yaml"
    if not pulumi_yaml.is_file():
        return None
    name = (load_yaml(pulumi_yaml.read_text()) or {}).get("name")
    home = Path(os.environ.get("PULUMI_HOME") or Path.home() / ".pulumi")
    digest = hashlib.sha1(str(pulumi_yaml.resolve()).encode()).hexdigest()
    settings = home / "workspaces" / f"{name}-{digest}-workspace.json"
    try:
        stack = json.loads(settings.read_text()).get("stack")
    except (OSError, ValueError):
        return None
    return str(stack).rsplit("/", 1)[-1] if stack else None


def stack_name(given: str | None, project: Path) -> str:
    stack = given or os.environ.get(STACK_ENV) or selected_stack(project)
    if stack:
        return stack
    found = sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in project.glob("Pulumi.*.yaml"))
    raise UsageProblem(
        f"no stack chosen: pass --stack (one of {', '.join(found) or 'none found in ' + str(project)}), set {STACK_ENV}, "
        "or select one with `pulumi stack select`"
    )


def units_of(declared: Declared, seed: int | None) -> tuple[int, ...]:
    """The seeds (a job's shards) a command is about: all, or the one --seed names."""
    if seed is None:
        return declared.units
    if seed not in declared.units:
        raise UsageProblem(f"{declared.name} has no {declared.unit} {seed}; its {declared.unit}s: {list(declared.units)}")
    return (seed,)


@dataclass
class Session:
    """One command's view: the stack's fleet, the caller, and (made on first use) the cluster reader."""

    project: Path
    stack: str
    kubeconfig: str | None
    cache_dir: Path | None
    fleet: Fleet | None = None
    caller: str = ""
    _reader: ClusterReader | None = None
    _problem: str | None = None
    notes: list[str] = field(default_factory=list)

    def load(self) -> Fleet:
        if self.fleet is not None:
            return self.fleet
        path = self.project / f"Pulumi.{self.stack}.yaml"
        if not path.is_file():
            raise UsageProblem(f"{path}: no such stack file (stack {self.stack!r} in project {self.project})")
        cached = plan_cache.lookup(self.cache_dir, path, self.stack)
        if cached is not None:
            fleet, account = cached
            identity = eks_auth.caller_identity(fleet.region)
            if identity["Account"] == account:
                self.caller, self.fleet = identity["Arn"], fleet
                return fleet
        raw = read_stack_file(path)
        region = raw.get("aws:region")
        if not region:
            raise UsageProblem(f"{path}: aws:region is not set")
        # Placeholders are warnings here, as in the offline plan: the command deploys nothing.
        cfg = load_stack_file(path, self.stack, offline=True, raw=raw)
        identity = eks_auth.caller_identity(str(region))
        self.caller = identity["Arn"]
        self.fleet = fleet_from(cfg, self.stack, str(region), identity["Account"], self.project)
        run_files = raw.get(f"simfleet:{RUN_FILES_KEY}") or []
        glue = sorted({run.glue for run in cfg.runs})
        plan_cache.store(self.cache_dir, path, self.stack, identity["Account"], run_files, glue, self.fleet)
        return self.fleet

    def declared(self, name: str) -> Declared:
        fleet = self.load()
        if name not in fleet.declared:
            close = sorted(n for n in fleet.declared if name in n or n in name)[:5]
            hint = f"; did you mean {', '.join(close)}?" if close else f"; `simfleet runs --stack {self.stack}` lists them"
            raise UsageProblem(f"stack {self.stack} declares no run or job named {name!r}{hint}")
        return fleet.declared[name]

    def reader(self) -> ClusterReader | None:
        """The cluster's API as the caller, or None (with `problem` saying why) when it cannot be reached."""
        if self._reader is not None or self._problem is not None:
            return self._reader
        fleet = self.load()
        if self.kubeconfig:
            conn = eks_auth.Connection(fleet.cluster_name, "", "", fleet.region, self.kubeconfig)
        else:
            try:
                endpoint, ca = eks_auth.describe_cluster(fleet.cluster_name, fleet.region)
            except ConnectionError as err:
                self._problem = str(err)
                return None
            conn = eks_auth.Connection(fleet.cluster_name, endpoint, ca, fleet.region)
        self._reader = ClusterReader(fleet.namespace, conn)
        return self._reader

    @property
    def problem(self) -> str:
        return self._problem or ""

    def unreachable(self, err: ClusterError) -> None:
        """Remember that the API could not be reached, so the read falls back to S3 and CloudWatch."""
        self._reader, self._problem = None, str(err)


def open_session(stack: str | None, project: Path | None, kubeconfig: Path | None, no_cache: bool) -> Session:
    where = project_dir(project)
    config_text: Any = None
    path = kubeconfig or (Path(os.environ[KUBECONFIG_ENV]) if os.environ.get(KUBECONFIG_ENV) else None)
    if path is not None:
        config_text = path.read_text()
    cache_root = Path(os.environ.get(CACHE_ENV) or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "simfleet")
    name = stack_name(stack, where)
    return Session(where, name, config_text, None if no_cache else cache_root / name)


class Lazy:
    """The session, opened on first use so `--help` needs no stack, credentials or cluster."""

    def __init__(self, **options: Any) -> None:
        self.options = options
        self._session: Session | None = None

    def get(self) -> Session:
        if self._session is None:
            self._session = open_session(**self.options)
        return self._session
