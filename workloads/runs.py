"""The Runs component: one SimRun per declared run, and one shared, immutable ConfigMap per glue file content."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from config import PROJECT_ROOT, RunSpec
from workloads.identity import RunContext
from workloads.plans import PlannedRun, plan_runs
from workloads.provider import SimRun
from workloads.renderers.run import MIN_KUBERNETES_VERSION, glue_configmap


@dataclass(frozen=True)
class RunsArgs:
    runs: tuple[RunSpec, ...]
    # Plain values known when the program starts: the spec hashes are computed from these alone.
    context: RunContext
    # What must exist before any run's objects: the guarded namespace, the configured buckets, the add-ons.
    after: Sequence[pulumi.Resource] = ()
    cluster: pulumi.Resource | None = None
    glue_root: Path = PROJECT_ROOT  # glue paths in the run specs are relative to this
    # Names this component was registered under before a rename. Each run keeps its URN through an alias, so a
    # rename never looks like "create new runs, delete old ones" (which would start every run again). Give the
    # component itself the matching `aliases=[pulumi.Alias(name=...)]` in its resource options.
    previous_names: tuple[str, ...] = ()


class Runs(pulumi.ComponentResource):
    """Turns each RunSpec into a SimRun; the Kubernetes provider for the glue ConfigMaps comes through opts.providers."""

    summary: pulumi.Output[dict[str, dict[str, Any]]]

    def __init__(self, name: str, args: RunsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        check_kubernetes_version(args.context.kubernetes_version)
        # Many runs share a glue file: read each one once.
        glue_sources = {path: (args.glue_root / path).read_text() for path in sorted({run.glue for run in args.runs})}
        planned = plan_runs(args.runs, args.context, glue_sources)
        super().__init__("simfleet:workloads:Runs", name, None, opts)

        # Deleting the cluster deletes its Jobs and ConfigMaps, so don't call an API server on its way out.
        glue_maps: dict[str, k8s.core.v1.ConfigMap] = {}
        for run in planned:
            if run.glue_sha in glue_maps:
                continue
            manifest = glue_configmap(args.context.namespace, run.glue_sha, glue_sources[run.spec.glue])
            glue_maps[run.glue_sha] = k8s.core.v1.ConfigMap(
                f"{name}-{manifest['metadata']['name']}",
                metadata=manifest["metadata"],
                immutable=manifest["immutable"],
                data=manifest["data"],
                # Only the glue ConfigMaps wait for the platform; each SimRun waits for its glue ConfigMap, so the
                # order holds transitively without every run depending on every platform resource.
                opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.after), deleted_with=args.cluster),
            )

        sims: dict[str, SimRun] = {}
        for run in planned:
            source = run.spec.checkpoint.from_run
            sims[run.spec.name] = SimRun(
                f"{name}-{run.spec.name}",
                # The provider asks EKS for the endpoint and CA of context.clusterName when it needs them.
                run.inputs,
                opts=pulumi.ResourceOptions(
                    parent=self,
                    # The Job is named after the run and its pod template is immutable: the old Job has to be gone
                    # before the replacement with the same name can be created.
                    delete_before_replace=True,
                    # No data flows between them (the hash is plain), but the glue must exist before the pod, and a
                    # continuation's source Job is submitted first.
                    depends_on=[glue_maps[run.glue_sha], *([sims[source]] if source else [])],
                    # Viewport runs are deleted through the API (before the add-ons): their Service owns an NLB
                    # that only the Load Balancer Controller removes. The rest go with the cluster.
                    deleted_with=args.cluster if run.spec.viewport is None else None,
                    aliases=[pulumi.Alias(name=f"{old}-{run.spec.name}") for old in args.previous_names] or None,
                ),
            )

        self.summary = _summary(planned, sims)
        self.register_outputs({"summary": self.summary})


def check_kubernetes_version(version: str | None) -> None:
    if version is None:
        return
    major, minor = (int(part) for part in version.split(".")[:2])
    if (major, minor) < MIN_KUBERNETES_VERSION:
        wanted = ".".join(map(str, MIN_KUBERNETES_VERSION))
        raise ValueError(
            f"runs need Kubernetes {wanted} or newer (native sidecars, per-index Job backoff); the cluster runs {version}"
        )


def _summary(planned: list[PlannedRun], sims: dict[str, SimRun]) -> pulumi.Output[dict[str, dict[str, Any]]]:
    static = {
        run.spec.name: {
            "jobName": run.spec.name,
            "specHash": run.identity.spec_hash,
            "artifactsUri": run.identity.artifacts_uri,
            "checkpointUri": run.identity.checkpoint_uri,
        }
        for run in planned
    }
    return workload_summary(static, sims)


# Outputs gathered per Output.all: the SDK unions each part's resources into a new set per part (pulumi/output.py
# Output.all, gather_data), quadratic in the parts of one call; in groups, a 10,000-run summary costs about as much
# per run as a 100-run one. The value, its resources, and whether it is known or secret are the same.
SUMMARY_GROUP = 256


def workload_summary(static: dict[str, dict[str, Any]], sims: dict[str, SimRun]) -> pulumi.Output[dict[str, dict[str, Any]]]:
    """Each workload's plain facts plus what its SimRun observed (status, viewport, recoveries), in one Output.

    One Output over every workload (not one per workload), so thousands of them stay cheap to export.
    """
    names = list(static)
    flat: list[Any] = []
    for name in names:
        sim = sims[name]
        flat += [sim.status, sim.viewport_address, sim.recoveries]

    def build(values: list[Any]) -> dict[str, dict[str, Any]]:
        summary = {}
        for index, name in enumerate(names):
            status, viewport, recoveries = values[3 * index : 3 * index + 3]
            summary[name] = {**static[name], "status": status}
            if viewport:
                summary[name]["viewportAddress"] = viewport
            if recoveries:
                summary[name]["recoveries"] = recoveries
        return summary

    return gathered(flat).apply(build)


def gathered(outputs: list[Any]) -> pulumi.Output[list[Any]]:
    """pulumi.Output.all(*outputs), gathered in groups of SUMMARY_GROUP (then groups of groups) so the SDK's union of
    their resources stays linear: the same values in the same order, the same resources, known and secret alike."""
    if len(outputs) <= SUMMARY_GROUP:
        return pulumi.Output.all(*outputs)
    groups = [gathered(outputs[i : i + SUMMARY_GROUP]) for i in range(0, len(outputs), SUMMARY_GROUP)]
    return gathered(groups).apply(lambda parts: [value for part in parts for value in part])
