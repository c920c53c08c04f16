"""A fake Kubernetes API server on 127.0.0.1 that the real `kubernetes` client talks to over HTTP.

It serves the part of the API the run provider uses: core/v1 ConfigMaps, Services, Pods, ServiceAccounts and Secrets,
batch/v1 Jobs, networking.k8s.io/v1 NetworkPolicies and rbac.authorization.k8s.io/v1 Roles and RoleBindings (a
changed `roleRef` is 422), with the status codes and `kind: Status` bodies of the real API server
(tests/test_fake_kube.py checks them against the API conventions):

- POST creates (201); an existing name is 409 AlreadyExists; a namespace that does not exist is 404. A Job without
  labels takes its template's (batch/v1 SetDefaults_Job). A 422 names the kind with its group (`Job.batch`).
- GET reads (200) or lists (label selectors `a=b`, `a!=b`, `a`, `!a`, `a in (x,y)`, `a notin (x,y)`; `limit` pages
  with an opaque `continue` token in the list's metadata, a token it never gave is 400); a
  missing object is 404 NotFound.
- PUT replaces: a stale `metadata.resourceVersion` is 409 Conflict; a Service without one is 422 Invalid
  (Services do not allow unconditional updates), as is a changed `spec.clusterIP`; a changed Job
  `spec.template`, `spec.selector`, `spec.completions`, `spec.completionMode` or `spec.podFailurePolicy` is
  422 Invalid "field is immutable".
- PATCH applies a JSON merge patch (also for strategic-merge-patch+json) or an RFC 6902 JSON patch (add, remove,
  replace, test; a failed `test` is 422), then the same immutability rules; any other Content-Type is 415.
- An immutable ConfigMap (`immutable: true`) refuses a PUT or PATCH that changes `data`, `binaryData` or
  `immutable` with 422 Invalid "field is immutable when `immutable` is set".
- DELETE checks `preconditions.uid` / `preconditions.resourceVersion` from the DeleteOptions body and answers 409
  Conflict (`... StorageError: invalid object ... Precondition failed: ...`) when they do not match. An object with `metadata.finalizers` is not removed:
  it gets a `deletionTimestamp` and stays (GET returns it, POST of its name is 409 AlreadyExists) until
  `remove_finalizers` clears them, as a controller would. Services of `loadBalancerClass` service.k8s.aws/nlb
  get the AWS Load Balancer Controller's finalizer on create when `lbc_finalizers` is set.
- DELETE honours `propagationPolicy` from the DeleteOptions body or the query: Background removes the Job
  at once and leaves its pods to the garbage collector (`collect_garbage()`: a dependent goes only when none of
  its owners is left, and one that keeps an owner loses its references to the gone ones), Orphan removes it and
  strips the pods' owner references, Foreground marks it deleting (deletionTimestamp plus the
  `foregroundDeletion` finalizer) until `collect_garbage()` has removed its pods. A Job deleted through the
  API without a policy is orphaned (the batch/v1 default); kubectl sends Background explicitly.

There is no controller: tests drive Job status with `finish_job`/`set_job_status`, pods with `add_pod` (the Job
controller's: the template's labels and annotations, an Indexed Job's completion index) and `set_pod_phase`, and
the TTL controller with `expire_job`; no token controller fills service-account token Secrets. Faults: `fail_next` answers the next N requests with 429/5xx
(with Retry-After on 429), `delay_next` stalls them, `drop_next` closes the connection without an answer.
Every request is logged in `requests` (method, path, query, parsed body, headers).

`FakeKube(tls=True)` serves HTTPS with a self-signed certificate (`ca_data` is its base64 PEM), so a client
with the wrong CA fails TLS verification as it would against a real endpoint.

Known gaps: no authentication or RBAC (the Authorization header is only recorded, unless
`require_bearer_prefix` is set), no watch, no server-side apply, no field selectors, no generateName,
strategic merge patch is treated as a JSON merge patch (no list merging by key), no defaulting beyond the
fields listed in `_default_job`/`_default_service`, and no admission (quota, PodSecurity).
"""

from __future__ import annotations

import base64
import copy
import itertools
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

# (group, version, plural) -> (kind, singular used in messages)
RESOURCES: dict[tuple[str, str, str], str] = {
    ("", "v1", "configmaps"): "ConfigMap",
    ("", "v1", "services"): "Service",
    ("", "v1", "pods"): "Pod",
    ("", "v1", "serviceaccounts"): "ServiceAccount",
    ("", "v1", "secrets"): "Secret",
    ("batch", "v1", "jobs"): "Job",
    ("networking.k8s.io", "v1", "networkpolicies"): "NetworkPolicy",
    ("rbac.authorization.k8s.io", "v1", "roles"): "Role",
    ("rbac.authorization.k8s.io", "v1", "rolebindings"): "RoleBinding",
    ("", "v1", "events"): "Event",
    ("", "v1", "nodes"): "Node",
    # Kueue's (v0.19.2 serves v1beta2 as its storage version): made by Kueue's controllers, read by `simfleet`.
    ("kueue.x-k8s.io", "v1beta2", "workloads"): "Workload",
    ("kueue.x-k8s.io", "v1beta2", "localqueues"): "LocalQueue",
}
CLUSTER_SCOPED = frozenset({"nodes"})
# Field selectors the real API server accepts per resource (besides metadata.name and metadata.namespace, which every
# resource takes): core/v1 events (pkg/registry/core/event/strategy.go ToSelectableFields) and pods (pod's
# ToSelectableFields); any other field is 400 BadRequest "field label not supported".
FIELD_LABELS: dict[str, tuple[str, ...]] = {
    "events": (
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    ),
    "pods": ("spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName", "status.phase"),
}
# What PATCH accepts (apiserver handlers/patch.go); any other Content-Type is 415 UnsupportedMediaType.
JSON_PATCH = "application/json-patch+json"
MERGE_PATCHES = ("application/merge-patch+json", "application/strategic-merge-patch+json")
JOB_IMMUTABLE = ("template", "selector", "completions", "completionMode", "podFailurePolicy")
_PATH = re.compile(
    r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))/(?:namespaces/(?P<ns>[^/]+)/)?(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?/?$"
)
_POD_LOG = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods/(?P<name>[^/]+)/log$")
_PENDING = re.compile(
    r"^/apis/visibility\.kueue\.x-k8s\.io/v1beta2/namespaces/(?P<ns>[^/]+)/localqueues/(?P<name>[^/]+)/pendingworkloads$"
)


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Stream:
    """A text/plain answer (pod logs): sent whole, or with `chunked`, piece by piece as the generator yields them."""

    chunks: Iterator[bytes]
    chunked: bool = False


