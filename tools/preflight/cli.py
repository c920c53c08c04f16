"""The command line: read and validate the stack file, run the checks, print the table, write the JSON, pick the exit code."""

from __future__ import annotations

import argparse
import datetime
import sys
from collections.abc import Callable
from pathlib import Path

import tools.preflight
from config import ConfigError, StackConfig, load_stack_file
from tools.plan import PlanConfigError, read_stack_file, stack_name_for
from tools.preflight.aws import CREDENTIAL_ERRORS, AwsApi, CredentialsProblem
from tools.preflight.report import format_table, summary, write_report
from tools.preflight.run import run_checks

PROJECT_ROOT = Path(__file__).resolve().parents[2]
OUT_DIR = PROJECT_ROOT / "build" / "preflight"


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def load_stack(path: Path, stack: str, *, allow_placeholders: bool, today: datetime.date) -> tuple[StackConfig, str]:
    """The validated stack config and its aws:region; PlanConfigError or ConfigError when the file is not deployable."""
    raw = read_stack_file(path)
    source = _display(path)
    cfg = load_stack_file(path, stack, today=today, offline=allow_placeholders)
    region = raw.get("aws:region")
    if not region:
        # __main__.py requires it (pulumi.Config("aws").require("region")), so `pulumi up` would stop too.
        raise PlanConfigError(f"{source}: aws:region is not set; `pulumi config set aws:region <region> --stack {stack}`")
    return cfg, str(region)


def main(
    argv: list[str] | None = None,
    *,
    aws: Callable[[str], AwsApi] = AwsApi.from_environment,
    today: datetime.date | None = None,
    out_dir: Path = OUT_DIR,
) -> int:
    parser = argparse.ArgumentParser(prog="make preflight", description=(tools.preflight.__doc__ or "").split("\n\n")[0])
    parser.add_argument("--stack", default="dev", help="stack name; reads Pulumi.<stack>.yaml")
    parser.add_argument("--config", type=Path, help="check this stack file instead")
    parser.add_argument(
        "--allow-placeholders",
        action="store_true",
        help="accept documentation-range placeholder CIDRs with a warning, as the offline plan does "
        "(pulumi up still refuses them)",
    )
    parser.add_argument("--out", type=Path, default=out_dir, help="where <stack>.json goes (default build/preflight)")
    args = parser.parse_args(argv)
    config_path: Path = args.config or PROJECT_ROOT / f"Pulumi.{args.stack}.yaml"
    stack = stack_name_for(config_path) if args.config else args.stack
    today = today or datetime.date.today()
    try:
        cfg, region = load_stack(config_path, stack, allow_placeholders=args.allow_placeholders, today=today)
    except (PlanConfigError, ConfigError) as err:
        print(str(err), file=sys.stderr)
        return 2
    source = _display(config_path)
    try:
        api = aws(region)
        print(f"preflight of stack {stack} ({source}) against AWS in {region}, read-only ...", flush=True)
        report = run_checks(cfg, region, source, api, today)
    except CredentialsProblem as err:
        print(f"preflight: {err}", file=sys.stderr)
        return 2
    except CREDENTIAL_ERRORS as err:
        message = " ".join(str(err).split())
        print(
            f"preflight: no usable AWS credentials ({message}); sign in (aws sso login, aws configure, or the deploy "
            "role) and run it again",
            file=sys.stderr,
        )
        return 2
    print(format_table(report.checks))
    for warning in report.warnings:
        print(f"warning (stack file): {warning}")
    checked_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    path = write_report(report, args.out, checked_at)
    print(summary(report))
    print(f"wrote {_display(path)}")
    return report.exit_code
