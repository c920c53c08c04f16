"""The whole stack file: validate `simfleet:*` once, collect every error, raise them together.

Every rule that can be checked without AWS lives in this package, so a bad stack file fails before a single
resource is registered. Errors are collected across the whole file and raised together as one
`ConfigError` that names the file, the path (`runs[2].images.sim`) and the reason.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic.alias_generators import to_snake

import naming
from config.capacity import gpu_capacity, per_gpu_allocatable
from config.errors import ConfigError, Issue, did_you_mean, entry_rules, file_order, issues_from
from config.jobs import JobSpec, job_platform_rules
from config.platform import PlatformConfig, default_control_plane_log_retention, is_prod_stack, prod_rules, storage_rules
from config.queues import (
    CAPACITY_CONTEXT,
    QueuesConfig,
    QueueSpec,
    declared_queues,
    generated_queues,
    queue_platform_rules,
    queue_rules,
    resolve_queues,
)
from config.runs import RunSpec, run_cross_rules, run_platform_rules
from config.services import ServiceSpec, service_platform_rules, service_warnings
from config.types import CapacityType, documentation_range, placeholder_name

PROJECT_ROOT = Path(__file__).resolve().parent.parent
M = TypeVar("M", bound=BaseModel)

# Set only by tools/plan.py: the offline plan reports documentation-range placeholders as warnings, so the sample
# stack still plans; `pulumi preview`/`up` (which never set it) refuse them.
OFFLINE_PLAN_ENV = "SIMFLEET_OFFLINE_PLAN"
# Set to "network" for phase 1 of a first deploy (README "First deploy (bootstrap)"): the program registers only
# the network and the deployer security group, so a runner can start inside the VPC before the private endpoint exists.
BOOTSTRAP_ENV = "SIMFLEET_BOOTSTRAP"
BOOTSTRAP_PHASES = ("network",)

# What to put in place of a documentation-range placeholder, per kind of CIDR list.
_PLACEHOLDER_HINTS = {
    "publicAccessCidrs": "the public egress ranges of the networks that administer the cluster (office, VPN; "
    "`curl https://checkip.amazonaws.com` prints this machine's address, use it as a /32)",
    "deployerAccess": "the private range of the VPN or peered network your deploy runner is in, or remove it and "
    "start the runner with the stack's deployer security group (README 'First deploy')",
    "allowedCidrs": "the public ranges of the people who open this run's viewport (`curl https://checkip.amazonaws.com`"
    " prints this machine's address, use it as a /32)",
    "internalLoadBalancer": "the private ranges (the VPC, your VPN, peered VPCs) of the clients that call this service",
}


@dataclass(frozen=True)
class StackConfig:
    stack: str
    platform: PlatformConfig
    runs: tuple[RunSpec, ...]
    warnings: tuple[str, ...] = ()
    # Phase 1 of a first deploy: register only the network (SIMFLEET_BOOTSTRAP=network).
    bootstrap_network: bool = False
    services: tuple[ServiceSpec, ...] = ()
    jobs: tuple[JobSpec, ...] = ()
    # Always set by load_stack_config: the stack file's queues, or the one simfleet generates without a section.
    queues: QueuesConfig = field(default_factory=QueuesConfig)

    @property
    def is_prod(self) -> bool:
        return is_prod_stack(self.stack)

    @property
    def control_plane_log_retention_days(self) -> int:
        """platform.controlPlaneLogRetentionDays, with the stack's default filled in by load_stack_config."""
        days = self.platform.control_plane_log_retention_days
        return default_control_plane_log_retention(self.stack) if days is None else days

    @property
    def external_checkpoint_uris(self) -> list[str]:
        """`s3://` checkpoints runs start from; the run role may read exactly these objects."""
        return [run.checkpoint.from_ for run in self.runs if run.checkpoint.from_ and run.checkpoint.from_.startswith("s3://")]


