"""Dataset imports: the config, the sync Job (restricted, strict-valid, renamed on any change), its role (read-only on
its prefix, trusted by its service account only), the component under mocks, and the sync command itself run with the
real AWS CLI against moto's S3 as a user holding exactly the import's policy."""

from __future__ import annotations

import copy
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from moto import settings as moto_settings
from pod_harness import GUARD, REGION, VENV_BIN, Moto, moto_server_for

import naming
from components.access import prefix_read_policy
from components.dataset_imports import DatasetImports, DatasetImportsArgs, import_job, job_status, service_account_name
from config import ConfigError, DatasetImport, load_stack_config
from config.sources import load_yaml
from policies.rules.pods import restricted_pod_problems

ROOT = Path(__file__).resolve().parent.parent
SOURCE = "s3://robocache-data-example/trajectories/raw/"
ENTRY = DatasetImport.model_validate({"name": "trajectories", "from": SOURCE, "path": "trajectories/raw"})


def dev_config() -> dict[str, Any]:
    config: dict[str, Any] = load_yaml((ROOT / "Pulumi.dev.yaml").read_text())["config"]
    return config


def errors(imports: Any, enabled: bool = True) -> list[str]:
    config = dev_config()
    config["simfleet:platform"]["sharedStorage"] = {"enabled": enabled, "imports": imports}
    with pytest.raises(ConfigError) as caught:
        load_stack_config(config["simfleet:platform"], config["simfleet:runs"], stack="dev", source="x", offline=True)
    return [f"{i.path}: {i.message}" for i in caught.value.issues]


# ---- config ----------------------------------------------------------------------------------------------------


def test_the_dev_stack_imports_the_robocache_jobs_trajectories() -> None:
    cfg = load_stack_config(dev_config()["simfleet:platform"], None, stack="dev", source="x", offline=True)
    [entry] = cfg.platform.shared_storage.imports
    assert (entry.name, entry.from_, entry.directory, entry.max_runtime) == ("trajectories", SOURCE, "trajectories/raw", 6 * 3600)
    # The robocache job reads what the import writes: /datasets + the import's directory.
    [job] = load_yaml((ROOT / "Pulumi.dev.yaml").read_text())["config"]["simfleet:jobs"]
    assert "--input=/datasets/trajectories/raw" in job["args"] and job["datasets"]["path"] == "/datasets"


@pytest.mark.parametrize(
    ("imports", "enabled", "fragment"),
    [
        ([{"name": "a", "from": SOURCE}], False, "imports fill the datasets volume, which needs enabled: true"),
        ([{"name": "a", "from": "s3://bucket-x"}], True, "must be s3://<bucket>/<prefix>/"),
        ([{"name": "a", "from": "s3://bucket-x/data/*"}], True, "a prefix with *, ? or $ would grant more"),
        ([{"name": "a", "from": SOURCE, "path": "../etc"}], True, "must be a directory inside the volume"),
        ([{"name": "a", "from": SOURCE}, {"name": "a", "from": "s3://b-2/x/"}], True, "'a' is already used by imports[0]"),
        (
            [{"name": "a", "from": SOURCE, "path": "data"}, {"name": "b", "from": "s3://b-2/x/", "path": "data/x"}],
            True,
            "imports[1] (b) writes data/x, which overlaps data of import a",
        ),
        ([{"name": "a" * 31, "from": SOURCE}], True, "at most 30 characters"),
        ({"name": "a", "from": SOURCE}, True, "expected a list, not a mapping"),
    ],
)
def test_bad_imports_are_config_errors(imports: Any, enabled: bool, fragment: str) -> None:
    found = errors(imports, enabled)
    assert any(e.startswith("platform.sharedStorage") and fragment in e for e in found), found


def test_a_prefix_gets_its_trailing_slash() -> None:
    entry = DatasetImport.model_validate({"name": "a", "from": "s3://bucket-x/models/radstream"})
    assert entry.from_ == "s3://bucket-x/models/radstream/" and entry.directory == "a"


# ---- the Job ---------------------------------------------------------------------------------------------------


