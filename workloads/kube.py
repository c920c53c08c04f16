"""The run provider's Kubernetes API calls: bounded retries, waits on terminating objects, and messages that say what to do."""

from __future__ import annotations

import copy
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from naming import RUNTIME_SHA_ANNOTATION, SPEC_HASH_ANNOTATION

# Which SimRun resource holds a Job: a token it writes at create and rewrites when it adopts the Job. A resource
# deletes a Job only while the Job carries its token, so when another resource (a moved URN, a recovered state)
# adopts a live run, the old one's delete leaves it running.
INSTANCE_LABEL = "app.kubernetes.io/instance"
CLAIM_ANNOTATION = "simfleet.io/claim"

TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
_PLURALS = {
    "ConfigMap": "configmaps",
    "Service": "services",
    "Job": "jobs",
    "Pod": "pods",
    "NetworkPolicy": "networkpolicies",
}


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


@dataclass(frozen=True)
class WaitPolicy:
    """How long to wait for an object that carries a deletionTimestamp to go away, and how often to look."""

    # A viewport Service is held by the Load Balancer Controller's finalizer until its NLB is deleted, which
    # takes a minute or two; five minutes leaves room without hanging `pulumi up` on a stuck finalizer.
    seconds: float = 300.0
    poll: float = 2.0


# Module-level so tests can swap in policies without sleeps; never stored on the provider object.
RETRY = RetryPolicy()
TERMINATING = WaitPolicy()


def collection_path(api_version: str, kind: str, namespace: str) -> str:
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    return f"{base}/namespaces/{namespace}/{_PLURALS.get(kind, kind.lower() + 's')}"


def object_path(obj: dict[str, Any], namespace: str) -> str:
    meta = obj["metadata"]
    return f"{collection_path(obj['apiVersion'], obj['kind'], meta.get('namespace') or namespace)}/{meta['name']}"


def spec_hash_of(obj: dict[str, Any]) -> str | None:
    return ((obj.get("metadata") or {}).get("annotations") or {}).get(SPEC_HASH_ANNOTATION)


def claim_of(obj: dict[str, Any]) -> str | None:
    return ((obj.get("metadata") or {}).get("annotations") or {}).get(CLAIM_ANNOTATION)


