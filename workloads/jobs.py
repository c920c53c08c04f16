"""The Jobs component: one SimRun (kind `job`) per declared batch job, through the same provider as the runs.

A job gets the run's guarantees from the provider: adopted when its Job lives, recorded from its shards'
index.json when it already ran at this hash, never started again by a later `pulumi up`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from config import JobSpec
from workloads.job_identity import JobContext
from workloads.plans import PlannedJob, plan_jobs
from workloads.provider import SimRun
from workloads.runs import check_kubernetes_version, workload_summary

JOBS_INDEX = "simfleet-jobs"  # the ConfigMap listing the stack's jobs


@dataclass(frozen=True)
class JobsArgs:
    jobs: tuple[JobSpec, ...]
    # Plain values known when the program starts: the spec hashes are computed from these alone.
    context: JobContext
    # What must exist before any job's objects: the namespace and its service account, the buckets, the add-ons,
    # the datasets claim and the Pushgateway.
    after: Sequence[pulumi.Resource] = ()
    cluster: pulumi.Resource | None = None


def _index_entry(job: PlannedJob) -> dict[str, Any]:
    return {"specHash": job.identity.spec_hash, "outputsUri": job.identity.outputs_uri}


class Jobs(pulumi.ComponentResource):
    summary: pulumi.Output[dict[str, dict[str, Any]]]

    def __init__(self, name: str, args: JobsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        check_kubernetes_version(args.context.kubernetes_version)
        planned = plan_jobs(args.jobs, args.context)
        super().__init__("simfleet:workloads:Jobs", name, None, opts)
        # The declared jobs' index, in the cluster for operators (name -> hash and outputs). It is also the one object
        # that waits for the platform: each job waits for it, so a job's state lists one dependency, not every
        # platform resource (depending on the components directly put ~100 URNs, 12 KB, in every job's state).
        index = k8s.core.v1.ConfigMap(
            f"{name}-index",
            metadata={
                "name": JOBS_INDEX,
                "namespace": args.context.namespace,
                "labels": {"app.kubernetes.io/part-of": "simfleet"},
            },
            data={job.spec.name: json.dumps(_index_entry(job), sort_keys=True) for job in planned},
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.after), deleted_with=args.cluster),
        )
        sims = {
            job.spec.name: SimRun(
                f"{name}-{job.spec.name}",
                job.inputs,
                opts=pulumi.ResourceOptions(
                    parent=self,
                    # The Job is named after the job and its pod template is immutable (as a run's).
                    delete_before_replace=True,
                    depends_on=[index],
                    # Deleting the cluster deletes its Jobs: no API calls on its way out.
                    deleted_with=args.cluster,
                ),
            )
            for job in planned
        }
        static = {job.spec.name: {"jobName": job.spec.name, **_index_entry(job)} for job in planned}
        self.summary = workload_summary(static, sims)
        self.register_outputs({"summary": self.summary})
