"""The run provider's connections: EKS tokens minted as `aws eks get-token` does, cached Kubernetes and S3 clients."""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from dataclasses import dataclass
from typing import Any

# As in awscli/customizations/eks/get_token.py: the token is the presigned STS GetCallerIdentity URL
# (signed with the x-k8s-aws-id header naming the cluster, URL_TIMEOUT = 60 s), base64url without padding,
# behind this prefix. EKS accepts a token for 15 minutes after signing (awscli reports 14 to client-go).
TOKEN_PREFIX = "k8s-aws-v1."
CLUSTER_ID_HEADER = "x-k8s-aws-id"
PRESIGN_SECONDS = 60
# Reused well inside the 15 minutes, so a long `pulumi up` never presents a token about to expire.
TOKEN_REUSE_SECONDS = 600.0
# (connect, read) seconds for one API request; the provider's retry loop handles the rest.
REQUEST_TIMEOUT = (10.0, 60.0)


@dataclass(frozen=True)
class Connection:
    """How to reach one cluster: EKS (name, endpoint, CA, region) or a kubeconfig for anything else."""

    cluster_name: str
    endpoint: str
    ca_data: str  # base64 PEM, as EKS reports certificateAuthority.data
    region: str
    kubeconfig: str | None = None

    def describe(self) -> str:
        return f"cluster {self.cluster_name} ({self.endpoint})" if not self.kubeconfig else "the cluster in the kubeconfig input"


# Process-wide caches of the dynamic-provider host, which serves every SimRun of a deployment. They live in
# this module, not on the provider object, so nothing here is ever pickled into the Pulumi state.
_lock = threading.Lock()
_sts_clients: dict[str, Any] = {}
_s3_clients: dict[str, Any] = {}
_logs_clients: dict[str, Any] = {}
_tokens: dict[tuple[str, str], tuple[str, float]] = {}
_api_clients: dict[tuple[str, ...], Any] = {}
_clusters: dict[tuple[str, str], tuple[str, str]] = {}


_data_loaders: dict[str | None, Any] = {}  # data path -> the botocore Loader every session here shares
_loader_lock = threading.Lock()  # not _lock: _session is called while _lock is held


def _session() -> Any:
    """A new boto3 session (sessions are not thread-safe; each client gets its own) that shares one botocore data
    Loader per data path with the others: each session would otherwise read and parse the endpoint and service-model
    JSON files again (~0.1 s of CPU per client; a test or a provider host makes many)."""
    import boto3
    import botocore.loaders
    import botocore.session

    core = botocore.session.get_session()
    path = core.get_config_variable("data_path")  # AWS_DATA_PATH, or the profile's data_path in the config file
    with _loader_lock:
        loader = _data_loaders.get(path)
        if loader is None:
            loader = _data_loaders[path] = botocore.loaders.create_loader(path)
        core.register_component("data_loader", loader)
        session = boto3.session.Session(botocore_session=core)
        keep_one_boto3_data_path(loader)
    return session


def keep_one_boto3_data_path(loader: Any) -> None:
    """boto3 appends its own data directory to each new session's Loader (boto3/session.py _setup_loader): a Loader
    shared by sessions needs it once, not once more for every session."""
    paths = loader.search_paths
    if paths.count(paths[-1]) > 1:
        paths.pop()


def reset_caches() -> None:
    """Forget clients and tokens (tests switch credentials and servers between cases)."""
    with _lock:
        _sts_clients.clear()
        _s3_clients.clear()
        _logs_clients.clear()
        _tokens.clear()
        _api_clients.clear()
        _clusters.clear()


