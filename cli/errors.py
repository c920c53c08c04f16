"""Exit codes, and the one line each failure prints instead of a traceback.

0  done
1  done in part: something the command was asked to do failed (a download, a pod it could not stop); the rest was done
   and what failed is listed
2  a usage problem: an unknown option, run or seed, no stack chosen, an invalid stack file
3  no access: no AWS credentials, access denied, a bucket or log group that does not exist, a cluster that refuses
130 interrupted (Ctrl-C), for example while following logs
"""

from __future__ import annotations

import click

from config import ConfigError
from workloads.kube import SimRunError
from workloads.observe.cluster import ClusterError
from workloads.observe.records import RecordError

OK, PARTIAL, USAGE, ACCESS, INTERRUPTED = 0, 1, 2, 3, 130
ROLE_HINT = "assume the stack's researcher role (docs/researchers/access.md)"


class Partial(click.ClickException):
    """The command did what it could; this says what it could not (exit 1)."""

    exit_code = PARTIAL


class NoAccess(click.ClickException):
    exit_code = ACCESS


def message_for(err: BaseException) -> tuple[int, str]:
    """(exit code, one line) for an error the command did not handle itself."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

    if isinstance(err, ConfigError):
        return USAGE, str(err)
    if isinstance(err, RecordError):
        if err.no_bucket:
            return ACCESS, (
                f"bucket {err.bucket} does not exist: is this stack deployed in the account your AWS credentials are "
                "for (aws sts get-caller-identity)?"
            )
        if err.denied:
            return ACCESS, f"access denied {err.action} s3://{err.bucket}/{err.key} ({err.code}): {ROLE_HINT}"
        return ACCESS, f"{err.action} s3://{err.bucket}/{err.key} failed: {err.detail}"
    if isinstance(err, ClusterError):
        return ACCESS, str(err)
    if isinstance(err, NoCredentialsError | NoRegionError):
        return ACCESS, f"no AWS credentials ({err}): sign in (aws sso login, aws configure) and {ROLE_HINT}"
    if isinstance(err, ClientError):
        code = (err.response.get("Error") or {}).get("Code", "")
        if code in ("ResourceNotFoundException",):
            return ACCESS, f"not found: {err}"
        return ACCESS, f"AWS refused: {err}" + (f"; {ROLE_HINT}" if "Denied" in code or "Unauthorized" in code else "")
    if isinstance(err, BotoCoreError):
        return ACCESS, f"AWS could not be reached: {err}"
    if isinstance(err, SimRunError | OSError):
        return ACCESS, str(err)
    raise err
