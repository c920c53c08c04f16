"""A run's and a batch job's records in S3 (docs/records.md): each seed's index.json, attempt markers and progress.json,
the cancel record that `simfleet cancel` writes, and the artifacts beside them. Read by the provider and the command.

The cancel record (`<prefix>cancel.json`, one per run or job at its spec hash) is the only file here simfleet's own
command writes. It is a file of its own, never a rewrite of index.json, because the pods' uploader writes index.json
unconditionally (a SIGTERM makes it write `Interrupted` seconds after a cancel stopped the pod) and a cancel must never
overwrite a `Succeeded` the uploader wrote a moment before. Each writer owns its file, and status.with_cancel() reads
both: a seed the cancel stopped reports Cancelled, unless its own record says Succeeded. The record is created with
`If-None-Match: *` and extended with `If-Match: <ETag>` (S3 conditional writes), so two cancels at once never lose
each other's seeds.
"""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from workloads.kube import SimRunError

INDEX = "index.json"
PROGRESS = "progress.json"
CANCEL_RECORD = "cancel.json"
ATTEMPTS = "attempts/"
# Keys under a seed's prefix that are records, not artifacts.
RECORD_NAMES = (INDEX, PROGRESS, CANCEL_RECORD, "adopted-from.json")
# How often a conditional write of the cancel record is retried when another writer got in between.
CANCEL_WRITE_ATTEMPTS = 5


