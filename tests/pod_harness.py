"""What the pod script tests share: moto's S3 server on 127.0.0.1 and a pod's env to run the scripts in.

The scripts run as subprocesses with the real AWS CLI: v1 from PyPI (the pods run v2; the `aws s3 cp` /
`aws s3api` commands and flags the scripts use are the same in both). moto runs in-process as a
ThreadedMotoServer; each test module starts one and resets it before each test. A 403 comes from moto's IAM
enforcement: a user whose policy denies the action, with request authentication turned on for the length of the
script run only (`ScriptPod.denied`). The order in which moto saw requests comes from its werkzeug request log.
Nothing here measures how long anything took: GUARD only stops a hung script from hanging the suite.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
from moto import settings as moto_settings
from moto.server import ThreadedMotoServer

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "workloads" / "scripts"
VENV_BIN = Path(sys.executable).parent  # `aws` (awscli from requirements-dev.txt) is installed beside the test's Python
GUARD = 120  # seconds before a hung script fails the test instead of hanging the suite; never an assertion on speed
REGION = "us-east-1"


class Moto:
    """moto's server on 127.0.0.1, with the request line of every request it answered, in order."""

    def __init__(self, buckets: Sequence[str]) -> None:
        self.buckets = tuple(buckets)
        self.requests: list[tuple[str, str]] = []
        handler = logging.Handler()
        handler.emit = self._record  # type: ignore[method-assign]
        self.logger = logging.getLogger("werkzeug")
        self.logger.setLevel(logging.INFO)
        self.logger.addHandler(handler)
        self.handler = handler
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        self.endpoint = f"http://127.0.0.1:{self.server.get_host_and_port()[1]}"
        self.s3 = self.client("s3")

    def _record(self, record: logging.LogRecord) -> None:
        match = re.search(r'"([A-Z]+) (\S+) HTTP/', record.getMessage())
        if match and not match.group(2).startswith("/moto-api"):
            self.requests.append((match.group(1), urllib.parse.unquote(match.group(2))))

    def client(self, service: str, key: str = "testing", secret: str = "testing") -> Any:
        return boto3.client(
            service, endpoint_url=self.endpoint, region_name=REGION, aws_access_key_id=key, aws_secret_access_key=secret
        )

    def reset(self) -> None:
        """Empty moto, then the buckets again, and forget the requests so far."""
        urllib.request.urlopen(urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")).read()
        for bucket in self.buckets:
            self.s3.create_bucket(Bucket=bucket)
        self.requests.clear()

    def stop(self) -> None:
        self.server.stop()
        self.logger.removeHandler(self.handler)


def moto_server_for(buckets: Sequence[str]) -> Iterator[Moto]:
    """The body of a test module's (module-scoped) moto fixture."""
    server = Moto(buckets)
    try:
        yield server
    finally:
        server.stop()


class ScriptPod:
    """A pod's env for the scripts (the AWS CLI pointed at moto, HOME and TMPDIR in tmp_path), the processes the
    test started, and the S3 the scripts talk to (through boto3 with moto's default credentials)."""

    def __init__(self, tmp_path: Path, moto: Moto, hostname: str, env: dict[str, str]) -> None:
        self.moto = moto
        self.s3 = moto.s3
        home = tmp_path / "home"
        home.mkdir()
        self.processes: list[subprocess.Popen[str]] = []
        self.env = {
            "PATH": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(home),
            "TMPDIR": str(tmp_path),
            "HOSTNAME": hostname,
            "AWS_ENDPOINT_URL": moto.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": str(home / "config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(home / "credentials"),
            **env,
        }

    def _command(
        self, script: str, args: Sequence[str], shell: Sequence[str], env: dict[str, str]
    ) -> tuple[list[str], dict[str, str]]:
        return [*shell, str(SCRIPTS / script), *args], {**self.env, **env}

    def run(self, script: str, *args: str, shell: Sequence[str] = ("bash",), **env: str) -> subprocess.CompletedProcess[str]:
        """Run `<shell> <script> <args>` to its end (at most GUARD seconds), with this pod's env plus `env`."""
        command, full_env = self._command(script, args, shell, env)
        return subprocess.run(command, env=full_env, capture_output=True, text=True, timeout=GUARD)

    def start(self, script: str, *args: str, shell: Sequence[str] = ("bash",), **env: str) -> subprocess.Popen[str]:
        """Start it in the background; stop() kills what is still running when the test ends."""
        command, full_env = self._command(script, args, shell, env)
        process = subprocess.Popen(command, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.processes.append(process)
        return process

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.communicate()

    # S3, through boto3 with moto's default credentials
    def put(self, bucket: str, key: str, body: str | bytes) -> None:
        self.s3.put_object(Bucket=bucket, Key=key, Body=body.encode() if isinstance(body, str) else body)

    def get(self, bucket: str, key: str) -> str:
        body: bytes = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        return body.decode()

    def get_json(self, bucket: str, key: str) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.get(bucket, key))
        return loaded

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        listing = self.s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
        return sorted(item["Key"] for item in listing.get("Contents", []))

    def tags(self, bucket: str, key: str) -> dict[str, str]:
        return {t["Key"]: t["Value"] for t in self.s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]}

    @contextmanager
    def denied(self, *statements: dict[str, Any]) -> Iterator[None]:
        """Run the scripts as an IAM user that may do anything in S3 except `statements` (Deny), with moto
        checking every request's signature and permissions meanwhile."""
        iam = self.moto.client("iam")
        iam.create_user(UserName="pod-role")
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}, *statements]}
        iam.put_user_policy(UserName="pod-role", PolicyName="pod", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName="pod-role")["AccessKey"]
        saved = dict(self.env)
        self.env.update(AWS_ACCESS_KEY_ID=key["AccessKeyId"], AWS_SECRET_ACCESS_KEY=key["SecretAccessKey"])
        previous = moto_settings.INITIAL_NO_AUTH_ACTION_COUNT
        moto_settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
        try:
            yield
        finally:
            moto_settings.INITIAL_NO_AUTH_ACTION_COUNT = previous
            self.env = saved


def explain(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


def read_until(process: subprocess.Popen[str], fragment: str) -> str:
    """Read the script's stdout up to the first line holding `fragment`."""
    assert process.stdout is not None
    seen = []
    for line in process.stdout:
        seen.append(line)
        if fragment in line:
            return "".join(seen)
    raise AssertionError(f"the script ended without printing {fragment!r}:\n{''.join(seen)}")


def wait_for(predicate: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + GUARD
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"gave up waiting for {what}")
