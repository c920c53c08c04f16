"""What a run or job left in S3, per seed (a job's shard), found from its records (docs/records.md): a run's artifacts
under the seed's prefix (logs/, videos/, metrics/), its out-checkpoint and partial checkpoint as index.json names them;
a job's outputs as index.json lists them (outputsPrefix and outputFiles: never by listing outputs/, where a failed
attempt's files stay too)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from workloads.observe import records
from workloads.observe.fleet import KIND_RUN, Declared
from workloads.observe.listing import CLI_ADVICE, S3_THREADS, read_records


@dataclass(frozen=True)
class Artifact:
    unit: int
    kind: str  # logs | videos | metrics | checkpoint | partial-checkpoint | output | other
    bucket: str
    key: str
    size: int | None
    last_modified: str | None
    relative: str  # where it goes under <dir>/<run>/<seed-n | shard-i>/

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "uri": self.uri}


def _split(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def _head(region: str, uri: str) -> tuple[int | None, str | None]:
    from botocore.exceptions import ClientError

    from workloads import eks_auth

    bucket, key = _split(uri)
    try:
        found = eks_auth.s3_client(region).head_object(Bucket=bucket, Key=key)
    except ClientError as err:
        if (err.response.get("Error") or {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None, None
        raise records.RecordError(
            "reading", bucket, key, str((err.response.get("Error") or {}).get("Code")), str(err), CLI_ADVICE
        ) from None
    return int(found["ContentLength"]), records.utc(found["LastModified"])


def _run_unit(declared: Declared, unit: int, record: dict[str, Any] | None) -> list[Artifact]:
    at = declared.where
    prefix = declared.unit_prefix(unit)
    found = []
    for item in records.artifact_keys(records.list_keys(at.region, at.artifacts_bucket, prefix, CLI_ADVICE), prefix):
        rest = str(item["Key"])[len(prefix) :]
        kind = rest.split("/", 1)[0] if rest.split("/", 1)[0] in ("logs", "videos", "metrics") else "other"
        found.append(
            Artifact(
                unit, kind, at.artifacts_bucket, str(item["Key"]), int(item["Size"]), records.utc(item["LastModified"]), rest
            )
        )
    recorded = (record or {}).get("recorded", record) or {}
    checkpoints = {"checkpoint": recorded.get("checkpoint"), "partial-checkpoint": recorded.get("partialCheckpoint")}
    for kind, uri in checkpoints.items():
        if not uri:
            continue
        size, modified = _head(at.region, str(uri))
        if size is not None:
            bucket, key = _split(str(uri))
            found.append(Artifact(unit, kind, bucket, key, size, modified, f"checkpoint/{key.rsplit('/', 1)[-1]}"))
    return found


def _job_unit(declared: Declared, unit: int, record: dict[str, Any] | None) -> list[Artifact]:
    recorded = (record or {}).get("recorded", record) or {}
    base, files = recorded.get("outputsPrefix"), recorded.get("outputFiles") or []
    if not base:
        return []
    bucket, key_prefix = _split(str(base))
    out = []
    for path in files:
        key = f"{key_prefix}{path}"
        size, modified = _head(declared.where.region, f"s3://{bucket}/{key}")
        out.append(Artifact(unit, "output", bucket, key, size, modified, f"outputs/{path}"))
    return out


def artifacts_of(declared: Declared, units: tuple[int, ...]) -> tuple[list[Artifact], list[dict[str, Any] | None]]:
    """Every seed's artifacts (with sizes), and the seeds' records they were found from."""
    documents = read_records(declared, attempts=False)
    by_unit = dict(zip(declared.units, documents, strict=True))
    per_unit = _run_unit if declared.kind == KIND_RUN else _job_unit
    with ThreadPoolExecutor(min(S3_THREADS, max(1, len(units)))) as pool:
        found = list(pool.map(lambda unit: per_unit(declared, unit, by_unit[unit]), units))
    return [a for group in found for a in group], [by_unit[u] for u in units]
