"""The SimRun dynamic resource: runs a declared run once, reports its status, and never starts a finished run again.

create  1. a Job with the run's name already there? Ours (same spec hash): adopt it. Terminating: wait it out.
           Someone else's: stop, and write nothing.
        2. no Job: read runs/<run>/<hash>/index.json (per seed) in S3. Every seed ran: record the outcome and start
           nothing (a lost state, a rename or a rolled-back state never reruns a run). Some seeds ran: the new Job
           gets only the others.
        3. write the companions (runtime ConfigMap, viewport Service), then the Job, then make the Job their owner
           (TTL cleanup of the Job removes them, and with the Service its NLB).
diff    replace (delete first: the Job keeps its name) only when the spec hash, name, namespace or kind changed,
        never on a value it cannot see; update for labels, TTL, connection and the stored provider reference.
update  applies label and TTL changes to the live Job; nothing reruns.
read    the status from the Job while it is ours, else from index.json.
delete  only the objects this resource created (uid preconditions), Background propagation; S3 is never touched.
"""

from __future__ import annotations

import json
from typing import Any

import pulumi
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, ReadResult, ResourceProvider, UpdateResult

from config import RunSpec
from workloads import inputs as run_inputs
from workloads import status
from workloads.identity import RunIdentity, index_keys, run_prefix
from workloads.inputs import context_of, spec_of, whole_numbers_as_ints
from workloads.kube import RETRY, TERMINATING, KubeApi, RetryPolicy, SimRunError, WaitPolicy, conflict, spec_hash_of
from workloads.sdk_fix import install_sdk_fix

__all__ = ["RETRY", "TERMINATING", "RetryPolicy", "SimRun", "SimRunError", "SimRunProvider", "WaitPolicy"]

# Inputs whose change means another Job. The spec hash covers the spec (rerun included) and its context; the
# name and namespace are the Job's identity; the kind picks the renderer.
REPLACE_KEYS = ("specHash", "runName", "namespace", "kind")
REQUIRED_KEYS = ("kind", "runName", "namespace", "specHash", "spec", "context")
# Outputs the provider computes; declared as None inputs so the SDK creates their Output attributes.
STATE_KEYS = ("status", "startTime", "completionTime", "viewportAddress", "jobUid", "companions")
# The outputs the program itself reads (the stack's `runs` export).
PROGRAM_OUTPUTS = ("status", "viewportAddress")
PROVIDER_KEY = "__provider"  # pulumi.dynamic's property holding the pickled provider
# Spec fields a live Job takes without rerunning: the Job's labels, and its TTL (spec.ttlSecondsAfterFinished
# is mutable; batch/v1 JobSpec).
MUTABLE_SPEC_KEYS = ("labels", "ttlAfterFinished")