def load_stack_config(
    platform: Any,
    runs: Any,
    *,
    services: Any = None,
    jobs: Any = None,
    queues: Any = None,
    stack: str,
    source: str,
    base_dir: Path = PROJECT_ROOT,
    today: datetime.date | None = None,
    lint_glue: Callable[[Path], list[str]] | None = None,
    offline: bool = False,
) -> StackConfig:
    """Validate the raw `simfleet:platform`, `:runs`, `:jobs`, `:services` and `:queues`; raise ConfigError listing every
    problem.

    `offline` (the offline plan) turns placeholder CIDRs from errors into warnings.
    """
    today = today or datetime.date.today()
    issues: list[Issue] = []
    warnings: list[str] = []

    platform_cfg: PlatformConfig | None = None
    if platform is None:
        issues.append(Issue("platform", "simfleet:platform is required"))
    else:
        try:
            platform_cfg = PlatformConfig.model_validate(platform, context={"today": today, "warnings": warnings})
        except ValidationError as err:
            issues += issues_from(err, "platform", PlatformConfig)

    issues += [
        Issue("stack", f"{problem} (stack names become part of the bucket names)")
        for problem in dict.fromkeys(naming.bucket_name_problems(stack, "checkpoints"))
    ]

    run_specs = _entries(runs, "runs", RunSpec, issues)
    job_specs = _entries(jobs, "jobs", JobSpec, issues)
    service_specs = _entries(services, "services", ServiceSpec, issues)

    queue_specs: list[tuple[int, QueueSpec]] = []
    if queues is not None and not isinstance(queues, list):
        issues.append(Issue("queues", "simfleet:queues must be a list of queues"))
    elif queues == []:
        issues.append(
            Issue(
                "queues",
                "simfleet:queues is empty; list at least one queue, or leave the section out for one "
                f"queue ({naming.GENERATED_QUEUE}) with every GPU the services leave free",
            )
        )
    for index, raw in enumerate(queues if isinstance(queues, list) else []):
        # A single quota value applies to each GPU capacity type of the stack; the model needs to know which those are.
        context = {CAPACITY_CONTEXT: platform_cfg.node_groups.gpu.capacity} if platform_cfg is not None else {}
        try:
            queue_specs.append((index, QueueSpec.model_validate(raw, context=context)))
        except ValidationError as err:
            issues += issues_from(err, f"queues[{index}]", QueueSpec)
    issues += queue_rules(queue_specs)
    # The queues' names and default, for the rules of runs and jobs that name a queue; quotas need the platform.
    queues_cfg = declared_queues(queue_specs, queues is not None)

    # What `up` deploys: a service with `enabled: false` is validated like the others, and holds no GPU, trusts no name.
    deployed_services = [(index, spec) for index, spec in service_specs if spec.enabled]
    if platform_cfg is not None:
        capacity = gpu_capacity(platform_cfg, (spec for _, spec in deployed_services))
        per_gpu = per_gpu_allocatable(platform_cfg)
        if queues is None:
            queues_cfg = generated_queues(capacity, per_gpu)
        else:
            queue_issues, queue_warnings = queue_platform_rules(queue_specs, capacity)
            issues += queue_issues
            warnings += queue_warnings
            queues_cfg = resolve_queues(queue_specs, capacity, per_gpu)
        issues += prod_rules(platform_cfg, stack)
        issues += storage_rules(platform_cfg)
        issues += run_platform_rules(platform_cfg, run_specs)
        issues += service_platform_rules(platform_cfg, service_specs)
        issues += job_platform_rules(platform_cfg, job_specs)
        if queues_cfg.teams and queues_cfg.nominal_gpus() == 0:
            warnings.append(
                "queues: every nominal GPU quota is 0 (the services take every GPU, or the quotas say so), so Kueue admits "
                "no run or job that asks for a GPU"
            )
    issues += run_cross_rules(run_specs, base_dir, lint_glue)
    issues += entry_rules("services", service_specs)
    issues += entry_rules("jobs", job_specs)
    issues += name_clashes(workload_names(run_specs, service_specs, job_specs))
    issues += queue_name_issues(queues_cfg.names(), [("runs", run_specs), ("jobs", job_specs)])
    if platform_cfg is not None and not any(i.path.endswith(".queue") for i in issues):
        for issue in admission_issues(queues_cfg, run_specs, job_specs):
            # A queue with no GPUs at all for it is the stack's choice (the services take them, say): say so. One
            # with some, but fewer than the workload needs at once, is a mistake: it would wait forever.
            if issue.message.startswith("0 "):
                warnings.append(f"{issue.path}: {issue.message[2:]}")
            else:
                issues.append(issue)
    warnings += service_warnings(deployed_services)
    warnings += [
        f"services[{i}]: enabled is false, so {spec.name!r} is not deployed" for i, spec in service_specs if not spec.enabled
    ]
    placeholders = placeholder_issues(platform_cfg, run_specs, deployed_services)
    if offline:
        warnings += [
            f"{i.path}: {i.message} (the offline plan only warns; pulumi preview and up refuse it)" for i in placeholders
        ]
    else:
        issues += placeholders

    if issues:
        raise ConfigError(source, sorted(issues, key=file_order))
    assert platform_cfg is not None
    if platform_cfg.control_plane_log_retention_days is None:
        # The stack-dependent default is resolved here, once, so components receive a number.
        platform_cfg = platform_cfg.model_copy(
            update={"control_plane_log_retention_days": default_control_plane_log_retention(stack)}
        )
    return StackConfig(
        stack,
        platform_cfg,
        tuple(spec for _, spec in run_specs),
        tuple(warnings),
        services=tuple(spec for _, spec in deployed_services),
        jobs=tuple(spec for _, spec in job_specs),
        queues=queues_cfg,
    )


