"""The offline plan: run the real __main__.py under Pulumi mocks and write what the engine would receive.

    python -m tools.plan --stack dev                # plans Pulumi.dev.yaml
    python -m tools.plan --config path/to/stack.yaml
    python -m tools.plan --stack prod --bootstrap   # phase 1 of a first deploy: the network only

No cloud, no Pulumi CLI, no credentials. Writes build/plan/<stack>/{resources.json, manifests/, policy.json,
cost.json, runs.json, changes.json} and prints a summary: per run and job its queue, where its data will land and
its cost per admission, and what `pulumi up` would do to each compared with an earlier state (`--against`, by
default the previous plan), every delete first with what it loses. Against a `pulumi stack export`, the program
also checks the deletions as `pulumi preview` does (workloads/deletions.py). Exit code 2 means the stack file is
invalid or the change deletes runs it does not acknowledge, 3 that it breaks a mandatory policy (policies/rules/).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import functools
import gc
import json
import logging
import os
import runpy
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from config import BOOTSTRAP_ENV, OFFLINE_PLAN_ENV, STACK_FILE_ENV, ConfigError
from config.sources import keeping_nodes
from config.sources import read_stack_file as read_stack_mapping
from naming import SERVICES_NAMESPACE
from policies.rules import Context, Resource, Violation, evaluate, helper_images, platform_settings
from tools import cost as cost_model
from tools import run_changes, run_summary
from tools.manifests import DYNAMIC_TYPE, kubernetes_objects, rendered_runs, write_manifests
from workloads.inputs import decoding_once

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PROGRAM = PROJECT_ROOT / "__main__.py"
PROJECT = "simfleet"


@dataclass
class PlanResult:
    stack: str
    source: Path
    registrations: list[Any]
    outputs: dict[str, Any]
    warnings: list[str]
    seconds: float
    secret_outputs: set[str] = field(default_factory=set)
    config: dict[str, Any] = field(default_factory=dict)  # the stack file's `config:` mapping, read once

    @functools.cached_property
    def rendered(self) -> dict[str, list[dict[str, Any]]]:
        """Each run's and job's Kubernetes objects by URN, rendered once for the manifests, policies and cost."""
        return rendered_runs(self.registrations)


class PlanConfigError(Exception):
    """The stack file is invalid; the message is the one users see."""


def stack_name_for(path: Path) -> str:
    name = path.name
    if name.startswith("Pulumi.") and name.endswith((".yaml", ".yml")):
        return name[len("Pulumi.") :].rsplit(".", 1)[0]
    return path.stem


def read_stack_file(path: Path) -> dict[str, Any]:
    """The stack file's `config:` mapping; PlanConfigError naming the file (and the line of a YAML error) otherwise."""
    if not path.is_file():
        raise PlanConfigError(f"{_display_path(path)}: no such stack file")
    try:
        return read_stack_mapping(path, str(_display_path(path)))
    except ConfigError as err:
        raise PlanConfigError(str(err)) from None


