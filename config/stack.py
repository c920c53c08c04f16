"""The whole stack file: validate `simfleet:*` once, collect every error, raise them together.

Every rule that can be checked without AWS lives in this package, so a bad stack file fails before a single
resource is registered. Errors are collected across the whole file and raised together as one
`ConfigError` that names the file, the path (`runs[2].images.sim`) and the reason.
"""

from __future__ import annotations

import datetime
import difflib
import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

import naming
from config.capacity import gpu_capacity, per_gpu_allocatable
from config.deletions import DeletionsConfig
from config.errors import ConfigError, Issue, entry_rules, issues_from
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
from config.sources import FILE_SECTIONS, RUN_FILES_KEY, gather, read_stack_file, shown
from config.stack_rules import admission_issues, name_clashes, placeholder_issues, queue_name_issues, workload_names

PROJECT_ROOT = Path(__file__).resolve().parent.parent
M = TypeVar("M", bound=BaseModel)

# Set only by tools/plan.py: the offline plan reports documentation-range placeholders as warnings, so the sample
# stack still plans; `pulumi preview`/`up` (which never set it) refuse them.
OFFLINE_PLAN_ENV = "SIMFLEET_OFFLINE_PLAN"
# Set only by tools/plan.py: the stack file it plans (any path), so errors name it and run files are found beside it.
STACK_FILE_ENV = "SIMFLEET_STACK_FILE"
# The stack file's `simfleet:` keys; any other is a typo the program would otherwise ignore (`simfleet:run:` would
# plan no runs, and delete every deployed one).
SECTIONS = ("platform", "queues", *FILE_SECTIONS, RUN_FILES_KEY, "deletions")
# Set to "network" for phase 1 of a first deploy (docs/operators.md, "First deploy (bootstrap)"): the program registers only
# the network and the deployer security group, so a runner can start inside the VPC before the private endpoint exists.
BOOTSTRAP_ENV = "SIMFLEET_BOOTSTRAP"
BOOTSTRAP_PHASES = ("network",)
# How an invalid entry without a usable name (`nme: walk-baseline`) is counted among the invalid names of its section:
# the entry another one names may be that one, so "no run named ..." would be a false follow-on error.
UNNAMED = "<no name>"


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
    deletions: DeletionsConfig = field(default_factory=DeletionsConfig)

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
    run_files: Any = None,
    deletions: Any = None,
    config_keys: Sequence[str] = (),
    stack: str,
    source: str,
    stack_file: Path | None = None,
    base_dir: Path = PROJECT_ROOT,
    today: datetime.date | None = None,
    lint_glue: Callable[[Path], list[str]] | None = None,
    offline: bool = False,
) -> StackConfig:
    """Validate the raw `simfleet:platform`, `:runs`, `:jobs`, `:services`, `:queues` and the run files `:runFiles`
    names; raise ConfigError listing every problem, each with its file, line and entry name.

    `stack_file` is the stack file on disk: run files are read relative to its directory, and problems get its lines.
    `config_keys` are every key of the stack's config (`simfleet:runs`, `aws:region`, ...): an unknown `simfleet:`
    one is an error. `offline` (the offline plan) turns placeholder CIDRs from errors into warnings.
    """
    today = today or datetime.date.today()
    sources = gather(stack_file, source, {"runs": runs, "jobs": jobs, "services": services, "queues": queues}, run_files)
    runs, jobs, services = (sources.sections[section] for section in FILE_SECTIONS)
    issues: list[Issue] = [*unknown_keys(config_keys), *sources.issues]
    deletions_cfg = DeletionsConfig()
    if deletions is not None:
        try:
            deletions_cfg = DeletionsConfig.model_validate(deletions)
        except ValidationError as err:
            issues += issues_from(err, "deletions", DeletionsConfig)
    warnings: list[str] = []
    # Warnings about an entry or a key, shown with its file and line like an error.
    notes: list[Issue] = []
    # Names of entries with errors of their own: rules about other entries that name them stay quiet.
    invalid: dict[str, set[str]] = {}

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

    run_specs = _entries(runs, "runs", RunSpec, issues, invalid)
    job_specs = _entries(jobs, "jobs", JobSpec, issues, invalid)
    service_specs = _entries(services, "services", ServiceSpec, issues, invalid)

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
            invalid.setdefault("queues", set()).add(_invalid_name(raw))
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
        if platform_cfg.metrics.enabled and not platform_cfg.observability.enabled:
            notes.append(
                Issue(
                    "platform.metrics.enabled",
                    "with platform.observability off nothing scrapes the Pushgateway (its NetworkPolicy admits only the "
                    "collector), so jobs are not given its URL; turn observability on, or metrics off",
                )
            )
        if queues_cfg.teams and queues_cfg.nominal_gpus() == 0:
            warnings.append(
                "queues: every nominal GPU quota is 0 (the services take every GPU, or the quotas say so), so Kueue admits "
                "no run or job that asks for a GPU"
            )
    issues += entry_rules("runs", run_specs, invalid.setdefault("runs", set()))
    # An invalid run without a name may be the one a continuation names: then no name is known to be missing.
    every_run_known = sources.complete and UNNAMED not in invalid.get("runs", set())
    issues += run_cross_rules(run_specs, base_dir, lint_glue, invalid.get("runs", set()), every_run_known)
    issues += entry_rules("services", service_specs)
    issues += entry_rules("jobs", job_specs)
    issues += name_clashes(workload_names(run_specs, service_specs, job_specs))
    if UNNAMED not in invalid.get("queues", set()):  # else the queue a run names may be the one without a name
        issues += queue_name_issues(queues_cfg.names(), [("runs", run_specs), ("jobs", job_specs)], invalid.get("queues", set()))
    # Admission needs every queue a workload names to be valid: a queue with errors of its own is left out of it. A
    # workload with errors of its own (too many GPUs, say) is left out too: its own errors are what to fix.
    if platform_cfg is not None and not any(i.path.endswith(".queue") for i in issues) and not invalid.get("queues"):
        flawed = {i.path.split("]")[0] + "]" for i in issues if i.path.startswith(("runs[", "jobs["))}
        for issue in admission_issues(queues_cfg, run_specs, job_specs):
            if issue.path.split("]")[0] + "]" in flawed:
                continue
            # A queue with no GPUs at all for it is the stack's choice (the services take them, say): say so. One
            # with some, but fewer than the workload needs at once, is a mistake: it would wait forever.
            if issue.message.startswith("0 "):
                notes.append(Issue(issue.path, issue.message[2:]))
            else:
                issues.append(issue)
    notes += service_warnings(deployed_services)
    notes += [
        Issue(f"services[{i}].enabled", "is false, so the service is not deployed")
        for i, spec in service_specs
        if not spec.enabled
    ]
    placeholders = placeholder_issues(platform_cfg, run_specs, deployed_services)
    if offline:
        notes += [
            Issue(i.path, f"{i.message} (the offline plan only warns; pulumi preview and up refuse it)") for i in placeholders
        ]
    else:
        issues += placeholders

    if issues:
        raise ConfigError(source, sources.located(issues))
    warnings += [str(note) for note in sources.located(notes)]
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
        deletions=deletions_cfg,
    )