def _entries(raw: Any, section: str, model: type[M], issues: list[Issue]) -> list[tuple[int, M]]:
    """Each entry of a list section that parses, with its index; the others' errors go to `issues` with their paths."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        issues.append(Issue(section, f"simfleet:{section} must be a list of {section}"))
        return []
    parsed = []
    for index, entry in enumerate(raw):
        try:
            parsed.append((index, model.model_validate(entry)))
        except ValidationError as err:
            issues += issues_from(err, f"{section}[{index}]", model)
    return parsed


def workload_names(
    runs: Sequence[tuple[int, RunSpec]],
    services: Sequence[tuple[int, ServiceSpec]],
    jobs: Sequence[tuple[int, JobSpec]] = (),
) -> list[tuple[str, str]]:
    """(path of the name, name) of every named workload in the stack file, in file order.

    One list for every kind, so a rule across kinds (say, a run and a service or a job sharing a name) is one pass
    over it; add each new kind of workload here.
    """
    return (
        [(f"runs[{i}].name", run.name) for i, run in runs]
        + [(f"jobs[{i}].name", job.name) for i, job in jobs]
        + [(f"services[{i}].name", s.name) for i, s in services]
    )


# Objects a run or job creates beside the one named after it (workloads/renderers/run.py and job.py), in the runs
# namespace: a run or job named like one of these would collide with them.
DERIVED_SUFFIXES = ("-runtime", "-gate", "-viewport")


def name_clashes(names: Sequence[tuple[str, str]]) -> list[Issue]:
    """Names unique across runs, jobs and services, including the names of the objects each one creates.

    Within one kind a duplicate is reported by that kind's own rules; here only clashes across kinds, and a name
    that equals another workload's derived object name (a job `trot-gate` beside a run `trot`).
    """
    issues = []
    owner: dict[str, tuple[str, str]] = {}  # object name -> (path, workload name) of the first to make it
    for path, name in names:
        section = path.split("[")[0]
        # Services live in their own namespace: only their names count, not what runs and jobs derive from theirs.
        made = (name, *(name + suffix for suffix in DERIVED_SUFFIXES)) if section != "services" else (name,)
        for candidate in made:
            other_path, other_name = owner.get(candidate, ("", ""))
            if other_path and not (other_name == name and other_path.split("[")[0] == section):
                if candidate == name == other_name:
                    message = f"{name!r} is already used by {other_path}"
                elif candidate == name:
                    message = f"{name!r} is the name of an object {other_path} ({other_name!r}) creates"
                else:
                    message = f"{name!r} creates {candidate!r}, which is already used by {other_path} ({other_name!r})"
                issues.append(Issue(path, message + "; names must be unique across runs, jobs and services"))
                break
        else:
            for candidate in made:
                owner.setdefault(candidate, (path, name))
    return issues


def queue_name_issues(
    queues: Sequence[str], sections: Sequence[tuple[str, Sequence[tuple[int, RunSpec | JobSpec]]]]
) -> list[Issue]:
    """Every run's and job's `queue:` names one of the stack's queues (LocalQueues in the runs namespace)."""
    issues = []
    for section, entries in sections:
        for index, spec in entries:
            if spec.queue is not None and spec.queue not in queues:
                hint = did_you_mean(spec.queue, queues)
                issues.append(
                    Issue(
                        f"{section}[{index}].queue",
                        f"no queue named {spec.queue!r}; the stack's queues are {list(queues)}{hint} (simfleet:queues)",
                    )
                )
    return issues


