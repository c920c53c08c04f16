"""The SimRun dynamic resource: runs a declared run once, reports its status, and never starts a finished run again.

create  1. a Job with the run's name already there? Ours (same spec hash): adopt it (claim it, make sure its
           companions exist and are owned). Terminating: wait it out. Someone else's: stop, write nothing.
           A run adopted from before identity v1 (its adoption recorded in S3) is held under its old hash.
        2. pods of an earlier Job at this hash still running: wait them out, so their records are written first.
        3. then read each seed's record in S3: index.json, or attempt markers without one (a seed that died before
           recording), and the cancel record (the seeds a person stopped count as ended). Every seed ended: record the
           outcome and start nothing (a lost state, a rename or a rolled-back state never reruns a run). Some seeds
           ended: the new Job gets the others.
        4. the Job (suspended with a gate Job when it continues from a source that has not succeeded yet), then its
           companions (viewport Service and NetworkPolicy, gate and its RBAC) owned by it, so the TTL cleanup of the
           Job removes them too (and with the Service its NLB); the shared runtime ConfigMap of this simfleet
           (simfleet-runtime-<sha>) is created, or the Job added to its owners, and goes when its last owner goes.
           Another creator won the race for the name with the same hash: adopt its Job (claim written), create
           nothing.
diff    replace (delete first: the Job keeps its name) only when the spec hash, name, namespace or kind changed,
        never on a value it cannot see (the engine's unknowns arrive as pulumi.output.Unknown objects) and never
        for a state-format change; update for labels, TTL, viewport CIDRs, the connection and the stored provider
        reference.
update  applies labels, TTL and viewport CIDRs to the live objects; nothing reruns. Adopts pre-v1 states.
read    the status from the Job while it is the one this resource holds, else from the seeds' records. A Job found
        without a recorded one (a refresh after an interrupted create) becomes this resource's, with its claim.
delete  only the Job this resource holds (its claim token, uid and resourceVersion preconditions), retried while
        the Job controller writes in between; if it cannot, it fails, so the engine keeps the resource. Then its
        companions, waiting for the viewport Service's NLB to go; S3 is never touched.
"""

from __future__ import annotations

import time
from typing import Any

import pulumi
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, ReadResult, ResourceProvider, UpdateResult

import naming
from workloads import inputs as run_inputs
from workloads import kube, legacy, status
from workloads.inputs import Decoded, context_of, spec_of, whole_numbers_as_ints
from workloads.kube import (
    CLAIM_ANNOTATION,
    RETRY,
    TERMINATING,
    KubeApi,
    RetryPolicy,
    SimRunError,
    WaitPolicy,
    claim_of,
    conflict,
    is_owned_by,
    mounted_configmaps,
    new_claim,
    object_path,
    owner_reference,
    spec_hash_of,
    with_owners,
)
from workloads.observe import (
    Where,
    observe,
    read_indexes,
    read_uri,
    viewport_address,
    where,
)
from workloads.renderers.common import is_shared
from workloads.sdk_fix import install_sdk_fix

__all__ = ["RETRY", "TERMINATING", "RetryPolicy", "SimRun", "SimRunError", "SimRunProvider", "WaitPolicy"]

# Inputs whose change means another Job. The spec hash covers the spec (rerun included) and its context; the
# name and namespace are the Job's identity; the kind picks the renderer.
REPLACE_KEYS = ("specHash", "runName", "namespace", "kind")
REQUIRED_KEYS = ("kind", "runName", "namespace", "specHash", "spec", "context")
# Outputs the provider computes (never compared in diff).
STATE_KEYS = (
    "status",
    "startTime",
    "completionTime",
    "recoveries",
    "viewportAddress",
    "jobUid",
    "companions",
    "claim",
    "adoptedFrom",
)
# The outputs the program itself reads (the stack's `runs` export).
PROGRAM_OUTPUTS = ("status", "viewportAddress", "recoveries")
PROVIDER_KEY = "__provider"  # pulumi.dynamic's property holding the pickled provider
# Spec fields a live Job takes without rerunning: the Job's labels and its TTL (spec.ttlSecondsAfterFinished is
# mutable; batch/v1 JobSpec), and the viewport's allowed CIDRs (the Service's loadBalancerSourceRanges and the
# NetworkPolicy's ipBlocks).
MUTABLE_SPEC_KEYS = ("labels", "ttlAfterFinished", "viewport", "queue")


