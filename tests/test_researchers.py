"""The researcher role (components/researchers.py): what the stack creates, and that its policy is enough for every
`simfleet` command and no more, enforced by moto's IAM on a user that holds exactly that policy."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fake_kueue
import pulumi
import pytest
import synthetic
from cli_world import ARTIFACTS, CHECKPOINTS, LOG_GROUP, NS, REGION, World, run_entry, world
from moto import settings as moto_settings

import naming
from components.researchers import Researchers, ResearchersArgs, researcher_policy
from tools.mocks import ACCOUNT_ID

ACCOUNT = "123456789012"


def test_the_stack_creates_the_role_its_policy_and_an_access_entry_in_the_run_operators_group(pulumi_mocks: Any) -> None:
    def build() -> None:
        Researchers(
            "researchers",
            ResearchersArgs(
                "simfleet-dev",
                pulumi.Output.from_input("simfleet-dev"),
                "simfleet-dev-artifacts-1",
                "simfleet-dev-checkpoints-1",
                "us-east-1",
                {"simfleet:stack": "dev"},
                naming.container_log_group("simfleet-dev"),
            ),
        )

    rec = pulumi_mocks(build)
    role = rec.one("aws:iam/role:Role").inputs
    assert role["name"] == "simfleet-dev-researcher"
    trust = json.loads(role["assumeRolePolicy"])["Statement"][0]
    assert trust["Principal"]["AWS"].endswith(":root") and trust["Action"] == "sts:AssumeRole"
    entry = rec.one("aws:eks/accessEntry:AccessEntry").inputs
    assert entry["kubernetesGroups"] == [naming.RUN_OPERATORS_GROUP] and entry["type"] == "STANDARD"
    assert "accessPolicies" not in entry  # no AWS-managed access policy: the group's RBAC is all
    policy = json.loads(rec.one("aws:iam/policy:Policy").inputs["policy"])
    actions = {a for s in policy["Statement"] for a in s["Action"]}
    assert actions == {"s3:ListBucket", "s3:GetObject", "s3:PutObject", "eks:DescribeCluster", "logs:FilterLogEvents"}
    [put] = [s for s in policy["Statement"] if s["Action"] == ["s3:PutObject"]]
    assert all(r.endswith("/*/cancel.json") for r in put["Resource"])
    assert not any(
        r == "*" or r.endswith(":::*")
        for s in policy["Statement"]
        for r in ([s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"])
    )
    [logs] = [s for s in policy["Statement"] if s["Action"] == ["logs:FilterLogEvents"]]
    # arn:${Partition}:logs:${Region}:${Account}:log-group:${LogGroupName} (Service Authorization Reference, CloudWatch
    # Logs resource types), with and without the `:*` the console and older APIs append.
    group = f"arn:aws:logs:us-east-1:{ACCOUNT_ID}:log-group:/aws/containerinsights/simfleet-dev/application"
    assert logs["Resource"] == [group, f"{group}:*"]


@pytest.fixture
def w(tmp_path: Path) -> Iterator[World]:
    with world(tmp_path, [run_entry("walk")]) as found:
        fake_kueue.add_local_queue(found.kube, NS, "locomotion", "locomotion")
        yield found


def as_researcher(w: World) -> dict[str, str]:
    """A user holding exactly the researcher policy (plus the STS call every identity may make), as credentials."""
    iam = w.client("iam")
    iam.create_user(UserName="researcher")
    policy = researcher_policy("aws", REGION, ACCOUNT, "simfleet-test", ARTIFACTS, CHECKPOINTS, LOG_GROUP)
    policy["Statement"].append({"Effect": "Allow", "Action": "sts:GetCallerIdentity", "Resource": "*"})
    # moto evaluates every action but S3's against the resource "*" (moto/core/authorization.py passes no ARN), so the
    # log-group statement is widened here; its ARN is checked against the documented format in the test above.
    for statement in policy["Statement"]:
        if statement["Action"] == ["logs:FilterLogEvents"]:
            statement["Resource"] = "*"
    iam.put_user_policy(UserName="researcher", PolicyName="researcher", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName="researcher")["AccessKey"]
    return {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}


def test_the_researcher_policy_is_enough_for_every_command(w: World, tmp_path: Path) -> None:
    prefix = w.prefix("walk")
    w.index("walk", 7)
    w.attempt("walk", 7, "walk-0-aaaaa")
    w.put_text(f"{prefix}metrics/steps.csv", synthetic.steps_csv(7, 100))
    w.put_text(f"{prefix}out.mstate", b"brain", bucket=CHECKPOINTS)
    w.ship_log("walk-0-aaaaa", "glue", "finished")
    env = as_researcher(w)
    previous = moto_settings.INITIAL_NO_AUTH_ACTION_COUNT
    moto_settings.INITIAL_NO_AUTH_ACTION_COUNT = 0  # moto checks every request's signature and policy from here
    try:
        for command in (
            ("runs", "--json"),
            ("status", "walk", "--json"),
            ("logs", "walk"),
            ("artifacts", "walk", "--get", str(tmp_path / "down")),
            ("report", "walk", "--out", str(tmp_path / "report")),
        ):
            result = w.run(*command, env=env)
            assert result.code == 0, (command, result.err)
        assert "finished" in w.run("logs", "walk", env=env).out
        # What it may not do: write a run's record, delete anything, read outside the run prefixes.
        import boto3
        from botocore.exceptions import ClientError

        s3 = boto3.client(
            "s3",
            endpoint_url=w.moto_url,
            region_name=REGION,
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        )
        for call in (
            lambda: s3.put_object(Bucket=ARTIFACTS, Key=f"{prefix}index.json", Body=b"{}"),
            lambda: s3.delete_object(Bucket=ARTIFACTS, Key=f"{prefix}index.json"),
            lambda: s3.put_object(Bucket=CHECKPOINTS, Key=f"{prefix}cancel.json", Body=b"{}"),
        ):
            # (The s3:prefix condition on ListBucket is AWS's to enforce: moto does not evaluate policy conditions.)
            with pytest.raises(ClientError) as denied:
                call()
            assert denied.value.response["Error"]["Code"] == "AccessDenied"
    finally:
        moto_settings.INITIAL_NO_AUTH_ACTION_COUNT = previous


def test_the_researcher_policy_lets_cancel_write_its_record(w: World) -> None:
    w.create("walk")
    fake_kueue.submit(w.kube, NS, "walk")
    fake_kueue.admit(w.kube, NS, "walk", "locomotion", "gpu-spot")
    w.kube.add_pod(NS, "walk", "Running")
    env = as_researcher(w)
    previous = moto_settings.INITIAL_NO_AUTH_ACTION_COUNT
    moto_settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
    try:
        with fake_kueue.controller(w.kube):
            result = w.run("cancel", "walk", "--yes", env=env)
    finally:
        moto_settings.INITIAL_NO_AUTH_ACTION_COUNT = previous
    assert result.code == 0, result.err
    record: dict[str, Any] = json.loads(w.s3().get_object(Bucket=ARTIFACTS, Key=f"{w.prefix('walk')}cancel.json")["Body"].read())
    assert record["requests"][-1]["by"].endswith(":user/researcher")


def test_the_checkpoints_bucket_is_readable_under_runs_only() -> None:
    # Only runs save checkpoints (a job's uploader may write only jobs/ in the artifacts bucket, components/access.py),
    # and `simfleet` reads a checkpoint only for a run: nothing under jobs/ of the checkpoints bucket is its to read.
    policy = researcher_policy("aws", REGION, ACCOUNT, "simfleet-test", ARTIFACTS, CHECKPOINTS, LOG_GROUP)
    checkpoints = f"arn:aws:s3:::{CHECKPOINTS}"
    [get] = [s for s in policy["Statement"] if s["Action"] == ["s3:GetObject"]]
    assert sorted(r for r in get["Resource"] if r.startswith(f"{checkpoints}/")) == [f"{checkpoints}/runs/*"]
    lists = [s for s in policy["Statement"] if s["Action"] == ["s3:ListBucket"]]
    assert {tuple(s["Condition"]["StringLike"]["s3:prefix"]) for s in lists if checkpoints in s["Resource"]} == {("runs/*",)}
    assert {tuple(s["Condition"]["StringLike"]["s3:prefix"]) for s in lists if f"arn:aws:s3:::{ARTIFACTS}" in s["Resource"]} == {
        ("runs/*", "jobs/*")
    }
