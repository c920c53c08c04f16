"""The run rules, on runs and batch jobs alike (one SimRun resource), and the GPU capacity rule."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest
from policy_edits import (
    Failure,
    assert_breaks,
    container,
    edit,
    edit_objects,
    failure_ids,
    floats,
    job_meta,
    job_pod,
    job_spec,
    set_path,
    untested,
    violations,
)
from policy_stack import REGISTRY, compliant, context

from policies.rules import Resource, capacity, evaluate, runs
from policies.rules.pods import split_image

FAILURES: list[Failure] = [
    (
        "run-image-pinned",
        lambda rs: edit_objects(
            rs, "runs-trot-baseline", lambda o: container(o, "monty").update(image=f"{REGISTRY}/monty:latest")
        ),
        ":latest",
    ),
    (
        "run-image-pinned",
        lambda rs: edit_objects(rs, "runs-trot-baseline", lambda o: container(o, "monty").update(image=f"{REGISTRY}/monty")),
        "no tag",
    ),
    (
        "run-image-source",
        lambda rs: edit_objects(
            rs, "runs-trot-sweep", lambda o: container(o, "unitree-sim").update(image="docker.io/evil/sim:1.0")
        ),
        "docker.io/evil/sim:1.0",
    ),
    (
        "run-image-source",
        lambda rs: edit_objects(rs, "runs-trot-sweep", lambda o: container(o, "monty").update(image=f"{REGISTRY}/other:1.0")),
        "other:1.0",
    ),
    (
        # Batch jobs are checked by the same rules: here the work container's image.
        "run-image-source",
        lambda rs: edit_objects(rs, "jobs-resample", lambda o: container(o, "work").update(image="docker.io/evil/x:1")),
        "docker.io/evil/x:1",
    ),
    (
        "run-restricted-pod-security",
        lambda rs: edit_objects(
            rs, "jobs-resample", lambda o: container(o, "work")["securityContext"].update(allowPrivilegeEscalation=True)
        ),
        "allowPrivilegeEscalation",
    ),
    (
        "run-gpu-request-equals-limit",
        lambda rs: edit_objects(
            rs, "runs-trot-sweep", lambda o: container(o, "unitree-sim")["resources"]["limits"].update({"nvidia.com/gpu": "2"})
        ),
        "differs from limit",
    ),
    (
        "run-gpu-request-equals-limit",
        lambda rs: edit_objects(rs, "runs-trot-sweep", lambda o: container(o, "unitree-sim")["resources"].pop("limits")),
        "no limit",
    ),
    (
        "run-deadline-and-ttl",
        lambda rs: edit_objects(rs, "runs-trot-sweep", lambda o: job_spec(o).pop("activeDeadlineSeconds")),
        "activeDeadlineSeconds",
    ),
    (
        "run-deadline-and-ttl",
        lambda rs: edit_objects(rs, "runs-trot-sweep", lambda o: job_spec(o).pop("ttlSecondsAfterFinished")),
        "ttlSecondsAfterFinished",
    ),
    (
        # A run whose inputs do not render (here a hand-edited spec) is a violation, never a quiet pass.
        "run-deadline-and-ttl",
        lambda rs: edit(rs, "runs-trot-sweep", set_path(["spec"], '{"name": "trot-sweep"}')),
        "do not render from its inputs",
    ),
    (
        "run-restricted-pod-security",
        lambda rs: edit_objects(
            rs,
            "runs-trot-baseline",
            lambda o: container(o, "glue")["securityContext"].update(allowPrivilegeEscalation=True),
        ),
        "allowPrivilegeEscalation",
    ),
    (
        "run-restricted-pod-security",
        lambda rs: edit_objects(
            rs, "runs-trot-baseline", lambda o: job_pod(o)["volumes"].append({"name": "host", "hostPath": {"path": "/"}})
        ),
        "hostPath",
    ),
    (
        "run-restricted-pod-security",
        lambda rs: edit_objects(
            rs,
            "runs-trot-baseline",
            lambda o: container(o, "checkpoint-fetch")["securityContext"]["capabilities"].update(drop=[]),
        ),
        "drop must include ALL",
    ),
    (
        "run-batch-spot-first",
        lambda rs: edit_objects(
            rs, "runs-trot-sweep", lambda o: job_pod(o)["nodeSelector"].update({"eks.amazonaws.com/capacityType": "ON_DEMAND"})
        ),
        "found ON_DEMAND",
    ),
    (
        # Pinning spot is as wrong: Kueue could never fall back to the on-demand flavor.
        "run-batch-spot-first",
        lambda rs: edit_objects(
            rs, "runs-trot-sweep", lambda o: job_pod(o)["nodeSelector"].update({"eks.amazonaws.com/capacityType": "SPOT"})
        ),
        "found SPOT",
    ),
    (
        "run-queued",
        lambda rs: edit_objects(rs, "runs-trot-sweep", lambda o: job_spec(o).pop("suspend")),
        "created suspended",
    ),
    (
        "run-queued",
        lambda rs: edit_objects(rs, "jobs-resample", lambda o: job_meta(o)["labels"].pop("kueue.x-k8s.io/queue-name")),
        "no gate Job that adds one",
    ),
    (
        "run-queued",
        lambda rs: edit_objects(rs, "runs-trot-baseline", lambda o: job_meta(o)["labels"].pop("kueue.x-k8s.io/priority-class")),
        "no kueue.x-k8s.io/priority-class label",
    ),
    (
        "run-gpu-capacity",
        lambda rs: edit_objects(rs, "runs-trot-sweep", lambda o: job_spec(o).update(parallelism=20, completions=20)),
        "20 GPUs on any capacity",
    ),
    (
        "run-gpu-capacity",
        lambda rs: edit_objects(rs, "jobs-resample", lambda o: job_spec(o).update(parallelism=9)),
        "GPUs on ON_DEMAND capacity",
    ),
]


@pytest.mark.parametrize(("name", "mutate", "expected"), FAILURES, ids=failure_ids(FAILURES))
def test_rule_fails_on_broken_stack(name: str, mutate: Callable[[list[Resource]], list[Resource]], expected: str) -> None:
    assert_breaks(name, mutate, expected)


def test_every_run_rule_has_a_failing_case() -> None:
    assert untested((*runs.RULES, *capacity.RULES), FAILURES) == set()


def test_integers_arriving_as_floats_change_nothing() -> None:
    resources = [replace(r, props=floats(dict(r.props))) for r in compliant("dev")]
    assert evaluate(resources, context()) == []
    broken = edit_objects(resources, "runs-trot-sweep", lambda o: job_spec(o).update(parallelism=20.0, completions=20.0))
    assert [v.policy for v in evaluate(broken, context())] == ["run-gpu-capacity"]


def test_image_allow_list_admits_listed_prefixes_only() -> None:
    resources = edit_objects(
        compliant("dev"), "runs-trot-sweep", lambda o: container(o, "unitree-sim").update(image="nvcr.io/nvidia/isaac-lab:2.1.0")
    )
    assert violations("run-image-source", resources)
    assert violations("run-image-source", resources, context(image_allow_list=("nvcr.io/nvidia",))) == []
    # A prefix matches whole path segments: nvcr.io/nvidia does not admit nvcr.io/nvidia-evil.
    evil = edit_objects(
        resources, "runs-trot-sweep", lambda o: container(o, "unitree-sim").update(image="nvcr.io/nvidia-evil/x:1")
    )
    assert violations("run-image-source", evil, context(image_allow_list=("nvcr.io/nvidia",)))


def test_split_image() -> None:
    assert split_image(f"{REGISTRY}/monty:1f3c2a9") == (REGISTRY, "monty", "1f3c2a9", None)
    assert split_image("localhost:5000/a/b") == ("localhost:5000", "a/b", None, None)
    assert split_image("busybox:1.36") == (None, "busybox", "1.36", None)
    assert split_image("x/y@sha256:abc") == (None, "x/y", None, "sha256:abc")
