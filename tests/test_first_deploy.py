"""The first deploy on paper: docs/operators.md's "First deploy" and the workflows agree, step by step.

A reviewer walks the page from an empty account and an empty Pulumi organization with only the documented runner. These
checks make the page and `.github/workflows/` name the same settings, create the stack the same way, run the steps in
the same order, and set up the runner the deploy jobs need.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from config.sources import load_yaml

ROOT = Path(__file__).resolve().parent.parent
OPERATORS = ROOT / "docs" / "operators.md"
WORKFLOWS = ROOT / ".github" / "workflows"
RUNNER_SCRIPT = ROOT / ".ci" / "runner-user-data.sh"


def first_deploy() -> str:
    text = OPERATORS.read_text()
    start = text.index("## First deploy (bootstrap)")
    return text[start : text.index("\n## ", start + 1)]


def workflow(name: str) -> dict[str, Any]:
    document: dict[str, Any] = load_yaml((WORKFLOWS / name).read_text())
    return document


def settings_read(name: str) -> set[str]:
    """Every variable and secret a workflow reads: `vars.X` and `secrets.X`."""
    return set(re.findall(r"\b(?:vars|secrets)\.([A-Z_]+)", (WORKFLOWS / name).read_text()))


def steps_text(job: dict[str, Any]) -> str:
    return "\n".join(str(step) for step in job.get("steps") or [])


def test_every_setting_the_workflows_read_is_set_up_by_the_page() -> None:
    page = first_deploy()
    read = settings_read("deploy.yml") | settings_read("pull-request.yml")
    assert read == {"AWS_ROLE_ARN", "PULUMI_BACKEND_URL", "PULUMI_ACCESS_TOKEN", "DEV_RUNNER_GROUP", "PROD_RUNNER_GROUP"}
    missing = sorted(name for name in read if f"`{name}" not in page)
    assert not missing, f"the first deploy never sets up {missing}"
    # The environments the jobs name are the ones the page creates.
    named = {str(job.get("environment")) for job in workflow("deploy.yml")["jobs"].values() if job.get("environment")}
    named |= {str(workflow("pull-request.yml")["jobs"]["preview"]["environment"])}
    assert named == {"${{ inputs.bootstrap }}", "dev", "prod", "preview-${{ matrix.stack }}"}
    for environment in ("`dev`", "`prod`", "`preview-dev`", "`preview-prod`"):
        assert environment in page, environment
    # The role each environment holds is trusted for that environment only.
    assert "repo:<owner>/<repo>:environment:<stack>" in page and "repo:<owner>/<repo>:environment:preview-<stack>" in page


def test_the_stack_is_created_one_way_by_the_command_the_page_gives() -> None:
    page = first_deploy()
    # What the jobs do (not their comments, which point at the page): no step creates a stack.
    jobs = str(workflow("deploy.yml")["jobs"]) + str(workflow("pull-request.yml")["jobs"])
    assert "upsert" not in jobs and "stack init" not in jobs and "stack-init" not in jobs
    assert "pulumi stack init prod --secrets-provider 'awskms://alias/simfleet-pulumi-secrets?region=us-east-1'" in page
    assert "pulumi stack init <org>/prod" in page
    # It comes before the first `pulumi up`, which the bootstrap job runs.
    assert page.index("pulumi stack init") < page.index("bootstrap: prod")


def test_the_state_backend_is_documented_end_to_end_for_both_choices() -> None:
    page = first_deploy()
    for must in ("put-bucket-versioning", "Status=Enabled", "put-bucket-encryption", "aws:kms", "put-public-access-block"):
        assert must in page, must
    assert "aws kms create-alias --alias-name alias/simfleet-pulumi-secrets" in page
    # The workflows log in where PULUMI_BACKEND_URL says (the bucket), or to Pulumi Cloud with the token when it is unset.
    assert "`PULUMI_BACKEND_URL` is then `s3://<state-bucket>?region=us-east-1`" in page
    assert "**Pulumi Cloud**" in page and "`PULUMI_BACKEND_URL`\n  stays unset" in page


def test_the_steps_run_in_the_workflows_order() -> None:
    page = first_deploy()
    order = [
        page.index("**0. Once per organization"),
        page.index("**1. Replace the placeholders"),
        page.index("**2. The network only.**"),
        page.index("**3. A deploy runner inside the VPC**"),
        page.index("**4. Everything else, on the runner.**"),
    ]
    assert order == sorted(order)
    jobs = workflow("deploy.yml")["jobs"]
    # Step 2 is the bootstrap job (network only, GitHub-hosted); step 4 the deploy jobs on the runner groups of step 3.
    assert "SIMFLEET_BOOTSTRAP" in steps_text(jobs["bootstrap"]) and jobs["bootstrap"]["runs-on"] == "ubuntu-24.04"
    assert "`bootstrap: prod`" in page[order[2] : order[3]]
    for job, variable in (("up-dev", "DEV_RUNNER_GROUP"), ("up-prod", "PROD_RUNNER_GROUP")):
        assert jobs[job]["runs-on"] == {"group": f"${{{{ vars.{variable} }}}}"}
        assert f"`{variable}`" in page[order[4] :]
    # What each deploy job does, in the page's words and in the job's order.
    up = steps_text(jobs["up-prod"])
    assert up.index("make venv") < up.index("configure-aws-credentials") < up.index("make preflight") < up.index("pulumi/actions")
    assert "runs `make venv`, assumes the deploy role, runs `make preflight`, then `pulumi up --policy-pack policies`" in page


def test_the_runner_group_admits_only_the_deploy_workflow_on_main() -> None:
    page = first_deploy()
    assert "<owner>/<repo>/.github/workflows/deploy.yml@refs/heads/main" in page
    assert "restricted_to_workflows=true" in page
    assert (WORKFLOWS / "deploy.yml").exists()
    # Triggered on main only: the restriction names the one ref its jobs run from.
    raw: dict[Any, Any] = workflow("deploy.yml")
    on = raw.get("on", raw.get(True))  # YAML 1.1 reads the bare key `on` as the boolean True
    assert isinstance(on, dict) and on["push"]["branches"] == ["main"]


def test_the_documented_runner_has_what_the_deploy_jobs_use() -> None:
    page = first_deploy()
    script = RUNNER_SCRIPT.read_text()
    assert "cat .ci/runner-user-data.sh" in page  # the user data the launch template gets
    [install] = [line for line in script.splitlines() if line.startswith("dnf install")]
    # make venv (python3.11, which the Makefile picks by name), checkout (git), the runner's .NET runtime (libicu).
    for package in ("git", "make", "python3.11", "libicu"):
        assert package in install.split(), package
    makefile = (ROOT / "Makefile").read_text()
    assert "python3.11" in makefile.split("PYTHON_CANDIDATES :=")[1].splitlines()[0]
    # Just in time, one job, a fresh instance after it.
    assert "generate-jitconfig" in script and "--jitconfig" in script and "shutdown -h now" in script
    assert 'InstanceInitiatedShutdownBehavior: "terminate"' in page and "--min-size 1 --max-size 1" in page
    # The instance's own role reads the token and uses SSM; the deploy credentials come from the workflow's OIDC role.
    assert "ssm:GetParameter" in page and "AmazonSSMManagedInstanceCore" in page


def test_the_deploy_roles_reach_the_cluster_through_the_stack_file() -> None:
    page = first_deploy()
    assert "`platform.deployRoles`" in page
    for stack in ("dev", "prod"):
        platform = load_yaml((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]["simfleet:platform"]
        assert platform["deployRoles"] == [f"arn:aws:iam::111122223333:role/simfleet-{stack}-deploy"], stack
