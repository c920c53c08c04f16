"""The pickled SimRunProvider: a small reference with no secrets, served by a fresh dynamic-provider host process."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_kube import ARTIFACTS_BUCKET, FakeKube, run_props
from google.protobuf import json_format, struct_pb2

from tools.mocks import DYNAMIC_TYPE
from workloads import eks_auth
from workloads.provider import SimRun

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SECRET_KEY = "pickle-test-secret-key"


def fake_aws_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PYTHONPATH"))}
    env.update(
        AWS_ACCESS_KEY_ID="AKIDPICKLETEST",
        AWS_SECRET_ACCESS_KEY=SECRET_KEY,
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
    )
    return env


@pytest.fixture
def serialized(pulumi_mocks: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    """The __provider property of a SimRun, after this process has minted a token and cached clients."""
    for key, value in fake_aws_env(tmp_path).items():
        if key.startswith("AWS_"):
            monkeypatch.setenv(key, value)
    eks_auth.reset_caches()
    eks_auth.api_client(eks_auth.Connection("simfleet-test", "https://example.invalid", "", "us-east-1"))
    eks_auth.token("simfleet-test", "us-east-1")
    rec = pulumi_mocks(lambda: SimRun("runs-trot", run_props("https://example.invalid")))
    yield rec.one(DYNAMIC_TYPE).inputs["__provider"]
    eks_auth.reset_caches()


def test_provider_pickle_is_a_small_reference_with_no_secret(serialized: str) -> None:
    assert serialized != "[secret]", "nothing secret is captured, so the state need not encrypt it"
    raw = base64.b64decode(serialized)
    assert b"workloads.provider" in raw and b"SimRunProvider" in raw
    assert len(raw) < 128, f"{len(raw)} bytes: the class is pickled by reference, with no captured state"
    for leak in (SECRET_KEY.encode(), b"AKIDPICKLETEST", b"k8s-aws-v1", b"example.invalid", b"ApiClient", b"boto"):
        assert leak not in raw


def test_cached_serialization_is_byte_identical_to_the_sdk_own(tmp_path: Path) -> None:
    # A fresh interpreter, so the SDK's serialize_provider runs unpatched first (one call: no wrapper chain yet).
    script = textwrap.dedent("""
        import pickle
        from pulumi.dynamic import dynamic as sdk
        from workloads.provider import SimRunProvider
        from workloads.sdk_fix import install_sdk_fix
        original = pickle._Pickler._batch_setitems
        sdk_bytes = sdk.serialize_provider(SimRunProvider())
        pickle._Pickler._batch_setitems = original
        install_sdk_fix()
        install_sdk_fix()  # idempotent: still one wrapper
        first, second = sdk.serialize_provider(SimRunProvider()), sdk.serialize_provider(SimRunProvider())
        print(sdk_bytes == first == second, pickle._Pickler._batch_setitems is original)
    """)
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=PROJECT_ROOT, env=fake_aws_env(tmp_path), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True"], result.stdout


def _struct(values: dict[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(values)
    return struct


def test_a_fresh_provider_host_process_serves_the_pickled_provider(serialized: str, tmp_path: Path) -> None:
    """Start `python -m pulumi.dynamic` from the project root, as pulumi-resource-pulumi-python does, and drive it over gRPC."""
    import grpc
    from moto.server import ThreadedMotoServer
    from pulumi.runtime.proto import provider_pb2, provider_pb2_grpc

    s3 = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    s3.start()
    endpoint = f"http://127.0.0.1:{s3.get_host_and_port()[1]}"
    env = {**fake_aws_env(tmp_path), "AWS_ENDPOINT_URL_S3": endpoint}
    import boto3

    boto3.client(
        "s3", region_name="us-east-1", endpoint_url=endpoint, aws_access_key_id="x", aws_secret_access_key="y"
    ).create_bucket(Bucket=ARTIFACTS_BUCKET)
    with FakeKube() as kube:
        host = subprocess.Popen(
            [sys.executable, "-u", "-m", "pulumi.dynamic"],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            assert host.stdout is not None
            port = int(host.stdout.readline())
            channel = grpc.insecure_channel(f"127.0.0.1:{port}")
            stub = provider_pb2_grpc.ResourceProviderStub(channel)
            urn = "urn:pulumi:dev::simfleet::pulumi-python:dynamic:Resource::runs-trot"
            props = {**run_props(kube.url), "__provider": serialized}
            stub.Configure(provider_pb2.ConfigureRequest(args=_struct({})), timeout=30)
            check = stub.Check(provider_pb2.CheckRequest(urn=urn, olds=_struct({}), news=_struct(props)), timeout=30)
            assert list(check.failures) == []
            created = stub.Create(provider_pb2.CreateRequest(urn=urn, properties=_struct(props)), timeout=60)
            outs = json_format.MessageToDict(created.properties)
            assert created.id == "simfleet-runs/trot-baseline" and outs["status"] == "Queued"  # suspended for Kueue
            assert kube.get("jobs", "simfleet-runs", "trot-baseline") is not None
            assert kube.requests[1].headers["authorization"].startswith("Bearer k8s-aws-v1.")
            kube.finish_job("simfleet-runs", "trot-baseline")
            read = stub.Read(provider_pb2.ReadRequest(id=created.id, urn=urn, properties=created.properties), timeout=60)
            assert read.id == created.id and json_format.MessageToDict(read.properties)["status"] == "Succeeded"
            stub.Delete(provider_pb2.DeleteRequest(id=created.id, urn=urn, properties=read.properties), timeout=60)
            assert kube.get("jobs", "simfleet-runs", "trot-baseline") is None
            assert kube.calls("DELETE", "/jobs/")[0].query["propagationPolicy"] == "Background"
            assert SECRET_KEY not in json.dumps(outs)
            channel.close()
        finally:
            host.kill()
            _, stderr = host.communicate(timeout=30)
            s3.stop()
    assert b"Traceback" not in stderr, stderr.decode()[-2000:]