class SimRunProvider(ResourceProvider):
    """CRUD for one run. Pickled by reference (module + class name), so the state holds no code and no secrets."""

    # It captures nothing, so its pickle needs no encryption in the state (the SDK default encrypts it always),
    # and every instance pickles to the same string (workloads/sdk_fix.py computes it once).
    serialize_as_secret_always = False
    simfleet_stateless = True

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        return CheckResult(news, [CheckFailure(key, reason) for key, reason in check_inputs(news)])

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        if legacy.is_legacy(olds):
            # A run recorded before identity v1: its hash was computed by other rules. Adopt it (update), never
            # replace it for that alone (workloads/legacy.py).
            return DiffResult(changes=True, replaces=[], delete_before_replace=False)
        # Never replace on a value not known yet: the engine would delete the Job (and rerun the run) for nothing.
        replaces = [
            key
            for key in REPLACE_KEYS
            if not is_unknown(news.get(key)) and not is_unknown(olds.get(key)) and olds.get(key) != news.get(key)
        ]
        compared = (set(olds) | set(news)) - {*STATE_KEYS, "jobName"}
        # The provider reference is compared too: after a module rename the state must learn the new one, or
        # refresh and delete would load a reference that no longer imports.
        changed = sorted(key for key in compared if olds.get(key) != news.get(key))
        return DiffResult(changes=bool(changed), replaces=replaces, delete_before_replace=bool(replaces))

    def create(self, props: dict[str, Any]) -> CreateResult:
        props = whole_numbers_as_ints(props)
        run = legacy.with_recorded_source(run_inputs.decode(props))
        api = api_for(props)
        name = run.spec.name
        job_path = f"/apis/batch/v1/namespaces/{api.namespace}/jobs/{name}"

        existing = api.get(job_path, f"Job {name}")
        if existing is not None and (existing.get("metadata") or {}).get("deletionTimestamp"):
            api.wait_gone(job_path, f"Job {name}", existing)  # the Job this one replaces is still going away
            existing = None
        if existing is not None and spec_hash_of(existing) == run.identity.spec_hash:
            # A retry after a crash, a moved URN, or a lost state while the Job lives: adopt it, start nothing.
            adopted = adopt(api, run, existing, where(props))
            if adopted is not None:
                return CreateResult(run_id(props), outputs(props, adopted))
            existing = None  # it went (its TTL, by hand) before it could be claimed: as if it had not been there
        recorded = legacy.recorded_adoption(props)
        if recorded is not None:
            # Adopted from before identity v1, then the state was lost: its Job and records are under the old hash.
            return CreateResult(run_id(props), outputs(props, legacy.hold(api, props, recorded, existing)))

        # Pods of an earlier Job at this hash first: one that ends while we wait writes its record before we look.
        api.wait_pods_gone(run.identity.spec_hash)
        at = where(props)
        documents = read_indexes(at)
        pending = tuple(seed for seed, doc in zip(run.identity.seeds, documents, strict=True) if not status.seed_finished(doc))
        if not pending:
            # Every seed already ran at this hash, or a cancel stopped it (status.with_cancel): record how it ended,
            # create nothing.
            return CreateResult(run_id(props), outputs(props, {**status.index_state(documents), "jobUid": None}))
        if existing is not None:
            raise conflict(name, api.namespace, name, spec_hash_of(existing), run.identity.spec_hash)

        claim = new_claim()
        objects = run.objects(pending, gated=source_pending(run))
        main = run_inputs.main_job(objects, name)
        if main is None:  # the renderer always makes it (tests/test_run_renderer.py); a bug if not
            raise SimRunError(f"run {name}: its objects hold no Job {name}; this is a simfleet bug. Nothing was written.")
        main["metadata"]["annotations"][CLAIM_ANNOTATION] = claim
        # The Job first: nothing else is written for a run whose Job cannot exist. Its pod waits (ContainerCreating)
        # the moment it takes for its ConfigMap to follow.
        job, created = api.create_job(main)
        if not created:
            # Another creator (a second backend, a state restored from backup) won the race with the same hash: its
            # Job runs this run. Adopt it like any live Job, so the claim this resource records is the one on the Job.
            adopted = adopt(api, run, job, at)
            if adopted is None:
                raise SimRunError(
                    f"run {name}: another creator's Job {name} was deleted while this one adopted it; nothing was "
                    "written. Run `pulumi up` again."
                )
            return CreateResult(run_id(props), outputs(props, adopted))
        companions = []
        for obj in objects:
            if is_shared(obj):
                api.share(obj, job)  # the collector's, with its other owners: not this run's to delete
            elif obj is not main:
                companions.append(api.apply_companion(owned_by(obj, job)))
        return CreateResult(
            run_id(props), outputs(props, {**status.created_state(job), **_uids(job, companions), "claim": claim})
        )

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        news = whole_numbers_as_ints(news)
        if legacy.is_legacy(olds):
            return UpdateResult(outputs(news, legacy.adopt(api_for(news), olds, news)))
        kept = {key: olds.get(key) for key in STATE_KEYS}
        if olds.get("specHash") != news.get("specHash"):
            raise SimRunError(
                f"run {news.get('runName')}: its spec hash changed within an update ({olds.get('specHash')} -> "
                f"{news.get('specHash')}); this is a simfleet bug (diff must replace). Nothing was changed."
            )
        old_spec, new_spec = spec_of(olds), spec_of(news)
        new_default = context_of(olds).get("defaultQueue") != context_of(news).get("defaultQueue")
        if olds.get("jobUid") and (new_default or any(old_spec.get(k) != new_spec.get(k) for k in MUTABLE_SPEC_KEYS)):
            apply_mutable(api_for(news), olds, run_inputs.decode(news))
        return UpdateResult(outputs(news, kept))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        # Never an empty id: that would drop the run from the state, and the next `pulumi up` would start it again.
        props = whole_numbers_as_ints(props)
        if legacy.is_legacy(props):
            state = observe(legacy.api(props), props, legacy.where(props))
            return ReadResult(id_ or run_id(props), {**props, **{k: v for k, v in state.items() if k in props or k == "status"}})
        api = api_for(props)
        state = {**{key: props.get(key) for key in STATE_KEYS}, **observe(api, props, where(props))}
        state["viewportAddress"] = viewport_address(api, props)
        return ReadResult(id_ or run_id(props), outputs(props, state))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        props = whole_numbers_as_ints(props)
        if legacy.is_legacy(props):
            legacy_api = legacy.api(props)
            job = legacy.live_job(legacy_api, props)
            if job is not None:
                legacy_api.delete("batch/v1", "Job", props["runName"], uid=job["metadata"]["uid"])
            remove_companions(legacy_api, legacy.companions(legacy_api, props))
            return
        if not props.get("jobUid"):
            return  # recorded from S3 only: this resource created nothing in the cluster
        api = api_for(props)
        name = str(props["runName"])
        path = f"/apis/batch/v1/namespaces/{api.namespace}/jobs/{name}"
        retry = kube.RETRY  # read when called: tests swap the module's policy
        for attempt in range(retry.attempts):
            job = api.get(path, f"Job {name}")
            if job is None or job["metadata"].get("uid") != props["jobUid"]:
                break  # gone (TTL controller, by hand), or a namesake someone else created: not ours to delete
            if claim_of(job) != props.get("claim"):
                return  # another resource adopted this run (a moved URN): it is theirs to delete now
            # The resourceVersion precondition: the claim just read is still the Job's when it is deleted.
            if api.delete("batch/v1", "Job", name, props["jobUid"], job["metadata"]["resourceVersion"]):
                break
            time.sleep(retry.delay(attempt))  # it changed in between (the Job controller writes status): look again
        else:
            raise SimRunError(
                f"run {name}: Job {name} changed between every read and delete ({retry.attempts} times); it still runs, "
                "so this resource stays in the state and nothing else was removed. Run the same `pulumi up` (or "
                "`pulumi destroy`) again."
            )
        remove_companions(api, props.get("companions") or [])


