"""The whole stack file: validate `simfleet:*` once, collect every error, raise them together.

Every rule that can be checked without AWS lives in this package, so a bad stack file fails before a single
resource is registered. Errors are collected across the whole file and raised together as one
`ConfigError` that names the file, the path (`runs[2].images.sim`) and the reason.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from config.errors import ConfigError, Issue, file_order, issues_from
from config.platform import PlatformConfig, is_prod_stack, prod_rules
from config.runs import RunSpec, run_cross_rules, run_platform_rules

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class StackConfig:
    stack: str
    platform: PlatformConfig
    runs: tuple[RunSpec, ...]
    warnings: tuple[str, ...] = ()

    @property
    def is_prod(self) -> bool:
        return is_prod_stack(self.stack)

    @property
    def external_checkpoint_uris(self) -> list[str]:
        """`s3://` checkpoints runs start from; the run role may read exactly these objects."""
        return [run.checkpoint.from_ for run in self.runs if run.checkpoint.from_ and run.checkpoint.from_.startswith("s3://")]


def load_stack_config(
    platform: Any,
    runs: Any,
    *,
    stack: str,
    source: str,
    base_dir: Path = PROJECT_ROOT,
    today: datetime.date | None = None,
    lint_glue: Callable[[Path], list[str]] | None = None,
) -> StackConfig:
    """Validate the raw `simfleet:platform` and `simfleet:runs` values; raise ConfigError listing every problem."""
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

    from components.storage import bucket_name_problems

    issues += [
        Issue("stack", f"{problem} (stack names become part of the bucket names)")
        for problem in dict.fromkeys(bucket_name_problems(stack, "checkpoints"))
    ]

    run_specs: list[tuple[int, RunSpec]] = []
    if runs is None:
        runs = []
    if not isinstance(runs, list):
        issues.append(Issue("runs", "simfleet:runs must be a list of runs"))
        runs = []
    for index, raw in enumerate(runs):
        try:
            run_specs.append((index, RunSpec.model_validate(raw)))
        except ValidationError as err:
            issues += issues_from(err, f"runs[{index}]", RunSpec)

    if platform_cfg is not None:
        issues += prod_rules(platform_cfg, stack)
        issues += run_platform_rules(platform_cfg, run_specs)
    issues += run_cross_rules(run_specs, base_dir, lint_glue)

    if issues:
        raise ConfigError(source, sorted(issues, key=file_order))
    assert platform_cfg is not None
    return StackConfig(stack, platform_cfg, tuple(spec for _, spec in run_specs), tuple(warnings))


def load_from_pulumi() -> StackConfig:
    """Read `simfleet:*` from the running stack; a bad file stops the program with a clean message."""
    import os

    import pulumi

    stack = pulumi.get_stack()
    # The offline plan can validate any stack file; it names that file here so errors point at it.
    source = os.environ.get("SIMFLEET_STACK_FILE", f"Pulumi.{stack}.yaml")
    settings = pulumi.Config("simfleet")
    try:
        cfg = load_stack_config(settings.get_object("platform"), settings.get_object("runs"), stack=stack, source=source)
    except ConfigError as err:
        # RunError ends `pulumi up`/`preview` with the message alone: no traceback, non-zero exit.
        raise pulumi.RunError(str(err)) from None
    for warning in cfg.warnings:
        pulumi.log.warn(warning)
    return cfg