def test_the_sync_job_is_restricted_strictly_valid_and_off_kueue_and_the_gpus() -> None:
    job = import_job(ENTRY, naming.RUNS_NAMESPACE, naming.DATASETS_CLAIM, REGION)
    kubernetes_validate.validate(job, "1.35", strict=True)
    pod = job["spec"]["template"]["spec"]
    assert restricted_pod_problems(pod) == []
    assert len(job["metadata"]["name"]) <= 63 and job["metadata"]["name"].startswith("datasets-import-trajectories-")
    assert job["metadata"]["annotations"]["pulumi.com/skipAwait"] == "true"
    assert naming.KUEUE_QUEUE_LABEL not in job["metadata"]["labels"] and pod["nodeSelector"] == {naming.NODE_POOL_LABEL: "system"}
    assert pod["serviceAccountName"] == service_account_name(ENTRY) and job["spec"]["activeDeadlineSeconds"] == 6 * 3600
    [sync] = pod["containers"]
    assert sync["command"][1:5] == ["s3", "sync", SOURCE, "/datasets/trajectories/raw/"]
    assert "--delete" not in sync["command"]
    assert {"name": "datasets", "persistentVolumeClaim": {"claimName": naming.DATASETS_CLAIM}} in pod["volumes"]


@pytest.mark.parametrize(
    "change", [{"rerun": 1}, {"from": "s3://robocache-data-example/trajectories/v2/"}, {"path": "t2"}, {"maxRuntime": "1h"}]
)
def test_any_change_is_a_new_job_name(change: dict[str, Any]) -> None:
    raw = {"name": "trajectories", "from": SOURCE, "path": "trajectories/raw", **change}
    changed = import_job(DatasetImport.model_validate(raw), naming.RUNS_NAMESPACE, naming.DATASETS_CLAIM, REGION)
    same = import_job(copy.deepcopy(ENTRY), "other-input-same-namespace", "claim-output", REGION)
    base = import_job(ENTRY, naming.RUNS_NAMESPACE, naming.DATASETS_CLAIM, REGION)
    assert changed["metadata"]["name"] != base["metadata"]["name"]
    assert same["metadata"]["name"] == base["metadata"]["name"]  # the inputs that only wire dependencies do not count


def test_job_status_reads_pulumi_kubernetes_output_types_and_mappings() -> None:
    from pulumi_kubernetes.batch.v1 import outputs

    assert job_status(outputs.JobStatus(conditions=[outputs.JobCondition(status="True", type="Complete")])) == "Succeeded"
    assert job_status({"conditions": [{"type": "Failed", "status": "True"}]}) == "Failed"
    assert job_status({"active": 1}) == "Running" and job_status(None) == "Pending"


# ---- the component ---------------------------------------------------------------------------------------------


