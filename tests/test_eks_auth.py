"""EKS tokens as `aws eks get-token` mints them, their reuse, and the cached API clients that present them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import pytest
from fake_kube import FakeKube

from workloads import eks_auth

ACCESS_KEY = "AKIDEXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"


@pytest.fixture(autouse=True)
def fake_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Iterator[None]:
    """Static fake credentials only: no profile, no instance metadata, so nothing can reach AWS."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    eks_auth.reset_caches()
    yield
    eks_auth.reset_caches()


def decode(token: str) -> str:
    assert token.startswith("k8s-aws-v1."), token[:20]
    body = token.removeprefix("k8s-aws-v1.")
    assert "=" not in body and "+" not in body and "/" not in body, "base64url without padding"
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()


def sigv4(url: str, cluster: str) -> tuple[str, str]:
    """(expected, actual) signature of a presigned GET, recomputed independently of botocore (SigV4 spec)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    actual = query.pop("X-Amz-Signature")
    canonical_query = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(query.items()))
    canonical = "\n".join(
        [
            "GET",
            "/",
            canonical_query,
            f"host:{parts.netloc}",
            f"x-k8s-aws-id:{cluster}",
            "",
            query["X-Amz-SignedHeaders"],
            hashlib.sha256(b"").hexdigest(),
        ]
    )
    scope = query["X-Amz-Credential"].split("/", 1)[1]
    to_sign = "\n".join(["AWS4-HMAC-SHA256", query["X-Amz-Date"], scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = f"AWS4{SECRET_KEY}".encode()
    for part in scope.split("/"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest(), actual


def test_token_is_a_presigned_get_caller_identity_url_bound_to_the_cluster() -> None:
    url = decode(eks_auth.mint_token("simfleet-dev", "eu-west-1"))
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    assert parts.scheme == "https" and parts.netloc == "sts.eu-west-1.amazonaws.com", url
    assert query["Action"] == "GetCallerIdentity" and query["Version"] == "2011-06-15"
    assert query["X-Amz-Expires"] == "60"
    assert query["X-Amz-SignedHeaders"].split(";") == ["host", "x-k8s-aws-id"]
    assert query["X-Amz-Credential"].startswith(f"{ACCESS_KEY}/") and query["X-Amz-Credential"].endswith(
        "/eu-west-1/sts/aws4_request"
    )
    assert "x-k8s-aws-id" not in query, "the cluster name travels as a signed header, not a parameter"
    expected, actual = sigv4(url, "simfleet-dev")
    assert actual == expected, "the signature covers x-k8s-aws-id: simfleet-dev"
    assert sigv4(url, "another-cluster")[0] != actual


def test_token_is_reused_for_ten_minutes_per_cluster_and_region(monkeypatch: pytest.MonkeyPatch) -> None:
    minted: list[tuple[str, str]] = []

    def mint(cluster: str, region: str) -> str:
        minted.append((cluster, region))
        return f"k8s-aws-v1.{len(minted)}"

    monkeypatch.setattr(eks_auth, "mint_token", mint)
    first = eks_auth.token("a", "us-east-1")
    assert eks_auth.token("a", "us-east-1") == first
    eks_auth.token("b", "us-east-1")
    eks_auth.token("a", "eu-west-1")
    assert minted == [("a", "us-east-1"), ("b", "us-east-1"), ("a", "eu-west-1")]
    # Age the cached token past the reuse window: the next call mints a new one.
    value, minted_at = eks_auth._tokens[("a", "us-east-1")]
    eks_auth._tokens[("a", "us-east-1")] = (value, minted_at - eks_auth.TOKEN_REUSE_SECONDS - 1)
    assert eks_auth.token("a", "us-east-1") != first
    assert eks_auth.TOKEN_REUSE_SECONDS < 14 * 60, "must stay inside the 15 minutes EKS accepts a token"


def _get(client: Any, url_path: str) -> int:
    call = client.param_serialize("GET", url_path, auth_settings=["BearerToken"])
    return int(client.call_api(*call).status)


def test_api_client_is_shared_and_presents_the_current_token(monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = iter(["k8s-aws-v1.first", "k8s-aws-v1.second"])
    monkeypatch.setattr(eks_auth, "mint_token", lambda c, r: next(tokens))
    with FakeKube() as kube:
        conn = eks_auth.Connection("simfleet-test", kube.url, base64.b64encode(b"unused for http").decode(), "us-east-1")
        client = eks_auth.api_client(conn)
        assert eks_auth.api_client(conn) is client
        assert _get(client, "/api/v1/namespaces/default/configmaps/x") == 404
        eks_auth._tokens.clear()  # the token expired: the same client re-reads it through its refresh hook
        assert _get(client, "/api/v1/namespaces/default/configmaps/x") == 404
        other = eks_auth.api_client(eks_auth.Connection("other", kube.url, conn.ca_data, "us-east-1"))
    assert other is not client
    assert [r.headers["authorization"] for r in kube.requests] == ["Bearer k8s-aws-v1.first", "Bearer k8s-aws-v1.second"]


def test_kubeconfig_connection_uses_the_kubeconfig_credentials() -> None:
    with FakeKube() as kube:
        kubeconfig = json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "kind",
                "clusters": [{"name": "kind", "cluster": {"server": kube.url}}],
                "contexts": [{"name": "kind", "context": {"cluster": "kind", "user": "dev"}}],
                "users": [{"name": "dev", "user": {"token": "static-token"}}],
            }
        )
        conn = eks_auth.Connection("kind", "ignored", "", "us-east-1", kubeconfig=kubeconfig)
        client = eks_auth.api_client(conn)
        assert eks_auth.api_client(conn) is client
        assert _get(client, "/apis/batch/v1/namespaces/default/jobs/x") == 404
    assert kube.requests[0].headers["authorization"] == "Bearer static-token"
    assert eks_auth._tokens == {}, "no EKS token is minted for a kubeconfig connection"


def test_sessions_share_one_data_loader_per_data_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """Each client gets its own session (sessions are not thread-safe), but the parsed endpoint and model files are
    read once per process and data path: the same Loader object, and a client made from it works as before."""
    monkeypatch.delenv("AWS_DATA_PATH", raising=False)
    first, second = eks_auth._session(), eks_auth._session()
    assert first is not second and first._session is not second._session
    loader = first._session.get_component("data_loader")
    assert second._session.get_component("data_loader") is loader
    assert second.client("sts", region_name="us-east-1").meta.service_model.service_name == "sts"
    monkeypatch.setenv("AWS_DATA_PATH", str(tmp_path))  # another data path: a Loader of its own that searches it
    other = eks_auth._session()._session.get_component("data_loader")
    assert other is not loader and str(tmp_path) in other.search_paths


def test_sessions_leave_the_shared_loaders_search_paths_as_one_session_does(monkeypatch: pytest.MonkeyPatch) -> None:
    # boto3 appends its own data directory to its session's Loader (boto3/session.py _setup_loader): once per
    # session, so a shared Loader searched one more directory, the same one, for every client made (without end).
    monkeypatch.delenv("AWS_DATA_PATH", raising=False)
    paths = list(eks_auth._session()._session.get_component("data_loader").search_paths)
    for _ in range(5):
        loader = eks_auth._session()._session.get_component("data_loader")
    assert loader.search_paths == paths and len(set(paths)) == len(paths)


def test_a_data_path_set_in_the_config_file_gets_its_own_loader(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    # botocore reads data_path from AWS_DATA_PATH or the profile in the config file: the Loader is the one of the data
    # path in effect, not of the environment variable alone.
    monkeypatch.delenv("AWS_DATA_PATH", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    plain = eks_auth._session()._session.get_component("data_loader")
    config = tmp_path / "config"
    config.write_text(f"[default]\ndata_path = {tmp_path}\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    configured = eks_auth._session()._session.get_component("data_loader")
    assert configured is not plain and str(tmp_path) in configured.search_paths