class _WarningCollector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def run_program(
    config_path: Path,
    stack: str | None = None,
    program: Path = PROGRAM,
    bootstrap: bool = False,
    deployed_outputs: dict[str, Any] | None = None,
) -> PlanResult:
    """Run `program` under mocks with the stack file's config; return every registration.

    `bootstrap` plans phase 1 of a first deploy (SIMFLEET_BOOTSTRAP=network), as the deploy workflow runs it.
    `deployed_outputs` are the stack's outputs as deployed (from a stack export), which the program reads to check
    the runs it would delete (workloads/deletions.py); none: a stack with nothing deployed.
    """
    import pulumi
    from pulumi.runtime import settings
    from pulumi.runtime.stack import run_pulumi_func

    from tools.mocks import RecordingMonitor, SimfleetMocks

    config_path = config_path.resolve()
    stack = stack or stack_name_for(config_path)
    # The program finds its warnings' lines in the stack file's node tree as read here.
    with keeping_nodes():
        config = read_stack_file(config_path)
        region = str(config.get("aws:region", "us-east-1"))

        # Each plan gets a fresh runtime: config, mocks, monitor and root stack.
        settings.reset_options()
        pulumi.runtime.set_all_config({k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()})
        mocks = SimfleetMocks(region, deployed_outputs)
        monitor = RecordingMonitor(mocks)
        logger = logging.getLogger(f"simfleet.plan.{stack}")
        logger.propagate = False
        collector = _WarningCollector()
        logger.handlers = [collector]
        # The loop must exist before set_mocks: it creates the root Stack, whose URN future binds to the current loop.
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=False, logger=logger, monitor=monitor)

        # The config loader reads these: which file errors point at, that placeholders only warn offline, and the phase.
        environment = {
            STACK_FILE_ENV: str(_display_path(config_path)),
            OFFLINE_PLAN_ENV: "1",
            BOOTSTRAP_ENV: "network" if bootstrap else None,
        }
        previous = {key: os.environ.get(key) for key in environment}
        _set_environment(environment)
        sys.path.insert(0, str(PROJECT_ROOT))
        started = time.perf_counter()
        try:
            loop.run_until_complete(run_pulumi_func(lambda: _run_program_file(program)))
            seconds = time.perf_counter() - started
            outputs, secret_outputs = loop.run_until_complete(_stack_outputs(settings.get_root_resource()))
        except pulumi.RunError as err:
            raise PlanConfigError(str(err)) from None
        finally:
            loop.close()
            sys.path.remove(str(PROJECT_ROOT))
            _set_environment(previous)
    # The SDK registers resources from concurrent tasks, so their order varies between runs: sorted by URN, every
    # file and summary line of two plans of the same stack is the same, and a plain diff shows what changed.
    registrations = sorted(monitor.registrations, key=lambda reg: reg.urn)
    return PlanResult(stack, config_path, registrations, outputs, collector.messages, seconds, secret_outputs, config)


def _set_environment(values: dict[str, str | None]) -> None:
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _run_program_file(program: Path) -> None:
    runpy.run_path(str(program), run_name="__main__")


async def _stack_outputs(root: Any) -> tuple[dict[str, Any], set[str]]:
    """The stack's exports, resolved while the program's event loop is still open, and which are secret."""
    import pulumi

    outputs: dict[str, Any] = {}
    secrets: set[str] = set()
    for key, value in (getattr(root, "outputs", None) or {}).items():
        # pulumi.export takes plain values too (a piece that is off exports null).
        output = value if isinstance(value, pulumi.Output) else pulumi.Output.from_input(value)
        outputs[key] = await output.future()
        if await output.is_secret():
            secrets.add(key)
    return outputs, secrets


def _display_path(path: Path) -> Path:
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


# ---------------------------------------------------------------------------------------------
# Writing the plan
# ---------------------------------------------------------------------------------------------


def write_plan(result: PlanResult, out_root: Path) -> Path:
    out = out_root / result.stack
    out.mkdir(parents=True, exist_ok=True)
    (out / "resources.json").write_text(
        json.dumps([r.as_json() for r in result.registrations], indent=2, sort_keys=True, default=str)
    )
    write_manifests(out / "manifests", kubernetes_objects(result.registrations, result.rendered))
    return out


def component_of(reg: Any, by_urn: dict[str, Any]) -> str:
    """The top-level component a registration belongs to (its outermost non-stack ancestor)."""
    current = reg
    while current.parent and current.parent in by_urn:
        current = by_urn[current.parent]
    if current.type.startswith("pulumi:providers:"):
        return "providers"
    return current.type.split(":")[-1] if current.type.count(":") >= 2 else current.type


def summarize(result: PlanResult) -> str:
    by_urn = {r.urn: r for r in result.registrations}
    counts = Counter(component_of(r, by_urn) for r in result.registrations)
    lines = [
        f"simfleet plan: stack {result.stack} ({_display_path(result.source)}), "
        f"{len(result.registrations)} resources in {result.seconds:.1f}s"
    ]
    lines.append("  resources per component:")
    lines += [f"    {name:<16} {count}" for name, count in sorted(counts.items())]
    lines += ["  settings:"] + [f"    {line}" for line in _settings(result)]
    observability = result.outputs.get("observability") or {}
    if observability.get("dashboardUrl"):
        lines.append(f"  dashboard: {observability['dashboardUrl']}")
    for warning in result.warnings:
        lines.append(f"  warning: {warning}")
    return "\n".join(lines)