def is_simfleets(obj: dict[str, Any]) -> bool:
    """Whether simfleet wrote this object (its labels and its spec-hash annotation); anything else is left alone."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return labels.get("app.kubernetes.io/part-of") == "simfleet" and spec_hash_of(obj) is not None


def _is_tls_failure(err: BaseException) -> bool:
    import ssl

    import urllib3

    reason = getattr(err, "reason", None)  # MaxRetryError wraps the cause
    return isinstance(err, urllib3.exceptions.SSLError | ssl.SSLError) or isinstance(
        reason, urllib3.exceptions.SSLError | ssl.SSLError
    )


class KubeApi:
    """One provider call's view of the cluster, through the kubernetes client's ApiClient.

    Bodies go out as the rendered dicts through ApiClient.call_api, not the typed BatchV1Api methods: those
    validate with pydantic (extra fields forbidden, quantities as strings) and would reject valid manifests
    such as `nvidia.com/gpu: 1`.
    """

    retry: RetryPolicy | None = None  # None: the module's RETRY (tests swap it)

    def __init__(self, run: str, namespace: str, conn: Any) -> None:
        from workloads import eks_auth

        self.run = run
        self.namespace = namespace
        self.conn = conn
        self.client = eks_auth.api_client(conn)
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

        policy = self.retry or RETRY
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
            except (ApiException, urllib3.exceptions.HTTPError, OSError) as err:
                # A certificate that does not verify will not verify on the next try either: say so at once.
                if isinstance(err, ApiException) or _is_tls_failure(err):
                    raise self.tls_failure(what, err) from None
                problem = f"cannot reach the API server ({type(err).__name__}: {err})"
            else:
                try:
                    payload = json.loads(raw) if raw else {}
                except json.JSONDecodeError:
                    payload = {"message": raw[:200].decode(errors="replace")}
                if response.status not in TRANSIENT_STATUSES:
                    return response.status, payload
                reason = payload.get("reason") or response.reason
                problem = f"HTTP {response.status} {reason}: {payload.get('message', '')}".rstrip(": ")
                header = response.headers.get("Retry-After")
                retry_after = float(header) if header and header.isdigit() else None
            if attempt + 1 < policy.attempts:
                time.sleep(policy.delay(attempt, retry_after))
        raise self.unreachable(what, policy.attempts, problem)

    def tls_failure(self, what: str, err: BaseException) -> SimRunError:
        return SimRunError(
            f"run {self.run}: {what} failed: TLS verification of {self.conn.describe()} failed "
            f"({getattr(err, 'reason', None) or err}). The certificate authority used is not the one of that "
            "endpoint: check clusterCa (the cluster's certificateAuthority.data, base64 PEM) and "
            "clusterEndpoint, or, without them, what `aws eks describe-cluster` reports."
        )

    def unreachable(self, what: str, attempts: int, problem: str) -> SimRunError:
        return SimRunError(
            f"run {self.run}: {what} failed {attempts} times, last with {problem}. {self.conn.describe()} is "
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

    # -- reading -------------------------------------------------------------------------------------
    def get(self, path: str, what: str) -> dict[str, Any] | None:
        """The object at `path`, or None on 404."""
        status, body = self.request("GET", path, f"reading {what}")
        if status == 404:
            return None
        if status != 200:
            raise self.fail(f"reading {what}", status, body)
        return body

    def wait_gone(self, path: str, what: str, current: dict[str, Any]) -> None:
        """Wait (bounded) until an object that is being deleted has gone; its finalizers hold it until then."""
        deadline = time.monotonic() + TERMINATING.seconds
        while current is not None:
            if time.monotonic() >= deadline:
                finalizers = (current.get("metadata") or {}).get("finalizers") or []
                raise SimRunError(
                    f"run {self.run}: {what} is still being deleted after {TERMINATING.seconds:.0f} s "
                    f"(deletionTimestamp {(current.get('metadata') or {}).get('deletionTimestamp')}, finalizers "
                    f"{finalizers}). A LoadBalancer Service waits for the AWS Load Balancer Controller to delete its "
                    f"NLB: check `kubectl -n {self.namespace} describe {what.lower()}` and the controller's logs, "
                    "then run `pulumi up` again."
                )
            time.sleep(TERMINATING.poll)
            current = self.get(path, what)  # type: ignore[assignment]

    def run_pods(self, spec_hash: str) -> list[dict[str, Any]]:
        """Every pod of this run or job at this hash, whoever's Job started it (the template carries the hash).

        app.kubernetes.io/instance is on the pods of both kinds (a run's also carry simfleet.io/run, a job's
        simfleet.io/job), and names are unique across runs and jobs (config/stack.py name_clashes).
        """
        what = f"listing the pods of {self.run}"
        query = {"labelSelector": f"{INSTANCE_LABEL}={self.run}"}
        status, body = self.request("GET", f"/api/v1/namespaces/{self.namespace}/pods", what, query=query)
        if status != 200:
            raise self.fail(what, status, body)
        return [pod for pod in body.get("items") or [] if spec_hash_of(pod) == spec_hash]

    def wait_pods_gone(self, spec_hash: str) -> None:
        """Wait (bounded) until pods of an earlier Job at this hash are gone, so two pods never write one prefix."""
        deadline = time.monotonic() + TERMINATING.seconds
        while True:
            live = [p for p in self.run_pods(spec_hash) if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
            if not live:
                return
            if time.monotonic() >= deadline:
                names = ", ".join(sorted(str(p["metadata"]["name"]) for p in live))
                raise SimRunError(
                    f"run {self.run}: pods of an earlier Job of this run are still running ({names}) after "
                    f"{TERMINATING.seconds:.0f} s; they write where a new Job would. Wait until `kubectl -n "
                    f"{self.namespace} get pods -l {INSTANCE_LABEL}={self.run}` shows none running, then run `pulumi up` again."
                )
            time.sleep(TERMINATING.poll)

    def pod_phases(self, job: dict[str, Any]) -> list[str]:
        labels = ((job.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        if not labels:
            return []
        selector = ",".join(f"{key}={value}" for key, value in sorted(labels.items()))
        what = f"listing the pods of Job {self.run}"
        status, body = self.request("GET", f"/api/v1/namespaces/{self.namespace}/pods", what, query={"labelSelector": selector})
        if status != 200:
            raise self.fail(what, status, body)
        return [str((pod.get("status") or {}).get("phase")) for pod in body.get("items") or []]

    # -- writing -------------------------------------------------------------------------------------
    def apply_companion(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create a Job's companion (ConfigMap, Service), replacing a leftover of the same name; returns it as stored.

        Only called once the Job's own identity was checked, so a leftover here is not another live run's.
        """
        kind, name = obj["kind"], obj["metadata"]["name"]
        what = f"{kind} {name}"
        path = object_path(obj, self.namespace)
        collection = path.rsplit("/", 1)[0]
        for _ in range(RETRY.attempts):
            status, body = self.request("POST", collection, f"creating {what}", body=obj)
            if status in (200, 201):
                return body
            if status != 409 or body.get("reason") != "AlreadyExists":
                raise self.fail(f"creating {what}", status, body)
            current = self.get(path, what)
            if current is None:
                continue  # deleted between our POST and GET: create it again
            if (current.get("metadata") or {}).get("deletionTimestamp"):
                # Writing over a terminating object loses the write when its finalizer completes: wait it out.
                self.wait_gone(path, what, current)
                continue
            if not is_simfleets(current):
                raise SimRunError(
                    f"run {self.run}: a {what} that simfleet did not create is in the way (no simfleet labels and spec-hash "
                    f"annotation). Delete it (kubectl -n {self.namespace} delete {kind.lower()} {name}) or rename the run, "
                    "then run `pulumi up` again."
                )
            status, body = self.request("PUT", path, f"replacing {what}", body=_replacement(obj, current))
            if status in (200, 201):
                return body
            if status == 422:
                # A field that cannot change (an immutable ConfigMap's data, a Job's template): delete exactly that
                # object, then create ours.
                self.delete(obj["apiVersion"], kind, name, uid=(current.get("metadata") or {}).get("uid"))
                remaining = self.get(path, what)
                if remaining is not None:
                    self.wait_gone(path, what, remaining)
                continue
            if status != 409:  # 409: it changed since we read it; read it again
                raise self.fail(f"replacing {what}", status, body)
        raise SimRunError(f"run {self.run}: {what} kept changing while it was replaced; run `pulumi up` again")

    def share(self, obj: dict[str, Any], job: dict[str, Any]) -> dict[str, Any]:
        """Make `job` an owner of a shared object (a runtime ConfigMap): create it owned by the Job, or add the Job to
        the ownerReferences of the one that exists; returns it as stored.

        The garbage collector deletes an object only when none of its owners is left, and deletes with the
        resourceVersion it read as a precondition (retrying without it only when the owners did not change), so an
        owner added here in between keeps the object (kubernetes pkg/controller/garbagecollector, attemptToDeleteItem
        and deleteObject). The ownerReferences list is written whole with the resourceVersion read: a concurrent
        writer (another run's create, the collector removing a gone owner) makes it 409, and it is read again.
        """
        kind, name = obj["kind"], obj["metadata"]["name"]
        what = f"{kind} {name}"
        path = object_path(obj, self.namespace)
        owner = owner_reference(job)
        for _ in range(RETRY.attempts):
            current = self.get(path, what)
            if current is None:
                status, body = self.request("POST", path.rsplit("/", 1)[0], f"creating {what}", body=with_owners(obj, [owner]))
                if status in (200, 201):
                    return body
                if status != 409 or body.get("reason") != "AlreadyExists":
                    raise self.fail(f"creating {what}", status, body)
                continue  # another run's create made it in between: become one of its owners
            if (current.get("metadata") or {}).get("deletionTimestamp"):
                self.wait_gone(path, what, current)
                continue
            found = ((current.get("metadata") or {}).get("annotations") or {}).get(RUNTIME_SHA_ANNOTATION)
            if found != obj["metadata"]["annotations"][RUNTIME_SHA_ANNOTATION]:
                raise SimRunError(
                    f"run {self.run}: a {what} that simfleet did not create is in the way (its "
                    f"{RUNTIME_SHA_ANNOTATION} annotation is {found or 'missing'}, not the hash of its name). Delete it "
                    f"(kubectl -n {self.namespace} delete {kind.lower()} {name}), then run `pulumi up` again."
                )
            if is_owned_by(current, job):
                return current

            def add_owner(live: dict[str, Any]) -> dict[str, Any] | None:
                owners = (live.get("metadata") or {}).get("ownerReferences") or []
                if any(ref.get("uid") == owner["uid"] for ref in owners):
                    return None
                return {"metadata": {"ownerReferences": [*owners, owner]}}

            held = self.patch_if(
                obj, current["metadata"]["uid"], add_owner, f"making Job {job['metadata']['name']} an owner of {what}"
            )
            if held is not None:
                return held
            # It went between the read and the patch: create it again.
        raise SimRunError(
            f"run {self.run}: {what} kept changing while Job {job['metadata']['name']} was added to its owners; run `pulumi up` again"
        )

    def create_job(self, job: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """POST the Job: (the Job as stored, True), or, when another creator won the race with the same spec hash,
        (that Job, False) for the caller to adopt; a namesake with another hash is a conflict."""
        name = job["metadata"]["name"]
        path = object_path(job, self.namespace)
        status, body = self.request("POST", path.rsplit("/", 1)[0], f"creating Job {name}", body=job)
        if status in (200, 201):
            return body, True
        if status != 409 or body.get("reason") != "AlreadyExists":
            raise self.fail(f"creating Job {name}", status, body)
        existing = self.get(path, f"Job {name}")
        if existing is not None and spec_hash_of(existing) == spec_hash_of(job):
            return existing, False
        raise conflict(self.run, self.namespace, name, spec_hash_of(existing or {}), str(spec_hash_of(job)))

    def set_owner(self, obj: dict[str, Any], job: dict[str, Any]) -> None:
        kind, name = obj["kind"], obj["metadata"]["name"]
        owner = owner_reference(job)
        what = f"making Job {owner['name']} the owner of {kind} {name}"
        patch = {"metadata": {"ownerReferences": [owner]}}
        status, body = self.request(
            "PATCH", object_path(obj, self.namespace), what, body=patch, content_type="application/merge-patch+json"
        )
        if status != 200:
            raise self.fail(what, status, body)

    def patch_if(self, obj: dict[str, Any], uid: str | None, build: Any, what: str) -> dict[str, Any] | None:
        """Merge-patch the live object if it is still the one with `uid`; `build(live)` gives the patch (None: no change).

        The patch carries the resourceVersion read, so a write in between (the Job controller updates status all the
        time) is answered 409 and the object is read again, a bounded number of times.
        """
        path = object_path(obj, self.namespace)
        for _ in range(RETRY.attempts):
            live = self.get(path, what)
            if live is None or (uid is not None and (live.get("metadata") or {}).get("uid") != uid):
                return None
            patch = build(live)
            if not patch:
                return live
            patch.setdefault("metadata", {})["resourceVersion"] = live["metadata"]["resourceVersion"]
            status, body = self.request("PATCH", path, what, body=patch, content_type="application/merge-patch+json")
            if status == 200:
                return body
            if status == 404:
                return None
            if status != 409:
                raise self.fail(what, status, body)
        raise SimRunError(f"run {self.run}: {what} kept conflicting with other writers; run `pulumi up` again")

    def claim(self, job: dict[str, Any]) -> str | None:
        """Write a new claim on the Job (while it is still the one read, by uid): from now on the caller holds it.
        None when it has gone since it was read (its TTL, by hand): there is nothing to hold."""
        token = new_claim()
        name = job["metadata"]["name"]
        held = self.patch_if(
            job,
            job["metadata"]["uid"],
            lambda live: {"metadata": {"annotations": {CLAIM_ANNOTATION: token}}},
            f"claiming Job {name}",
        )
        return token if held is not None else None

    def patch(self, obj: dict[str, Any], patch: dict[str, Any], what: str) -> dict[str, Any] | None:
        """JSON merge patch; None when the object is gone."""
        status, body = self.request(
            "PATCH", object_path(obj, self.namespace), what, body=patch, content_type="application/merge-patch+json"
        )
        if status == 404:
            return None
        if status != 200:
            raise self.fail(what, status, body)
        return body

    def delete(self, api_version: str, kind: str, name: str, uid: str | None, resource_version: str | None = None) -> bool:
        """Delete with Background propagation and, given a uid, only that very object; False if it was not there.

        Background leaves a Job's pods to the garbage collector (the API's default for Jobs would orphan them).
        The uid precondition makes the API refuse (409) to delete a namesake created by someone else.
        """
        options: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"}
        preconditions = {key: value for key, value in (("uid", uid), ("resourceVersion", resource_version)) if value}
        if preconditions:
            options["preconditions"] = preconditions
        path = f"{collection_path(api_version, kind, self.namespace)}/{name}"
        status, body = self.request(
            "DELETE", path, f"deleting {kind} {name}", body=options, query={"propagationPolicy": "Background"}
        )
        if status in (200, 202):
            return True
        if status == 404:  # already gone (TTL controller, or by hand) counts as deleted
            return False
        if status == 409 and preconditions:  # not the object we read (another one, or changed since): leave it alone
            return False
        raise self.fail(f"deleting {kind} {name}", status, body)


def new_claim() -> str:
    return secrets.token_hex(8)


def owner_reference(job: dict[str, Any]) -> dict[str, Any]:
    """The Job as the owner of a companion: the garbage collector removes the companion when the Job goes."""
    return {"apiVersion": "batch/v1", "kind": "Job", "name": job["metadata"]["name"], "uid": job["metadata"]["uid"]}


def with_owners(obj: dict[str, Any], owners: list[dict[str, Any]]) -> dict[str, Any]:
    return {**obj, "metadata": {**obj["metadata"], "ownerReferences": owners}}


def mounted_configmaps(job: dict[str, Any]) -> set[str]:
    """The ConfigMaps a Job's pods mount (its template's configMap volumes)."""
    volumes = ((((job.get("spec") or {}).get("template") or {}).get("spec") or {}).get("volumes")) or []
    return {str(v["configMap"]["name"]) for v in volumes if isinstance(v.get("configMap"), dict) and "name" in v["configMap"]}


def is_owned_by(obj: dict[str, Any], job: dict[str, Any]) -> bool:
    return any(ref.get("uid") == job["metadata"]["uid"] for ref in (obj.get("metadata") or {}).get("ownerReferences") or [])


def conflict(run: str, namespace: str, name: str, found: str | None, wanted: str) -> SimRunError:
    return SimRunError(
        f"run {run}: a Job named {name} already exists in namespace {namespace} with spec hash "
        f"{found or 'none (not created by simfleet)'}, but this run's spec hash is {wanted}. If it is a "
        f"leftover, delete it (kubectl -n {namespace} delete job {name}) and run `pulumi up` again; "
        "if it is another run's, give this run another name. Nothing was written."
    )


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