class RecordError(SimRunError):
    """An S3 call on a record failed for a reason other than "no such key": the bucket, the key, AWS's error code."""

    def __init__(self, action: str, bucket: str, key: str, code: str, detail: str, advice: str, subject: str = "") -> None:
        self.action, self.bucket, self.key, self.code, self.detail = action, bucket, key, code, detail
        head = f"{subject}: " if subject else ""
        super().__init__(f"{head}{action} s3://{bucket}/{key} failed ({detail}). {advice}")

    @property
    def denied(self) -> bool:
        return self.code in ("AccessDenied", "403", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch")

    @property
    def no_bucket(self) -> bool:
        return self.code == "NoSuchBucket"


# What the provider says when a record cannot be read: nothing is started without it.
PROVIDER_ADVICE = (
    "This file is the record of whether the run already ran, so nothing is started without it: check that your AWS "
    "identity can read the artifacts bucket, then run `pulumi up` again."
)


def _s3(region: str) -> Any:
    from workloads import eks_auth

    return eks_auth.s3_client(region)


def _code(err: Exception) -> str:
    response = getattr(err, "response", None) or {}
    return str((response.get("Error") or {}).get("Code") or type(err).__name__)


def read_text(region: str, bucket: str, key: str, advice: str = PROVIDER_ADVICE) -> str | None:
    """An object's text (a seed's steps.csv), or None when there is none."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return str(_s3(region).get_object(Bucket=bucket, Key=key)["Body"].read().decode(errors="replace"))
    except ClientError as err:
        if _code(err) in ("NoSuchKey", "404"):
            return None
        raise RecordError("reading", bucket, key, _code(err), str(err), advice) from None
    except BotoCoreError as err:
        raise RecordError("reading", bucket, key, type(err).__name__, str(err), advice) from None


def get_json(region: str, bucket: str, key: str, advice: str = PROVIDER_ADVICE) -> tuple[dict[str, Any] | None, Any]:
    """(document, metadata) of a JSON record; (None, None) when there is none. A body that is not a JSON object reads
    as {"status": "Failed"}: the uploader writes its records last and whole, so anything else is a broken run."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        response = _s3(region).get_object(Bucket=bucket, Key=key)
        body = response["Body"].read()
    except ClientError as err:
        if _code(err) in ("NoSuchKey", "404"):
            return None, None
        raise RecordError("reading", bucket, key, _code(err), str(err), advice) from None
    except BotoCoreError as err:
        raise RecordError("reading", bucket, key, type(err).__name__, str(err), advice) from None
    try:
        document = json.loads(body)
    except json.JSONDecodeError:
        document = None
    meta = {"etag": response.get("ETag"), "lastModified": response.get("LastModified")}
    return (document if isinstance(document, dict) else {"status": "Failed"}), meta


def read_json(region: str, bucket: str, key: str, advice: str = PROVIDER_ADVICE) -> dict[str, Any] | None:
    return get_json(region, bucket, key, advice)[0]


def list_keys(region: str, bucket: str, prefix: str, advice: str = PROVIDER_ADVICE, delimiter: str = "") -> list[dict[str, Any]]:
    """Every object under a prefix (Key, Size, LastModified), or with a delimiter its CommonPrefixes as {"Prefix": ...}."""
    from botocore.exceptions import BotoCoreError, ClientError

    found: list[dict[str, Any]] = []
    try:
        pages = (
            _s3(region)
            .get_paginator("list_objects_v2")
            .paginate(Bucket=bucket, Prefix=prefix, **({"Delimiter": delimiter} if delimiter else {}))
        )
        for page in pages:
            found += page.get("CommonPrefixes") or [] if delimiter else page.get("Contents") or []
    except ClientError as err:
        raise RecordError("listing", bucket, prefix, _code(err), str(err), advice) from None
    except BotoCoreError as err:
        raise RecordError("listing", bucket, prefix, type(err).__name__, str(err), advice) from None
    return found


def utc(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def attempt_markers(region: str, bucket: str, seed_prefix: str, advice: str = PROVIDER_ADVICE) -> list[dict[str, Any]]:
    """A seed's attempt markers (one per pod that started it, oldest first), as S3 lists them."""
    return sorted(list_keys(region, bucket, f"{seed_prefix}{ATTEMPTS}", advice), key=lambda item: item["LastModified"])


def attempts_record(run: str, region: str, bucket: str, index_key: str, advice: str = PROVIDER_ADVICE) -> dict[str, Any] | None:
    """A seed with attempt markers under attempts/ but no index.json started and ended without its record: SIGKILL,
    a lost node, or a failed final upload. It ran, so it is never started again (its artifacts stay unmixed)."""
    prefix = index_key.removesuffix(INDEX)
    try:
        markers = attempt_markers(region, bucket, prefix, advice)
    except RecordError as err:
        raise SimRunError(
            f"run {run}: listing s3://{bucket}/{prefix}{ATTEMPTS} failed ({err.detail}). The attempt markers say whether "
            "a seed already started, so nothing is started without them: check that your AWS identity may list the "
            "artifacts bucket (s3:ListBucket), then run `pulumi up` again."
        ) from None
    if not markers:
        return None
    first, last = utc(markers[0]["LastModified"]), utc(markers[-1]["LastModified"])
    return {
        "status": "Failed",
        "reason": (
            f"no index.json: {len(markers)} pod(s) of this seed started (the last at {last}, markers under "
            f"s3://{bucket}/{prefix}{ATTEMPTS}) and none recorded how it ended (killed, its node lost, or its final "
            "upload failed); bump `rerun` to run it again"
        ),
        "startTime": first,
        "recoveries": len(markers) - 1,
    }


# -- the cancel record ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CancelRequest:
    """One `simfleet cancel`: who, when, and the seeds (a job's shards) it stopped; whole: the whole run was cancelled."""

    stopped: tuple[int, ...]
    whole: bool
    by: str
    at: str


def merged_cancel(existing: dict[str, Any] | None, request: CancelRequest, name: str, spec_hash: str) -> dict[str, Any]:
    """The cancel record after this request: the union of every request's stopped seeds, and each request kept."""
    previous = existing or {}
    stopped = sorted({*(int(s) for s in previous.get("stopped") or []), *request.stopped})
    history = [
        *(previous.get("requests") or []),
        {"at": request.at, "by": request.by, "stopped": list(request.stopped), "whole": request.whole},
    ]
    return {
        "name": name,
        "specHash": spec_hash,
        "status": "Cancelled",
        "whole": bool(previous.get("whole")) or request.whole,
        "stopped": stopped,
        "requests": history,
    }


def write_cancel(
    region: str, bucket: str, prefix: str, name: str, spec_hash: str, request: CancelRequest, advice: str
) -> dict[str, Any]:
    """Create or extend `<prefix>cancel.json` with conditional writes; returns the record as written."""
    from botocore.exceptions import BotoCoreError, ClientError

    key = f"{prefix}{CANCEL_RECORD}"
    for attempt in range(CANCEL_WRITE_ATTEMPTS):
        existing, meta = get_json(region, bucket, key, advice)
        record = merged_cancel(existing, request, name, spec_hash)
        condition = {"IfMatch": meta["etag"]} if meta else {"IfNoneMatch": "*"}
        try:
            _s3(region).put_object(
                Bucket=bucket, Key=key, Body=json.dumps(record, indent=2).encode(), ContentType="application/json", **condition
            )
            return record
        except ClientError as err:
            # 412: another cancel wrote first (If-None-Match / If-Match failed); 409: S3 saw two conditional writes at
            # once. Read it again and merge.
            if _code(err) not in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
                raise RecordError("writing", bucket, key, _code(err), str(err), advice) from None
        except BotoCoreError as err:
            raise RecordError("writing", bucket, key, type(err).__name__, str(err), advice) from None
        time.sleep(0.1 * (attempt + 1))
    raise RecordError(
        "writing", bucket, key, "PreconditionFailed", f"another writer changed it {CANCEL_WRITE_ATTEMPTS} times", advice
    )


def cancel_key(prefix: str) -> str:
    return f"{prefix}{CANCEL_RECORD}"


def stopped_units(record: dict[str, Any] | None) -> frozenset[int]:
    return frozenset(int(s) for s in (record or {}).get("stopped") or [])


def artifact_keys(objects: Iterable[dict[str, Any]], seed_prefix: str) -> list[dict[str, Any]]:
    """A seed's artifacts among the objects listed under its prefix: everything but its records and attempt markers
    (and, for a run's first seed at the run prefix, the other seeds' prefixes)."""
    out = []
    for item in objects:
        rest = str(item["Key"])[len(seed_prefix) :]
        if rest in RECORD_NAMES or rest.startswith(ATTEMPTS) or rest.startswith(("seed-", "shard-")) or not rest:
            continue
        out.append(item)
    return out
