"""tools/preflight's command line: exit code 2 with one message, and no AWS call, when there are no credentials or the
stack file is not deployable. The subprocess tests point every endpoint at a closed port on 127.0.0.1.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from preflight_account import (
    ROOT,
    TODAY,
    dev_stack,
    refuse_aws,
    write_stack,
)

from tools.preflight import cli


def isolated_env(tmp_path: Path) -> dict[str, str]:
    """No credentials anywhere botocore looks, and every endpoint on a closed local port, should anything try."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def run_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tools.preflight", "--out", str(tmp_path / "out"), *args],
        cwd=ROOT,
        env=isolated_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_no_credentials_exit_2_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    done = run_cli(tmp_path, "--stack", "prod", "--allow-placeholders")  # the sample's deploy role is one
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("preflight: no usable AWS credentials (Unable to locate credentials)")
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()


def test_a_malformed_stack_file_exits_2_with_the_config_error(tmp_path: Path) -> None:
    config = dev_stack()
    config["simfleet:platform"]["network"]["cidr"] = "8.8.0.0/16"
    config["simfleet:platform"]["nodeGroups"]["gpu"]["maxSise"] = 4
    path = write_stack(tmp_path, config, "Pulumi.broken.yaml")
    done = run_cli(tmp_path, "--config", str(path))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert done.stderr.startswith(f"{path}: 2 errors in the stack config\n")
    # Each error with the file and its line, as editors and CI annotations read them.
    assert re.search(r"Pulumi\.broken\.yaml:\d+: platform\.network\.cidr: 8\.8\.0\.0/16 is not a private", done.stderr)
    assert re.search(
        r"Pulumi\.broken\.yaml:\d+: platform\.nodeGroups\.gpu\.maxSise: unknown key; did you mean 'maxSize'\?", done.stderr
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("config: [not, a, mapping]\n", "has no 'config:' mapping"),
        ("config: {simfleet:platform: {kubernetesVersion: '1.35'\n", "not valid YAML"),
    ],
)
def test_unreadable_stack_files_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str) -> None:
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text(content)
    assert cli.main(["--config", str(path)], aws=refuse_aws, today=TODAY, out_dir=tmp_path) == 2
    assert message in capsys.readouterr().err


def test_a_stack_without_a_region_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = dev_stack()
    del config["aws:region"]
    path = write_stack(tmp_path, config)
    assert cli.main(["--config", str(path)], aws=refuse_aws, today=TODAY, out_dir=tmp_path) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "aws:region is not set" in err