def _move_cluster_id_to_context(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    # GetCallerIdentity has no such parameter: take it out before botocore validates the call ...
    if CLUSTER_ID_HEADER in params:
        context[CLUSTER_ID_HEADER] = params.pop(CLUSTER_ID_HEADER)


def _sign_cluster_id_header(request: Any, **_: Any) -> None:
    # ... and add it as a header just before signing, so it is part of X-Amz-SignedHeaders.
    if CLUSTER_ID_HEADER in request.context:
        request.headers[CLUSTER_ID_HEADER] = request.context[CLUSTER_ID_HEADER]


def _sts_client(region: str) -> Any:
    with _lock:
        client = _sts_clients.get(region)
        if client is None:
            # boto3 clients are thread-safe (sessions are not): one per region, built under the lock.
            client = _session().client("sts", region_name=region)
            client.meta.events.register("provide-client-params.sts.GetCallerIdentity", _move_cluster_id_to_context)
            client.meta.events.register("before-sign.sts.GetCallerIdentity", _sign_cluster_id_header)
            _sts_clients[region] = client
        return client


def caller_identity(region: str) -> dict[str, str]:
    """Who the ambient AWS credentials are ({"Account", "Arn", "UserId"}); botocore's errors when there are none."""
    found = _sts_client(region).get_caller_identity()
    return {key: str(found[key]) for key in ("Account", "Arn", "UserId")}


def describe_cluster(cluster_name: str, region: str) -> tuple[str, str]:
    """(endpoint, base64 CA) of an EKS cluster, as EKS reports them now; cached for the process.

    Asking EKS instead of storing them per run keeps thousands of runs from each carrying a copy of the CA in
    their state, and a run's read or delete always reaches the cluster as it is today.
    """
    key = (cluster_name, region)
    with _lock:
        cached = _clusters.get(key)
    if cached is not None:
        return cached
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        cluster = _session().client("eks", region_name=region).describe_cluster(name=cluster_name)["cluster"]
    except (ClientError, BotoCoreError) as err:
        raise ConnectionError(
            f"cannot look up EKS cluster {cluster_name} in {region} ({err}): check that your AWS identity may "
            "eks:DescribeCluster and that the cluster exists (pulumi stack output clusterName)"
        ) from None
    found = (str(cluster["endpoint"]), str(cluster["certificateAuthority"]["data"]))
    with _lock:
        _clusters[key] = found
    return found


def s3_client(region: str) -> Any:
    """One S3 client per region, for reading index.json of runs whose Job is gone."""
    return _client("s3", region, _s3_clients)


def logs_client(region: str) -> Any:
    """One CloudWatch Logs client per region, for `simfleet logs` once a run's pods are gone."""
    return _client("logs", region, _logs_clients)


def _client(service: str, region: str, cache: dict[str, Any]) -> Any:
    with _lock:
        client = cache.get(region)
        if client is None:
            from botocore.config import Config

            # Room for the command's concurrent reads (listing.S3_THREADS) on one client's connection pool.
            # S3 signs with SigV4 throughout: botocore would presign `simfleet artifacts --url` with SigV2 in us-east-1,
            # which S3 is retiring and regions opened since 2014 refuse.
            signing = {"signature_version": "s3v4"} if service == "s3" else {}
            config = Config(max_pool_connections=64, **signing)
            client = _session().client(service, region_name=region, config=config)
            cache[region] = client
        return client


def mint_token(cluster_name: str, region: str) -> str:
    """A fresh EKS token: presigning is local (no network), with the ambient AWS credentials."""
    url = _sts_client(region).generate_presigned_url(
        "get_caller_identity",
        Params={CLUSTER_ID_HEADER: cluster_name},
        ExpiresIn=PRESIGN_SECONDS,
        HttpMethod="GET",
    )
    return TOKEN_PREFIX + base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")


def token(cluster_name: str, region: str) -> str:
    """The cached token for a cluster, re-minted once it is TOKEN_REUSE_SECONDS old."""
    key = (cluster_name, region)
    now = time.monotonic()
    with _lock:
        cached = _tokens.get(key)
    if cached is not None and now - cached[1] < TOKEN_REUSE_SECONDS:
        return cached[0]
    fresh = mint_token(cluster_name, region)
    with _lock:
        _tokens[key] = (fresh, now)
    return fresh


def api_client(conn: Connection) -> Any:
    """A kubernetes ApiClient for the connection, shared by every call for the same cluster.

    Safe to share: the client holds the endpoint, the CA and a connection pool; the bearer token is read
    through `refresh_api_key_hook` on every request, so a client outlives the tokens it presents.
    """
    key = (
        ("kubeconfig", hashlib.sha256(conn.kubeconfig.encode()).hexdigest())
        if conn.kubeconfig
        else ("eks", conn.endpoint, conn.ca_data, conn.cluster_name, conn.region)
    )
    with _lock:
        client = _api_clients.get(key)
    if client is None:
        client = _kubeconfig_client(conn.kubeconfig) if conn.kubeconfig else _eks_client(conn)
        with _lock:
            client = _api_clients.setdefault(key, client)
    return client


def _eks_client(conn: Connection) -> Any:
    from kubernetes.client import ApiClient, Configuration

    config = Configuration(
        host=conn.endpoint,
        # Filled by the refresh hook below on every request; the key must exist for auth_settings() to use it.
        api_key={"BearerToken": ""},
        api_key_prefix={"BearerToken": "Bearer"},
        # PEM in memory (kubernetes 37 passes ca_cert_data to urllib3), so no CA file to write or clean up.
        ca_cert_data=base64.b64decode(conn.ca_data).decode() if conn.ca_data else None,
        # No urllib3 retries underneath: the provider's own bounded backoff is the only retry layer.
        retries=0,
    )

    def refresh(cfg: Any) -> None:
        cfg.api_key["BearerToken"] = token(conn.cluster_name, conn.region)

    config.refresh_api_key_hook = refresh  # type: ignore[assignment]  # typed as None in the client
    return ApiClient(config)


def _kubeconfig_client(kubeconfig: str) -> Any:
    from kubernetes import config as kube_config
    from kubernetes.client import Configuration

    from config.sources import load_yaml

    document = load_yaml(kubeconfig)  # JSON is YAML, so either form works
    return kube_config.new_client_from_config_dict(document, persist_config=False, client_configuration=Configuration(retries=0))
