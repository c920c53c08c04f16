"""`simfleet:queues`: per-team quotas per GPU capacity type, the generated queue, the default queue, errors with paths
(all at once), and quotas that must fit the GPU node groups minus the services' max replicas."""

from __future__ import annotations

import copy
import datetime
from pathlib import Path
from typing import Any

import pytest

import naming
from config import (
    ConfigError,
    GpuCapacity,
    gpu_capacity,
    gpu_quota_problems,
    load_stack_config,
    node_group_gpus,
    runs_gpu_quota,
)
from config.sources import load_yaml

ROOT = Path(__file__).resolve().parent.parent
TODAY = datetime.date(2026, 11, 23)


def stack_config(name: str = "dev") -> dict[str, Any]:
    return copy.deepcopy(load_yaml((ROOT / f"Pulumi.{name}.yaml").read_text())["config"])


def load(config: dict[str, Any], stack: str = "dev"):
    return load_stack_config(
        config.get("simfleet:platform"),
        config.get("simfleet:runs"),
        services=config.get("simfleet:services"),
        queues=config.get("simfleet:queues"),
        stack=stack,
        source=f"Pulumi.{stack}.yaml",
        today=TODAY,
        offline=True,
    )


def issues(config: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as err:
        load(config)
    return [(i.path, i.message) for i in err.value.issues]


def quotas(cfg, name: str) -> dict[str, Any]:
    team = next(t for t in cfg.queues.teams if t.name == name)
    return {q.capacity: q for q in team.quotas}


def enabled_service(config: dict[str, Any]) -> dict[str, Any]:
    config["simfleet:services"][0]["enabled"] = True
    return config


def test_dev_has_two_teams_that_fit_beside_the_triton_service_on_or_off() -> None:
    cfg = load(stack_config("dev"))
    queues = cfg.queues
    assert queues.names() == ("locomotion", "perception") and queues.default_name == "locomotion"
    assert not queues.generated
    # The sample ships radstream-triton off: it holds no GPU, so every GPU is the queues'.
    assert {c: (line.node_group_gpus, line.service_gpus, line.free) for c, line in queues.capacity.items()} == {
        "spot": (4, 0, 4),
        "onDemand": (4, 0, 4),
    }
    assert (queues.nominal_gpus("spot"), queues.nominal_gpus("onDemand")) == (4, 1)
    assert not [w for w in cfg.warnings if w.startswith("queues")]
    # On, it takes replicas.max 2 plus the rollout's surge pod: 4 - 3 = 1, which locomotion's 1 still fits.
    on = load(enabled_service(stack_config("dev")))
    assert {c: (line.service_gpus, line.free) for c, line in on.queues.capacity.items()} == {"spot": (0, 4), "onDemand": (3, 1)}


def test_a_rollout_surge_pod_is_kept_out_of_the_queues() -> None:
    # radstream-triton at replicas.max 3 needs 4 on-demand GPUs during a rolling update at max, which leaves none for
    # locomotion's nominal 1: Kueue could otherwise admit a run onto the GPU the surge pod needs, and the rollout would
    # stall past progressDeadlineSeconds.
    config = enabled_service(stack_config("dev"))
    config["simfleet:services"][0]["replicas"] = {"min": 1, "max": 3}
    found = issues(config)
    [message] = [m for p, m in found if p == "queues"]
    assert "nominal on-demand GPU quotas add up to 1 (locomotion 1)" in message
    assert "services take 4 at their max replicas plus a rolling update's surge pod (radstream-triton 4)" in message


def test_prod_leaves_on_demand_gpus_out_of_every_queue_for_a_service() -> None:
    cfg = load(stack_config("prod"), stack="prod")
    assert cfg.queues.names() == ("locomotion", "perception", "manipulation")
    assert cfg.queues.nominal_gpus("spot") == 16 and cfg.queues.nominal_gpus("onDemand") == 10


def test_without_a_section_one_queue_gets_every_gpu_the_services_leave() -> None:
    config = enabled_service(stack_config("dev"))
    del config["simfleet:queues"]
    cfg = load(config)
    assert cfg.queues.generated and cfg.queues.names() == (naming.GENERATED_QUEUE,) == ("shared",)
    assert cfg.queues.default_name == "shared"
    shared = quotas(cfg, "shared")
    # On-demand: 4 minus radstream-triton's 2 replicas and its surge pod.
    assert (shared["spot"].gpus, shared["onDemand"].gpus) == (4, 1)
    assert shared["spot"].borrowing_gpus is None


def test_default_is_the_marked_queue_else_the_first() -> None:
    config = stack_config("dev")
    assert load(config).queues.default_name == "locomotion"
    config["simfleet:queues"][0]["default"] = False
    assert load(config).queues.default_name == "locomotion"  # the first
    config["simfleet:queues"][1]["default"] = True
    assert load(config).queues.default_name == "perception"


def test_one_number_is_that_quota_on_each_capacity_type_of_the_stack() -> None:
    config = stack_config("dev")
    config["simfleet:queues"] = [{"name": "solo", "gpus": 1, "borrowingLimit": 0, "cpu": 4, "memory": "16Gi"}]
    # One GPU at a time: only workloads of one pod fit this queue (Kueue admits a Job whole).
    config["simfleet:runs"] = [{**r, "parallelism": 1} if r["mode"] == "batch" else r for r in config["simfleet:runs"]]
    config["simfleet:jobs"] = [{**j, "parallelism": 1} for j in config.get("simfleet:jobs", [])]
    solo = quotas(load(config), "solo")
    assert {c: (q.gpus, q.cpu, q.memory, q.borrowing_gpus) for c, q in solo.items()} == {
        "spot": (1, "4", "16Gi", 0),
        "onDemand": (1, "4", "16Gi", 0),
    }
    # A stack with on-demand GPUs only: the number is on-demand GPUs, and spot is no key of it.
    config["simfleet:platform"]["nodeGroups"]["gpu"]["capacity"] = ["onDemand"]
    config["simfleet:runs"] = [r for r in config["simfleet:runs"] if r["mode"] == "interactive"]
    solo = quotas(load(config), "solo")
    assert list(solo) == ["onDemand"] and solo["onDemand"].gpus == 1


def test_cpu_and_memory_default_to_the_gpu_nodes_share_per_gpu_and_borrowing_follows_the_gpus() -> None:
    cfg = load(stack_config("dev"))
    locomotion = quotas(cfg, "locomotion")
    # g5.2xlarge / g6.2xlarge: 8 vCPU and 32 GiB per GPU, less the node's reserve (0.5 CPU, 2.5 GiB) and, with
    # observability on, the add-on's agent and DCGM exporter (0.5 CPU, 0.25 GiB): 7 CPU and 29.25 GiB per GPU.
    assert (locomotion["spot"].cpu, locomotion["spot"].memory) == ("14", "59904Mi")
    assert (locomotion["onDemand"].cpu, locomotion["onDemand"].memory) == ("7", "29952Mi")
    assert (locomotion["spot"].borrowing_cpu, locomotion["spot"].borrowing_memory) == ("14", "59904Mi")
    perception = quotas(cfg, "perception")
    assert (perception["onDemand"].gpus, perception["onDemand"].cpu, perception["onDemand"].memory) == (0, "0", "0")
    assert perception["onDemand"].borrowing_gpus == 1 and perception["onDemand"].borrowing_cpu == "7"


def test_a_capacity_type_left_out_of_a_mapping_gets_the_fields_default() -> None:
    config = stack_config("dev")
    config["simfleet:queues"] = [{"name": "solo", "gpus": {"spot": 3}, "borrowingLimit": {"spot": 1}}]
    solo = quotas(load(config), "solo")
    assert (solo["spot"].gpus, solo["onDemand"].gpus) == (3, 0)
    assert (solo["spot"].borrowing_gpus, solo["onDemand"].borrowing_gpus) == (1, None)  # None: no limit


def test_capacity_types_are_listed_spot_first_whatever_the_platform_order() -> None:
    config = stack_config("dev")
    config["simfleet:platform"]["nodeGroups"]["gpu"]["capacity"] = ["onDemand", "spot"]
    cfg = load(config)
    assert list(cfg.queues.capacity) == ["spot", "onDemand"]
    assert [q.capacity for q in cfg.queues.teams[0].quotas] == ["spot", "onDemand"]


MALFORMED: list[tuple[str, Any, str, str]] = [
    ("not-a-mapping", "locomotion", "queues[0]", "expected a mapping (key: value pairs with keys borrowingLimit, cpu"),
    ("no-gpus", {"name": "a"}, "queues[0].gpus", "is required"),
    ("bad-name", {"name": "Loco_Motion", "gpus": 1}, "queues[0].name", "DNS-1123 label"),
    ("reserved-name", {"name": "default", "gpus": 1}, "queues[0].name", "LocalQueueDefaulting"),
    ("unknown-key", {"name": "a", "gpu": 1, "gpus": 1}, "queues[0].gpu", "did you mean 'gpus'"),
    ("unknown-capacity-key", {"name": "a", "gpus": {"spots": 1}}, "queues[0].gpus.spots", "did you mean 'spot'"),
    ("negative-gpus", {"name": "a", "gpus": -1}, "queues[0].gpus", "negative"),
    ("negative-split", {"name": "a", "gpus": {"spot": -2}}, "queues[0].gpus.spot", "-2 is too small; use at least 0"),
    ("fractional-gpus", {"name": "a", "gpus": 1.5}, "queues[0].gpus", "whole number"),
    ("bad-cpu", {"name": "a", "gpus": 1, "cpu": "-4"}, "queues[0].cpu", "not a Kubernetes quantity"),
    ("bad-memory-split", {"name": "a", "gpus": 1, "memory": {"spot": "lots"}}, "queues[0].memory.spot", "quantity"),
    ("negative-borrowing", {"name": "a", "gpus": 1, "borrowingLimit": -1}, "queues[0].borrowingLimit", "negative"),
    ("negative-weight", {"name": "a", "gpus": 1, "weight": -1}, "queues[0].weight", "-1 is too small; use at least 0"),
]


@pytest.mark.parametrize("case,entry,path,reason", MALFORMED, ids=[c[0] for c in MALFORMED])
def test_malformed_entry_names_path_and_reason(case: str, entry: Any, path: str, reason: str) -> None:
    config = stack_config("dev")
    config["simfleet:queues"] = [entry]
    found = issues(config)
    assert any(p == path and reason in m for p, m in found), found


def test_every_queue_error_is_reported_at_once_with_its_path() -> None:
    config = stack_config("dev")
    config["simfleet:queues"] = [
        {"name": "a", "default": True, "gpus": {"spot": 3, "onDemand": 1}},
        {"name": "a", "default": True, "gpus": {"spot": 2}},
        {"name": "b", "gpus": -1},
    ]
    config["simfleet:runs"][0]["maxRuntime"] = "forever"
    found = issues(config)
    paths = [p for p, _ in found]
    assert ("queues[1].name", "'a' is already used by queues[0] (a)") in found
    assert ("queues[1].default", "queues[0] (a) is already the default; only one can be") in found
    assert "queues[2].gpus" in paths
    # 3 + 2 spot GPUs on a spot group of 4.
    assert any(p == "queues" and "nominal spot GPU quotas add up to 5 (a 3, a 2)" in m for p, m in found), found
    # Every section's errors come together, queues (listed first in the stack files) before runs; an error about the
    # whole section follows its entries'.
    assert paths.index("queues[2].gpus") < paths.index("queues") < paths.index("runs[0].maxRuntime")


def test_quotas_must_leave_the_services_max_replicas_free() -> None:
    config = enabled_service(stack_config("dev"))
    config["simfleet:queues"][1]["gpus"]["onDemand"] = 1  # 1 + 1 on-demand, but Triton may take 3 of the 4
    [(path, message)] = issues(config)
    assert path == "queues"
    assert "nominal on-demand GPU quotas add up to 2 (locomotion 1, perception 1)" in message
    assert (
        "holds 4 at maxSize and services take 3 at their max replicas plus a rolling update's surge pod "
        "(radstream-triton 3), which leaves 1" in message
    )
    # Lowering the service's reach makes room.
    config["simfleet:services"][0]["replicas"]["max"] = 1
    assert load(config).queues.nominal_gpus("onDemand") == 2


def test_a_quota_on_a_capacity_type_the_stack_lacks_is_refused() -> None:
    config = stack_config("dev")
    platform = config["simfleet:platform"]
    platform["nodeGroups"]["gpu"]["capacity"] = ["spot"]
    config["simfleet:services"] = []
    config["simfleet:runs"] = [r for r in config["simfleet:runs"] if r["mode"] == "batch" and "run:" not in str(r["checkpoint"])]
    found = issues(config)
    assert ("queues[0].gpus.onDemand" in [p for p, _ in found]) and ("queues[1].borrowingLimit.onDemand" in [p for p, _ in found])
    assert all("no on-demand GPU node group" in m for p, m in found if p.endswith("onDemand")), found


def test_empty_or_non_list_sections_are_refused() -> None:
    config = stack_config("dev")
    config["simfleet:queues"] = []
    assert [p for p, _ in issues(config)] == ["queues"]
    config["simfleet:queues"] = {"name": "a"}
    assert issues(config) == [("queues", "simfleet:queues must be a list of queues")]


def test_a_borrowing_limit_beyond_the_free_gpus_warns() -> None:
    config = stack_config("dev")
    config["simfleet:queues"][0]["borrowingLimit"]["spot"] = 3  # 2 + 3 spot on a free spot pool of 4
    warnings = [w for w in load(config).warnings if w.startswith("queues")]
    assert warnings == [
        "queues[0].borrowingLimit: locomotion may hold 2 + 3 spot GPUs, more than the 4 queued work can ever have (the spot "
        "GPU node group holds 4 at maxSize and no service uses it, which leaves 4); Kueue lends only other teams' unused "
        "quota, so this team can reach at most the cohort's 4"
    ]


def test_all_zero_quotas_warn() -> None:
    config = stack_config("dev")
    for queue in config["simfleet:queues"]:
        queue["gpus"] = 0
    assert any(w.startswith("queues: every nominal GPU quota is 0") for w in load(config).warnings)


def test_capacity_arithmetic_and_the_runs_namespace_quota_between_queues_and_node_groups() -> None:
    cfg = load(stack_config("dev"))
    capacity = gpu_capacity(cfg.platform, cfg.services)
    assert capacity == cfg.queues.capacity
    nominal, preemptible = cfg.queues.nominal_gpus(), cfg.queues.preemptible_gpus()
    # Kueue admits at most 5 (spot 4, on-demand 1) and can take back at most the borrowed GPUs: spot 2 + 2 (each team
    # borrows up to its limit 2 of the other's 2), on-demand 1 (perception may borrow locomotion's 1).
    assert (nominal, preemptible) == (5, 5)
    # The quota leaves room for the preempted pods still terminating, at most every GPU of the node groups.
    assert node_group_gpus(capacity) == 8 and runs_gpu_quota(capacity, nominal, preemptible) == 8
    assert runs_gpu_quota(capacity, 3, 1) == 4
    # sum of nominal quotas <= the runs namespace's quota <= the node groups at maxSize
    assert gpu_quota_problems(runs_gpu_quota(capacity, nominal, preemptible), nominal, node_group_gpus(capacity)) == []
    assert "below the queues' nominal quotas" in gpu_quota_problems(4, 5, 8)[0]
    assert "above what the GPU node groups hold" in gpu_quota_problems(9, 5, 8)[0]
    # A service never leaves a negative number of GPUs free.
    assert GpuCapacity("spot", 2, (("svc", 3),)).free == 0


def test_names_and_default_are_known_without_the_platform() -> None:
    """What runs' and jobs' `queue:` fields are checked against, even when the platform section has errors."""
    from config.queues import QueueSpec, declared_queues

    specs = [(0, QueueSpec(name="a", gpus=1)), (1, QueueSpec(name="b", gpus=1, default=True))]
    declared = declared_queues(specs, True)
    assert (declared.names(), declared.default_name) == (("a", "b"), "b")
    generated = declared_queues([], False)
    assert (generated.names(), generated.default_name, generated.generated) == (("shared",), "shared", True)
    # The resolved queues keep both.
    cfg = load(stack_config("dev"))
    assert (
        cfg.queues.names()
        == declared_queues([(i, QueueSpec(**q)) for i, q in enumerate(stack_config()["simfleet:queues"])], True).names()
    )


def test_only_borrowed_gpus_count_as_preemptible() -> None:
    config = stack_config("dev")
    config["simfleet:runs"] = [r for r in config["simfleet:runs"] if r["name"] != "trot-sweep"]  # 3 at once: borrows
    config["simfleet:runs"] = [r for r in config["simfleet:runs"] if r["mode"] != "interactive" and "run:" not in str(r)]
    for queue in config["simfleet:queues"]:
        queue["borrowingLimit"] = {"spot": 0, "onDemand": 0}
    # Nobody borrows, so Kueue never preempts (withinClusterQueue Never): no headroom, the quota is the nominal total.
    cfg = load(config)
    assert cfg.queues.preemptible_gpus() == 0
    assert runs_gpu_quota(cfg.queues.capacity, cfg.queues.nominal_gpus(), 0) == cfg.queues.nominal_gpus() == 5
    # No limit: a team may borrow the rest of the cohort, and no more than the cohort holds in all.
    for queue in config["simfleet:queues"]:
        del queue["borrowingLimit"]
    assert load(config).queues.preemptible_gpus() == 4 + 1
