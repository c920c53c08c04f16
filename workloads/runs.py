"""The Runs component: one SimRun (dynamic resource applying a Job and its objects) per declared run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi

from config import PROJECT_ROOT, RunSpec, checkpoint_order
from workloads.manifests import MIN_KUBERNETES_VERSION, RunContext, RunPlan, plan_run
from workloads.provider import SimRun


@dataclass(frozen=True)
class RunsArgs:
    runs: tuple[RunSpec, ...]
    cluster_name: pulumi.Input[str]
    region: str
    cluster_endpoint: pulumi.Input[str]
    cluster_ca: pulumi.Input[str]  # base64 CA data, as EKS reports it
    namespace: pulumi.Input[str]
    service_account: pulumi.Input[str]
    checkpoints_bucket: pulumi.Input[str]
    artifacts_bucket: pulumi.Input[str]
    registry_url: pulumi.Input[str]
    kubernetes_version: str | None = None
    cluster: pulumi.Resource | None = None
    glue_root: Path = PROJECT_ROOT  # glue paths in the run specs are relative to this


class Runs(pulumi.ComponentResource):
    """Turns each RunSpec into a SimRun, sources before the runs that continue from their checkpoints."""

    summary: pulumi.Output[dict[str, dict[str, Any]]]

    def __init__(self, name: str, args: RunsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("simfleet:workloads:Runs", name, None, opts)
        _check_kubernetes_version(args.kubernetes_version)
        context = pulumi.Output.all(
            cluster_name=args.cluster_name,
            namespace=args.namespace,
            service_account=args.service_account,
            checkpoints_bucket=args.checkpoints_bucket,
            artifacts_bucket=args.artifacts_bucket,
            registry_url=args.registry_url,
        ).apply(lambda values: RunContext(**values, region=args.region, kubernetes_version=args.kubernetes_version))

        # Many runs share a glue file: read each one once.
        glue_sources = {path: (args.glue_root / path).read_text() for path in {run.glue for run in args.runs}}
        plans: dict[str, pulumi.Output[RunPlan]] = {}
        sims: dict[str, SimRun] = {}
        for spec in checkpoint_order(args.runs):
            source = spec.checkpoint.from_run
            plan = _plan(spec, glue_sources[spec.glue], context, plans[source] if source else None)
            plans[spec.name] = plan
            sims[spec.name] = SimRun(f"{name}-{spec.name}", _props(spec, args, plan), opts=self._options(spec, args, sims))

        self.summary = _summary(args.runs, plans, sims)
        self.register_outputs({"summary": self.summary})

    def _options(self, spec: RunSpec, args: RunsArgs, sims: dict[str, SimRun]) -> pulumi.ResourceOptions:
        source = spec.checkpoint.from_run
        return pulumi.ResourceOptions(
            parent=self,
            # The Job is named after the run and its pod template is immutable: the old Job has to be gone
            # before the replacement with the same name can be created.
            delete_before_replace=True,
            # No data flows from the source SimRun (the consumer computes the source's hash itself), yet its
            # Job must be submitted first; the consumer's init container then waits for the out-checkpoint.
            depends_on=[sims[source]] if source else None,
            # Deleting the cluster deletes its Jobs and ConfigMaps, so don't call an API server on its way out.
            # Viewport runs are the exception: their Service owns an NLB that only the Load Balancer Controller
            # removes, so they are deleted through the API (before the add-ons) and the NLB doesn't leak.
            deleted_with=args.cluster if spec.viewport is None else None,
        )


def _check_kubernetes_version(version: str | None) -> None:
    if version is None:
        return
    major, minor = (int(part) for part in version.split(".")[:2])
    if (major, minor) < MIN_KUBERNETES_VERSION:
        wanted = ".".join(map(str, MIN_KUBERNETES_VERSION))
        raise ValueError(
            f"runs need Kubernetes {wanted} or newer (native sidecars, per-index Job backoff); the cluster runs {version}"
        )


def _plan(
    spec: RunSpec, glue: str, context: pulumi.Output[RunContext], source: pulumi.Output[RunPlan] | None
) -> pulumi.Output[RunPlan]:
    if source is None:
        return context.apply(lambda ctx: plan_run(spec, ctx, glue))
    return pulumi.Output.all(context, source).apply(lambda values: plan_run(spec, values[0], glue, values[1]))


def _props(spec: RunSpec, args: RunsArgs, plan: pulumi.Output[RunPlan]) -> dict[str, Any]:
    """The SimRun inputs (the contract with workloads/provider.py)."""
    return {
        "runName": spec.name,
        "namespace": args.namespace,
        "specHash": plan.apply(lambda p: p.spec_hash),
        "objects": plan.apply(lambda p: p.objects),
        "clusterName": args.cluster_name,
        "clusterEndpoint": args.cluster_endpoint,
        "clusterCa": args.cluster_ca,
        "region": args.region,
        "kubeconfig": None,  # EKS: the provider mints a token from the cluster name instead
        "artifactsBucket": args.artifacts_bucket,
        "artifactsPrefix": plan.apply(lambda p: p.prefix),
        "seeds": list(spec.seeds),
        "artifactsUri": plan.apply(lambda p: p.artifacts_uri),
        "checkpointUri": plan.apply(lambda p: p.checkpoint_uri),
    }


def _summary(
    runs: tuple[RunSpec, ...], plans: dict[str, pulumi.Output[RunPlan]], sims: dict[str, SimRun]
) -> pulumi.Output[dict[str, dict[str, Any]]]:
    # One Output over every run (not one per run), so thousands of runs stay cheap to export.
    names = [run.name for run in runs]
    flat: list[Any] = []
    for run in names:
        flat += [plans[run], sims[run].job_name, sims[run].status, sims[run].viewport_address]

    def build(values: list[Any]) -> dict[str, dict[str, Any]]:
        summary = {}
        for index, run in enumerate(names):
            plan, job_name, status, viewport = values[4 * index : 4 * index + 4]
            summary[run] = {
                "jobName": job_name,
                "status": status,
                "specHash": plan.spec_hash,
                "artifactsUri": plan.artifacts_uri,
                "checkpointUri": plan.checkpoint_uri,
            }
            if viewport:
                summary[run]["viewportAddress"] = viewport
        return summary

    return pulumi.Output.all(*flat).apply(build)
