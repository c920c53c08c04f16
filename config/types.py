"""Field types every config section shares: the base model, durations, CIDRs, quantities and image references."""

from __future__ import annotations

import ipaddress
import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, WithJsonSchema
from pydantic.alias_generators import to_camel


class Model(BaseModel):
    """Base for every config model: camelCase keys in YAML, unknown keys rejected, immutable."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


_DURATION_RE = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(value: Any) -> Any:
    """`2h`, `90m`, `1h30m`, `45s`, `1d` -> seconds. Integers are taken as seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 2h or 10m")
    if isinstance(value, int):
        return value
    if not isinstance(value, str) or not value:
        raise ValueError("expected a duration like 2h or 10m")
    match = _DURATION_RE.match(value.strip())
    if not match or not any(match.groups()):
        raise ValueError(f"{value!r} is not a duration; use forms like 2h, 90m, 1h30m, 45s or 1d")
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


Duration = Annotated[
    int,
    BeforeValidator(parse_duration),
    WithJsonSchema({"type": "string", "pattern": r"^(\d+d)?(\d+h)?(\d+m)?(\d+s)?$", "examples": ["2h", "10m"]}),
]


def _no_open_cidr(value: Any) -> Any:
    network = ipaddress.ip_network(value) if isinstance(value, str) else value
    if isinstance(network, ipaddress.IPv4Network) and network.prefixlen == 0:
        raise ValueError("0.0.0.0/0 opens this to the whole internet; list the networks that need access")
    return value


RestrictedCidr = Annotated[ipaddress.IPv4Network, BeforeValidator(_no_open_cidr)]

# RFC 5737 reserves these for documentation: no packet from them reaches AWS, so a CIDR list holding one is a sample
# value nobody replaced. Python's `is_private` counts them as private, so they are checked on their own.
DOCUMENTATION_RANGES: tuple[ipaddress.IPv4Network, ...] = tuple(
    ipaddress.IPv4Network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")
)


def documentation_range(cidr: ipaddress.IPv4Network) -> ipaddress.IPv4Network | None:
    """The RFC 5737 range `cidr` lies in (the range itself or any subnet of it), else None."""
    return next((r for r in DOCUMENTATION_RANGES if cidr.subnet_of(r)), None)


# Stand-in names the AWS documentation and simfleet's samples use. A deploy must never create or trust one: anyone can
# register a bucket or own an account under such a name and serve what simfleet would read, or be given what it grants.
# Account ids: the ones the AWS documentation writes in example ARNs ("Replace 111122223333 with your account ID").
PLACEHOLDER_ACCOUNTS: tuple[str, ...] = ("111122223333", "123456789012", "444455556666", "777788889999")
# RFC 2606 reserves example names; samples mark a name to replace by making "example" one of its words.
PLACEHOLDER_WORDS: tuple[str, ...] = ("example", "examples")
# AWS's documentation buckets (S3 User Guide: examples use amzn-s3-demo-bucket, a prefix reserved for them).
PLACEHOLDER_PREFIXES: tuple[str, ...] = ("amzn-s3-demo-",)
# Security group ids the AWS documentation writes in examples.
PLACEHOLDER_SECURITY_GROUPS: tuple[str, ...] = ("sg-0123456789abcdef0", "sg-1234567890abcdef0", "sg-903004f8", "sg-1a2b3c4d")


def placeholder_name(value: str) -> str | None:
    """Why `value` (an ARN, an s3:// URI, a bucket, a registry prefix, a security group id) is a stand-in, else None."""
    if value in PLACEHOLDER_SECURITY_GROUPS:
        return "is a security group id from the AWS documentation"
    if "<" in value or ">" in value:
        return "is a template with <...> left in it"
    words = [w for w in re.split(r"[^a-z0-9]+", value.lower()) if w]
    account = next((a for a in PLACEHOLDER_ACCOUNTS if a in words), None)
    if account is not None:
        return f"names {account}, an account id from the AWS documentation"
    if any(w in PLACEHOLDER_WORDS for w in words):
        return "names an example (a sample name nobody replaced)"
    names = re.split(r"[/:.]+", value.lower().removeprefix("s3://"))
    if any(name.startswith(PLACEHOLDER_PREFIXES) for name in names):
        return "names an AWS documentation bucket (amzn-s3-demo-...)"
    return None


SECURITY_GROUP_ID_RE = re.compile(r"^sg-(?:[0-9a-f]{8}|[0-9a-f]{17})$")

# CloudWatch Logs accepts only these retention periods (PutRetentionPolicy, retentionInDays).
LOG_RETENTION_DAYS: tuple[int, ...] = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
)  # fmt: skip

LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
LABEL_KEY_RE = re.compile(r"^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$")
IAM_PRINCIPAL_RE = re.compile(r"^arn:aws(-[a-z]+)*:iam::\d{12}:(role|user)/[\w+=,.@/-]+$")
# What `aws sts get-caller-identity` prints for an assumed role: a session of the role, not the role.
STS_SESSION_RE = re.compile(r"^arn:(?P<partition>aws(-[a-z]+)*):sts::(?P<account>\d{12}):assumed-role/(?P<role>[\w+=,.@-]+)/")


def iam_principal(arn: str) -> str:
    """An IAM role or user ARN, as access entries and trust policies take it; an STS session is answered with its role."""
    if IAM_PRINCIPAL_RE.match(arn):
        return arn
    session = STS_SESSION_RE.match(arn)
    if session:
        raise ValueError(
            f"{arn!r} is an STS session (what `aws sts get-caller-identity` prints for an assumed role), not the role; "
            f"write the role's ARN, arn:{session['partition']}:iam::{session['account']}:role/{session['role']} (with "
            "its path, if it has one: `aws iam get-role --role-name <name>` prints it)"
        )
    raise ValueError(f"{arn!r} is not an IAM role or user ARN; write arn:aws:iam::<account>:role/<name> or :user/<name>")