# ---------------------------------------------------------------------------------------------
# Helpers shared by the operations
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


def owned_by(obj: dict[str, Any], job: dict[str, Any]) -> dict[str, Any]:
    return with_owners(obj, [owner_reference(job)])


def source_pending(run: Decoded) -> bool:
    """Whether a continuation must wait for its source: its index.json does not say Succeeded yet."""
    if run.source is None:
        return False
    document = read_uri(run.spec.name, run.ctx.region, run.source.index_uri)
    return not (document and document.get("status") == "Succeeded")


def adopt(api: KubeApi, run: Decoded, job: dict[str, Any], at: Where) -> dict[str, Any] | None:
    """Take over a live Job of this run: claim it, and make sure its companions exist and are owned by it. None (and
    nothing written) when the Job went before it could be claimed."""
    claim = api.claim(job)
    if claim is None:
        return None
    uid = job["metadata"]["uid"]
    # Still behind its gate: suspended, and not handed to Kueue yet (no queue label).
    gated = bool((job.get("spec") or {}).get("suspend")) and not status.is_queued(job)
    companions = []
    mounted = mounted_configmaps(job)
    for obj in run.objects(gated=gated):
        if obj["kind"] == "Job" and obj["metadata"]["name"] == run.spec.name:
            continue
        if is_shared(obj):
            # A Job made by an older simfleet mounts the runtime it was rendered with (owned by it since then), not
            # this one: only the runtime it mounts is its to hold.
            if obj["metadata"]["name"] in mounted:
                api.share(obj, job)
            continue
        found = api.get(object_path(obj, api.namespace), f"{obj['kind']} {obj['metadata']['name']}")
        if found is None:
            found = api.apply_companion(owned_by(obj, job))  # the create that made the Job did not get this far
        elif spec_hash_of(found) != spec_hash_of(job):
            continue  # not this run's (any more): leave it
        elif not is_owned_by(found, job):
            api.set_owner(found, job)
        companions.append(found)
    state = observe(api, {"jobUid": uid}, at)
    return {**state, **_uids(job, companions), "claim": claim}


