"""The pod tests' moto server (tests/pod_harness.py): the request log the script tests read the order of S3 requests
from, and the backend lookup it caches, each against what moto itself does."""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from pod_harness import REGION, Moto, moto_server_for

BUCKET = "harness-bucket"


@pytest.fixture(scope="module")
def moto_server() -> Iterator[Moto]:
    yield from moto_server_for((BUCKET,))


def _without_retries(moto_server: Moto) -> Any:
    """An S3 client that makes each call once: what the server answered, not boto3's retry of it."""
    return boto3.client(
        "s3",
        endpoint_url=moto_server.endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"total_max_attempts": 1}),
    )


def test_the_request_log_has_every_request_moto_answered_in_order_whatever_the_status(moto_server: Moto) -> None:
    # werkzeug's log, which the tests read before, gave the 200s only: it colours every other status's line.
    moto_server.reset()
    s3 = moto_server.s3
    moto_server.fail("PUT", r"/second$")  # one 503 SlowDown, then boto3's own retry
    s3.put_object(Bucket=BUCKET, Key="dir/a b é.txt", Body=b"x")
    s3.put_object(Bucket=BUCKET, Key="second", Body=b"y")
    s3.put_object_tagging(Bucket=BUCKET, Key="second", Tagging={"TagSet": [{"Key": "k", "Value": "v"}]})
    with pytest.raises(s3.exceptions.ClientError, match="404"):
        s3.head_object(Bucket=BUCKET, Key="missing")
    urllib.request.urlopen(f"{moto_server.endpoint}/moto-api/data.json").read()  # moto's own API: not the scripts'
    assert moto_server.requests == [
        ("PUT", f"/{BUCKET}/dir/a b é.txt"),
        ("PUT", f"/{BUCKET}/second"),  # the injected 503
        ("PUT", f"/{BUCKET}/second"),
        ("PUT", f"/{BUCKET}/second?tagging"),
        ("HEAD", f"/{BUCKET}/missing"),
    ]
    moto_server.reset()
    assert moto_server.requests == []


def test_a_request_moto_fails_on_is_logged_too(moto_server: Moto) -> None:
    # An exception out of moto's app: werkzeug answers 500 itself, without the app's start_response.
    moto_server.reset()
    once = _without_retries(moto_server)
    moto = moto_server.faulty.app

    def broken(environ: dict[str, Any], start_response: Any) -> Any:
        raise RuntimeError("moto broke")

    moto_server.faulty.app = broken
    try:
        with pytest.raises(once.exceptions.ClientError, match="500"):
            once.head_bucket(Bucket=BUCKET)
    finally:
        moto_server.faulty.app = moto
    assert moto_server.requests == [("HEAD", f"/{BUCKET}")]


@pytest.mark.parametrize(
    "host",
    [None, "moto_api", "s3.us-east-1.amazonaws.com", "iam.amazonaws.com", "sts.amazonaws.com", f"{BUCKET}.s3.amazonaws.com"],
)
def test_the_backend_moto_picks_for_a_host_is_the_same_once_cached(moto_server: Moto, host: str | None) -> None:
    # The cache stands in for a lookup that depends on the host alone (moto's URL patterns and its package directory).
    fresh = DomainDispatcherApplication(create_backend_app)
    cached = moto_server.faulty.app
    assert isinstance(cached, DomainDispatcherApplication)
    assert cached.get_backend_for_host(host) == fresh.get_backend_for_host(host)
    assert cached.get_backend_for_host(host) == fresh.get_backend_for_host(host)  # the cached answer, this time


def test_a_request_a_test_held_never_reaches_the_next_test(moto_server: Moto) -> None:
    # A test that holds a call (slow) and ends before it is answered: the next test has the same bucket and key again,
    # and the held call must not land there (a held tagging call tagged the next test's object, which that test then
    # found tagged against its own index). It is answered 503 as the test ends, and moto never sees it.
    moto_server.reset()
    once = _without_retries(moto_server)
    once.put_object(Bucket=BUCKET, Key="held", Body=b"x")
    held = moto_server.slow("PUT", r"/held$", delay=30, query="tagging")
    answers: list[str] = []

    def tag() -> None:
        try:
            once.put_object_tagging(Bucket=BUCKET, Key="held", Tagging={"TagSet": [{"Key": "k", "Value": "v"}]})
            answers.append("tagged")
        except once.exceptions.ClientError as err:
            answers.append(str(err.response["ResponseMetadata"]["HTTPStatusCode"]))

    caller = threading.Thread(target=tag)
    caller.start()
    arrived = time.monotonic() + 10
    while held.hits == 0 and time.monotonic() < arrived:
        time.sleep(0.02)
    assert held.hits == 1
    moto_server.reset()  # the end of the test that held it, the start of the next
    caller.join(timeout=10)
    assert answers == ["503"]  # at once, not after its 30 s (when it would have gone on to moto)
    once.put_object(Bucket=BUCKET, Key="held", Body=b"the next test's")
    assert once.get_object_tagging(Bucket=BUCKET, Key="held")["TagSet"] == []
    assert ("PUT", f"/{BUCKET}/held?tagging") not in moto_server.requests