class SimRunProvider(ResourceProvider):
    """CRUD for one run. Pickled by reference (module + class name), so the state holds no code and no secrets."""

    # It captures nothing, so its pickle needs no encryption in the state (the SDK default encrypts it always),
    # and every instance pickles to the same string (workloads/sdk_fix.py computes it once).
    serialize_as_secret_always = False
    simfleet_stateless = True

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        return CheckResult(news, [CheckFailure(key, reason) for key, reason in check_inputs(news)])

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        from pulumi.runtime.rpc import UNKNOWN

        # Never replace on a value not known yet: the engine would delete the Job (and rerun the run) for nothing.
        replaces = [key for key in REPLACE_KEYS if news.get(key) != UNKNOWN and olds.get(key) != news.get(key)]
        compared = (set(olds) | set(news)) - {*STATE_KEYS, "jobName"}
        # The provider reference is compared too: after a module rename the state must learn the new one, or
        # refresh and delete would load a reference that no longer imports.
        changed = sorted(key for key in compared if olds.get(key) != news.get(key))
        return DiffResult(changes=bool(changed), replaces=replaces, delete_before_replace=bool(replaces))

    def create(self, props: dict[str, Any]) -> CreateResult:
        props = whole_numbers_as_ints(props)
        run = run_inputs.decode(props)
        api = api_for(props)
        name = run.spec.name
        job_path = f"/apis/batch/v1/namespaces/{api.namespace}/jobs/{name}"

        existing = api.get(job_path, f"Job {name}")
        if existing is not None and (existing.get("metadata") or {}).get("deletionTimestamp"):
            api.wait_gone(job_path, f"Job {name}", existing)  # the Job this one replaces is still going away
            existing = None
        if existing is not None and spec_hash_of(existing) == run.identity.spec_hash:
            # A retry after a crash, or a lost state while the Job lives: adopt it, start nothing.
            return CreateResult(run_id(props), outputs(props, self._adopted(api, existing, run.objects())))

        documents = read_indexes(props, run.identity)
        pending = tuple(seed for seed, doc in zip(run.identity.seeds, documents, strict=True) if not status.seed_finished(doc))
        if not pending:
            # Every seed already ran at this hash: record how it ended, create nothing.
            return CreateResult(run_id(props), outputs(props, {**status.index_state(documents), "jobUid": None}))
        if existing is not None:
            raise conflict(name, api.namespace, name, spec_hash_of(existing), run.identity.spec_hash)

        objects = run.objects(pending)
        companions = [api.apply_companion(obj) for obj in objects if obj["kind"] != "Job"]
        job = api.create_job(next(obj for obj in objects if obj["kind"] == "Job"))
        for companion in companions:
            api.set_owner(companion, job)
        state = status.job_state(job, [])
        return CreateResult(run_id(props), outputs(props, {**state, **_uids(job, companions)}))

    def _adopted(self, api: KubeApi, job: dict[str, Any], rendered: list[dict[str, Any]]) -> dict[str, Any]:
        companions = []
        for obj in rendered:
            if obj["kind"] == "Job":
                continue
            found = api.get(_path(obj, api.namespace), f"{obj['kind']} {obj['metadata']['name']}")
            if found is not None and spec_hash_of(found) == spec_hash_of(job):
                companions.append(found)
        phases = api.pod_phases(job) if status.job_needs_pods(job) else []
        return {**status.job_state(job, phases), **_uids(job, companions)}

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        news = whole_numbers_as_ints(news)
        kept = {key: olds.get(key) for key in STATE_KEYS}
        if olds.get("specHash") != news.get("specHash"):
            raise SimRunError(
                f"run {news.get('runName')}: its spec hash changed within an update ({olds.get('specHash')} -> "
                f"{news.get('specHash')}); this is a simfleet bug (diff must replace). Nothing was changed."
            )
        patch = job_patch(spec_of(olds), spec_of(news))
        if patch and olds.get("jobUid"):
            api = api_for(news)
            job_ref = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": news["runName"]}}
            live = api.get(_path(job_ref, api.namespace), f"Job {news['runName']}")
            if live is not None and (live.get("metadata") or {}).get("uid") == olds["jobUid"]:
                patch["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"]  # only the Job we read
                api.patch(job_ref, patch, f"updating the labels and TTL of Job {news['runName']}")
        return UpdateResult(outputs(news, kept))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        # Never an empty id: that would drop the run from the state, and the next `pulumi up` would start it again.
        props = whole_numbers_as_ints(props)
        return ReadResult(id_ or run_id(props), outputs(props, observe(props)))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        props = whole_numbers_as_ints(props)
        if not props.get("jobUid"):
            return  # recorded from S3 only: this resource created nothing in the cluster
        api = api_for(props)
        # The Job first, so nothing runs without its ConfigMap; then its companions (the Service and its NLB).
        api.delete("batch/v1", "Job", props["runName"], uid=props["jobUid"])
        for ref in props.get("companions") or []:
            api.delete(ref["apiVersion"], ref["kind"], ref["name"], uid=ref.get("uid"))


# ---------------------------------------------------------------------------------------------
# Helpers shared by the operations (pure where they can be)
# ---------------------------------------------------------------------------------------------


def run_id(props: dict[str, Any]) -> str:
    return f"{props['namespace']}/{props['runName']}"