def apply_mutable(api: KubeApi, olds: dict[str, Any], run: Decoded) -> None:
    """Labels and TTL onto the live Job, viewport CIDRs onto its Service and NetworkPolicy; only objects we hold."""
    from workloads.renderers.common import user_labels
    from workloads.renderers.run import DEFAULT_TTL_SECONDS

    old_labels = user_labels(spec_of(olds).get("labels") or {})
    new_labels = user_labels(run.spec.labels)
    labels: dict[str, str | None] = {key: None for key in old_labels if key not in new_labels}  # null removes
    labels.update(new_labels)
    job_ref = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": run.spec.name}}
    ttl = run.spec.ttl_after_finished if run.spec.ttl_after_finished is not None else DEFAULT_TTL_SECONDS
    queue = run.spec.queue or run.ctx.default_queue

    def job_patch(live: dict[str, Any]) -> dict[str, Any]:
        live_labels = dict(labels)
        # A Job waiting in its queue moves to the new one (Kueue allows it while the Job is suspended); one still
        # behind its gate gets the new queue from the gate's own spec only if it is created again, and one that is
        # running keeps the queue that admitted it.
        if (live.get("spec") or {}).get("suspend") and status.is_queued(live):
            live_labels[naming.KUEUE_QUEUE_LABEL] = queue
        return {"metadata": {"labels": live_labels}, "spec": {"ttlSecondsAfterFinished": ttl}}

    api.patch_if(job_ref, olds["jobUid"], job_patch, f"updating the labels, queue and TTL of Job {run.spec.name}")
    uids = {(c["kind"], c["name"]): c.get("uid") for c in olds.get("companions") or []}
    for obj in run.objects():
        if obj["kind"] == "Service":
            patch = {"spec": {"loadBalancerSourceRanges": obj["spec"]["loadBalancerSourceRanges"]}}
        elif obj["kind"] == "NetworkPolicy":
            patch = {"spec": {"ingress": obj["spec"]["ingress"]}}
        else:
            continue
        uid = uids.get((obj["kind"], obj["metadata"]["name"]))
        if uid:
            api.patch_if(obj, uid, lambda live, patch=patch: patch, f"updating {obj['kind']} {obj['metadata']['name']}")


