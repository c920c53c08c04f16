"""The stack config contract: both stack files validate; malformed files fail with every error, path and reason."""

from __future__ import annotations

import copy
import datetime
import ipaddress
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import versions
from config import ConfigError, checkpoint_order, load_stack_config, parse_duration, parse_image
from config.sources import load_yaml

ROOT = Path(__file__).resolve().parent.parent
TODAY = datetime.date(2026, 11, 23)
STACK_FILES = sorted(ROOT.glob("Pulumi.*.yaml"))


def stack_config(name: str) -> dict[str, Any]:
    return load_yaml((ROOT / f"Pulumi.{name}.yaml").read_text())["config"]


def load(config: dict[str, Any], stack: str = "dev", today: datetime.date = TODAY, offline: bool = True):
    # offline by default: the dev sample's placeholder CIDRs would otherwise be errors in every case below; the
    # placeholder rules have tests of their own.
    return load_stack_config(
        config.get("simfleet:platform"),
        config.get("simfleet:runs"),
        stack=stack,
        source=f"Pulumi.{stack}.yaml",
        today=today,
        offline=offline,
    )


# The warnings the committed stack files are expected to produce: vpc-cni builds no source lists for 1.35 yet,
# and (dev only) the sample's documentation-range CIDRs.
EXPECTED_WARNINGS = ("pinned add-on builds not listed for 1.35", "is a placeholder")


@pytest.mark.parametrize("path", STACK_FILES, ids=lambda p: p.name)
def test_every_stack_file_validates(path: Path) -> None:
    stack = path.name.split(".")[1]
    cfg = load(load_yaml(path.read_text())["config"], stack=stack)
    assert cfg.platform.kubernetes_version
    assert all(any(expected in w for expected in EXPECTED_WARNINGS) for w in cfg.warnings), cfg.warnings


def test_stack_files_exist_for_dev_and_prod() -> None:
    assert {p.name for p in STACK_FILES} >= {"Pulumi.dev.yaml", "Pulumi.prod.yaml"}


def test_defaults_live_in_the_model() -> None:
    cfg = load(stack_config("dev"))
    run = cfg.runs[0]
    assert run.max_runtime == 7200 and run.ttl_after_finished == 600
    assert cfg.platform.node_groups.gpu.min_size == 0
    assert cfg.platform.keep_tagged_images == 10
    assert cfg.platform.buckets.abort_incomplete_upload_days == 7


# Each case: (id, mutation of the dev config, expected path, fragment of the reason).
Mutation = Callable[[dict[str, Any]], None]


def _platform(c: dict[str, Any]) -> dict[str, Any]:
    return c["simfleet:platform"]


def _run(c: dict[str, Any], i: int = 0) -> dict[str, Any]:
    return c["simfleet:runs"][i]