def unknown_keys(keys: Sequence[str]) -> list[Issue]:
    """An Issue for each `simfleet:` key that is not a section, with the closest section as a suggestion."""
    issues = []
    for key in sorted(keys):
        section = key.removeprefix("simfleet:")
        if key == section or section in SECTIONS:
            continue
        close = difflib.get_close_matches(section, SECTIONS, n=1) or difflib.get_close_matches(section.lower(), SECTIONS, n=1)
        hint = f"did you mean simfleet:{close[0]}? " if close else ""
        known = ", ".join(f"simfleet:{name}" for name in SECTIONS)
        issues.append(Issue(key, f"unknown key; {hint}simfleet reads only {known}, so nothing under this key would exist"))
    return issues


def _entries(raw: Any, section: str, model: type[M], issues: list[Issue], invalid: dict[str, set[str]]) -> list[tuple[int, M]]:
    """Each entry of a list section that parses, with its index; the others' errors go to `issues` with their paths,
    and their names to `invalid[section]`."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        issues.append(Issue(section, f"simfleet:{section} must be a list of {section}, each entry starting with `- name:`"))
        return []
    parsed = []
    for index, entry in enumerate(raw):
        try:
            parsed.append((index, model.model_validate(entry)))
        except ValidationError as err:
            issues += issues_from(err, f"{section}[{index}]", model)
            invalid.setdefault(section, set()).add(_invalid_name(entry))
    return parsed


def _invalid_name(entry: Any) -> str:
    """The name an invalid entry goes by in `invalid`; UNNAMED when it has none (a misspelt `name:` key)."""
    name = entry.get("name") if isinstance(entry, dict) else None
    return name if isinstance(name, str) else UNNAMED


def load_from_pulumi(project_dir: Path = PROJECT_ROOT) -> StackConfig:
    """Read `simfleet:*` from the running stack, and the run files it names; a bad file stops the program with a clean
    message.

    Under `pulumi up` the stack file is `Pulumi.<stack>.yaml` in the project directory (where Pulumi.yaml is), and
    run files are found relative to it; the offline plan names the file it plans in SIMFLEET_STACK_FILE.
    """
    import os

    import pulumi
    from pulumi.runtime.config import CONFIG, get_config_env

    stack = pulumi.get_stack()
    named = os.environ.get(STACK_FILE_ENV)
    stack_file = Path(named) if named else project_dir / f"Pulumi.{stack}.yaml"
    source = named or shown(stack_file)
    offline = os.environ.get(OFFLINE_PLAN_ENV) == "1"
    phase = os.environ.get(BOOTSTRAP_ENV, "")
    settings = pulumi.Config("simfleet")
    # Every key the engine passed (the stack file's config), to find misspelt simfleet: sections.
    config_keys = sorted({*CONFIG.get(), *get_config_env()})
    try:
        if phase and phase not in BOOTSTRAP_PHASES:
            raise ConfigError(source, [Issue("", f"{BOOTSTRAP_ENV}={phase!r} is not a phase; the only one is 'network'")])
        section = functools.partial(_as_written, settings)
        cfg = load_stack_config(
            section("platform"),
            section("runs"),
            services=section("services"),
            jobs=section("jobs"),
            queues=section("queues"),
            run_files=section(RUN_FILES_KEY),
            deletions=section("deletions"),
            config_keys=config_keys,
            stack=stack,
            source=source,
            stack_file=stack_file,
            offline=offline,
        )
    except ConfigError as err:
        # RunError ends `pulumi up`/`preview` with the message alone: no traceback, non-zero exit.
        raise pulumi.RunError(str(err)) from None
    for warning in cfg.warnings:
        pulumi.log.warn(warning)
    return replace(cfg, bootstrap_network=phase == "network")


def _as_written(settings: Any, key: str) -> Any:
    """A `simfleet:` section as the stack file has it. The engine passes a list or mapping as JSON and a plain value
    as its text: `runFiles: runs/*.yaml` arrives as `runs/*.yaml`, which `Config.get_object` would refuse with the
    SDK's "not a valid 'JSON object'" (no file, no line, no hint); as text, the config says what to write instead."""
    value = settings.get(key)
    if value is None:
        return None
    try:
        return json.loads(value)
    except ValueError:
        return value