@dataclass(frozen=True)
class Encoded:
    """A JSON answer already encoded (a list page), sent as it is."""

    data: bytes


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    headers: dict[str, str]  # names lower-cased


@dataclass
class _Fault:
    status: int | None = None  # HTTP status to answer with
    delay: float = 0.0  # seconds to stall before handling
    drop: bool = False  # close the connection without answering
    methods: tuple[str, ...] | None = None
    path_contains: str | None = None


@dataclass
class FakeKube:
    """The API server state plus the HTTP server that exposes it; use as a context manager."""

    namespaces: set[str] = field(default_factory=lambda: {"default", "simfleet-runs"})
    require_bearer_prefix: str | None = None
    tls: bool = False
    # Add the AWS Load Balancer Controller's finalizer to NLB Services on create (it does so once it reconciles).
    lbc_finalizers: bool = False
    requests: list[Request] = field(default_factory=list)
    objects: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)  # (plural, ns, name)
    # What each container wrote: (namespace, pod, container) -> [(RFC 3339 time, line)], for GET .../pods/<pod>/log.
    logs: dict[tuple[str, str, str], list[tuple[str, str]]] = field(default_factory=dict)
    _faults: list[_Fault] = field(default_factory=list)
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _versions: Iterator[int] = field(default_factory=lambda: itertools.count(1000))
    _ips: Iterator[int] = field(default_factory=lambda: itertools.count(10))
    _server: ThreadingHTTPServer | None = None
    _tls_dir: Any = None
    ca_data: str = ""  # base64 PEM of the serving certificate when tls is set

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> FakeKube:
        handler = type("Handler", (_Handler,), {"kube": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        if self.tls:
            self._wrap_tls(self._server)
        threading.Thread(target=self._server.serve_forever, args=(0.05,), name="fake-kube", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._tls_dir is not None:
            self._tls_dir.cleanup()
            self._tls_dir = None

    def _wrap_tls(self, server: ThreadingHTTPServer) -> None:
        import base64
        import ssl
        import tempfile

        cert, key = _self_signed("127.0.0.1")
        self._tls_dir = tempfile.TemporaryDirectory()
        cert_file, key_file = f"{self._tls_dir.name}/tls.crt", f"{self._tls_dir.name}/tls.key"
        with open(cert_file, "wb") as out:
            out.write(cert)
        with open(key_file, "wb") as out:
            out.write(key)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        self.ca_data = base64.b64encode(cert).decode()

    def __enter__(self) -> FakeKube:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "FakeKube is not started"
        port = self._server.server_address[1]
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{port}"

    # -- fault injection -----------------------------------------------------------------------------
    def fail_next(
        self, count: int, status: int = 503, methods: tuple[str, ...] | None = None, path_contains: str | None = None
    ) -> None:
        """Answer the next `count` requests (optionally only these methods, or paths containing this) with `status`."""
        with self._lock:
            self._faults += [_Fault(status=status, methods=methods, path_contains=path_contains) for _ in range(count)]

    def delay_next(self, count: int, seconds: float) -> None:
        with self._lock:
            self._faults += [_Fault(delay=seconds) for _ in range(count)]

    def drop_next(self, count: int) -> None:
        with self._lock:
            self._faults += [_Fault(drop=True) for _ in range(count)]

    def _take_fault(self, method: str, path: str = "") -> _Fault | None:
        with self._lock:
            for index, fault in enumerate(self._faults):
                if (fault.methods is None or method in fault.methods) and (
                    fault.path_contains is None or fault.path_contains in path
                ):
                    return self._faults.pop(index)
        return None

    # -- test helpers: state the controllers would produce ------------------------------------------
    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            obj = self.objects.get((plural, namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def put_object(self, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Store an object as if another client had created it (defaults applied)."""
        meta = obj.setdefault("metadata", {})
        with self._lock:
            self._stamp(plural, obj, meta["namespace"])
            self.objects[(plural, meta["namespace"], meta["name"])] = obj
        return copy.deepcopy(obj)

    def set_job_status(self, namespace: str, name: str, **status: Any) -> None:
        with self._lock:
            self.objects[("jobs", namespace, name)].setdefault("status", {}).update(status)

    def admit(self, namespace: str, name: str) -> None:
        """What Kueue does when the Job's queue has room: unsuspend it (only a Job that carries a queue label)."""
        with self._lock:
            job = self.objects[("jobs", namespace, name)]
            if job["spec"].get("suspend") and (job["metadata"].get("labels") or {}).get("kueue.x-k8s.io/queue-name"):
                job["spec"]["suspend"] = False
                self._stamp("jobs", job, namespace)

    def start_job(self, namespace: str, name: str, ready: int = 0) -> None:
        """What the Job controller reports once it has created the pod(s) (after Kueue admitted the Job)."""
        self.admit(namespace, name)
        job = self.objects[("jobs", namespace, name)]
        self.set_job_status(namespace, name, startTime=now(), active=job["spec"].get("parallelism", 1), ready=ready)

    def finish_job(self, namespace: str, name: str, succeeded: bool = True) -> None:
        """Terminal conditions as the Job controller (1.31+) writes them: *Target/*Met first, then the final one."""
        self.admit(namespace, name)
        stamp = now()
        job = self.objects[("jobs", namespace, name)]
        status = job.setdefault("status", {})
        status.setdefault("startTime", stamp)
        status["active"] = 0
        status["ready"] = 0
        if succeeded:
            status["succeeded"] = job["spec"].get("completions", 1)
            status["completionTime"] = stamp
            kinds = ("SuccessCriteriaMet", "Complete")
        else:
            status["failed"] = 1
            kinds = ("FailureTarget", "Failed")
        status["conditions"] = [
            {
                "type": kind,
                "status": "True",
                "lastProbeTime": stamp,
                "lastTransitionTime": stamp,
                "reason": "CompletionsReached" if succeeded else "BackoffLimitExceeded",
            }
            for kind in kinds
        ]

    def add_pod(
        self, namespace: str, job_name: str, phase: str = "Pending", index: int = 0, node: str | None = None
    ) -> dict[str, Any]:
        """A pod as the Job controller creates it from the Job's template: the template's labels and annotations
        (kubernetes pkg/controller controller_utils.go GetPodFromTemplate copies both), the completion index of an
        Indexed Job as annotation and label, owned by the Job."""
        with self._lock:
            job = self.objects[("jobs", namespace, job_name)]
            template = job["spec"]["template"]
            template_meta = template.get("metadata") or {}
            labels = dict(template_meta.get("labels") or {})
            annotations = dict(template_meta.get("annotations") or {})
            if job["spec"].get("completionMode") == "Indexed":
                annotations["batch.kubernetes.io/job-completion-index"] = str(index)
                labels["batch.kubernetes.io/job-completion-index"] = str(index)
            pod: dict[str, Any] = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": f"{job_name}-{index}-{uuid.uuid4().hex[:5]}",
                    "namespace": namespace,
                    "labels": labels,
                    "annotations": annotations,
                    "ownerReferences": [
                        {
                            "apiVersion": "batch/v1",
                            "kind": "Job",
                            "name": job_name,
                            "uid": job["metadata"]["uid"],
                            "controller": True,
                            "blockOwnerDeletion": True,
                        }
                    ],
                },
                "spec": {**copy.deepcopy(template.get("spec", {})), **({"nodeName": node} if node else {})},
                "status": {"phase": phase, **({"startTime": now()} if phase != "Pending" else {})},
            }
            self._stamp("pods", pod, namespace)
            self.objects[("pods", namespace, pod["metadata"]["name"])] = pod
            return copy.deepcopy(pod)

    def set_pod_phase(self, namespace: str, name: str, phase: str) -> None:
        """What the kubelet reports once a pod's containers have ended (Succeeded or Failed)."""
        with self._lock:
            pod = self.objects[("pods", namespace, name)]
            pod["status"]["phase"] = phase
            pod["metadata"]["resourceVersion"] = str(next(self._versions))

    def add_node(self, name: str, labels: dict[str, str]) -> dict[str, Any]:
        """A node as the kubelet registers it (cluster-scoped), with the labels EKS puts on managed nodes."""
        node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": dict(labels)}, "status": {}}
        with self._lock:
            self._stamp("nodes", node, "")
            self.objects[("nodes", "", name)] = node
        return copy.deepcopy(node)

    def add_event(
        self, namespace: str, kind: str, name: str, reason: str, message: str, type_: str = "Normal", at: str | None = None
    ) -> None:
        """An event a controller or the kubelet recorded about an object (core/v1 Event)."""
        stamp = at or now()
        event: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{name}.{uuid.uuid4().hex[:16]}", "namespace": namespace},
            "involvedObject": {"kind": kind, "name": name, "namespace": namespace},
            "reason": reason,
            "message": message,
            "type": type_,
            "count": 1,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
        }
        with self._lock:
            self._stamp("events", event, namespace)
            self.objects[("events", namespace, event["metadata"]["name"])] = event

    def write_log(self, namespace: str, pod: str, container: str, *lines: str, at: str | None = None) -> None:
        """Lines a container wrote to stdout (the kubelet keeps them while the pod exists)."""
        stamp = at or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        with self._lock:
            self.logs.setdefault((namespace, pod, container), []).extend((stamp, line) for line in lines)

    def set_service_ingress(self, namespace: str, name: str, hostname: str) -> None:
        """What the AWS Load Balancer Controller writes once the NLB exists."""
        with self._lock:
            self.objects[("services", namespace, name)]["status"] = {"loadBalancer": {"ingress": [{"hostname": hostname}]}}

    def remove_finalizers(self, plural: str, namespace: str, name: str) -> None:
        """A controller finishing its cleanup: with no finalizers left, a deleting object is removed."""
        with self._lock:
            obj = self.objects[(plural, namespace, name)]
            obj["metadata"].pop("finalizers", None)
            if obj["metadata"].get("deletionTimestamp"):
                del self.objects[(plural, namespace, name)]
                self._collect_dependents(obj["metadata"]["uid"])

    def expire_job(self, namespace: str, name: str, collect: bool = True) -> None:
        """The TTL-after-finished controller: it deletes the Job with Foreground propagation and a uid precondition
        (kubernetes pkg/controller/ttlafterfinished), so the Job lingers with a deletionTimestamp until the garbage
        collector has removed its dependents; `collect=False` stops there."""
        with self._lock:
            job = self.objects[("jobs", namespace, name)]
            uid = job["metadata"]["uid"]
        body = json.dumps({"propagationPolicy": "Foreground", "preconditions": {"uid": uid}}).encode()
        self.handle("DELETE", f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}", body, {})
        if collect:
            self.collect_garbage()

    def collect_garbage(self) -> None:
        """The garbage collector: removes dependents none of whose owners is left, drops gone owners from those that
        keep one, and completes foreground deletions."""
        with self._lock:
            for key, obj in list(self.objects.items()):
                if key in self.objects and obj["metadata"].get("ownerReferences"):
                    self._collect(key, obj)
            for key, obj in list(self.objects.items()):
                if "foregroundDeletion" in (obj["metadata"].get("finalizers") or []):
                    self._collect_dependents(obj["metadata"]["uid"])
                    del self.objects[key]

    def pods_of(self, namespace: str, job_name: str) -> list[dict[str, Any]]:
        with self._lock:
            return [
                copy.deepcopy(o)
                for (plural, ns, _), o in self.objects.items()
                if plural == "pods"
                and ns == namespace
                and any(ref.get("name") == job_name for ref in o["metadata"].get("ownerReferences") or [])
            ]

    def calls(self, method: str | None = None, contains: str = "") -> list[Request]:
        return [r for r in self.requests if (method is None or r.method == method) and contains in r.path]

    # -- internals -------------------------------------------------------------------------------------
    def _collect_dependents(self, uid: str) -> None:
        for key, obj in list(self.objects.items()):
            if any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or []):
                self._collect(key, obj, gone=uid)

    def _collect(self, key: tuple[str, str, str], obj: dict[str, Any], gone: str | None = None) -> None:
        """attemptToDeleteItem of kubernetes pkg/controller/garbagecollector: an owner is solid while it exists and is
        not waiting for its dependents (foreground deletion). A dependent with a solid owner stays, and loses its
        references to the others; one without is deleted, or only marked deleting while a finalizer holds it (the
        Load Balancer Controller's on a Service)."""
        live = {o["metadata"]["uid"]: o for o in self.objects.values()}
        refs = obj["metadata"].get("ownerReferences") or []

        def solid(ref: dict[str, Any]) -> bool:
            owner = live.get(ref.get("uid", ""))
            if owner is None or ref.get("uid") == gone:
                return False
            meta = owner["metadata"]
            return not (meta.get("deletionTimestamp") and "foregroundDeletion" in (meta.get("finalizers") or []))

        kept = [ref for ref in refs if solid(ref)]
        if kept:
            if len(kept) != len(refs):
                obj["metadata"]["ownerReferences"] = kept
                obj["metadata"]["resourceVersion"] = str(next(self._versions))
        elif obj["metadata"].get("finalizers"):
            obj["metadata"].setdefault("deletionTimestamp", now())
        else:
            del self.objects[key]

    def _stamp(self, plural: str, obj: dict[str, Any], namespace: str) -> None:
        meta = obj.setdefault("metadata", {})
        if plural in CLUSTER_SCOPED:
            meta.pop("namespace", None)
        else:
            meta["namespace"] = namespace
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", now())
        meta["resourceVersion"] = str(next(self._versions))
        meta.setdefault("generation", 1)
        if plural == "jobs":
            _default_job(obj)
        elif plural == "services":
            _default_service(obj, next(self._ips))
            if self.lbc_finalizers and obj["spec"].get("loadBalancerClass") == "service.k8s.aws/nlb":
                meta.setdefault("finalizers", ["service.k8s.aws/resources"])

    def handle(
        self, method: str, raw_path: str, body_bytes: bytes, headers: dict[str, str]
    ) -> tuple[int, dict[str, Any] | Stream | Encoded, dict[str, str]]:
        parts = urlsplit(raw_path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        try:
            body = json.loads(body_bytes) if body_bytes else None
        except json.JSONDecodeError:
            body = None
            if method in ("POST", "PUT", "PATCH"):
                return 400, status_body(400, "BadRequest", "the body of the request was not valid JSON"), {}
        with self._lock:
            self.requests.append(Request(method, parts.path, query, body, {k.lower(): v for k, v in headers.items()}))
        if self.require_bearer_prefix is not None:
            auth = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
            if not auth.startswith(f"Bearer {self.require_bearer_prefix}"):
                return 401, status_body(401, "Unauthorized", "Unauthorized"), {}
        special = self._subresource(method, parts.path, query)
        if special is not None:
            return special
        match = _PATH.match(parts.path)
        if not match:
            return 404, status_body(404, "NotFound", "the server could not find the requested resource"), {}
        group = match["group"] or ""
        version = match["core"] or match["version"]
        plural, namespace, name = match["plural"], match["ns"] or "", match["name"]
        kind = RESOURCES.get((group, version, plural))
        if kind is None or (plural in CLUSTER_SCOPED) != (match["ns"] is None):
            return 404, status_body(404, "NotFound", "the server could not find the requested resource"), {}
        resource = f"{plural}.{group}" if group else plural
        details = {"name": name, "group": group, "kind": plural} if name else {"group": group, "kind": plural}
        content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "").split(";")[0].strip()
        with self._lock:
            return self._dispatch(
                method, kind, plural, resource, group, version, namespace, name, query, body, details, content_type
            )

    def _subresource(
        self, method: str, path: str, query: dict[str, str]
    ) -> tuple[int, dict[str, Any] | Stream, dict[str, str]] | None:
        """The two subresources `simfleet` reads: a pod's log, and a LocalQueue's pending workloads (Kueue's
        visibility API, served by Kueue through an APIService); None for any other path."""
        log = _POD_LOG.match(path)
        if log and method == "GET":
            return self._pod_log(log["ns"], log["name"], query)
        pending = _PENDING.match(path)
        if pending and method == "GET":
            from fake_kueue import pending_workloads

            with self._lock:
                return pending_workloads(self, pending["ns"], pending["name"], query)
        return None

    def _pod_log(self, namespace: str, name: str, query: dict[str, str]) -> tuple[int, dict[str, Any] | Stream, dict[str, str]]:
        """GET .../pods/<pod>/log as the kubelet answers through the API server: `container` is required when the pod
        has more than one; sinceSeconds, sinceTime, tailLines and timestamps filter and format; follow streams new
        lines until the pod has ended or gone."""
        with self._lock:
            pod = self.objects.get(("pods", namespace, name))
        if pod is None:
            return 404, status_body(404, "NotFound", f'pods "{name}" not found', {"name": name, "kind": "pods"}), {}
        spec = pod.get("spec") or {}
        names = [c["name"] for c in spec.get("containers") or []] + [c["name"] for c in spec.get("initContainers") or []]
        container = query.get("container")
        if not container and len(names) != 1:
            message = f"a container name must be specified for pod {name}, choose one of: [{' '.join(names)}]"
            return 400, status_body(400, "BadRequest", message), {}
        container = container or names[0]
        if container not in names:
            return 400, status_body(400, "BadRequest", f"container {container} is not valid for pod {name}"), {}
        key = (namespace, name, container)
        since = None
        if query.get("sinceSeconds"):
            since = datetime.now(UTC).timestamp() - float(query["sinceSeconds"])
        elif query.get("sinceTime"):
            since = _epoch(query["sinceTime"])
        tail = int(query["tailLines"]) if query.get("tailLines") else None
        stamps = query.get("timestamps") == "true"

        def render(entries: list[tuple[str, str]]) -> bytes:
            kept = [e for e in entries if since is None or _epoch(e[0]) >= since]
            return "".join(f"{at} {line}\n" if stamps else f"{line}\n" for at, line in kept).encode()

        def lines_now() -> list[tuple[str, str]]:
            with self._lock:
                return list(self.logs.get(key, []))

        first = lines_now()
        if tail is not None:
            first = first[-tail:] if tail else []
        if query.get("follow") != "true":
            return 200, Stream(iter([render(first)])), {}

        def follow() -> Iterator[bytes]:
            sent = len(lines_now()) - len(first)
            while True:
                entries = lines_now()
                if len(entries) > sent:
                    yield render(entries[sent:])
                    sent = len(entries)
                with self._lock:
                    current = self.objects.get(("pods", namespace, name))
                if current is None or (current.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                    rest = lines_now()[sent:]
                    if rest:
                        yield render(rest)
                    return
                time.sleep(0.02)

        return 200, Stream(follow(), chunked=True), {}

    def _dispatch(
        self,
        method: str,
        kind: str,
        plural: str,
        resource: str,
        group: str,
        version: str,
        namespace: str,
        name: str | None,
        query: dict[str, str],
        body: Any,
        details: dict[str, Any],
        content_type: str = "",
    ) -> tuple[int, dict[str, Any] | Encoded, dict[str, str]]:
        key = (plural, namespace, name or "")
        api_version = f"{group}/{version}" if group else version
        qualified = f"{kind}.{group}" if group else kind  # how apimachinery's NewInvalid names the kind: Job.batch
        if method == "GET" and name is None:
            selector = query.get("labelSelector", "")
            try:
                fields = _field_requirements(plural, query.get("fieldSelector", ""))
            except ValueError as err:
                return 400, status_body(400, "BadRequest", str(err)), {}
            try:
                limit, start = int(query.get("limit") or 0), _continue_from(query.get("continue", ""))
            except ValueError:
                return 400, status_body(400, "BadRequest", "continue key is not valid"), {}
            chosen = [
                (object_name, o)
                for (p, ns, object_name), o in sorted(self.objects.items())
                if p == plural
                and ns == namespace
                and object_name > start
                and _selects(selector, o["metadata"].get("labels") or {})
                and all((_field(o, key) == value) == equal for key, value, equal in fields)
            ]
            metadata: dict[str, Any] = {"resourceVersion": str(next(self._versions))}
            if 0 < limit < len(chosen):
                # The real server's continue token is opaque (base64 JSON holding the last key served); so is this.
                token = json.dumps({"v": "meta.k8s.io/v1", "start": chosen[limit - 1][0]}).encode()
                metadata["continue"] = base64.b64encode(token).decode()
                chosen = chosen[:limit]
            # Encoded here, under the lock (a copy no later write can change), in one pass: a page of 500 Jobs is 8 MB,
            # and copying then encoding it made the fake, not the client, what a large listing measured.
            head = json.dumps({"kind": f"{kind}List", "apiVersion": api_version, "metadata": metadata})
            items = ",".join(json.dumps({k: v for k, v in o.items() if k not in ("apiVersion", "kind")}) for _, o in chosen)
            return 200, Encoded(f'{head[:-1]}, "items": [{items}]}}'.encode()), {}
        if method == "POST" and name is None:
            if not isinstance(body, dict):
                return 400, status_body(400, "BadRequest", "the body of the request was in an unknown format"), {}
            meta = body.get("metadata") or {}
            obj_name = meta.get("name")
            if body.get("kind") != kind or body.get("apiVersion") != api_version:
                return (
                    400,
                    status_body(
                        400,
                        "BadRequest",
                        f"the API version in the data ({body.get('apiVersion')}) does not match the expected API version ({api_version})"
                        if body.get("kind") == kind
                        else f'{kind} in version "{version}" cannot be handled as a {body.get("kind")}',
                    ),
                    {},
                )
            if meta.get("namespace") not in (None, namespace):
                return (
                    400,
                    status_body(
                        400, "BadRequest", "the namespace of the provided object does not match the namespace sent on the request"
                    ),
                    {},
                )
            if not obj_name:
                return 422, invalid(qualified, "", [("metadata.name", "Required value: name or generateName is required")]), {}
            if plural not in CLUSTER_SCOPED and namespace not in self.namespaces:
                return (
                    404,
                    status_body(
                        404, "NotFound", f'namespaces "{namespace}" not found', {"name": namespace, "kind": "namespaces"}
                    ),
                    {},
                )
            if (plural, namespace, obj_name) in self.objects:
                return (
                    409,
                    status_body(
                        409,
                        "AlreadyExists",
                        f'{resource} "{obj_name}" already exists',
                        {"name": obj_name, "group": group, "kind": plural},
                    ),
                    {},
                )
            obj = copy.deepcopy(body)
            obj.pop("status", None)
            if "resourceVersion" in meta:
                return 500, status_body(500, "InternalError", "resourceVersion should not be set on objects to be created"), {}
            self._stamp(plural, obj, namespace)
            self.objects[(plural, namespace, obj_name)] = obj
            return 201, copy.deepcopy(obj), {}
        if name is None:
            return (
                405,
                status_body(405, "MethodNotAllowed", "the server does not allow this method on the requested resource"),
                {},
            )
        current = self.objects.get(key)
        if current is None:
            return 404, status_body(404, "NotFound", f'{resource} "{name}" not found', details), {}
        if method == "GET":
            return 200, copy.deepcopy(current), {}
        if method in ("PUT", "PATCH"):
            if method == "PUT":
                new = copy.deepcopy(body) if isinstance(body, dict) else None
                if new is None:
                    return 400, status_body(400, "BadRequest", "the body of the request was in an unknown format"), {}
                if (new.get("metadata") or {}).get("name") != name:
                    return 400, status_body(400, "BadRequest", "the name of the object does not match the name on the URL"), {}
                given = (new.get("metadata") or {}).get("resourceVersion")
                if not given and kind == "Service":
                    return (
                        422,
                        invalid(
                            qualified, name, [("metadata.resourceVersion", 'Invalid value: "": must be specified for an update')]
                        ),
                        {},
                    )
                new.setdefault("status", current.get("status", {}))
            elif content_type == JSON_PATCH:
                if not isinstance(body, list):
                    return (
                        400,
                        status_body(400, "BadRequest", "json: cannot unmarshal object into Go value of type jsonpatch.Patch"),
                        {},
                    )
                try:
                    new = _json_patch(copy.deepcopy(current), body)
                except _JsonPatchError as err:
                    # apiserver handlers/patch.go: a patch that does not apply (a failed `test`, a missing path) is 422.
                    return 422, status_body(422, "Invalid", str(err)), {}
                given = None
            elif content_type in MERGE_PATCHES and isinstance(body, dict):
                new = _merge_patch(copy.deepcopy(current), body)
                given = (body.get("metadata") or {}).get("resourceVersion")
            else:
                message = f"the body of the request was in an unknown format - accepted media types include: {JSON_PATCH}, {', '.join(MERGE_PATCHES)}, application/apply-patch+yaml"
                return 415, status_body(415, "UnsupportedMediaType", message), {}
            if given and given != current["metadata"]["resourceVersion"]:
                return (
                    409,
                    status_body(
                        409,
                        "Conflict",
                        f'Operation cannot be fulfilled on {resource} "{name}": the object has been modified; please apply your changes to the latest version and try again',
                        details,
                    ),
                    {},
                )
            problems = _immutable_changes(kind, current, new)
            if problems:
                return 422, invalid(qualified, name, problems), {}
            meta = new.setdefault("metadata", {})
            for keep in ("uid", "creationTimestamp", "namespace", "generation", "deletionTimestamp", "finalizers"):
                if keep in current["metadata"]:
                    meta[keep] = current["metadata"][keep]
            if kind == "Service":
                new.setdefault("spec", {}).setdefault("clusterIP", current["spec"].get("clusterIP"))
                new["spec"].setdefault("clusterIPs", current["spec"].get("clusterIPs"))
            meta["resourceVersion"] = str(next(self._versions))
            self.objects[key] = new
            return 200, copy.deepcopy(new), {}
        if method == "DELETE":
            # The DeleteOptions body wins over the query parameter when both are sent (apiserver handlers/delete.go).
            policy = (body or {}).get("propagationPolicy") or query.get("propagationPolicy")
            if policy not in (None, "Background", "Foreground", "Orphan"):
                return 400, status_body(400, "BadRequest", f'propagationPolicy: Unsupported value: "{policy}"'), {}
            if policy is None and kind == "Job":
                policy = "Orphan"  # batch/v1 Jobs default to orphaning their pods when deleted through the API
            uid = current["metadata"]["uid"]
            preconditions = (body or {}).get("preconditions") or {}
            for field_name, found in (("uid", uid), ("resourceVersion", current["metadata"]["resourceVersion"])):
                wanted = preconditions.get(field_name)
                if wanted is not None and wanted != found:
                    # The generic registry's storage error, wrapped as a Conflict (apiserver registry/generic/registry
                    # store.go and storage/etcd3 checkPreconditions).
                    label = "UID" if field_name == "uid" else "ResourceVersion"
                    message = (
                        f'Operation cannot be fulfilled on {resource} "{name}": StorageError: invalid object, Code: 4, '
                        f"Key: /registry/{plural}/{namespace}/{name}, ResourceVersion: 0, AdditionalErrorMsg: "
                        f"Precondition failed: {label} in precondition: {wanted}, {label} in object meta: {found}"
                    )
                    return 409, status_body(409, "Conflict", message, details), {}
            if current["metadata"].get("finalizers"):
                # Finalizers hold the object until their controllers remove them; deleting again changes nothing.
                current["metadata"].setdefault("deletionTimestamp", now())
                current["metadata"]["resourceVersion"] = str(next(self._versions))
                return 200, copy.deepcopy(current), {}
            if policy == "Foreground":
                current["metadata"]["deletionTimestamp"] = now()
                current["metadata"]["finalizers"] = [*current["metadata"].get("finalizers", []), "foregroundDeletion"]
                current["metadata"]["resourceVersion"] = str(next(self._versions))
                return 200, copy.deepcopy(current), {}
            del self.objects[key]
            if policy == "Orphan":
                for obj in self.objects.values():
                    refs = obj["metadata"].get("ownerReferences") or []
                    obj["metadata"]["ownerReferences"] = [r for r in refs if r.get("uid") != uid]
            return 200, status_body(200, None, None, {**details, "uid": uid}, status="Success"), {}
        return 405, status_body(405, "MethodNotAllowed", "the server does not allow this method on the requested resource"), {}


def _continue_from(token: str) -> str:
    """The name a list page continues after ("" for the first page); ValueError for a token this server never gave."""
    if not token:
        return ""
    document = json.loads(base64.b64decode(token, validate=True))
    start = document.get("start") if isinstance(document, dict) else None
    if not isinstance(start, str):
        raise ValueError(token)
    return start


def status_body(
    code: int, reason: str | None, message: str | None, details: dict[str, Any] | None = None, status: str = "Failure"
) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": status}
    if message is not None:
        body["message"] = message
    if reason is not None:
        body["reason"] = reason
    if details:
        body["details"] = {k: v for k, v in details.items() if v is not None}
    body["code"] = code
    return body


def invalid(kind: str, name: str, problems: list[tuple[str, str]]) -> dict[str, Any]:
    """422 Invalid as apimachinery errors.NewInvalid writes it; `kind` qualified by its group (Job.batch)."""
    causes = [{"reason": "FieldValueInvalid", "message": msg, "field": path} for path, msg in problems]
    text = ", ".join(f"{path}: {msg}" for path, msg in problems)
    message = f'{kind} "{name}" is invalid: {text if len(problems) == 1 else "[" + text + "]"}'
    return status_body(422, "Invalid", message, {"name": name, "kind": kind, "causes": causes})


def _immutable_changes(kind: str, old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, str]]:
    old_spec, new_spec = old.get("spec") or {}, new.get("spec") or {}
    problems: list[tuple[str, str]] = []
    if kind == "Job":
        for field_name in JOB_IMMUTABLE:
            if field_name in ("template", "selector"):
                # The server defaults these (controller-uid labels), so a replacement without them still differs.
                if new_spec.get(field_name) != old_spec.get(field_name):
                    problems.append((f"spec.{field_name}", "Invalid value: ...: field is immutable"))
            elif field_name in new_spec and new_spec.get(field_name) != old_spec.get(field_name):
                problems.append(
                    (f"spec.{field_name}", f"Invalid value: {json.dumps(new_spec.get(field_name))}: field is immutable")
                )
    if kind == "ConfigMap" and old.get("immutable"):
        for field_name in ("data", "binaryData", "immutable"):
            if new.get(field_name) != old.get(field_name):
                problems.append((field_name, "Forbidden: field is immutable when `immutable` is set"))
    if kind == "RoleBinding" and new.get("roleRef") != old.get("roleRef"):
        problems.append(("roleRef", "Invalid value: ...: cannot change roleRef"))
    if kind == "Service" and new_spec.get("clusterIP") not in (None, old_spec.get("clusterIP")):
        problems.append(("spec.clusterIP", f'Invalid value: "{new_spec.get("clusterIP")}": field is immutable'))
    return problems


class _JsonPatchError(Exception):
    pass


def _pointer(path: str) -> list[str]:
    # RFC 6901: "/a/b~1c" -> ["a", "b/c"]
    if not path.startswith("/"):
        raise _JsonPatchError(f"invalid JSON pointer {path!r}")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _json_patch(target: dict[str, Any], operations: list[dict[str, Any]]) -> dict[str, Any]:
    """RFC 6902 add / remove / replace / test on objects (no list indexes: simfleet's patches never need them)."""
    for op in operations:
        *parents, last = _pointer(str(op.get("path", "")))
        node: Any = target
        for part in parents:
            if not isinstance(node, dict) or part not in node:
                raise _JsonPatchError(
                    f"the server rejected our request due to an error in our request: missing path {op.get('path')}"
                )
            node = node[part]
        kind = op.get("op")
        if kind == "test":
            if not isinstance(node, dict) or node.get(last) != op.get("value"):
                raise _JsonPatchError("the server rejected our request due to an error in our request: testing value failed")
        elif kind in ("add", "replace"):
            if kind == "replace" and last not in node:
                raise _JsonPatchError(
                    f"the server rejected our request due to an error in our request: replace operation does not apply: doc is missing key: {op.get('path')}"
                )
            node[last] = copy.deepcopy(op.get("value"))
        elif kind == "remove":
            if last not in node:
                raise _JsonPatchError(
                    f"the server rejected our request due to an error in our request: remove operation does not apply: doc is missing key: {op.get('path')}"
                )
            del node[last]
        else:
            raise _JsonPatchError(f"Unexpected kind: {kind}")
    return target


def _merge_patch(target: Any, patch: Any) -> Any:
    # RFC 7386: objects merge recursively, null deletes, anything else replaces.
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if not isinstance(target, dict):
        target = {}
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = _merge_patch(target.get(key), value)
    return target


def _default_job(job: dict[str, Any]) -> None:
    # What the API server's defaulting and the Job strategy add on create (batch/v1, Kubernetes 1.27+).
    spec = job.setdefault("spec", {})
    uid = job["metadata"]["uid"]
    name = job["metadata"]["name"]
    if not job["metadata"].get("labels"):
        # batch/v1 SetDefaults_Job: a Job without labels takes its template's (before the generated selector labels).
        template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        if template_labels:
            job["metadata"]["labels"] = dict(template_labels)
    spec.setdefault("parallelism", 1)
    spec.setdefault("completions", 1)
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    generated = {
        "batch.kubernetes.io/controller-uid": uid,
        "batch.kubernetes.io/job-name": name,
        "controller-uid": uid,
        "job-name": name,
    }
    if not spec.get("manualSelector"):
        spec.setdefault("selector", {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}})
        labels = spec.setdefault("template", {}).setdefault("metadata", {}).setdefault("labels", {})
        for label, value in generated.items():
            labels.setdefault(label, value)
    job.setdefault("status", {})


def _default_service(service: dict[str, Any], index: int) -> None:
    spec = service.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    ip = f"10.100.{index // 250}.{index % 250 + 1}"
    spec.setdefault("clusterIP", ip)
    spec.setdefault("clusterIPs", [spec["clusterIP"]])
    if spec["type"] in ("NodePort", "LoadBalancer"):
        for offset, port in enumerate(spec.get("ports") or []):
            port.setdefault("nodePort", 30000 + index * 4 + offset)
    service.setdefault("status", {"loadBalancer": {}})


def _field_requirements(plural: str, selector: str) -> list[tuple[str, str, bool]]:
    """(field, value, equal) for each `a=b` / `a==b` / `a!=b` of a field selector; an unsupported field is a ValueError
    with the API server's message."""
    allowed = ("metadata.name", "metadata.namespace", *FIELD_LABELS.get(plural, ()))
    out = []
    for term in filter(None, (t.strip() for t in selector.split(","))):
        key, op, value = re.split(r"(!=|==|=)", term, maxsplit=1) if re.search(r"!=|==|=", term) else (term, "", "")
        if not op:
            raise ValueError(f"invalid selector: '{selector}'; can't understand '{term}'")
        if key not in allowed:
            raise ValueError(f"field label not supported: {key}")
        out.append((key, value, op != "!="))
    return out


def _field(obj: dict[str, Any], dotted: str) -> str:
    node: Any = obj
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return "" if node is None else str(node)


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


_REQUIREMENT = re.compile(
    r"\s*(?P<not>!)?(?P<key>[A-Za-z0-9./_-]+)\s*(?:(?P<op>==|=|!=|\s+in\s+|\s+notin\s+)\s*(?P<value>\([^)]*\)|[A-Za-z0-9._-]*))?\s*(?:,|$)"
)


def _selects(selector: str, labels: dict[str, str]) -> bool:
    """Equality- and set-based label selectors, as the API server evaluates them."""
    position = 0
    while position < len(selector):
        match = _REQUIREMENT.match(selector, position)
        if not match or match.end() == position:
            raise ValueError(f"unable to parse requirement: {selector[position:]!r}")
        position = match.end()
        key, op, value = match["key"], (match["op"] or "").strip(), match["value"]
        if match["not"]:
            if key in labels:
                return False
        elif not op:
            if key not in labels:
                return False
        elif op in ("=", "=="):
            if labels.get(key) != value:
                return False
        elif op == "!=":
            if labels.get(key) == value:
                return False
        else:
            values = {v.strip() for v in (value or "").strip("()").split(",") if v.strip()}
            if op == "in" and labels.get(key) not in values:
                return False
            if op == "notin" and labels.get(key) in values:
                return False
    return True


class _Handler(BaseHTTPRequestHandler):
    kube: FakeKube
    protocol_version = "HTTP/1.1"  # keep-alive, as urllib3's connection pool expects

    def setup(self) -> None:
        super().setup()
        # Headers and body go out as two writes; without TCP_NODELAY, Nagle plus the client's delayed ACK
        # adds ~40 ms to every response (the real API server has no such stall).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # the request log is `kube.requests`
        return

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        fault = self.kube._take_fault(self.command, self.path)
        if fault is not None and fault.delay:
            time.sleep(fault.delay)
        if fault is not None and fault.drop:
            self.close_connection = True
            self.connection.close()
            return
        extra: dict[str, str] = {}
        payload: dict[str, Any] | Stream | Encoded
        if fault is not None and fault.status:
            code = fault.status
            reason = {429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout"}.get(
                code, "InternalError"
            )
            payload = status_body(code, reason, f"injected fault: {reason}")
            if code == 429:
                extra["Retry-After"] = "1"
            with self.kube._lock:
                self.kube.requests.append(
                    Request(self.command, urlsplit(self.path).path, {}, None, {k.lower(): v for k, v in self.headers.items()})
                )
        else:
            code, payload, extra = self.kube.handle(self.command, self.path, body, dict(self.headers))
        if isinstance(payload, Stream):
            self._send_stream(code, payload)
            return
        data = payload.data if isinstance(payload, Encoded) else json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for header, value in extra.items():
            self.send_header(header, value)
        self.end_headers()
        self.wfile.write(data)

    def _send_stream(self, code: int, stream: Stream) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        if not stream.chunked:
            data = b"".join(stream.chunks)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for chunk in stream.chunks:
                if chunk:
                    self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                    self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client stopped following

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve


def _self_signed(host: str) -> tuple[bytes, bytes]:
    """A throwaway self-signed certificate for `host` (an IP), and its key, as PEM."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake-kube")])
    start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem_key = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), pem_key


# ---------------------------------------------------------------------------------------------
# A run's SimRun inputs exactly as workloads/runs.py builds them
# ---------------------------------------------------------------------------------------------

MOCK_CA = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1PQ0sKLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo="
TEST_GLUE = "def step(observation):\n    return {'cmd_type': 'stop'}\n"
ARTIFACTS_BUCKET = "simfleet-test-artifacts"
CHECKPOINTS_BUCKET = "simfleet-test-checkpoints"


def run_spec(
    run: str = "trot-baseline", viewport: bool | dict[str, Any] = True, seeds: tuple[int, ...] = (7,), **fields: Any
) -> dict[str, Any]:
    """A run's stack entry: interactive with a viewport (the default one, or the `viewport` given), or a batch sweep."""
    spec: dict[str, Any] = {
        "name": run,
        "mode": "batch" if len(seeds) > 1 or not viewport else "interactive",
        "images": {"sim": "unitree-sim:4.2.0", "monty": "monty:1f3c2a9", "glue": "glue-base:0.3.1"},
        "profile": "quadruped-default",
        "glue": "glue/trot.py",
        "seeds": list(seeds),
        "labels": {"user": "alice"},
    }
    if viewport and len(seeds) == 1:
        spec["viewport"] = viewport if isinstance(viewport, dict) else {"allowedCidrs": ["10.20.0.0/16"]}
    spec.update(fields)
    return spec


def run_context(namespace: str = "simfleet-runs") -> Any:
    """The platform context of the test runs (a RunContext), as the program builds it."""
    from workloads.identity import RunContext

    return RunContext(
        cluster_name="simfleet-test",
        namespace=namespace,
        service_account="simfleet-run",
        checkpoints_bucket=CHECKPOINTS_BUCKET,
        artifacts_bucket=ARTIFACTS_BUCKET,
        registry_url="123456789012.dkr.ecr.us-east-1.amazonaws.com",
        region="us-east-1",
        kubernetes_version="1.35",
        vpc_cidr="10.40.0.0/16",
    )


def run_props(
    endpoint: str,
    run: str = "trot-baseline",
    viewport: bool | dict[str, Any] = True,
    seeds: tuple[int, ...] = (7,),
    namespace: str = "simfleet-runs",
    ca: str = MOCK_CA,
    planned_with: tuple[dict[str, Any], ...] = (),
    pushgateway_url: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """SimRun inputs for one run, built by the Runs component's own code (workloads.runs.plan_runs).

    `planned_with` holds other stack entries planned in the same call, such as the source a run continues from;
    `pushgateway_url` is the context's when the stack's collector scrapes the Pushgateway."""
    from dataclasses import replace

    from config import RunSpec
    from workloads.runs import plan_runs

    ctx = replace(run_context(namespace), pushgateway_url=pushgateway_url)
    spec = RunSpec.model_validate(run_spec(run, viewport, seeds, **fields))
    specs = [spec, *(RunSpec.model_validate(other) for other in planned_with)]
    planned = next(p for p in plan_runs(specs, ctx, {s.glue: TEST_GLUE for s in specs}) if p.spec.name == run)
    return {**planned.inputs, "clusterEndpoint": endpoint, "clusterCa": ca}


def job_props(endpoint: str, ca: str = MOCK_CA, **fields: Any) -> dict[str, Any]:
    """SimRun inputs for one batch job (kind `job`), built by the Jobs component's own code (workloads.jobs.plan_jobs)."""
    from config import JobSpec
    from workloads.job_identity import JobContext
    from workloads.jobs import plan_jobs

    entry: dict[str, Any] = {
        "name": "resample",
        "image": "robocache:0.4.2",
        "command": ["python", "-m", "robocache.preprocess"],
        "shards": 4,
        "parallelism": 2,
        "shmSize": "16Gi",
        "labels": {"user": "bob"},
        **fields,
    }
    ctx = JobContext(
        cluster_name="simfleet-test",
        namespace="simfleet-runs",
        service_account="simfleet-job",
        artifacts_bucket=ARTIFACTS_BUCKET,
        registry_url="123456789012.dkr.ecr.us-east-1.amazonaws.com",
        region="us-east-1",
        kubernetes_version="1.35",
        pushgateway_url="http://prometheus-pushgateway.simfleet-metrics.svc:9091",
    )
    [planned] = plan_jobs([JobSpec.model_validate(entry)], ctx)
    return {**planned.inputs, "clusterEndpoint": endpoint, "clusterCa": ca}