MALFORMED: list[tuple[str, Mutation, str, str]] = [
    (
        "unknown-platform-key",
        lambda c: _platform(c).update(kubernetesVersio="1.35"),
        "platform.kubernetesVersio",
        "did you mean 'kubernetesVersion'",
    ),
    ("unknown-run-key", lambda c: _run(c).update(maxRuntim="2h"), "runs[0].maxRuntim", "did you mean 'maxRuntime'"),
    (
        "one-az",
        lambda c: _platform(c)["network"].update(availabilityZones=1),
        "platform.network.availabilityZones",
        "1 is too small; use at least 2",
    ),
    ("cidr-not-parsing", lambda c: _platform(c)["network"].update(cidr="10.40.0.0/33"), "platform.network.cidr", "IPv4"),
    ("cidr-public", lambda c: _platform(c)["network"].update(cidr="8.8.0.0/16"), "platform.network.cidr", "not a private"),
    (
        "cidr-too-small",
        lambda c: _platform(c)["network"].update(cidr="10.40.0.0/24"),
        "platform.network.cidr",
        "between /16 and /20",
    ),
    (
        "min-above-max",
        lambda c: _platform(c)["nodeGroups"]["system"].update(minSize=4, maxSize=3),
        "platform.nodeGroups.system",
        "minSize <= desiredSize <= maxSize",
    ),
    (
        "desired-above-max",
        lambda c: _platform(c)["nodeGroups"]["gpu"].update(desiredSize=9),
        "platform.nodeGroups.gpu",
        "minSize <= desiredSize <= maxSize",
    ),
    (
        "gpu-group-cpu-type",
        lambda c: _platform(c)["nodeGroups"]["gpu"].update(instanceTypes=["m6i.large"]),
        "platform.nodeGroups.gpu",
        "not GPU instance families",
    ),
    (
        "gpu-count-mismatch",
        lambda c: _platform(c)["nodeGroups"]["gpu"].update(instanceTypes=["g5.2xlarge", "g5.12xlarge"]),
        "platform.nodeGroups.gpu",
        "same GPU count",
    ),
    (
        "gpu-two-shapes",
        lambda c: _platform(c)["nodeGroups"]["gpu"].update(instanceTypes=["g5.2xlarge", "g6e.xlarge"]),
        "platform.nodeGroups.gpu",
        "same vCPU and memory: the Cluster Autoscaler builds one node template per node group from its first instance type",
    ),
    (
        "system-two-shapes",
        lambda c: _platform(c)["nodeGroups"]["system"].update(instanceTypes=["t3.medium", "t3.large"]),
        "platform.nodeGroups.system",
        "t3.medium (2 vCPU, 4 GiB), t3.large (2 vCPU, 8 GiB)",
    ),
    (
        "system-type-unknown",
        lambda c: _platform(c)["nodeGroups"]["system"].update(instanceTypes=["c7i.large"]),
        "platform.nodeGroups.system",
        "not in data/aws_catalog.json",
    ),
    (
        "log-retention-not-cloudwatch",
        lambda c: _platform(c).update(controlPlaneLogRetentionDays=45),
        "platform",
        "controlPlaneLogRetentionDays 45 is not a CloudWatch retention period",
    ),
    (
        "deployer-cidr-public",
        lambda c: _platform(c)["endpoint"].update(deployerAccess={"cidrs": ["8.8.8.0/24"]}),
        "platform.endpoint.deployerAccess",
        "not private ranges",
    ),
    (
        "deployer-cidr-open",
        lambda c: _platform(c)["endpoint"].update(deployerAccess={"cidrs": ["0.0.0.0/0"]}),
        "platform.endpoint.deployerAccess.cidrs[0]",
        "whole internet",
    ),
    (
        "deployer-security-group-id",
        lambda c: _platform(c)["endpoint"].update(deployerAccess={"securityGroupIds": ["my-runner-sg"]}),
        "platform.endpoint.deployerAccess",
        "not security group ids",
    ),
    (
        "system-gpu-type",
        lambda c: _platform(c)["nodeGroups"]["system"].update(instanceTypes=["g5.xlarge"]),
        "platform.nodeGroups.system",
        "CPU nodes",
    ),
    (
        "version-unknown",
        lambda c: _platform(c).update(kubernetesVersion="1.99"),
        "platform.kubernetesVersion",
        "not in the EKS release table",
    ),
    (
        "version-out-of-support",
        lambda c: _platform(c).update(kubernetesVersion="1.31"),
        "platform.kubernetesVersion",
        "left EKS standard support on 2025-11-26",
    ),
    (
        "endpoint-open",
        lambda c: _platform(c)["endpoint"].update(publicAccessCidrs=["0.0.0.0/0"]),
        "platform.endpoint.publicAccessCidrs[0]",
        "whole internet",
    ),
    ("logs-without-audit", lambda c: _platform(c).update(controlPlaneLogs=["api"]), "platform", "must include api and audit"),
    ("image-latest", lambda c: _run(c)["images"].update(sim="unitree-sim:latest"), "runs[0].images.sim", "mutable tag 'latest'"),
    ("image-untagged", lambda c: _run(c)["images"].update(monty="monty"), "runs[0].images.monty", "has no tag"),
    (
        "image-unknown-repo",
        lambda c: _run(c)["images"].update(glue="glue-extra:1.0"),
        "runs[0].images.glue",
        "not one of the stack's ECR repositories",
    ),
    ("bad-run-name", lambda c: _run(c).update(name="Trot_Baseline"), "runs[0].name", "DNS-1123"),
    ("duplicate-run-name", lambda c: _run(c, 1).update(name="trot-baseline"), "runs[1].name", "already used by runs[0]"),
    ("bad-duration", lambda c: _run(c).update(maxRuntime="2 hours"), "runs[0].maxRuntime", "not a duration"),
    ("bad-mode", lambda c: _run(c).update(mode="headless"), "runs[0].mode", "'interactive' or 'batch'"),
    (
        "checkpoint-bad-uri",
        lambda c: _run(c)["checkpoint"].update({"from": "https://x/y"}),
        "runs[0].checkpoint",
        "must be null, an s3:// URI or run:<name>",
    ),
    (
        "checkpoint-unknown-run",
        lambda c: _run(c, 2)["checkpoint"].update({"from": "run:nope"}),
        "runs[2].checkpoint.from",
        "no run named 'nope'",
    ),
    (
        "checkpoint-multi-seed-source",
        lambda c: _run(c, 2)["checkpoint"].update({"from": "run:trot-sweep"}),
        "runs[2].checkpoint.from",
        "one checkpoint per seed",
    ),
    ("interactive-many-seeds", lambda c: _run(c).update(seeds=[1, 2]), "runs[0].seeds", "exactly one seed"),
    (
        "viewport-on-batch",
        lambda c: _run(c, 1).update(viewport={"allowedCidrs": ["203.0.113.0/24"]}),
        "runs[1].viewport",
        "only for interactive runs",
    ),
    (
        "viewport-open",
        lambda c: _run(c)["viewport"].update(allowedCidrs=["0.0.0.0/0"]),
        "runs[0].viewport.allowedCidrs[0]",
        "whole internet",
    ),
    (
        "too-many-gpus",
        lambda c: _run(c).update(gpus=2),
        "runs[0].gpus",
        "GPU nodes (g5.2xlarge, g6.2xlarge) have 1 each; lower gpus to 1, or set platform.nodeGroups.gpu.instanceTypes "
        "to types with 2 or more GPUs, such as g5.12xlarge (4 x A10G)",
    ),
    ("cpu-too-big", lambda c: _run(c).update(cpu="8"), "runs[0].cpu", "does not fit the smallest GPU node"),
    ("glue-missing", lambda c: _run(c).update(glue="glue/missing.py"), "runs[0].glue", "glue/missing.py"),
    ("glue-escapes", lambda c: _run(c).update(glue="../etc/passwd"), "runs[0].glue", "inside the project"),
    (
        "interactive-without-on-demand",
        lambda c: _platform(c)["nodeGroups"]["gpu"].update(capacity="spot"),
        "runs[0].mode",
        "need onDemand GPU capacity",
    ),
    ("label-value", lambda c: _run(c)["labels"].update(user="alice smith"), "runs[0].labels.user", "not a valid label value"),
    ("runs-not-a-list", lambda c: c.update({"simfleet:runs": {"name": "x"}}), "runs", "must be a list"),
    (
        "seeds-negative-number",
        lambda c: _run(c, 1).update(seeds=-20),
        "runs[1].seeds",
        "-20 is not a seed (seeds are 0 or more); write a list like [0, 1, 2] or a range like 0..19",
    ),
    ("seeds-backwards", lambda c: _run(c, 1).update(seeds="19..0"), "runs[1].seeds", "'19..0' counts down; write 0..19"),
    (
        "seeds-too-many",
        lambda c: _run(c, 1).update(seeds="0..1000"),
        "runs[1].seeds",
        "'0..1000' is 1001 seeds; a run sweeps at most 1000: split it into runs of 0..999, 1000..1999",
    ),
    ("seeds-too-many-in-a-list", lambda c: _run(c, 1).update(seeds=["0..600", "601..1200"]), "runs[1].seeds", "at most 1000"),
    (
        "seeds-twice-across-ranges",
        lambda c: _run(c, 1).update(seeds=["0..5", "3..4"]),
        "runs[1].seeds",
        "lists 3, 4 more than once",
    ),
    ("seeds-not-a-range", lambda c: _run(c, 1).update(seeds="0-19"), "runs[1].seeds", "'0-19' is not a seed or a seed range"),
    ("platform-missing", lambda c: c.pop("simfleet:platform"), "platform", "is required"),
]