def outputs(props: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    """Every input needed later (read and delete get only these) plus the observed state; never a token."""
    outs = {key: value for key, value in props.items() if key not in (PROVIDER_KEY, *STATE_KEYS)}
    outs["jobName"] = props["runName"]
    outs.update({key: state.get(key) for key in STATE_KEYS})
    return outs


def _uids(job: dict[str, Any], companions: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "jobUid": job["metadata"].get("uid"),
        "companions": [
            {"apiVersion": c["apiVersion"], "kind": c["kind"], "name": c["metadata"]["name"], "uid": c["metadata"].get("uid")}
            for c in companions
        ],
    }


def _path(obj: dict[str, Any], namespace: str) -> str:
    from workloads.kube import object_path

    return object_path(obj, namespace)


def job_patch(old_spec: dict[str, Any], new_spec: dict[str, Any]) -> dict[str, Any]:
    """The merge patch that takes a live Job from the old spec's labels and TTL to the new one's; {} when equal."""
    from workloads.manifests import DEFAULT_TTL_SECONDS, user_labels

    if all(old_spec.get(key) == new_spec.get(key) for key in MUTABLE_SPEC_KEYS):
        return {}
    old_labels, new_labels = user_labels(old_spec.get("labels") or {}), user_labels(new_spec.get("labels") or {})
    labels: dict[str, str | None] = {key: None for key in old_labels if key not in new_labels}  # null removes
    labels.update(new_labels)
    return {
        "metadata": {"labels": labels},
        "spec": {"ttlSecondsAfterFinished": new_spec.get("ttlAfterFinished", DEFAULT_TTL_SECONDS)},
    }


def check_inputs(props: dict[str, Any]) -> list[tuple[str, str]]:
    """The contract between the Runs component and this provider; values still unknown at preview are skipped."""
    from pulumi.runtime.rpc import UNKNOWN

    failures = [(key, f"{key} is required") for key in REQUIRED_KEYS if key not in props]
    if failures or _contains(props, UNKNOWN):
        return failures
    try:
        run_inputs.decode(props)
    except (ValueError, KeyError, TypeError) as err:  # pydantic's ValidationError is a ValueError
        failures.append(("spec", f"the run's inputs do not decode: {err}"))
    return failures


def _contains(value: Any, sentinel: str) -> bool:
    if isinstance(value, dict):
        return any(_contains(item, sentinel) for item in value.values())
    if isinstance(value, list):
        return any(_contains(item, sentinel) for item in value)
    return value == sentinel


def api_for(props: dict[str, Any]) -> KubeApi:
    """The cluster connection: EKS's own endpoint and CA for the cluster name, unless the inputs give them.

    `clusterEndpoint` + `clusterCa`, or `kubeconfig`, are for clusters that are not EKS (and for tests).
    """
    from pulumi.runtime.rpc import unwrap_rpc_secret

    from workloads import eks_auth

    context = context_of(props)
    cluster, region = str(context.get("clusterName")), str(context.get("region"))
    kubeconfig = unwrap_rpc_secret(props.get("kubeconfig")) or None
    endpoint, ca = props.get("clusterEndpoint"), props.get("clusterCa")
    if not kubeconfig and not endpoint:
        try:
            endpoint, ca = eks_auth.describe_cluster(cluster, region)
        except ConnectionError as err:
            raise SimRunError(f"run {props.get('runName')}: {err}") from None
    conn = eks_auth.Connection(cluster, str(endpoint or ""), str(ca or ""), region, kubeconfig)
    return KubeApi(str(props["runName"]), str(props["namespace"]), conn)


def identity_of(props: dict[str, Any]) -> RunIdentity:
    """The parts of a run's identity that read needs, from its stored outputs (no spec validation)."""
    seeds = tuple(spec_of(props).get("seeds") or RunSpec.model_fields["seeds"].get_default(call_default_factory=True))
    prefix = run_prefix(str(props["runName"]), str(props["specHash"]))
    return RunIdentity(str(props["runName"]), str(props["specHash"]), prefix, "", None, None, seeds)


def observe(props: dict[str, Any]) -> dict[str, Any]:
    """The run's state: from its Job while that is the one this resource created (or adopted), else from S3."""
    api = api_for(props)
    name = str(props["runName"])
    job = api.get(f"/apis/batch/v1/namespaces/{api.namespace}/jobs/{name}", f"Job {name}")
    uid = props.get("jobUid")
    ours = (
        job is not None
        and spec_hash_of(job) == props["specHash"]
        and (uid is None or (job.get("metadata") or {}).get("uid") == uid)
    )
    if ours:
        assert job is not None
        state = status.job_state(job, api.pod_phases(job) if status.job_needs_pods(job) else [])
        if uid is None:
            state["jobUid"] = (job.get("metadata") or {}).get("uid")  # adopted on refresh
    else:
        # Gone (TTL controller) or replaced by someone else's Job: the uploader's index.json has the outcome.
        state = status.index_state(read_indexes(props, identity_of(props)))
    state["viewportAddress"] = viewport_address(api, props)
    return {key: state.get(key, props.get(key)) for key in STATE_KEYS}


def viewport_address(api: KubeApi, props: dict[str, Any]) -> str | None:
    service = next((c for c in props.get("companions") or [] if c.get("kind") == "Service"), None)
    if service is None:
        return None
    body = api.get(f"/api/v1/namespaces/{api.namespace}/services/{service['name']}", f"Service {service['name']}")
    if body is None or (body.get("metadata") or {}).get("uid") != service.get("uid"):
        return None
    ingress = ((body.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return (ingress[0].get("hostname") or ingress[0].get("ip")) if ingress else None


def read_indexes(props: dict[str, Any], identity: RunIdentity) -> list[dict[str, Any] | None]:
    """Each seed's index.json (None where a seed wrote none), read from the artifacts bucket."""
    context = context_of(props)
    return [
        read_index(str(props["runName"]), str(context.get("region")), str(context.get("artifactsBucket")), key)
        for key in index_keys(identity.prefix, identity.seeds)
    ]


def read_index(run: str, region: str, bucket: str, key: str) -> dict[str, Any] | None:
    from botocore.exceptions import BotoCoreError, ClientError

    from workloads import eks_auth

    try:
        body = eks_auth.s3_client(region).get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise SimRunError(
            f"run {run}: reading s3://{bucket}/{key} failed ({err}). This file is the record of whether the run "
            "already ran, so nothing is started without it: check that your AWS identity can read the artifacts "
            "bucket, then run `pulumi up` again."
        ) from None
    except BotoCoreError as err:
        raise SimRunError(f"run {run}: reading s3://{bucket}/{key} failed ({err}); check AWS access and try again") from None
    try:
        document = json.loads(body)
    except json.JSONDecodeError:
        return {"status": "Failed"}  # the uploader writes it last and whole; anything else is a broken run
    return document if isinstance(document, dict) else {"status": "Failed"}


# ---------------------------------------------------------------------------------------------
# The resource
# ---------------------------------------------------------------------------------------------


class SimRun(pulumi.dynamic.Resource):
    """One declared run as a Kubernetes Job (plus its ConfigMap and viewport Service), applied by SimRunProvider.

    `props` is the contract with workloads/inputs.py (camelCase wire names, see REQUIRED_KEYS). The outputs the
    program reads (PROGRAM_OUTPUTS) are attributes under their wire names and, typed, under Python names below.
    """

    def __init__(self, resource_name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None) -> None:
        missing = [key for key in REQUIRED_KEYS if key not in props]
        if missing:
            raise ValueError(f"SimRun {resource_name}: missing props {', '.join(missing)}")
        install_sdk_fix()
        # Outputs the program reads are declared as None inputs, so the SDK creates their Output attributes; the
        # provider returns the other state keys too, and the state keeps them, without costing every registration.
        inputs: dict[str, Any] = {**props, **dict.fromkeys(PROGRAM_OUTPUTS)}
        if props.get("kubeconfig") is not None:
            # A kubeconfig for a non-EKS cluster may carry credentials: keep it encrypted in inputs and outputs.
            inputs["kubeconfig"] = pulumi.Output.secret(props["kubeconfig"])
            opts = pulumi.ResourceOptions.merge(pulumi.ResourceOptions(additional_secret_outputs=["kubeconfig"]), opts)
        super().__init__(SimRunProvider(), resource_name, inputs, opts)

    # Typed accessors as plain properties, not class annotations: the SDK runs get_type_hints over a resource
    # class's annotations on every registration (pulumi/_types.py resource_types), about a tenth of a SimRun's
    # registration time under mocks; plain properties are skipped. Each returns the Output the SDK created.
    def _output(self, wire: str) -> pulumi.Output[Any]:
        output: pulumi.Output[Any] = self.__dict__[wire]
        return output

    @property
    def spec_hash(self) -> pulumi.Output[str]:
        return self._output("specHash")

    @property
    def status(self) -> pulumi.Output[str]:
        """Pending | Running | Succeeded | Failed | Missing (the Job and its index.json are both gone)."""
        return self._output("status")

    @property
    def viewport_address(self) -> pulumi.Output[str | None]:
        """The NLB hostname of the viewport Service, once the Load Balancer Controller has provisioned it."""
        return self._output("viewportAddress")