def admission_issues(
    queues: QueuesConfig, runs: Sequence[tuple[int, RunSpec]], jobs: Sequence[tuple[int, JobSpec]]
) -> list[Issue]:
    """A run or job whose pods at once need more GPUs than its queue can ever be admitted with stays Queued forever:
    Kueue admits a Job whole (all `parallelism` pods), on one flavor."""
    issues = []
    entries: list[tuple[str, str, int, int, tuple[CapacityType, ...]]] = []
    for index, run in runs:
        flavors: tuple[CapacityType, ...] = ("onDemand",) if run.mode == "interactive" else ("spot", "onDemand")
        entries.append((f"runs[{index}]", run.queue or queues.default_name, run.gpus, run.parallel_pods, flavors))
    for index, job in jobs:
        flavors = ("onDemand",) if job.capacity == "onDemand" else ("spot", "onDemand")
        entries.append((f"jobs[{index}]", job.queue or queues.default_name, job.gpus, job.parallel_pods, flavors))
    for path, queue, gpus, pods, flavors in entries:
        wanted = gpus * pods
        best = max(queues.admissible_gpus(queue, flavor) for flavor in flavors)
        if wanted > best:
            where = "parallelism" if pods > 1 else "gpus"
            message = (
                f"{pods} pod(s) x {gpus} GPU(s) = {wanted} GPUs at once, but queue {queue!r} can be admitted with at "
                f"most {best} ({' or '.join(flavors)}: its nominal quota plus what it may borrow, within the cohort); "
                "Kueue admits a Job whole, so it would stay Queued. Lower parallelism, or raise the queue's quota "
                "or borrowingLimit (simfleet:queues)"
            )
            # The caller tells a queue with no GPUs for it (a warning) by this prefix, which it strips.
            issues.append(Issue(f"{path}.{where}", f"0 {message}" if best == 0 else message))
    return issues


# What to put in place of a stand-in name, per kind of value.
_NAME_HINTS = {
    "principal": "the ARN of your own role or user (`aws sts get-caller-identity` prints your account and identity)",
    "securityGroup": "the id of your own security group, or remove the entry",
    "registry": "the prefix of the registry you pull from",
    "repository": "the name of the ECR repository to create",
    "bucket": "the s3:// URI of your own bucket: anyone can register a bucket under a sample name and serve what "
    "simfleet would read",
}


def _name_lists(
    platform: PlatformConfig | None,
    runs: Sequence[tuple[int, RunSpec]],
    services: Sequence[tuple[int, ServiceSpec]],
) -> list[tuple[str, str, list[str]]]:
    """(path, kind, values) of every name the stack file gives that a deploy would create or trust."""
    lists: list[tuple[str, str, list[str]]] = []
    if platform is not None:
        for key in ("clusterAdmins", "deployRoles", "runOperators"):
            lists.append((f"platform.{key}", "principal", list(getattr(platform, to_snake(key)))))
        security_groups = list(platform.endpoint.deployer_access.security_group_ids)
        lists.append(("platform.endpoint.deployerAccess.securityGroupIds", "securityGroup", security_groups))
        lists.append(("platform.imageAllowList", "registry", list(platform.image_allow_list)))
        lists.append(("platform.repositories", "repository", list(platform.repositories)))
    for index, run in runs:
        source = run.checkpoint.from_
        if source and source.startswith("s3://"):
            lists.append((f"runs[{index}].checkpoint.from", "bucket", [source]))
    for index, service in services:
        if service.model_repository is not None:
            lists.append((f"services[{index}].modelRepository", "bucket", [service.model_repository]))
    return lists


