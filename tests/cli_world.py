"""What the `simfleet` command's tests run against: a project directory with a stack file, the fake API server
(tests/fake_kube.py, with Kueue's objects) and moto's server for S3, STS and CloudWatch Logs on 127.0.0.1, reached
through the real kubernetes client and real boto3. Each test gets its own servers on their own ports.

The command runs in-process (cli.main.main) with the environment a researcher would have: AWS credentials, a region,
AWS_ENDPOINT_URL pointing boto3 at moto, and SIMFLEET_KUBECONFIG pointing at the fake API server.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import yaml
from fake_kube import FakeKube

from config.sources import load_yaml

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT = "123456789012"  # moto's
STACK = "test"
REGION = "us-east-1"
NS = "simfleet-runs"
ARTIFACTS = f"simfleet-{STACK}-artifacts-{ACCOUNT}"
CHECKPOINTS = f"simfleet-{STACK}-checkpoints-{ACCOUNT}"
LOG_GROUP = f"/aws/containerinsights/simfleet-{STACK}/application"
GLUE = "def step(observation):\n    return {'cmd_type': 'stop'}\n"
IMAGES = {"sim": "unitree-sim:4.2.0", "monty": "monty:1f3c2a9", "glue": "glue-base:0.3.1"}


def run_entry(name: str, seeds: list[int] | None = None, **fields: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": name,
        "mode": "batch" if seeds and len(seeds) > 1 else "interactive",
        "images": IMAGES,
        "profile": "quadruped-default",
        "glue": "glue/trot.py",
        "seeds": seeds or [7],
        "maxRuntime": "1h",
        "labels": {"user": "alice", "project": "locomotion"},
    }
    entry.update(fields)
    return entry


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@dataclass
class World:
    project: Path
    kube: FakeKube
    moto_url: str
    env: dict[str, str]

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.moto_url,
            region_name=REGION,
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
        )

    def s3(self) -> Any:
        return self.client("s3")

    def logs(self) -> Any:
        return self.client("logs")

    def put_json(self, key: str, body: dict[str, Any], bucket: str = ARTIFACTS) -> None:
        self.s3().put_object(Bucket=bucket, Key=key, Body=json.dumps(body).encode())

    def put_text(self, key: str, body: str | bytes, bucket: str = ARTIFACTS) -> None:
        self.s3().put_object(Bucket=bucket, Key=key, Body=body.encode() if isinstance(body, str) else body)

    def index(self, run: str, seed: int, status: str = "Succeeded", **fields: Any) -> dict[str, Any]:
        """A seed's index.json with every field upload.sh writes (docs/records.md), at the run's spec hash."""
        declared = self.fleet().declared[run]
        prefix = declared.unit_prefix(seed)
        document: dict[str, Any] = {
            "run": run,
            "specHash": declared.spec_hash,
            "seed": seed,
            "status": status,
            "reason": None if status == "Succeeded" else "glue exited 8: the brain restarted at step 400",
            "exitCode": 0 if status == "Succeeded" else 8,
            "startTime": "2026-12-07T10:00:00Z",
            "completionTime": "2026-12-07T10:30:00Z",
            "checkpoint": f"s3://{CHECKPOINTS}/{prefix}out.mstate" if status in ("Succeeded", "Incomplete") else None,
            "partialCheckpoint": None,
            "partialSequence": None,
            "recoveries": 0,
            "resumedFrom": None,
            "steps": 1500,
            "artifacts": 3,
            "untaggedArtifacts": 0,
            **fields,
        }
        self.put_json(f"{prefix}index.json", document)
        return document

    def attempt(self, run: str, seed: int, pod: str, stamp: str = "20261207T100000Z") -> str:
        """The attempt marker fetch.sh writes for each pod of a seed (`<P>attempts/<utc>-<pod>.json`)."""
        key = f"{self.fleet().declared[run].unit_prefix(seed)}attempts/{stamp}-{pod}.json"
        self.put_json(key, {"run": run, "pod": pod, "startTime": "2026-12-07T10:00:00Z"})
        return key

    def ship_log(self, pod: str, container: str, *lines: str, at_ms: int | None = None) -> None:
        """Lines as Fluent Bit ships them to the stack's application log group: one JSON record per line, in a
        stream named after the node, pod, namespace and container (the Container Insights add-on's layout)."""
        import time

        logs = self.logs()
        with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
            logs.create_log_group(logGroupName=LOG_GROUP)
        stream = f"ip-10-0-1-5.ec2.internal-application.var.log.containers.{pod}_{NS}_{container}-0123abcd.log"
        with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
            logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=stream)
        start = at_ms or int(time.time() * 1000) - 60_000
        events = [
            {
                "timestamp": start + i,
                "message": json.dumps(
                    {
                        "log": f"{line}\n",
                        "stream": "stdout",
                        "time": "2026-12-07T10:00:00.000000000Z",
                        "kubernetes": {
                            "pod_name": pod,
                            "namespace_name": NS,
                            "container_name": container,
                            "host": "ip-10-0-1-5.ec2.internal",
                        },
                    }
                ),
            }
            for i, line in enumerate(lines)
        ]
        logs.put_log_events(logGroupName=LOG_GROUP, logStreamName=stream, logEvents=events)

    def fleet(self) -> Any:
        """The stack as the command plans it (the same code), for the tests to find hashes and prefixes."""
        from cli.session import open_session

        with self.environment():
            return open_session(STACK, self.project, None, True).load()

    def prefix(self, run: str, seed: int | None = None) -> str:
        declared = self.fleet().declared[run]
        return declared.where.prefix if seed is None else declared.unit_prefix(seed)

    def provider_props(self, run: str) -> dict[str, Any]:
        """The run's SimRun inputs as `pulumi up` gives them to the provider, aimed at the fake API server."""
        return {**self.fleet().declared[run].inputs, "clusterEndpoint": self.kube.url, "clusterCa": ""}

    def create(self, run: str) -> dict[str, Any]:
        """What `pulumi up` does for a run: the provider creates its Job (and companions) in the fake cluster."""
        from workloads.provider import SimRunProvider

        with self.environment():
            outs = SimRunProvider().create(self.provider_props(run)).outs
        assert outs is not None
        return outs

    @contextlib.contextmanager
    def environment(self) -> Iterator[None]:
        from workloads import eks_auth

        saved = dict(os.environ)
        os.environ.update(self.env)
        for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "KUBECONFIG"):
            os.environ.pop(key, None)
        eks_auth.reset_caches()  # clients cache their endpoint: each test's servers are its own
        try:
            yield
        finally:
            os.environ.clear()
            os.environ.update(saved)
            eks_auth.reset_caches()

    def run(self, *args: str, env: dict[str, str] | None = None) -> Result:
        from cli.main import main

        out, err = io.StringIO(), io.StringIO()
        with self.environment(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            os.environ.update(env or {})
            code = main(["--stack", STACK, "--project-dir", str(self.project), *args])
        return Result(code, out.getvalue(), err.getvalue())


def make_project(directory: Path, runs: list[dict[str, Any]], jobs: list[dict[str, Any]] | None = None) -> Path:
    """A project directory like the repository's: Pulumi.yaml, Pulumi.test.yaml (dev's platform, these runs), glue."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "Pulumi.yaml", directory / "Pulumi.yaml")
    document = load_yaml((ROOT / "Pulumi.dev.yaml").read_text())
    config = document["config"]
    for key in [k for k in config if k.startswith("simfleet:") and k not in ("simfleet:platform", "simfleet:queues")]:
        del config[key]
    config["simfleet:runs"] = runs
    if jobs:
        config["simfleet:jobs"] = jobs
    (directory / f"Pulumi.{STACK}.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    (directory / "glue").mkdir(exist_ok=True)
    (directory / "glue" / "trot.py").write_text(GLUE)
    return directory


@contextlib.contextmanager
def world(
    tmp: Path, runs: list[dict[str, Any]], jobs: list[dict[str, Any]] | None = None, moto_url: str | None = None
) -> Iterator[World]:
    """The world for one test; `moto_url`: a moto server the test already runs (the pods' scripts write into it)."""
    from moto.server import ThreadedMotoServer

    project = make_project(tmp / "project", runs, jobs)
    server = None
    if moto_url is None:
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
    url = moto_url or f"http://{host}:{port}"
    # moto's state is the process's, whichever server serves it: each test starts from an empty account.
    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST")).read()
    try:
        with FakeKube() as kube:
            kubeconfig = tmp / "kubeconfig.yaml"
            kubeconfig.write_text(
                yaml.safe_dump(
                    {
                        "apiVersion": "v1",
                        "kind": "Config",
                        "clusters": [{"name": "fake", "cluster": {"server": kube.url}}],
                        "users": [{"name": "me", "user": {"token": "researcher"}}],
                        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "me"}}],
                        "current-context": "fake",
                    }
                )
            )
            env = {
                "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
                "AWS_SECRET_ACCESS_KEY": "fake-secret-key-for-tests",
                "AWS_DEFAULT_REGION": REGION,
                "AWS_ENDPOINT_URL": url,
                "AWS_CONFIG_FILE": str(tmp / "no-aws-config"),
                "AWS_SHARED_CREDENTIALS_FILE": str(tmp / "no-aws-credentials"),
                "AWS_EC2_METADATA_DISABLED": "true",
                "SIMFLEET_KUBECONFIG": str(kubeconfig),
                "SIMFLEET_CACHE_DIR": str(tmp / "cache"),
                "PULUMI_HOME": str(tmp / "pulumi-home"),
                "HOME": str(tmp / "home"),
            }
            found = World(project, kube, url, env)
            s3 = found.s3()
            for bucket in (ARTIFACTS, CHECKPOINTS):
                with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
                    s3.create_bucket(Bucket=bucket)
            yield found
    finally:
        if server is not None:
            server.stop()