def _settings(result: PlanResult) -> list[str]:
    regs = result.registrations
    lines: list[str] = []
    cluster = next((r for r in regs if r.type == "eks:index:Cluster"), None)
    if cluster:
        public = cluster.inputs.get("publicAccessCidrs") if cluster.inputs.get("endpointPublicAccess") else None
        lines.append(
            f"cluster {cluster.inputs.get('name')} kubernetes {cluster.inputs.get('version')}, "
            f"endpoint {'public ' + ','.join(public) if public else 'private only'}, "
            f"logs {','.join(cluster.inputs.get('enabledClusterLogTypes') or [])}"
        )
    for group in (r for r in regs if r.type == "aws:cloudwatch/logGroup:LogGroup"):
        days = group.inputs.get("retentionInDays")
        kms = ", KMS-encrypted" if group.inputs.get("kmsKeyId") else ""
        lines.append(
            f"log group {group.inputs.get('name')}: kept {days} days{kms}"
            if days
            else f"log group {group.inputs.get('name')}: never expires{kms}"
        )
    api_rules = [r for r in regs if r.type == "aws:ec2/securityGroupRule:SecurityGroupRule" and r.inputs.get("toPort") == 443]
    if api_rules:
        sources = [",".join(r.inputs.get("cidrBlocks") or []) or r.name.rsplit("-api-from-", 1)[-1] for r in api_rules]
        lines.append(f"API endpoint 443 also from: {', '.join(sources)}")
    subnets = [r for r in regs if r.type == "aws:ec2/subnet:Subnet"]
    nats = [r for r in regs if r.type == "aws:ec2/natGateway:NatGateway"]
    lines.append(f"network: {len(subnets)} subnets, {len(nats)} NAT gateway(s)")
    for group in (r for r in regs if r.type == "aws:eks/nodeGroup:NodeGroup"):
        scaling = group.inputs.get("scalingConfig") or {}
        lines.append(
            f"node group {group.inputs.get('nodeGroupName') or group.inputs.get('nodeGroupNamePrefix')}: {','.join(group.inputs.get('instanceTypes') or [])} "
            f"{group.inputs.get('capacityType')} {scaling.get('minSize')}..{scaling.get('maxSize')}"
        )
    charts = [f"{r.inputs.get('chart')}@{r.inputs.get('version')}" for r in regs if r.type == "kubernetes:helm.sh/v3:Release"]
    addons = [f"{r.inputs.get('addonName')}@{r.inputs.get('addonVersion')}" for r in regs if r.type == "aws:eks/addon:Addon"]
    lines.append(f"add-ons: {', '.join(addons + charts)}")
    efs = [r for r in regs if r.type == "aws:efs/fileSystem:FileSystem"]
    if efs:
        targets = sum(1 for r in regs if r.type == "aws:efs/mountTarget:MountTarget")
        lines.append(f"shared storage: {len(efs)} EFS file system(s), {targets} mount target(s)")
    deployments = [
        r
        for r in regs
        if r.type == "kubernetes:apps/v1:Deployment" and (r.inputs.get("metadata") or {}).get("namespace") == SERVICES_NAMESPACE
    ]
    if deployments:
        names = [str((r.inputs.get("metadata") or {}).get("name")) for r in deployments]
        lines.append(f"services: {len(deployments)} ({', '.join(names)})")
    queues = sorted(
        (r for r in regs if r.type == "kubernetes:kueue.x-k8s.io/v1beta2:ClusterQueue"),
        key=lambda r: str((r.inputs.get("metadata") or {}).get("name")),
    )
    if queues:

        def nominal_gpus(queue: Any) -> str:
            flavors = ((queue.inputs.get("spec") or {}).get("resourceGroups") or [{}])[0].get("flavors") or []
            return ", ".join(
                f"{f['name']} {next((r['nominalQuota'] for r in f['resources'] if r['name'] == 'nvidia.com/gpu'), 0)}"
                for f in flavors
            )

        quota = next((r for r in regs if r.type == "kubernetes:core/v1:ResourceQuota"), None)
        hard = ((quota.inputs.get("spec") or {}).get("hard") or {}) if quota else {}
        lines.append(
            "queues (nominal GPUs): "
            + "; ".join(f"{(q.inputs.get('metadata') or {}).get('name')} {nominal_gpus(q)}" for q in queues)
            + (f"; runs namespace GPU quota {hard.get('requests.nvidia.com/gpu')}" if hard else "")
        )
    workloads = [r for r in regs if r.type == DYNAMIC_TYPE]
    for kind, label in (("run", "runs"), ("job", "jobs")):
        names = [str(r.inputs.get("runName")) for r in workloads if (r.inputs.get("kind") or "run") == kind]
        if names or kind == "run":
            shown = f" ({', '.join(names[:5])}{', ...' if len(names) > 5 else ''})" if names else ""
            lines.append(f"{label}: {len(names)}{shown}")
    return lines


