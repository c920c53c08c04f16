"""The SimRun dynamic resource: applies a run's objects, reports its status, and keeps finished runs finished."""

from __future__ import annotations

import copy
import json
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, ReadResult, ResourceProvider, UpdateResult

from naming import SPEC_HASH_ANNOTATION

# Inputs whose change means another Job: the spec hash covers the spec (rerun included) and its context;
# the name and namespace are the Job's identity.
REPLACE_KEYS = ("specHash", "runName", "namespace")
REQUIRED_KEYS = (
    "runName",
    "namespace",
    "specHash",
    "objects",
    "clusterName",
    "clusterEndpoint",
    "clusterCa",
    "region",
    "artifactsBucket",
    "artifactsPrefix",
    "seeds",
    "artifactsUri",
)
# Outputs the provider computes; declared as None inputs so the SDK creates their Output attributes.
STATE_KEYS = ("status", "startTime", "completionTime", "viewportAddress")
PROVIDER_KEY = "__provider"  # pulumi.dynamic's property holding the pickled provider
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
_HASH = re.compile(r"^[0-9a-f]{12}$")


class SimRunError(Exception):
    """A run operation failed; the message names the run and says what to do."""


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff for transient API errors (429, 5xx, connection errors and timeouts)."""

    attempts: int = 5
    first_delay: float = 0.5
    max_delay: float = 8.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        wait = self.first_delay * 2**attempt
        if retry_after is not None:
            wait = max(wait, retry_after)  # a 429's Retry-After is a floor, still capped below
        return min(self.max_delay, wait)


# Module-level so tests can swap in a policy without sleeps; never stored on the provider object.
RETRY = RetryPolicy()


# ---------------------------------------------------------------------------------------------
# The provider: stateless; every call builds what it needs from its props
# ---------------------------------------------------------------------------------------------


class SimRunProvider(ResourceProvider):
    """CRUD for one run. Pickled by reference (module + class name), so the state holds no code and no secrets."""

    # It captures nothing, so its pickle needs no encryption in the state (the SDK default encrypts it always).
    serialize_as_secret_always = False

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        return CheckResult(news, [CheckFailure(key, reason) for key, reason in check_props(news)])

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = [key for key in REPLACE_KEYS if olds.get(key) != news.get(key)]
        # `objects` is covered by the spec hash (and the state keeps only their refs), so it is not compared itself.
        inputs = (set(olds) | set(news)) - {PROVIDER_KEY, "jobName", "objects", "objectRefs", *STATE_KEYS}
        changed = sorted(key for key in inputs if olds.get(key) != news.get(key))
        # Job templates are immutable and the Job is named after the run: the old one must go first.
        return DiffResult(changes=bool(changed), replaces=replaces, delete_before_replace=bool(replaces))

    def create(self, props: dict[str, Any]) -> CreateResult:
        cluster = Cluster(props)
        job: dict[str, Any] | None = None
        companions: list[dict[str, Any]] = []
        for obj in (whole_numbers_as_ints(o) for o in props["objects"]):
            if obj.get("kind") == "Job":
                job = cluster.create_job(obj, props["specHash"])
            else:
                companions.append(cluster.create_or_replace(obj))
        if job is None:
            raise SimRunError(f"run {cluster.run}: its objects contain no Job; this is a simfleet bug (workloads/manifests.py)")
        # The Job owns its ConfigMap and viewport Service, so when the TTL controller deletes a finished Job
        # the garbage collector removes them too: a finished interactive run stops paying for its NLB.
        for obj in companions:
            cluster.set_owner(obj, job)
        state = job_state(job, cluster.pod_phases(job) if job_needs_pods(job) else [])
        return CreateResult(run_id(props), outputs(props, {**state, "viewportAddress": None}))

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        # Only inputs outside the spec hash changed, in practice the connection (endpoint, CA, region,
        # kubeconfig): new outputs, and the Job stays as it is.
        return UpdateResult(outputs(news, {key: olds.get(key) for key in STATE_KEYS}))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        # Never an empty id: that would drop the run from the state, and the next `pulumi up` would start it again.
        return ReadResult(id_ or run_id(props), outputs(props, Cluster(props).observe(props)))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        Cluster(props).delete_objects(object_refs(props))


def whole_numbers_as_ints(value: Any) -> Any:
    """Undo Pulumi's wire format, which carries every number as a double: 10800.0 -> 10800.

    The API server rejects a float where the schema says integer (activeDeadlineSeconds, ports, ...), and
    the rendered objects hold no fractional numbers (quantities are strings).
    """
    if isinstance(value, dict):
        return {key: whole_numbers_as_ints(item) for key, item in value.items()}
    if isinstance(value, list):
        return [whole_numbers_as_ints(item) for item in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def run_id(props: dict[str, Any]) -> str:
    return f"{props['namespace']}/{props['runName']}"


def outputs(props: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    """Every input needed later (read and delete get only these) plus the observed state; never a token."""
    outs = {key: value for key, value in props.items() if key not in (PROVIDER_KEY, "objects", *STATE_KEYS)}
    outs["objectRefs"] = object_refs(props)
    outs["jobName"] = props["runName"]
    outs.update({key: state.get(key) for key in STATE_KEYS})
    return outs


def object_refs(props: dict[str, Any]) -> list[dict[str, Any]]:
    """apiVersion, kind, name and namespace of each object, in apply order: all that read and delete need.

    The outputs keep these instead of the rendered objects (about 30 KB a run, mostly scripts), which the
    state already holds once as inputs: at thousands of runs a second copy would double the checkpoint.
    """
    if "objectRefs" in props:
        return list(props["objectRefs"])
    return [
        {
            "apiVersion": obj["apiVersion"],
            "kind": obj["kind"],
            "metadata": {key: obj["metadata"][key] for key in ("name", "namespace") if key in obj["metadata"]},
        }
        for obj in props.get("objects") or []
    ]


def check_props(props: dict[str, Any]) -> list[tuple[str, str]]:
    """Contract checks between workloads/manifests.py and this provider; values still unknown at preview are skipped."""
    from pulumi.runtime.rpc import UNKNOWN

    failures = [(key, f"{key} is required") for key in REQUIRED_KEYS if key not in props]
    run, spec_hash, objects = props.get("runName"), props.get("specHash"), props.get("objects")
    if isinstance(run, str) and run != UNKNOWN and not _DNS_LABEL.match(run):
        failures.append(("runName", f"{run!r} is not a DNS-1123 label"))
    if isinstance(spec_hash, str) and spec_hash != UNKNOWN and not _HASH.match(spec_hash):
        failures.append(("specHash", f"{spec_hash!r} is not 12 lowercase hex characters"))
    if isinstance(objects, list):
        jobs = [o for o in objects if isinstance(o, dict) and o.get("kind") == "Job"]
        if len(jobs) != 1:
            failures.append(("objects", f"expected exactly one Job, found {len(jobs)}"))
        elif objects[-1] is not jobs[0]:
            failures.append(("objects", "the Job must come last (its ConfigMap and Service are applied first)"))
        else:
            meta = jobs[0].get("metadata") or {}
            name, annotated = meta.get("name"), (meta.get("annotations") or {}).get(SPEC_HASH_ANNOTATION)
            if UNKNOWN not in (name, run) and name != run:
                failures.append(("objects", f"the Job is named {name!r}, not after the run {run!r}"))
            if UNKNOWN not in (annotated, spec_hash) and annotated != spec_hash:
                failures.append(("objects", f"the Job's {SPEC_HASH_ANNOTATION} annotation is {annotated!r}, not {spec_hash!r}"))
    return failures


# ---------------------------------------------------------------------------------------------
# Status: from the Job while it exists, from S3 once the TTL controller has removed it
# ---------------------------------------------------------------------------------------------


def job_needs_pods(job: dict[str, Any]) -> bool:
    status = job.get("status") or {}
    return not _terminal(job) and not status.get("ready") and bool(status.get("active"))


def _terminal(job: dict[str, Any]) -> str | None:
    # Complete/Failed are final; SuccessCriteriaMet/FailureTarget (1.31+) precede them while pods terminate.
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("status") == "True" and condition.get("type") in ("Complete", "Failed"):
            return str(condition["type"])
    return None


def job_state(job: dict[str, Any], pod_phases: list[str]) -> dict[str, Any]:
    """Pending | Running | Succeeded | Failed with start and completion times, from a Job (and its pods' phases)."""
    status = job.get("status") or {}
    terminal = _terminal(job)
    completion = status.get("completionTime")
    if terminal == "Complete":
        phase = "Succeeded"
    elif terminal == "Failed":
        phase = "Failed"
        # completionTime is only set on success; a failed Job ends when its Failed condition became true.
        completion = next(c.get("lastTransitionTime") for c in status["conditions"] if c.get("type") == "Failed")
    elif status.get("ready") or "Running" in pod_phases:
        phase = "Running"  # `active` also counts pods still waiting for a GPU node, so it alone is not enough
    else:
        phase = "Pending"
    return {"status": phase, "startTime": status.get("startTime"), "completionTime": completion}


def index_keys(props: dict[str, Any]) -> list[str]:
    """index.json keys: one at the prefix for a single seed, one per seed-<n>/ for several."""
    prefix = props["artifactsPrefix"]
    seeds = props.get("seeds") or []
    if len(seeds) <= 1:
        return [f"{prefix}index.json"]
    return [f"{prefix}seed-{seed}/index.json" for seed in seeds]


def index_state(documents: list[dict[str, Any] | None]) -> dict[str, Any]:
    """Succeeded when every seed succeeded, Failed when any failed, otherwise Missing (never started again)."""
    statuses = [doc.get("status") if doc else None for doc in documents]
    if "Failed" in statuses:
        phase = "Failed"
    elif documents and all(status == "Succeeded" for status in statuses):
        phase = "Succeeded"
    else:
        phase = "Missing"
    starts = sorted(d["startTime"] for d in documents if d and d.get("startTime"))
    ends = sorted(d["completionTime"] for d in documents if d and d.get("completionTime"))
    return {
        "status": phase,
        "startTime": starts[0] if starts else None,
        "completionTime": ends[-1] if ends and phase != "Missing" else None,
    }


# ---------------------------------------------------------------------------------------------
# One provider call's view of the cluster
# ---------------------------------------------------------------------------------------------

_PLURALS = {
    "ConfigMap": "configmaps",
    "Service": "services",
    "Job": "jobs",
    "Pod": "pods",
    "Secret": "secrets",
    "ServiceAccount": "serviceaccounts",
    "NetworkPolicy": "networkpolicies",
}
_DELETE_BACKGROUND = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"}


def _plain(value: Any) -> Any:
    from pulumi.runtime.rpc import unwrap_rpc_secret

    return unwrap_rpc_secret(value)


def collection_path(obj: dict[str, Any], namespace: str) -> str:
    api_version, kind = obj["apiVersion"], obj["kind"]
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    return f"{base}/namespaces/{namespace}/{_PLURALS.get(kind, kind.lower() + 's')}"


class Cluster:
    """The run's objects through the kubernetes client, with bounded retries and messages that say what to do.

    Bodies go out as the rendered dicts through ApiClient.call_api, not the typed BatchV1Api methods: those
    validate with pydantic (extra fields forbidden, quantities as strings) and would reject valid manifests
    such as `nvidia.com/gpu: 1`.
    """

    def __init__(self, props: dict[str, Any]) -> None:
        from workloads import eks_auth

        self.run = str(props["runName"])
        self.namespace = str(props["namespace"])
        self.region = str(props["region"])
        self.conn = eks_auth.Connection(
            cluster_name=str(props["clusterName"]),
            endpoint=str(props["clusterEndpoint"]),
            ca_data=str(props.get("clusterCa") or ""),
            region=self.region,
            kubeconfig=_plain(props.get("kubeconfig")) or None,
        )
        self.client = eks_auth.api_client(self.conn)
        self.timeout = eks_auth.REQUEST_TIMEOUT

    # -- HTTP ----------------------------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        what: str,
        body: Any = None,
        query: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> tuple[int, dict[str, Any]]:
        """(status, JSON body) of the first non-transient answer; transient ones are retried with backoff."""
        import urllib3
        from kubernetes.client.exceptions import ApiException

        policy = RETRY
        problem = ""
        for attempt in range(policy.attempts):
            retry_after: float | None = None
            try:
                call = self.client.param_serialize(
                    method,
                    path,
                    query_params=list((query or {}).items()) or None,
                    header_params={"Accept": "application/json", "Content-Type": content_type},
                    body=body,
                    auth_settings=["BearerToken"],
                )
                response = self.client.call_api(*call, _request_timeout=self.timeout)
                raw = response.read()
            except ApiException as err:  # the client's wrapper for TLS failures (status 0)
                raise SimRunError(
                    f"run {self.run}: {what} failed: TLS with {self.conn.describe()} failed ({err.reason}). "
                    "Check that clusterCa is the cluster's certificate authority data."
                ) from None
            except (urllib3.exceptions.HTTPError, OSError) as err:
                problem = f"cannot reach the API server ({type(err).__name__}: {err})"
            else:
                try:
                    payload = json.loads(raw) if raw else {}
                except json.JSONDecodeError:
                    payload = {"message": raw[:200].decode(errors="replace")}
                if response.status not in TRANSIENT_STATUSES:
                    return response.status, payload
                problem = (
                    f"HTTP {response.status} {payload.get('reason') or response.reason}: {payload.get('message', '')}".rstrip(
                        ": "
                    )
                )
                header = response.headers.get("Retry-After")
                retry_after = float(header) if header and header.isdigit() else None
            if attempt + 1 < policy.attempts:
                time.sleep(policy.delay(attempt, retry_after))
        raise SimRunError(
            f"run {self.run}: {what} failed {policy.attempts} times, last with {problem}. {self.conn.describe()} is "
            "overloaded or unreachable: check it (kubectl get --raw /readyz) and run `pulumi up` again; "
            "retrying is safe, an existing Job with the same spec hash is adopted."
        )

    def fail(self, what: str, status: int, payload: dict[str, Any]) -> SimRunError:
        message = payload.get("message") or payload.get("reason") or f"HTTP {status}"
        advice = {
            401: f"the API server rejected the credentials: check that your AWS identity (aws sts get-caller-identity) "
            f"has an EKS access entry on {self.conn.describe()}",
            403: f"forbidden: the deploying identity needs RBAC for configmaps, services, pods and jobs in namespace "
            f"{self.namespace} (the simfleet:run-operators group)",
            404: f"namespace {self.namespace} or the API is missing: deploy the platform (RunsNamespace) first",
            422: "the API server rejected the object: fix the run spec, or report a simfleet bug if the spec is valid",
        }.get(status, "see the message above")
        return SimRunError(f"run {self.run}: {what} failed with HTTP {status}: {message}. What to do: {advice}.")

    # -- create ----------------------------------------------------------------------------------------
    def create_or_replace(self, obj: dict[str, Any]) -> dict[str, Any]:
        kind, name = obj["kind"], obj["metadata"]["name"]
        collection = collection_path(obj, obj["metadata"].get("namespace") or self.namespace)
        status, body = self.request("POST", collection, f"creating {kind} {name}", body=obj)
        if status in (200, 201):
            return body
        if status != 409 or body.get("reason") != "AlreadyExists":
            raise self.fail(f"creating {kind} {name}", status, body)
        # A leftover (or ours from an interrupted create): replace it with this run's version.
        for _ in range(RETRY.attempts):
            status, current = self.request("GET", f"{collection}/{name}", f"reading {kind} {name}")
            if status == 404:
                status, body = self.request("POST", collection, f"creating {kind} {name}", body=obj)
            else:
                if status != 200:
                    raise self.fail(f"reading {kind} {name}", status, current)
                status, body = self.request(
                    "PUT", f"{collection}/{name}", f"replacing {kind} {name}", body=_replacement(obj, current)
                )
            if status in (200, 201):
                return body
            if status != 409:  # 409 again: someone changed or created it meanwhile; read it again
                raise self.fail(f"replacing {kind} {name}", status, body)
        raise SimRunError(f"run {self.run}: {kind} {name} kept changing while it was replaced; run `pulumi up` again")

    def set_owner(self, obj: dict[str, Any], job: dict[str, Any]) -> None:
        kind, name = obj["kind"], obj["metadata"]["name"]
        path = f"{collection_path(obj, obj['metadata'].get('namespace') or self.namespace)}/{name}"
        owner = {"apiVersion": "batch/v1", "kind": "Job", "name": job["metadata"]["name"], "uid": job["metadata"]["uid"]}
        patch = {"metadata": {"ownerReferences": [owner]}}
        what = f"making Job {owner['name']} the owner of {kind} {name}"
        status, body = self.request("PATCH", path, what, body=patch, content_type="application/merge-patch+json")
        if status != 200:
            raise self.fail(what, status, body)

    def create_job(self, job: dict[str, Any], spec_hash: str) -> dict[str, Any]:
        name = job["metadata"]["name"]
        collection = collection_path(job, job["metadata"].get("namespace") or self.namespace)
        for attempt in range(RETRY.attempts):
            status, body = self.request("POST", collection, f"creating Job {name}", body=job)
            if status in (200, 201):
                return body
            if status != 409 or body.get("reason") != "AlreadyExists":
                raise self.fail(f"creating Job {name}", status, body)
            status, existing = self.request("GET", f"{collection}/{name}", f"reading Job {name}")
            if status == 404:
                continue  # deleted between our POST and GET: create it again
            if status != 200:
                raise self.fail(f"reading Job {name}", status, existing)
            meta = existing.get("metadata") or {}
            if meta.get("deletionTimestamp"):
                # The Job we replace is still going away (finalizers); wait for it rather than fail.
                time.sleep(RETRY.delay(attempt))
                continue
            found = (meta.get("annotations") or {}).get(SPEC_HASH_ANNOTATION)
            if found == spec_hash:
                return existing  # a retry after a crash: this run's Job already exists, adopt it
            raise SimRunError(
                f"run {self.run}: a Job named {name} already exists in namespace {self.namespace} with spec hash "
                f"{found or 'none (not created by simfleet)'}, but this run's spec hash is {spec_hash}. If it is a "
                f"leftover, delete it (kubectl -n {self.namespace} delete job {name}) and run `pulumi up` again; "
                "if it is another run's, give this run another name."
            )
        raise SimRunError(
            f"run {self.run}: the previous Job {name} is still being deleted; wait until "
            f"`kubectl -n {self.namespace} get job {name}` reports NotFound, then run `pulumi up` again"
        )

    # -- read ------------------------------------------------------------------------------------------
    def pod_phases(self, job: dict[str, Any]) -> list[str]:
        labels = ((job.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        if not labels:
            return []
        selector = ",".join(f"{key}={value}" for key, value in sorted(labels.items()))
        status, body = self.request(
            "GET",
            f"/api/v1/namespaces/{self.namespace}/pods",
            f"listing the pods of Job {self.run}",
            query={"labelSelector": selector},
        )
        if status != 200:
            raise self.fail(f"listing the pods of Job {self.run}", status, body)
        return [str((pod.get("status") or {}).get("phase")) for pod in body.get("items") or []]

    def observe(self, props: dict[str, Any]) -> dict[str, Any]:
        objects = object_refs(props)
        job_obj = next((o for o in objects if o.get("kind") == "Job"), None)
        name = job_obj["metadata"]["name"] if job_obj else self.run
        status, job = self.request("GET", f"/apis/batch/v1/namespaces/{self.namespace}/jobs/{name}", f"reading Job {name}")
        if status not in (200, 404):
            raise self.fail(f"reading Job {name}", status, job)
        ours = (
            status == 200
            and ((job.get("metadata") or {}).get("annotations") or {}).get(SPEC_HASH_ANNOTATION) == props["specHash"]
        )
        if ours:
            state = job_state(job, self.pod_phases(job) if job_needs_pods(job) else [])
        else:
            # Gone (TTL controller) or replaced by someone else's Job: the uploader's index.json has the outcome.
            state = index_state([self.read_index(key, props) for key in index_keys(props)])
        state["viewportAddress"] = self.viewport_address(objects)
        return state

    def read_index(self, key: str, props: dict[str, Any]) -> dict[str, Any] | None:
        from botocore.exceptions import BotoCoreError, ClientError

        from workloads import eks_auth

        bucket = props["artifactsBucket"]
        try:
            body = eks_auth.s3_client(self.region).get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise SimRunError(
                f"run {self.run}: reading s3://{bucket}/{key} failed ({err}). Its Job is gone, so this file is the only "
                "record of the outcome: check that your AWS identity can read the artifacts bucket, then refresh again."
            ) from None
        except BotoCoreError as err:
            raise SimRunError(
                f"run {self.run}: reading s3://{bucket}/{key} failed ({err}); check AWS access and refresh again"
            ) from None
        try:
            document = json.loads(body)
        except json.JSONDecodeError:
            return {"status": "Failed"}  # the uploader writes it last and whole; anything else is a broken run
        return document if isinstance(document, dict) else {"status": "Failed"}

    def viewport_address(self, objects: list[dict[str, Any]]) -> str | None:
        service = next((o for o in objects if o.get("kind") == "Service"), None)
        if service is None:
            return None
        name = service["metadata"]["name"]
        status, body = self.request("GET", f"{collection_path(service, self.namespace)}/{name}", f"reading Service {name}")
        if status == 404:
            return None
        if status != 200:
            raise self.fail(f"reading Service {name}", status, body)
        ingress = ((body.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        return (ingress[0].get("hostname") or ingress[0].get("ip")) if ingress else None

    # -- delete ----------------------------------------------------------------------------------------
    def delete_objects(self, objects: list[dict[str, Any]]) -> None:
        if not any(o.get("kind") == "Job" for o in objects):
            objects = [*objects, {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": self.run}}]
        # The Job first, so nothing runs without its ConfigMap; Background leaves its pods to the garbage collector
        # (the API's default for Jobs would orphan them). Then the Service (and its NLB) and the ConfigMap.
        ordered = [o for o in objects if o.get("kind") == "Job"] + [o for o in reversed(objects) if o.get("kind") != "Job"]
        for obj in ordered:
            kind, name = obj["kind"], obj["metadata"]["name"]
            path = f"{collection_path(obj, obj['metadata'].get('namespace') or self.namespace)}/{name}"
            status, body = self.request(
                "DELETE", path, f"deleting {kind} {name}", body=_DELETE_BACKGROUND, query={"propagationPolicy": "Background"}
            )
            if status not in (200, 202, 404):  # 404: already gone (TTL controller, or by hand) counts as deleted
                raise self.fail(f"deleting {kind} {name}", status, body)


def _replacement(obj: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """The object to PUT over `current`: its resourceVersion, and for a Service the fields the server owns."""
    new = copy.deepcopy(obj)
    new["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
    if obj["kind"] == "Service":
        spec, live = new.setdefault("spec", {}), current.get("spec") or {}
        # clusterIP is immutable, and kept node ports avoid re-registering NLB targets.
        for field_name in ("clusterIP", "clusterIPs"):
            if field_name in live:
                spec[field_name] = live[field_name]
        live_ports = {(p.get("port"), p.get("protocol", "TCP")): p for p in live.get("ports") or []}
        for port in spec.get("ports") or []:
            match = live_ports.get((port.get("port"), port.get("protocol", "TCP")))
            if match and "nodePort" in match and "nodePort" not in port:
                port["nodePort"] = match["nodePort"]
    return new


# ---------------------------------------------------------------------------------------------
# The Pulumi SDK scale bug, fixed in this one place
# ---------------------------------------------------------------------------------------------
#
# pulumi 3.272 `pulumi.dynamic.dynamic.serialize_provider` sorts dicts while pickling by assigning
# `pickle._Pickler._batch_setitems` (and `save_dict`) to wrappers of whatever is there, and restores only
# `pickle.Pickler`. Every dynamic resource therefore wraps the previous wrapper; at ~350 resources pickling a
# dict recurses through all of them and raises RecursionError (tests/test_scale.py reproduces it). The fix
# wraps the module global that `Resource.__init__` calls so both attributes are put back after every call:
# each serialization then sorts exactly once, which yields the same bytes as the SDK's first call.
#
# On top of that, SimRunProvider has no state and is pickled by reference, so its serialization is the same
# string for every run; it is computed once per process (tests/test_pickle.py checks the bytes are identical).

_fix_lock = threading.Lock()
_serialized: dict[type, str] = {}


def install_sdk_fix() -> None:
    """Idempotently replace pulumi.dynamic.dynamic.serialize_provider with a non-leaking wrapper."""
    import pickle

    from pulumi.dynamic import dynamic as sdk

    with _fix_lock:
        if getattr(sdk.serialize_provider, "simfleet_restores_pickler", False):
            return
        leaky = sdk.serialize_provider

        def serialize_provider(provider: ResourceProvider) -> str:
            saved = (pickle._Pickler._batch_setitems, pickle._Pickler.save_dict)  # type: ignore[attr-defined]
            try:
                if type(provider) is SimRunProvider and not vars(provider):
                    if SimRunProvider not in _serialized:
                        _serialized[SimRunProvider] = leaky(provider)
                    return _serialized[SimRunProvider]
                return leaky(provider)
            finally:
                pickle._Pickler._batch_setitems, pickle._Pickler.save_dict = saved  # type: ignore[attr-defined]

        serialize_provider.simfleet_restores_pickler = True  # type: ignore[attr-defined]
        sdk.serialize_provider = serialize_provider


# ---------------------------------------------------------------------------------------------
# The resource
# ---------------------------------------------------------------------------------------------


class SimRun(pulumi.dynamic.Resource):
    """One simulation run as a Kubernetes Job (plus its ConfigMap and viewport Service), applied by SimRunProvider.

    `props` is the contract with workloads/runs.py (camelCase wire names, see REQUIRED_KEYS). Each output is
    available under its wire name (`jobName`) and, typed, under its Python name (`job_name`).
    """

    def __init__(self, resource_name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None) -> None:
        missing = [key for key in REQUIRED_KEYS if key not in props]
        if missing:
            raise ValueError(f"SimRun {resource_name}: missing props {', '.join(missing)}")
        install_sdk_fix()
        inputs: dict[str, Any] = {**props, "jobName": props["runName"], **dict.fromkeys(STATE_KEYS)}
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
    def run_name(self) -> pulumi.Output[str]:
        return self._output("runName")

    @property
    def namespace(self) -> pulumi.Output[str]:
        return self._output("namespace")

    @property
    def spec_hash(self) -> pulumi.Output[str]:
        return self._output("specHash")

    @property
    def job_name(self) -> pulumi.Output[str]:
        return self._output("jobName")

    @property
    def status(self) -> pulumi.Output[str]:
        """Pending | Running | Succeeded | Failed | Missing (the Job and its index.json are both gone)."""
        return self._output("status")

    @property
    def start_time(self) -> pulumi.Output[str | None]:
        return self._output("startTime")

    @property
    def completion_time(self) -> pulumi.Output[str | None]:
        return self._output("completionTime")

    @property
    def viewport_address(self) -> pulumi.Output[str | None]:
        """The NLB hostname of the viewport Service, once the Load Balancer Controller has provisioned it."""
        return self._output("viewportAddress")

    @property
    def artifacts_uri(self) -> pulumi.Output[str]:
        return self._output("artifactsUri")

    @property
    def checkpoint_uri(self) -> pulumi.Output[str | None]:
        return self._output("checkpointUri")