def remove_companions(api: KubeApi, companions: list[dict[str, Any]]) -> None:
    """Delete each companion that is still the one recorded (uid); wait for a LoadBalancer Service to go, so its NLB
    is removed by the controller before `pulumi destroy` removes the controller."""
    for ref in companions:
        gone_now = api.delete(ref["apiVersion"], ref["kind"], ref["name"], uid=ref.get("uid"))
        if ref["kind"] == "Service" and gone_now:
            path = f"/api/v1/namespaces/{api.namespace}/services/{ref['name']}"
            remaining = api.get(path, f"Service {ref['name']}")
            if remaining is not None and remaining["metadata"].get("uid") == ref.get("uid"):
                api.wait_gone(path, f"Service {ref['name']}", remaining)


def check_inputs(props: dict[str, Any]) -> list[tuple[str, str]]:
    """The contract between the Runs component and this provider; values still unknown at preview are skipped."""
    failures = [(key, f"{key} is required") for key in REQUIRED_KEYS if key not in props]
    if failures or _contains_unknown(props):
        return failures
    try:
        run_inputs.decode(props)
    except (ValueError, KeyError, TypeError) as err:  # pydantic's ValidationError is a ValueError
        failures.append(("spec", f"the run's inputs do not decode: {err}"))
    return failures


def is_unknown(value: Any) -> bool:
    """A value the engine does not know yet (a preview, or a dependency being replaced).

    The dynamic provider host deserializes unknowns with keep_unknowns=True into `pulumi.output.Unknown` objects
    (pulumi/dynamic/__main__.py Check and Diff, runtime/rpc.py deserialize_property); the wire sentinel string
    rpc.UNKNOWN is matched too, for callers that pass raw values.
    """
    from pulumi.output import Unknown
    from pulumi.runtime.rpc import UNKNOWN

    return isinstance(value, Unknown) or (isinstance(value, str) and value == UNKNOWN)


def _contains_unknown(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_contains_unknown(item) for item in value.values())
    if isinstance(value, list):
        return any(_contains_unknown(item) for item in value)
    return is_unknown(value)


def api_for(props: dict[str, Any]) -> KubeApi:
    """The cluster connection: EKS's own endpoint and CA for the cluster name, unless the inputs give them.

    `clusterEndpoint` + `clusterCa`, or `kubeconfig`, are for clusters that are not EKS (and for tests).
    """
    from pulumi.runtime.rpc import unwrap_rpc_secret

    from workloads import eks_auth
    from workloads.inputs import context_of

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


# ---------------------------------------------------------------------------------------------
# The resource
# ---------------------------------------------------------------------------------------------


class SimRun(pulumi.dynamic.Resource):
    """One declared run as a Kubernetes Job (plus its ConfigMap and viewport Service), applied by SimRunProvider.

    `props` is the contract with workloads/inputs.py (camelCase wire names, see REQUIRED_KEYS). The outputs the
    program reads (PROGRAM_OUTPUTS) are attributes under their wire names and, typed, under Python names below.
    """

    # The properties the program reads back, each an Output attribute; the SDK would make one per input property, which
    # was about a fifth of a run's registration (workloads/sdk_fix.py). The state keeps every property.
    simfleet_outputs = frozenset({*PROGRAM_OUTPUTS, "specHash"})

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
        """One of workloads/status.py STATUSES: Queued, Waiting, Blocked, Pending, Running, Succeeded, Failed, Cancelled,
        Missing."""
        return self._output("status")

    @property
    def recoveries(self) -> pulumi.Output[int | None]:
        """Pods of this run that resumed or restarted a seed after a reclaim, drain or retry (from index.json)."""
        return self._output("recoveries")

    @property
    def viewport_address(self) -> pulumi.Output[str | None]:
        """The NLB hostname of the viewport Service, once the Load Balancer Controller has provisioned it."""
        return self._output("viewportAddress")