@contextlib.contextmanager
def without_cycle_collection() -> Iterator[None]:
    """Python's cycle collector off for a plan: a plan is one short process that builds a large graph of live objects
    (every registration, Output and rendered object is kept until the plan is written), and each collection walks
    all of them again (over a quarter of a 2,000-run plan's CPU). The little cyclic garbage (asyncio tasks, about
    20 KB per run) is freed when the process ends. Reference counting frees everything else as usual."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# `python -m tools.plan` sets this: what its plan made is kept here, not freed, until the process ends (exit_now).
_kept: list[Any] | None = None


def main(argv: list[str] | None = None) -> int:
    with without_cycle_collection():
        return _main(argv)


def exit_now(code: int) -> NoReturn:
    """End the process once the plan is written: output flushed, then without the interpreter's teardown.

    Freeing a large plan's objects one by one (its registrations and rendered objects as `_main` returns, then the
    SDK's resources and Outputs as the interpreter finalizes, with a last pass of the cycle collector over all of them)
    cost a fifth of a 2,000-run plan's CPU (1.9 of 8.4 s, measured side by side), for memory the kernel takes back at
    once when the process ends. Nothing else is left to do then: every file is written and closed, and
    the only exit handler is logging's, which has nothing to flush (the plan's warnings are collected in memory).

    A stream that is closed (None) has nothing to flush; one that cannot be flushed (its reader gone) is left to the
    interpreter's own exit, which reports it as it always has (exit 120), with no traceback."""
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
    except (OSError, ValueError):
        sys.exit(code)
    os._exit(code)