@pytest.mark.parametrize(("case", "mutate", "path", "reason"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_config_names_path_and_reason(case: str, mutate: Mutation, path: str, reason: str) -> None:
    config = copy.deepcopy(stack_config("dev"))
    mutate(config)
    with pytest.raises(ConfigError) as caught:
        load(config)
    matching = [i for i in caught.value.issues if i.path == path]
    assert matching, f"{case}: no issue at {path!r}; got {caught.value.issues}"
    assert any(reason in i.message for i in matching), f"{case}: {reason!r} not in {[i.message for i in matching]}"
    assert str(caught.value).startswith("Pulumi.dev.yaml: ")


def test_prod_rules_follow_the_stack_name() -> None:
    config = stack_config("dev")  # public endpoint, single NAT, two log types: fine for dev
    with pytest.raises(ConfigError) as caught:
        load(config, stack="prod")
    paths = {i.path for i in caught.value.issues}
    assert paths >= {"platform.endpoint.publicAccessCidrs", "platform.network.natGateways", "platform.controlPlaneLogs"}
    prod = copy.deepcopy(stack_config("prod"))
    prod["simfleet:platform"]["secretsEncryption"] = False
    with pytest.raises(ConfigError) as caught:
        load(prod, stack="prod")
    assert [i.path for i in caught.value.issues] == ["platform.secretsEncryption"]


def test_every_error_is_reported_at_once_in_file_order() -> None:
    config = copy.deepcopy(stack_config("dev"))
    _platform(config)["network"]["cidr"] = "8.8.0.0/16"
    _run(config, 2)["images"]["sim"] = "unitree-sim:latest"
    _run(config, 0)["maxRuntime"] = "forever"
    with pytest.raises(ConfigError) as caught:
        load(config)
    paths = [i.path for i in caught.value.issues]
    assert paths == ["platform.network.cidr", "runs[0].maxRuntime", "runs[2].images.sim"]
    assert "3 errors" in str(caught.value).splitlines()[0]


def test_version_near_end_of_support_warns_but_passes() -> None:
    cfg = load(stack_config("prod"), stack="prod", today=datetime.date(2027, 2, 1))
    [support] = [w for w in cfg.warnings if "leaves EKS standard support" in w]
    assert "1.35 leaves EKS standard support on 2027-03-27 (54 days)" in support


def test_checkpoint_cycle_is_rejected() -> None:
    config = copy.deepcopy(stack_config("dev"))
    _run(config, 0)["checkpoint"]["from"] = "run:trot-continue"
    with pytest.raises(ConfigError) as caught:
        load(config)
    assert any("loops" in i.message for i in caught.value.issues)


def test_checkpoint_order_puts_sources_first() -> None:
    cfg = load(stack_config("dev"))
    reordered = (cfg.runs[2], cfg.runs[1], cfg.runs[0])
    names = [r.name for r in checkpoint_order(reordered)]
    assert names.index("trot-baseline") < names.index("trot-continue")


@pytest.mark.parametrize(("text", "seconds"), [("2h", 7200), ("10m", 600), ("1h30m", 5400), ("45s", 45), ("1d", 86400), (90, 90)])
def test_parse_duration(text: Any, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("ref", "registry", "repo", "tag"),
    [
        ("monty:1f3c2a9", None, "monty", "1f3c2a9"),
        (
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/monty:1.0",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com",
            "monty",
            "1.0",
        ),
        ("nvcr.io/nvidia/isaac-lab:2.1.0", "nvcr.io", "nvidia/isaac-lab", "2.1.0"),
        ("team/monty:2", None, "team/monty", "2"),
        ("localhost:5000/x:1", "localhost:5000", "x", "1"),
    ],
)
def test_parse_image(ref: str, registry: str | None, repo: str, tag: str) -> None:
    parsed = parse_image(ref)
    assert (parsed.registry, parsed.repository, parsed.tag) == (registry, repo, tag)


def test_stack_name_must_fit_bucket_names() -> None:
    with pytest.raises(ConfigError) as caught:
        load(stack_config("dev"), stack="Dev_Experiments")
    assert [i.path for i in caught.value.issues] == ["stack"]
    assert "lowercase letters, digits and hyphens" in caught.value.issues[0].message


def test_version_without_pins_is_refused() -> None:
    # 1.33 is still in standard support on this day, but versions.py pins nothing for it.
    config = copy.deepcopy(stack_config("dev"))
    _platform(config)["kubernetesVersion"] = "1.33"
    with pytest.raises(ConfigError) as caught:
        load(config, today=datetime.date(2026, 6, 1))
    assert [i.path for i in caught.value.issues] == ["platform.kubernetesVersion"]
    message = caught.value.issues[0].message
    for missing in ("kube-proxy add-on build for 1.33", "coredns add-on build for 1.33", "vpc-cni", "Cluster Autoscaler 1.33.x"):
        assert missing in message


@pytest.mark.parametrize("day", [datetime.date(2026, 11, 30), TODAY, datetime.date(2027, 1, 15)])
def test_every_version_in_standard_support_has_a_complete_set_of_pins(day: datetime.date) -> None:
    """What the config allows (standard support on `day`) must be deployable: every add-on, chart and image pinned."""
    in_support = sorted(v for v, r in versions.EKS_RELEASES.items() if r.end_of_standard >= day)
    assert in_support
    for version in in_support:
        assert versions.missing_pins(version) == [], f"{version} is in standard support on {day} but lacks pins"
    assert versions.deployable_versions(day) == in_support


def test_missing_pins_covers_every_addon_chart_and_image() -> None:
    assert versions.missing_pins("1.35") == []
    gaps = " ".join(versions.missing_pins("1.30"))
    assert all(addon in gaps for addon in versions.PINNED_ADDONS)
    assert "Cluster Autoscaler" in gaps
    for version, pins in versions.EKS_ADDON_PINS.items():
        assert set(pins) == set(versions.PINNED_ADDONS), version
        assert pins["kube-proxy"].version.startswith(f"v{version}."), version
        assert all(p.source and p.checked for p in pins.values()), version


def test_a_version_past_standard_support_is_refused_even_with_pins() -> None:
    config = copy.deepcopy(stack_config("prod"))
    _platform(config)["kubernetesVersion"] = "1.34"
    with pytest.raises(ConfigError) as caught:
        load(config, stack="prod", today=datetime.date(2026, 12, 3))
    assert "left EKS standard support on 2026-12-02" in caught.value.issues[0].message


# ---- placeholders ---------------------------------------------------------------------------------


def test_documentation_range_placeholders_are_errors_for_preview_and_up() -> None:
    with pytest.raises(ConfigError) as caught:
        load(stack_config("dev"), offline=False)
    by_path = {i.path: i.message for i in caught.value.issues}
    # The sample's CIDRs, its deploy role's account, the bucket its dataset import copies from and the one its sweep
    # starts from; the disabled service's model bucket is a placeholder too, but nothing is deployed to trust it.
    assert set(by_path) == {
        "platform.endpoint.publicAccessCidrs[0]",
        "runs[0].viewport.allowedCidrs[0]",
        "platform.deployRoles[0]",
        "platform.sharedStorage.imports[0].from",
        "runs[1].checkpoint.from",
    }
    endpoint = by_path["platform.endpoint.publicAccessCidrs[0]"]
    assert "203.0.113.0/24 is a placeholder" in endpoint and "RFC 5737" in endpoint
    assert "public egress ranges of the networks that administer the cluster" in endpoint
    assert "viewport" in by_path["runs[0].viewport.allowedCidrs[0]"]
    assert "111122223333, an account id from the AWS documentation" in by_path["platform.deployRoles[0]"]
    assert "anyone can register a bucket under a sample name" in by_path["runs[1].checkpoint.from"]
    assert "robocache-data-example" in by_path["platform.sharedStorage.imports[0].from"]
    assert str(caught.value).startswith("Pulumi.dev.yaml: 5 errors in the stack config")


@pytest.mark.parametrize("merge", [False, True], ids=["plain", "with-a-merge"])
def test_warnings_get_the_same_lines_from_the_tree_the_plan_read(tmp_path: Path, merge: bool) -> None:
    """The offline plan keeps the stack file's node tree for its warnings' lines (config.sources.keeping_nodes): the
    lines are those of composing the file afresh. A merge rewrites its mapping node as it is constructed, so a file
    with one is composed afresh."""
    from config import load_stack_file, sources

    text = (ROOT / "Pulumi.dev.yaml").read_text()
    if merge:
        # A run merged from the first: its placeholder viewport CIDR is at the run's own entry, not the first run's.
        text = text.replace("    - name: trot-baseline\n", "    - &baseline\n      name: trot-baseline\n").replace(
            "  simfleet:jobs:\n", "    - <<: *baseline\n      name: trot-again\n  simfleet:jobs:\n"
        )
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text(text)
    afresh = load_stack_file(path, "dev", today=TODAY, offline=True).warnings
    with sources.keeping_nodes():
        kept = load_stack_file(path, "dev", today=TODAY, offline=True).warnings
        assert (text in (sources._parsed_nodes or {})) is not merge
    assert kept == afresh
    line = 74 if merge else 73  # the merge's anchor takes a line of its own
    assert any(f":{line}: runs[0] (trot-baseline).viewport.allowedCidrs[0]: 203.0.113.0/24 is a placeholder" in w for w in kept)
    if merge:
        assert any(": runs[3] (trot-again).viewport.allowedCidrs[0]" in w and f":{line}:" not in w for w in kept), kept


def test_documentation_range_placeholders_only_warn_in_the_offline_plan() -> None:
    cfg = load(stack_config("dev"), offline=True)
    placeholders = [w for w in cfg.warnings if "is a placeholder" in w]
    assert len(placeholders) == 5
    assert all("pulumi preview and up refuse it" in w for w in placeholders)


@pytest.mark.parametrize(
    ("path", "value", "placeholder"),
    [
        ("platform.clusterAdmins", "arn:aws:iam::123456789012:role/admin", True),
        ("platform.runOperators", "arn:aws:iam::444455556666:user/alice", True),
        ("platform.deployRoles", "arn:aws:iam::111122223333:role/ci", True),
        ("platform.deployRoles", "arn:aws:iam::210987654321:role/ci", False),
        ("platform.imageAllowList", "public.ecr.aws/example/", True),
        ("platform.imageAllowList", "777788889999.dkr.ecr.us-east-1.amazonaws.com/", True),
        ("platform.imageAllowList", "nvcr.io/nvidia/", False),
        ("platform.endpoint.deployerAccess.securityGroupIds", "sg-0123456789abcdef0", True),
        ("platform.endpoint.deployerAccess.securityGroupIds", "sg-0f4e2a1b9c8d7e6f5", False),
        ("runs[0].checkpoint.from", "s3://radstream-models-example/b.mstate", True),
        ("runs[0].checkpoint.from", "s3://amzn-s3-demo-bucket/b.mstate", True),
        ("runs[0].checkpoint.from", "s3://acme-brains/exampled/b.mstate", False),  # a word, not "example"
        ("services[0].modelRepository", "s3://example-models/m/", True),
        ("services[0].modelRepository", "s3://acme-models/m/", False),
        ("platform.sharedStorage.imports", "s3://example-trajectories/raw/", True),
        ("platform.sharedStorage.imports", "s3://acme-trajectories/raw/", False),
    ],
)
def test_every_name_a_deploy_creates_or_trusts_is_checked_for_placeholders(path: str, value: str, placeholder: bool) -> None:
    config = copy.deepcopy(stack_config("prod"))
    platform = _platform(config)
    platform.pop("deployRoles")  # the sample's own placeholder; each case sets the one it is about
    if path == "platform.sharedStorage.imports":
        platform["sharedStorage"] = {"enabled": True, "imports": [{"name": "raw", "from": value}]}
    elif path.startswith("platform."):
        keys = path.split(".")[1:]
        target = platform
        for key in keys[:-1]:
            target = target.setdefault(key, {})
        target[keys[-1]] = [value]
    elif path.startswith("runs"):
        run = copy.deepcopy(_run(stack_config("dev")))
        run.pop("viewport", None)
        run["checkpoint"] = {"from": value, "save": True}
        config["simfleet:runs"] = [run]
    else:
        config["simfleet:services"] = [
            {"name": "triton", "image": "monty:1", "gpus": 1, "modelRepository": value, "clients": [{"namespace": "x"}]}
        ]
        platform["nodeGroups"]["gpu"]["maxSize"] = 16
    found = [i for i in placeholder_issues_of(config) if i.path.startswith(path)]
    assert bool(found) is placeholder, found
    if placeholder:
        assert "is a placeholder" in found[0].message


def placeholder_issues_of(config: dict[str, Any]) -> list[Any]:
    try:
        load_stack_config(
            config.get("simfleet:platform"),
            config.get("simfleet:runs"),
            services=config.get("simfleet:services"),
            stack="prod",
            source="Pulumi.prod.yaml",
            today=TODAY,
        )
    except ConfigError as err:
        return list(err.issues)
    return []


def real_names(config: dict[str, Any]) -> dict[str, Any]:
    """A sample stack file with its stand-in names (the deploy role, the import's and the sweep's buckets) replaced: CIDRs
    are the test."""
    config = copy.deepcopy(config)
    _platform(config).pop("deployRoles", None)
    for entry in _platform(config).get("sharedStorage", {}).get("imports", []):
        entry["from"] = entry["from"].replace("-example/", "-acme/")
    for run in config.get("simfleet:runs") or []:
        source = run.get("checkpoint", {}).get("from") or ""
        if source.startswith("s3://example-"):
            run["checkpoint"]["from"] = source.replace("s3://example-", "s3://acme-")
    return config


@pytest.mark.parametrize(
    ("cidr", "placeholder"),
    [
        ("192.0.2.0/24", True),
        ("198.51.100.0/24", True),
        ("203.0.113.0/24", True),
        ("198.51.100.128/25", True),  # any subnet of a documentation range
        ("192.0.2.7/32", True),
        ("203.0.112.0/23", False),  # contains TEST-NET-3 but also real addresses
        ("198.18.0.0/24", False),
        ("192.0.3.0/24", False),
    ],
)
def test_every_user_cidr_list_is_checked_for_placeholders(cidr: str, placeholder: bool) -> None:
    config = real_names(stack_config("prod"))
    _platform(config)["endpoint"]["deployerAccess"] = {"cidrs": ["10.60.0.0/24"]}
    config["simfleet:runs"] = [copy.deepcopy(_run(stack_config("dev")))]
    config["simfleet:runs"][0]["viewport"] = {"allowedCidrs": ["198.18.7.0/24", cidr]}
    config = real_names(config)
    dev = real_names(stack_config("dev"))
    _platform(dev)["endpoint"]["publicAccessCidrs"] = [cidr]
    _run(dev)["viewport"] = {"allowedCidrs": ["198.18.7.0/24"]}
    private = real_names(stack_config("prod"))
    _platform(private)["endpoint"]["deployerAccess"] = {"cidrs": [cidr]} if ipaddress.ip_network(cidr).is_private else {}
    cases = [(config, "prod", "runs[0].viewport.allowedCidrs[1]"), (dev, "dev", "platform.endpoint.publicAccessCidrs[0]")]
    if ipaddress.ip_network(cidr).is_private:
        cases.append((private, "prod", "platform.endpoint.deployerAccess.cidrs[0]"))
    for raw, stack, path in cases:
        if placeholder:
            with pytest.raises(ConfigError) as caught:
                load(raw, stack=stack, offline=False)
            assert [i.path for i in caught.value.issues] == [path]
        else:
            load(raw, stack=stack, offline=False)


# ---- control-plane log retention ------------------------------------------------------------------


def test_control_plane_log_retention_defaults_by_stack_and_can_be_set() -> None:
    assert load(stack_config("dev")).platform.control_plane_log_retention_days == 30
    assert load(stack_config("prod"), stack="prod").platform.control_plane_log_retention_days == 90
    assert load(stack_config("prod"), stack="prod-eu").platform.control_plane_log_retention_days == 90
    config = copy.deepcopy(stack_config("dev"))
    _platform(config)["controlPlaneLogRetentionDays"] = 365
    cfg = load(config)
    assert cfg.platform.control_plane_log_retention_days == cfg.control_plane_log_retention_days == 365


def test_a_principal_that_is_not_an_iam_role_or_user_is_reported_where_it_is_with_what_to_write() -> None:
    """Each bad entry of clusterAdmins, deployRoles and runOperators gets its own path (and so its own line), and the
    ARN `aws sts get-caller-identity` prints for an assumed role, an STS session, is answered with the role's ARN."""
    config = copy.deepcopy(stack_config("dev"))
    _platform(config)["deployRoles"] = ["arn:aws:sts::210987654321:assumed-role/simfleet-ci/GitHubActions", "ci"]
    _platform(config)["runOperators"] = ["arn:aws:iam::210987654321:role/ops/oncall", "arn:aws:iam::21098765432:user/x"]
    with pytest.raises(ConfigError) as caught:
        load(config)
    by_path = {i.path: i.message for i in caught.value.issues}
    assert set(by_path) == {"platform.deployRoles[0]", "platform.deployRoles[1]", "platform.runOperators[1]"}
    assert "is an STS session" in by_path["platform.deployRoles[0]"]
    assert "arn:aws:iam::210987654321:role/simfleet-ci" in by_path["platform.deployRoles[0]"]
    assert "is not an IAM role or user ARN" in by_path["platform.deployRoles[1]"]
    assert "arn:aws:iam::<account>:role/<name>" in by_path["platform.runOperators[1]"]