def load_stack_file(
    path: Path,
    stack: str,
    *,
    today: datetime.date | None = None,
    offline: bool = False,
    lint_glue: Callable[[Path], list[str]] | None = None,
    raw: dict[str, Any] | None = None,
) -> StackConfig:
    """A stack file on disk validated whole (its run files too), as `pulumi up` would: for tools that read the file
    themselves (preflight) and for tests. `raw`: its `config:` mapping when the caller has read it already (a large
    stack file takes a second to parse)."""
    source = shown(path)
    raw = read_stack_file(path, source) if raw is None else raw
    return load_stack_config(
        raw.get("simfleet:platform"),
        raw.get("simfleet:runs"),
        services=raw.get("simfleet:services"),
        jobs=raw.get("simfleet:jobs"),
        queues=raw.get("simfleet:queues"),
        run_files=raw.get(f"simfleet:{RUN_FILES_KEY}"),
        deletions=raw.get("simfleet:deletions"),
        config_keys=list(raw),
        stack=stack,
        source=source,
        stack_file=path,
        today=today,
        lint_glue=lint_glue,
        offline=offline,
    )


def stack_file_name(stack: str) -> str:
    """The stack file messages name: Pulumi.<stack>.yaml, or the file the offline plan was given (it sets the name)."""
    import os

    return os.environ.get(STACK_FILE_ENV, f"Pulumi.{stack}.yaml")