def placeholder_issues(
    platform: PlatformConfig | None,
    runs: Sequence[tuple[int, RunSpec]],
    services: Sequence[tuple[int, ServiceSpec]] = (),
) -> list[Issue]:
    """Sample values nobody replaced: documentation-range CIDRs (RFC 5737) in every CIDR list a user fills in, and
    stand-in names (example accounts, buckets, registries, security groups) in every name a deploy creates or trusts."""
    lists: list[tuple[str, str, list[Any]]] = []
    if platform is not None:
        endpoint = platform.endpoint
        lists.append(("platform.endpoint.publicAccessCidrs", "publicAccessCidrs", list(endpoint.public_access_cidrs)))
        lists.append(("platform.endpoint.deployerAccess.cidrs", "deployerAccess", list(endpoint.deployer_access.cidrs)))
    for index, run in runs:
        if run.viewport is not None:
            lists.append((f"runs[{index}].viewport.allowedCidrs", "allowedCidrs", list(run.viewport.allowed_cidrs)))
    for index, service in services:
        lb = service.expose.internal_load_balancer
        if lb is not None:
            path = f"services[{index}].expose.internalLoadBalancer.allowedCidrs"
            lists.append((path, "internalLoadBalancer", list(lb.allowed_cidrs)))
    issues = []
    for path, kind, cidrs in lists:
        for position, cidr in enumerate(cidrs):
            reserved = documentation_range(cidr)
            if reserved is not None:
                where = "is" if cidr == reserved else f"lies in {reserved},"
                issues.append(
                    Issue(
                        f"{path}[{position}]",
                        f"{cidr} is a placeholder: it {where} a documentation range (RFC 5737) that no real network "
                        f"uses. Put {_PLACEHOLDER_HINTS[kind]}",
                    )
                )
    for path, kind, names in _name_lists(platform, runs, services):
        for position, name in enumerate(names):
            reason = placeholder_name(name)
            if reason is not None:
                where = path if kind == "bucket" else f"{path}[{position}]"
                issues.append(Issue(where, f"{name} is a placeholder: it {reason}. Put {_NAME_HINTS[kind]}"))
    return issues


def load_from_pulumi() -> StackConfig:
    """Read `simfleet:*` from the running stack; a bad file stops the program with a clean message."""
    import os

    import pulumi

    stack = pulumi.get_stack()
    # The offline plan can validate any stack file; it names that file here so errors point at it.
    source = os.environ.get("SIMFLEET_STACK_FILE", f"Pulumi.{stack}.yaml")
    offline = os.environ.get(OFFLINE_PLAN_ENV) == "1"
    phase = os.environ.get(BOOTSTRAP_ENV, "")
    settings = pulumi.Config("simfleet")
    try:
        if phase and phase not in BOOTSTRAP_PHASES:
            raise ConfigError(source, [Issue("", f"{BOOTSTRAP_ENV}={phase!r} is not a phase; the only one is 'network'")])
        cfg = load_stack_config(
            settings.get_object("platform"),
            settings.get_object("runs"),
            services=settings.get_object("services"),
            jobs=settings.get_object("jobs"),
            queues=settings.get_object("queues"),
            stack=stack,
            source=source,
            offline=offline,
        )
    except ConfigError as err:
        # RunError ends `pulumi up`/`preview` with the message alone: no traceback, non-zero exit.
        raise pulumi.RunError(str(err)) from None
    for warning in cfg.warnings:
        pulumi.log.warn(warning)
    return replace(cfg, bootstrap_network=phase == "network")