def _main(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(prog="make plan", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", default="dev", help="stack name; reads Pulumi.<stack>.yaml")
    parser.add_argument("--config", type=Path, help="plan this stack file instead")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "build" / "plan")
    parser.add_argument(
        "--bootstrap", action="store_true", help="plan phase 1 of a first deploy (SIMFLEET_BOOTSTRAP=network): the network only"
    )
    parser.add_argument(
        "--against",
        type=Path,
        help="say per run what `pulumi up` would do against this `pulumi stack export` file or earlier resources.json "
        "(default: the previous plan of the stack in --out, if there is one)",
    )
    args = parser.parse_args(argv)
    config_path = args.config or PROJECT_ROOT / f"Pulumi.{args.stack}.yaml"
    stack = stack_name_for(config_path) if args.config else args.stack
    phase = " (bootstrap phase: network only)" if args.bootstrap else ""
    print(f"planning stack {stack}{phase} from {_display_path(config_path.resolve())} under Pulumi mocks ...", flush=True)
    # A bootstrap plan goes beside, not over, the full plan of the same stack.
    out_root = args.out / "bootstrap" if args.bootstrap else args.out
    previous = out_root / stack / "resources.json"
    against = args.against or (previous if previous.exists() else None)
    try:
        earlier = run_changes.load_earlier(against) if against else {}
        # A stack export says what is deployed: the program checks the runs it would delete against it, as under
        # `pulumi preview` (a previous plan only says what was planned).
        deployed = run_changes.load_deployed_outputs(against) if against else None
    except run_changes.EarlierStateError as err:
        print(str(err), file=sys.stderr)
        return 2
    try:
        result = run_program(config_path, stack, bootstrap=args.bootstrap, deployed_outputs=deployed)
    except PlanConfigError as err:
        print(str(err), file=sys.stderr)
        return 2
    with decoding_once():  # each run's inputs decoded once for its manifests, policies, cost and summary
        out = write_plan(result, out_root)
        changes = run_changes.compare(result.registrations, earlier)
        (out / "changes.json").write_text(json.dumps([c.as_json() for c in changes], indent=2))
        # The same rules `pulumi preview --policy-pack policies` runs (policies/rules/), and the cost estimate.
        violations = policy_violations(result)
        (out / "policy.json").write_text(json.dumps([v.as_json() for v in violations], indent=2))
        cost = estimate_cost(result)
        (out / "cost.json").write_text(json.dumps(cost, indent=2))
        workloads = run_summary.workloads(result.registrations, cost["runs"])
    (out / "runs.json").write_text(json.dumps(workloads, indent=2))
    print(summarize(result))
    print("\n".join(policy_summary(violations)))
    print("\n".join(cost_summary(cost)))
    for line in run_summary.lines(workloads, cost):
        print(f"  {line}")
    label = (
        f"{_display_path(against)}" + (" (the previous plan, not the deployed state)" if against == previous else "")
        if against
        else "nothing (no earlier state: pass AGAINST=<pulumi stack export file> to compare with what is deployed)"
    )
    print("\n".join(f"  {line}" for line in run_changes.summary(changes, label)))
    print(f"  wrote {_display_path(out)}/resources.json, manifests/, policy.json, cost.json, runs.json and changes.json")
    if _kept is not None:
        _kept.append((result, earlier, deployed, changes, violations, cost, workloads))
    # 3: the stack is valid but breaks a mandatory policy, which would block `pulumi preview --policy-pack`.
    return 3 if any(v.level == "mandatory" for v in violations) else 0


# ---------------------------------------------------------------------------------------------
# Policies and cost
# ---------------------------------------------------------------------------------------------


def plan_resources(result: PlanResult) -> list[Resource]:
    """The registrations in the shape the policy engine gives a policy pack."""
    return [
        Resource(
            r.type,
            r.urn,
            r.name,
            r.inputs,
            r.parent or None,
            r.options.get("propertyDependencies", {}),
            result.rendered.get(r.urn),
        )
        for r in result.registrations
    ]


def policy_violations(result: PlanResult, today: datetime.date | None = None) -> list[Violation]:
    platform = result.config.get("simfleet:platform")
    repositories, allow_list = platform_settings(platform)
    context = Context(result.stack, repositories, allow_list, helper_images(), today or datetime.date.today())
    return evaluate(plan_resources(result), context)


def estimate_cost(result: PlanResult) -> dict[str, Any]:
    region = str(result.config.get("aws:region", "us-east-1"))
    return cost_model.estimate(plan_resources(result), result.stack, region)


def policy_summary(violations: list[Violation]) -> list[str]:
    mandatory = sum(1 for v in violations if v.level == "mandatory")
    lines = [f"  policies: {mandatory} mandatory, {len(violations) - mandatory} advisory violation(s)"]
    for v in violations:
        where = v.urn.rsplit("::", 1)[-1] if v.urn else "stack"
        lines.append(f"    [{v.level}] {v.policy} ({where}): {v.message}")
    return lines


def cost_summary(cost: dict[str, Any]) -> list[str]:
    return [f"  {line}" for line in cost_model.summary(cost)]


if __name__ == "__main__":
    # Off for good: the process ends with the plan. Turned back on, the collector's first pass would walk every object
    # allocated while it was off (about a second at 2,000 runs) just before the process exits.
    gc.disable()
    _kept = []
    exit_now(main())