def test_the_component_gives_each_import_a_role_that_reads_only_its_prefix(pulumi_mocks: Any) -> None:
    second = DatasetImport.model_validate({"name": "scenes", "from": "s3://scene-assets-example/usd/"})
    cluster_urn = "urn:pulumi:dev::simfleet::pulumi:pulumi:Stack$eks:index:Cluster::cluster"

    def build() -> None:
        import pulumi

        cluster = pulumi.CustomResource("eks:index:Cluster", "cluster", {})
        DatasetImports(
            "dataset-imports",
            DatasetImportsArgs(
                (ENTRY, second),
                naming.RUNS_NAMESPACE,
                naming.DATASETS_CLAIM,
                "arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/ABC",
                "https://oidc.eks.us-east-1.amazonaws.com/id/ABC",
                REGION,
                {"team": "robotics"},
                cluster=cluster,
            ),
        )

    rec = pulumi_mocks(build)
    policies = {r.name: json.loads(r.inputs["policy"]) for r in rec.of_type("aws:iam/rolePolicy:RolePolicy")}
    assert policies["dataset-imports-trajectories-policy"] == prefix_read_policy("aws", SOURCE, "Dataset")
    statements = policies["dataset-imports-scenes-policy"]["Statement"]
    assert {(s["Action"][0], s["Resource"][0]) for s in statements} == {
        ("s3:GetObject", "arn:aws:s3:::scene-assets-example/usd/*"),
        ("s3:ListBucket", "arn:aws:s3:::scene-assets-example"),
    }
    roles = {r.name: json.loads(r.inputs["assumeRolePolicy"]) for r in rec.of_type("aws:iam/role:Role")}
    trust = roles["dataset-imports-trajectories-role"]["Statement"][0]["Condition"]["StringEquals"]
    assert (
        trust["oidc.eks.us-east-1.amazonaws.com/id/ABC:sub"] == "system:serviceaccount:simfleet-runs:datasets-import-trajectories"
    )
    accounts = {r.inputs["metadata"]["name"]: r for r in rec.of_type("kubernetes:core/v1:ServiceAccount")}
    assert set(accounts) == {"datasets-import-trajectories", "datasets-import-scenes"}
    assert accounts["datasets-import-trajectories"].inputs["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
    jobs = {r.name: r for r in rec.of_type("kubernetes:batch/v1:Job")}
    job = jobs["dataset-imports-trajectories-job"]
    # The pod finds its service account (and the role on it) when it starts; the cluster's deletion takes the Job.
    assert accounts["datasets-import-trajectories"].urn in job.options["dependsOn"]
    assert job.options["deletedWith"] == cluster_urn
    assert job.inputs["metadata"]["annotations"]["pulumi.com/skipAwait"] == "true"


# ---- the sync, for real ----------------------------------------------------------------------------------------

BUCKET = "robocache-data-example"


@pytest.fixture(scope="module")
def moto() -> Iterator[Moto]:
    yield from moto_server_for([BUCKET])


def test_the_sync_command_copies_the_prefix_with_only_the_imports_policy(moto: Moto, tmp_path: Path) -> None:
    """The rendered command, run by the AWS CLI as a user whose only policy is the import's: the prefix is copied, a
    sibling prefix is not (nor readable), a second run copies nothing, and nothing in the volume is deleted."""
    moto.reset()
    for key in ("trajectories/raw/a.npz", "trajectories/raw/day-2/b.npz", "trajectories/raw-old/c.npz", "other/d.npz"):
        moto.s3.put_object(Bucket=BUCKET, Key=key, Body=key.encode())
    iam = moto.client("iam")
    iam.create_user(UserName="import")
    iam.put_user_policy(
        UserName="import", PolicyName="import", PolicyDocument=json.dumps(prefix_read_policy("aws", SOURCE, "Dataset"))
    )
    key = iam.create_access_key(UserName="import")["AccessKey"]
    volume = tmp_path / "datasets"
    (volume / "trajectories" / "raw").mkdir(parents=True)
    (volume / "trajectories" / "raw" / "mine.txt").write_text("put there by hand")
    command = import_job(ENTRY, naming.RUNS_NAMESPACE, naming.DATASETS_CLAIM, REGION)["spec"]["template"]["spec"]["containers"][
        0
    ]["command"]
    command = [str(VENV_BIN / "aws"), *command[1:]]
    command[4] = command[4].replace("/datasets", str(volume))
    env = {
        "PATH": f"{VENV_BIN}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "AWS_ENDPOINT_URL": moto.endpoint,
        "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
    }
    previous = moto_settings.INITIAL_NO_AUTH_ACTION_COUNT
    moto_settings.INITIAL_NO_AUTH_ACTION_COUNT = 0  # moto checks every request against the user's policy
    try:
        first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=GUARD)
        assert first.returncode == 0, first.stderr
        copied = sorted(str(p.relative_to(volume)) for p in volume.rglob("*") if p.is_file())
        assert copied == ["trajectories/raw/a.npz", "trajectories/raw/day-2/b.npz", "trajectories/raw/mine.txt"]
        moto.requests.clear()
        again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=GUARD)
        assert again.returncode == 0, again.stderr
        assert not [path for method, path in moto.requests if method == "GET" and path.endswith(".npz")]
        denied = moto.client("s3", key["AccessKeyId"], key["SecretAccessKey"])
        with pytest.raises(denied.exceptions.ClientError, match="AccessDenied"):
            denied.get_object(Bucket=BUCKET, Key="trajectories/raw-old/c.npz")
        # moto does not evaluate IAM conditions, so the ListBucket prefix condition is checked as written (above).
    finally:
        moto_settings.INITIAL_NO_AUTH_ACTION_COUNT = previous
    assert (volume / "trajectories" / "raw" / "mine.txt").read_text() == "put there by hand"
