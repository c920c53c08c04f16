"""The `simfleet` entry point: global options, the commands, and one line (never a traceback) for what fails."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from cli import errors
from cli.session import Lazy, UsageProblem


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--stack", help="The stack to read (default: SIMFLEET_STACK, else the stack `pulumi stack select` chose).")
@click.option(
    "--project-dir",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="Where Pulumi.yaml and the stack files are (default: the nearest directory up from here that has Pulumi.yaml).",
)
@click.option(
    "--kubeconfig",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Reach the cluster through this kubeconfig instead of EKS's endpoint (a tunnel, a bastion); also SIMFLEET_KUBECONFIG.",
)
@click.option("--no-cache", is_flag=True, help="Plan the stack afresh and read every record from S3, not from the local caches.")
@click.pass_context
def cli(ctx: click.Context, stack: str | None, project_dir: Path | None, kubeconfig: Path | None, no_cache: bool) -> None:
    """Operate the runs and batch jobs a simfleet stack declares: see them, follow their logs, fetch their artifacts,
    report on them, open their viewport, cancel them. Reads S3, the cluster and CloudWatch with your AWS identity.

    Exit codes: 0 done, 1 done in part (what failed is listed), 2 usage (unknown run, no stack, invalid stack file),
    3 no access (credentials, denied, missing bucket), 130 interrupted."""
    ctx.obj = Lazy(stack=stack, project=project_dir, kubeconfig=kubeconfig, no_cache=no_cache)


def _register() -> None:
    from cli import artifacts, cancel, logs, report, runs, viewport

    for module in (runs, logs, artifacts, report, viewport, cancel):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def main(argv: list[str] | None = None) -> int:
    try:
        cli.main(args=argv, prog_name="simfleet", standalone_mode=False)
    except click.exceptions.Exit as done:
        return int(done.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("simfleet: interrupted", err=True)
        return errors.INTERRUPTED
    except (UsageProblem, errors.NoAccess, errors.Partial) as err:
        click.echo(f"simfleet: {err.format_message()}", err=True)  # the command's own word: one line
        return int(err.exit_code)
    except click.ClickException as err:
        err.show()  # click's own (an unknown option, a bad value): with the usage line
        return int(err.exit_code)
    except Exception as err:
        code, message = errors.message_for(err)
        click.echo(f"simfleet: {message}", err=True)
        return code
    return errors.OK


if __name__ == "__main__":
    sys.exit(main())