IamPrincipal = Annotated[str, AfterValidator(iam_principal)]
ECR_REPO_RE = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")

ControlPlaneLogType = Literal["api", "audit", "authenticator", "controllerManager", "scheduler"]
ALL_CONTROL_PLANE_LOGS: tuple[str, ...] = get_args(ControlPlaneLogType)
CapacityType = Literal["spot", "onDemand"]


RUN_NAME_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
# repo[:tag][@sha256:digest], optionally behind a registry host (anything with a dot or port before the first /).
IMAGE_RE = re.compile(
    r"^(?:(?P<registry>[a-z0-9.-]+(?::\d+)?)/)?(?P<repo>[a-z0-9]+(?:[._/-][a-z0-9]+)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(?:@(?P<digest>sha256:[a-f0-9]{64}))?$"
)


@dataclass(frozen=True)
class ImageRef:
    registry: str | None
    repository: str
    tag: str | None
    digest: str | None

    @property
    def reference(self) -> str:
        ref = f"{self.repository}:{self.tag}" if self.tag else self.repository
        return f"{ref}@{self.digest}" if self.digest else ref


def parse_image(value: str) -> ImageRef:
    match = IMAGE_RE.match(value)
    if not match:
        raise ValueError(f"{value!r} is not an image reference (repo:tag or registry/repo:tag)")
    registry = match["registry"]
    # "monty:1f3c2a9" has no registry; "ghcr.io/x/y:1" does. A first segment without a dot or
    # port (e.g. "team/monty:1") is a repository path, as Docker resolves it.
    if registry and "." not in registry and ":" not in registry and registry != "localhost":
        return ImageRef(None, f"{registry}/{match['repo']}", match["tag"], match["digest"])
    return ImageRef(registry, match["repo"], match["tag"], match["digest"])


def _image(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError("expected an image reference string like monty:1f3c2a9")
    ref = parse_image(value)
    if ref.tag is None and ref.digest is None:
        raise ValueError(f"{value!r} has no tag; pin a version tag or a sha256 digest")
    if ref.tag == "latest":
        raise ValueError(f"{value!r} uses the mutable tag 'latest'; pin a version tag or a sha256 digest")
    return value


ImageString = Annotated[str, BeforeValidator(_image)]


def image_source_problem(image: str, repositories: Sequence[str], allow_list: Sequence[str]) -> str | None:
    """Why `image` may not be pulled by this stack, or None.

    A bare `repo:tag` resolves to the stack's ECR and must name one of its repositories; a full URI must start with
    a prefix of platform.imageAllowList (the same prefix match as the image-source policy: the prefix itself, or the
    prefix followed by `/`, `:` or `@`). The stack's own ECR is written bare, since its account id is not in the file.
    """
    ref = parse_image(image)
    if ref.registry is None:
        if ref.repository not in repositories:
            return f"repository {ref.repository!r} is not one of the stack's ECR repositories {list(repositories)}"
        return None
    for prefix in allow_list:
        bare = prefix.rstrip("/")
        if image == bare or image.startswith((bare + "/", bare + ":", bare + "@")):
            return None
    listed = ", ".join(allow_list) if allow_list else "none listed"
    return (
        f"{image!r} is not under platform.imageAllowList ({listed}); add its registry prefix there, or push the image "
        "to one of the stack's ECR repositories and name it bare (repo:tag)"
    )


S3_PREFIX_RE = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/(?P<prefix>.+)$")


def s3_prefix(uri: str) -> str:
    """`s3://bucket/prefix` as IAM may grant it read-only: a real prefix, no wildcards, always ending in `/`.

    The trailing slash keeps `models/radstream` from also granting `models/radstream-old/`.
    """
    match = S3_PREFIX_RE.match(uri)
    if not match:
        raise ValueError(f"{uri!r} must be s3://<bucket>/<prefix>/")
    if any(c in match["prefix"] for c in "*?$"):
        raise ValueError(f"{uri!r}: a prefix with *, ? or $ would grant more than the prefix in IAM")
    return uri if uri.endswith("/") else uri + "/"


def absolute_dir(path: str) -> str:
    """A directory a container mounts something at: absolute and normalised (`/data`, never `/data/../x` or `/`)."""
    if not path.startswith("/") or posixpath.normpath(path) != path or path == "/":
        raise ValueError(f"{path!r} must be an absolute, normalised directory path like /data")
    return path


def overlaps(a: str, b: str) -> bool:
    """Two directories are one, or one holds the other."""
    return a == b or a.startswith(b.rstrip("/") + "/") or b.startswith(a.rstrip("/") + "/")


QUANTITY_RE = re.compile(r"^\d+(\.\d+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$")
_QUANTITY_FACTORS = {
    None: 1.0,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 2.0**10,
    "Mi": 2.0**20,
    "Gi": 2.0**30,
    "Ti": 2.0**40,
}


def quantity_value(text: str) -> float:
    """A Kubernetes quantity as a float: "500m" -> 0.5, "16Gi" -> 17179869184."""
    match = QUANTITY_RE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a Kubernetes quantity")
    return float(text[: len(text) - len(match[2] or "")]) * _QUANTITY_FACTORS[match[2]]


def _quantity(value: Any) -> Any:
    text = str(value)
    quantity_value(text)
    return text


Quantity = Annotated[str, BeforeValidator(_quantity)]

MAX_RUNTIME_LIMIT = 7 * 24 * 3600
