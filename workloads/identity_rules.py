"""The identity rules' fingerprint: what the hash rules make of a fixed corpus of specs, pinned per identity version.

A spec hash is forever: `runs/<run>/<hash>/` is where a run's data lives, and an unchanged hash is what keeps a
finished run from running again. The rules that turn a spec into a hash (workloads/identity.py for runs,
workloads/job_identity.py for jobs: which fields count, their defaults, how values are normalised, which context
values are hashed) may therefore change only together with a new IDENTITY_VERSION, which moves every hash on
purpose (every run would run again: it needs a migration note in the docs).

`fingerprint()` hashes the rules' verdicts on CORPUS: a base run and a base job, each identity and non-identity
field written out at its default and set to another value, equal values spelt differently, and each context value
changed. A rule change moves at least one verdict, so the fingerprint; FINGERPRINTS pins the fingerprint of each
version, and tests/test_identity.py fails when the current one differs from its version's. What does not move it:
code that computes the same hashes, and a field added later whose default leaves every existing hash alone (it is
not in the corpus, and specs that do not set it hash as before). The corpus is part of the rules: never edit it, nor
an entry of FINGERPRINTS, within a version.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from config import JobSpec, RunSpec
from workloads.identity import IDENTITY_VERSION, RunContext, spec_hash
from workloads.job_identity import JobContext, job_spec_hash

# Written once, when a version is introduced; never edited afterwards (see the module docstring).
FINGERPRINTS = {1: "3de160fce3dc"}

_REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
_IMAGES = {"sim": "unitree-sim:4.2.0", "monty": "monty:1f3c2a9", "glue": "glue-base:0.3.1"}
_RUN: dict[str, Any] = {
    "name": "fingerprint",
    "mode": "batch",
    "images": _IMAGES,
    "profile": "quadruped-default",
    "glue": "glue/trot.py",
    "seeds": [1, 2, 3],
}
_INTERACTIVE = {**_RUN, "mode": "interactive", "seeds": [7]}
_RUN_CONTEXT = RunContext(
    cluster_name="simfleet-fp",
    namespace="simfleet-runs",
    service_account="simfleet-run",
    checkpoints_bucket="simfleet-fp-checkpoints",
    artifacts_bucket="simfleet-fp-artifacts",
    registry_url=_REGISTRY,
    region="us-east-1",
    kubernetes_version="1.35",
    vpc_cidr="10.40.0.0/16",
    default_queue="shared",
)
_GLUE_SHA = "0" * 64
# Each case: (name, the base entry's fields to change).
RUN_CASES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("base", {}),
    ("interactive", {"mode": "interactive", "seeds": [7]}),
    ("checkpoint-defaults", {"checkpoint": {"from": None, "save": True, "every": None}}),
    ("checkpoint-no-save", {"checkpoint": {"save": False}}),
    ("checkpoint-every", {"checkpoint": {"every": "15m"}}),
    ("checkpoint-s3", {"checkpoint": {"from": "s3://models-bucket/brains/walk.mstate"}}),
    ("seeds-default", {"seeds": [0]}),
    ("seeds-reordered", {"seeds": [3, 1, 2]}),
    ("seeds-other", {"seeds": [1, 2, 4]}),
    ("parallelism-limits", {"parallelism": 1}),
    ("parallelism-all", {"parallelism": 3}),
    ("maxRuntime-default", {"maxRuntime": 7200}),
    ("maxRuntime-spelt", {"maxRuntime": "2h"}),
    ("maxRuntime-other", {"maxRuntime": "3h"}),
    ("ttl-default", {"ttlAfterFinished": 600}),
    ("ttl-other", {"ttlAfterFinished": "1d"}),
    ("labels", {"labels": {"user": "alice"}}),
    ("gpus-default", {"gpus": 1}),
    ("gpus-other", {"gpus": 2}),
    ("cpu-default", {"cpu": "3"}),
    ("cpu-millis", {"cpu": "3000m"}),
    ("cpu-other", {"cpu": "4"}),
    ("memory-default", {"memory": "12Gi"}),
    ("memory-mebibytes", {"memory": "12288Mi"}),
    ("memory-other", {"memory": "16Gi"}),
    ("rerun-default", {"rerun": 0}),
    ("rerun-other", {"rerun": 1}),
    ("queue", {"queue": "locomotion"}),
    ("profile", {"profile": "quadruped-fast"}),
    ("glue-path", {"glue": "glue/other.py"}),
    ("image-full-uri", {"images": {**_IMAGES, "sim": f"{_REGISTRY}/unitree-sim:4.2.0"}}),
    ("image-other", {"images": {**_IMAGES, "monty": "monty:2a0b1c3"}}),
    ("image-foreign", {"images": {**_IMAGES, "glue": "ghcr.io/acme/glue-base:0.3.1"}}),
)
INTERACTIVE_CASES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("viewport", {"viewport": {"allowedCidrs": ["10.20.0.0/16"]}}),
    ("viewport-other-cidrs", {"viewport": {"allowedCidrs": ["10.30.0.0/16", "10.31.0.0/16"]}}),
)
RUN_CONTEXT_CASES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("cluster", {"cluster_name": "simfleet-other"}),
    ("namespace", {"namespace": "simfleet-other"}),
    ("service-account", {"service_account": "other"}),
    ("checkpoints-bucket", {"checkpoints_bucket": "other-checkpoints"}),
    ("artifacts-bucket", {"artifacts_bucket": "other-artifacts"}),
    ("registry", {"registry_url": "210987654321.dkr.ecr.eu-west-1.amazonaws.com"}),
    ("region", {"region": "eu-west-1"}),
    ("kubernetes-version", {"kubernetes_version": "1.34"}),
    ("vpc", {"vpc_cidr": "10.41.0.0/16"}),
    ("default-queue", {"default_queue": "other"}),
)

_JOB: dict[str, Any] = {
    "name": "fingerprint-job",
    "image": "robocache:0.4.2",
    "command": ["python", "-m", "robocache.preprocess"],
    "shards": 4,
}
_JOB_CONTEXT = JobContext(
    cluster_name="simfleet-fp",
    namespace="simfleet-runs",
    service_account="simfleet-job",
    artifacts_bucket="simfleet-fp-artifacts",
    registry_url=_REGISTRY,
    region="us-east-1",
    kubernetes_version="1.35",
    default_queue="shared",
)
JOB_CASES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("base", {}),
    ("image-full-uri", {"image": f"{_REGISTRY}/robocache:0.4.2"}),
    ("image-other", {"image": "robocache:0.4.3"}),
    ("command", {"command": ["python", "-m", "robocache.other"]}),
    ("args", {"args": ["--fast"]}),
    ("env", {"env": {"MODE": "fast"}}),
    ("shards-default", {"shards": 1}),
    ("shards-other", {"shards": 5}),
    ("parallelism-limits", {"parallelism": 2}),
    ("parallelism-all", {"parallelism": 4}),
    ("gpus-other", {"gpus": 2}),
    ("cpu-millis", {"cpu": "3000m"}),
    ("cpu-other", {"cpu": "8"}),
    ("memory-mebibytes", {"memory": "12288Mi"}),
    ("memory-other", {"memory": "32Gi"}),
    ("shm", {"shmSize": "8Gi"}),
    ("shm-spelt", {"shmSize": "8192Mi"}),
    ("capacity", {"capacity": "onDemand"}),
    ("maxRuntime-default", {"maxRuntime": 7200}),
    ("maxRuntime-other", {"maxRuntime": "3h"}),
    ("ttl-other", {"ttlAfterFinished": "1d"}),
    ("datasets", {"datasets": {}}),
    ("datasets-other", {"datasets": {"path": "/data", "readOnly": True}}),
    ("outputs-default", {"outputs": {"path": "/outputs"}}),
    ("outputs-other", {"outputs": {"path": "/results"}}),
    ("spread", {"spreadAcrossNodes": True}),
    ("labels", {"labels": {"user": "bob"}}),
    ("rerun-other", {"rerun": 2}),
    ("queue", {"queue": "perception"}),
)
JOB_CONTEXT_CASES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("cluster", {"cluster_name": "simfleet-other"}),
    ("namespace", {"namespace": "simfleet-other"}),
    ("service-account", {"service_account": "other"}),
    ("artifacts-bucket", {"artifacts_bucket": "other-artifacts"}),
    ("registry", {"registry_url": "210987654321.dkr.ecr.eu-west-1.amazonaws.com"}),
    ("region", {"region": "eu-west-1"}),
    ("kubernetes-version", {"kubernetes_version": "1.34"}),
    ("pushgateway", {"pushgateway_url": "http://prometheus-pushgateway.simfleet-metrics.svc:9091"}),
    ("datasets-claim", {"datasets_claim": "datasets"}),
    ("default-queue", {"default_queue": "other"}),
)


def verdicts() -> Iterator[tuple[str, str]]:
    """(case, the hash the rules give it) over the whole corpus; `invalid` for a case the models reject."""
    for name, changes in RUN_CASES:
        yield f"run/{name}", _run_hash({**copy.deepcopy(_RUN), **changes})
    for name, changes in INTERACTIVE_CASES:
        yield f"run/{name}", _run_hash({**copy.deepcopy(_INTERACTIVE), **changes})
    for name, fields in RUN_CONTEXT_CASES:
        yield f"run-context/{name}", _run_hash(copy.deepcopy(_RUN), replace(_RUN_CONTEXT, **fields))
    yield "run-context/glue-content", _run_hash(copy.deepcopy(_RUN), glue_sha="1" * 64)
    yield "run-context/source", _run_hash({**copy.deepcopy(_RUN), "checkpoint": {"from": "run:src"}}, source="abcdef012345")
    yield "run-context/other-source", _run_hash({**copy.deepcopy(_RUN), "checkpoint": {"from": "run:src"}}, source="abcdef012346")
    for name, changes in JOB_CASES:
        yield f"job/{name}", _job_hash({**copy.deepcopy(_JOB), **changes})
    for name, fields in JOB_CONTEXT_CASES:
        yield f"job-context/{name}", _job_hash(copy.deepcopy(_JOB), replace(_JOB_CONTEXT, **fields))


def _run_hash(entry: dict[str, Any], ctx: RunContext = _RUN_CONTEXT, glue_sha: str = _GLUE_SHA, source: str | None = None) -> str:
    try:
        return spec_hash(RunSpec.model_validate(entry), ctx, glue_sha, source)
    except ValueError:  # pydantic's ValidationError too; its wording is pydantic's, not a rule
        return "invalid"


def _job_hash(entry: dict[str, Any], ctx: JobContext = _JOB_CONTEXT) -> str:
    try:
        return job_spec_hash(JobSpec.model_validate(entry), ctx)
    except ValueError:
        return "invalid"


def fingerprint() -> str:
    """12 hex characters over every verdict of the corpus."""
    canonical = json.dumps(dict(verdicts()), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def problem(version: int = IDENTITY_VERSION) -> str | None:
    """Why the current rules do not match the version they claim to be, or None."""
    current = fingerprint()
    pinned = FINGERPRINTS.get(version)
    if pinned is None:
        return (
            f"identity version {version} has no pinned rules fingerprint; the current rules give {current}: add "
            f"{{{version}: {current!r}}} to workloads/identity_rules.py FINGERPRINTS, with the migration note for it"
        )
    if current != pinned:
        return (
            f"the identity rules changed (fingerprint {current}) but IDENTITY_VERSION is still {version} (pinned "
            f"{pinned}): every run whose spec hash moved would run again under a new prefix without anyone having "
            "asked for it. Undo the change, or bump IDENTITY_VERSION in workloads/identity.py, pin the new fingerprint "
            "under the new version in FINGERPRINTS and write the migration note; never edit a pinned entry"
        )
    return None
