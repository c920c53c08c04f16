"""`simfleet:jobs`: the dev example, defaults, and every malformed entry with its path, all at once."""

from __future__ import annotations

import copy
import datetime
from pathlib import Path
from typing import Any

import pytest

from config import ConfigError, JobSpec, load_stack_config
from config.sources import load_yaml

ROOT = Path(__file__).resolve().parent.parent
TODAY = datetime.date(2026, 11, 23)


def dev() -> dict[str, Any]:
    config: dict[str, Any] = load_yaml((ROOT / "Pulumi.dev.yaml").read_text())["config"]
    return config


def load(config: dict[str, Any]) -> Any:
    return load_stack_config(
        config.get("simfleet:platform"),
        config.get("simfleet:runs"),
        services=config.get("simfleet:services"),
        jobs=config.get("simfleet:jobs"),
        queues=config.get("simfleet:queues"),
        stack="dev",
        source="Pulumi.dev.yaml",
        today=TODAY,
        offline=True,
    )


def errors(config: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(config)
    text = str(caught.value)
    assert text.startswith("Pulumi.dev.yaml")  # the file is named in the message
    return [f"{i.path}: {i.message}" for i in caught.value.issues]


def robocache(**changes: Any) -> dict[str, Any]:
    entry = copy.deepcopy(dev()["simfleet:jobs"][0])
    entry.update(changes)
    return entry


def with_jobs(*entries: dict[str, Any], **platform: Any) -> dict[str, Any]:
    config = dev()
    config["simfleet:jobs"] = list(entries)
    config["simfleet:platform"].update(platform)
    return config


def test_the_dev_preprocessing_job_is_what_the_issue_asks_for() -> None:
    [job] = load(dev()).jobs
    assert (job.shards, job.parallel_pods, job.gpus, job.shm_size, job.capacity) == (4, 2, 1, "16Gi", "spot")
    assert job.datasets is not None and job.datasets.read_only and job.datasets.path == "/datasets"
    assert job.spread_across_nodes and job.outputs.path == "/outputs"
    assert job.memory_limit_bytes == 28 * 2**30  # memory + shm: tmpfs pages are charged to the pod


def test_a_minimal_job_gets_the_defaults() -> None:
    job = JobSpec.model_validate({"name": "eval", "image": "robocache:1", "command": ["python", "eval.py"]})
    assert (job.shards, job.parallel_pods, job.gpus, job.capacity, job.max_runtime) == (1, 1, 1, "spot", 7200)
    assert job.datasets is None and job.shm_size is None and not job.spread_across_nodes


def test_every_problem_of_an_entry_is_reported_with_its_path() -> None:
    bad = robocache(
        parallelism=5,
        env={"SIMFLEET_SHARD": "x", "AWS_REGION": "y", "9lives": "z", "OK": "fine"},
        labels={"job": "x"},
        outputs={"path": "/tmp/out"},
        datasets={"path": "/outputs/data"},
        maxRuntime="8d",
    )
    found = errors(with_jobs(bad))
    assert "jobs[0].parallelism: 5 is more than shards (4)" in found
    assert any(e.startswith("jobs[0].env.SIMFLEET_SHARD: SIMFLEET_SHARD is set by simfleet") for e in found)
    assert any(e.startswith("jobs[0].env.AWS_REGION: ") for e in found)
    assert any(e.startswith("jobs[0].env.9lives: '9lives' is not an environment variable name") for e in found)
    assert not any(e.startswith("jobs[0].env.OK") for e in found)
    assert any(e.startswith("jobs[0].labels: key 'job' is simfleet's own") for e in found)
    assert "jobs[0].outputs.path: /tmp/out overlaps /tmp, which simfleet mounts itself" in found
    assert "jobs[0].datasets.path: /outputs/data overlaps outputs.path (/tmp/out)" not in found  # paths differ here
    assert "jobs[0].maxRuntime: longer than 7d; split the job into more shards" in found


def test_field_errors_keep_their_paths_and_other_entries_still_report() -> None:
    found = errors(
        with_jobs(
            robocache(gpus=0, command=[], shards=1001, shmSize="lots", datasets={"path": "data"}),
            robocache(name="empty-word", command=["python", ""]),
            robocache(name="Bad_Name", capacity="cheap"),
            robocache(name="ok-two", imagePullPolicy="Always"),
        )
    )
    paths = {e.split(": ")[0] for e in found}
    assert {"jobs[0].gpus", "jobs[0].command", "jobs[0].shards", "jobs[0].shmSize", "jobs[0].datasets.path"} <= paths
    assert {"jobs[1].command[1]", "jobs[2].name", "jobs[2].capacity", "jobs[3].imagePullPolicy"} <= paths


def test_shm_is_counted_with_memory_against_the_node() -> None:
    # g5.2xlarge and g6.2xlarge: 32 GiB, of which 29.25 GiB allocatable after the node's headroom (observability on).
    found = errors(with_jobs(robocache(memory="12Gi", shmSize="20Gi")))
    assert found == [
        "jobs[0].shmSize: memory (12Gi), shmSize (20Gi) and the uploader's 256Mi together: 33024Mi does not fit the "
        "smallest GPU node (29.25Gi allocatable); lower it, or use larger types in platform.nodeGroups.gpu.instanceTypes "
        "(g5.4xlarge (16 vCPU, 64 GiB), g6e.2xlarge (8 vCPU, 64 GiB))"
    ]


def test_the_uploader_beside_the_work_container_counts_against_the_node() -> None:
    found = errors(with_jobs(robocache(cpu="7.5", shmSize=None)))
    assert found == [
        "jobs[0].cpu: with the uploader's 100m CPU and 256Mi: 7600m CPU does not fit the smallest GPU node (7 CPU "
        "allocatable); lower it, or use larger types in platform.nodeGroups.gpu.instanceTypes (g5.4xlarge (16 vCPU, 64 GiB))"
    ]


def test_platform_rules_name_the_key_to_change() -> None:
    config = with_jobs(
        robocache(image="docker.io/someone/robocache:1", gpus=2, spreadAcrossNodes=True, parallelism=None, shards=6),
        robocache(name="on-demand-only", capacity="onDemand"),
    )
    config["simfleet:platform"]["sharedStorage"] = {"enabled": False}
    config["simfleet:platform"]["metrics"] = {"enabled": False}  # the Pushgateway keeps its file on shared storage
    config["simfleet:platform"]["nodeGroups"]["gpu"]["capacity"] = ["spot"]
    config["simfleet:runs"] = [r for r in config["simfleet:runs"] if r["mode"] == "batch"]
    config["simfleet:services"] = []
    found = errors(config)
    assert any(e.startswith("jobs[0].image: ") for e in found)
    assert any(e.startswith("jobs[0].gpus: asks for 2 GPUs, but a pod runs on one node and the stack's GPU nodes") for e in found)
    assert "jobs[0].datasets: the datasets claim needs shared storage: set platform.sharedStorage.enabled: true" in found
    assert any(e.startswith("jobs[1].capacity: the stack has no onDemand GPU node group") for e in found)


def test_spreading_needs_a_node_per_shard_at_once() -> None:
    found = errors(with_jobs(robocache(shards=8, parallelism=6)))
    assert (
        "jobs[0].spreadAcrossNodes: 6 shards at once on separate nodes need 6 GPU nodes, but the spot group's maxSize "
        "is 4; lower parallelism or raise maxSize"
    ) in found


def test_a_workload_its_queue_can_never_admit_whole_is_refused() -> None:
    # dev: locomotion holds 2 spot GPUs and 1 on-demand; the cohort 4 spot (perception's 2 lendable) and 1 on-demand.
    found = errors(with_jobs(robocache(shards=8, parallelism=5, spreadAcrossNodes=False)))
    assert found == [
        "jobs[0].parallelism: 5 pod(s) x 1 GPU(s) = 5 GPUs at once, but queue 'locomotion' can be admitted with at most "
        "4 (spot or onDemand: its nominal quota plus what it may borrow, within the cohort); Kueue admits a Job whole, "
        "so it would stay Queued. Lower parallelism, or raise the queue's quota or borrowingLimit (simfleet:queues)"
    ]
    config = dev()
    config["simfleet:runs"][1]["parallelism"] = 6  # trot-sweep, 8 seeds
    assert any(e.startswith("runs[1].parallelism: 6 pod(s) x 1 GPU(s) = 6 GPUs at once") for e in errors(config))


def test_names_are_unique_across_runs_jobs_and_services_and_their_objects() -> None:
    config = dev()
    config["simfleet:jobs"] = [
        robocache(name="trot-baseline"),  # a run's name
        robocache(name="trot-continue-gate"),  # the gate Job run trot-continue creates
        robocache(name="radstream-triton"),  # a service's name
        robocache(name="robocache-resample"),
        robocache(name="robocache-resample"),  # a duplicate within jobs: reported once, by the jobs rule
    ]
    found = errors(config)
    assert (
        "jobs[0].name: 'trot-baseline' is already used by runs[0] (trot-baseline); names must be unique across runs, jobs "
        "and services" in found
    )
    assert any(e.startswith("jobs[1].name: 'trot-continue-gate' is the name of an object runs[2] (trot-continue)") for e in found)
    assert any(e.startswith("services[0].name: 'radstream-triton' is already used by jobs[2] (radstream-triton)") for e in found)
    assert [e for e in found if e.startswith("jobs[4].name")] == [
        "jobs[4].name: 'robocache-resample' is already used by jobs[3] (robocache-resample); names are unique, rename one"
    ]


def test_jobs_must_be_a_list() -> None:
    config = dev()
    config["simfleet:jobs"] = {"name": "x"}
    assert errors(config) == ["jobs: simfleet:jobs must be a list of jobs, each entry starting with `- name:`"]


def test_a_run_or_job_names_one_of_the_stacks_queues() -> None:
    config = dev()
    config["simfleet:jobs"][0]["queue"] = "perceptoin"
    config["simfleet:runs"][1]["queue"] = "nobody"
    found = errors(config)
    assert (
        "jobs[0].queue: no queue named 'perceptoin'; the stack's queues are ['locomotion', 'perception']; did you mean 'perception'? (simfleet:queues)"
        in found
    )
    assert (
        "runs[1].queue: no queue named 'nobody'; the stack's queues are ['locomotion', 'perception'] (simfleet:queues)" in found
    )
    config["simfleet:jobs"][0]["queue"] = "perception"
    config["simfleet:runs"][1]["queue"] = "locomotion"
    cfg = load(config)
    assert cfg.jobs[0].queue == "perception" and cfg.queues.default_name == "locomotion"
