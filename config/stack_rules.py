"""Rules across a stack's entries: names unique across runs, jobs and services (and the objects they create), the
queues runs and jobs name, whether a queue can ever admit a workload whole, and placeholders (CIDRs, names) left in the
file."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from pydantic.alias_generators import to_snake

from config.errors import Issue, did_you_mean
from config.jobs import JobSpec
from config.platform import PlatformConfig
from config.queues import QueuesConfig
from config.runs import RunSpec
from config.services import ServiceSpec
from config.types import CapacityType, documentation_range, placeholder_name

# What to put in place of a documentation-range placeholder, per kind of CIDR list.
_PLACEHOLDER_HINTS = {
    "publicAccessCidrs": "the public egress ranges of the networks that administer the cluster (office, VPN; "
    "`curl https://checkip.amazonaws.com` prints this machine's address, use it as a /32)",
    "deployerAccess": "the private range of the VPN or peered network your deploy runner is in, or remove it and "
    "start the runner with the stack's deployer security group (docs/operators.md, 'First deploy (bootstrap)')",
    "allowedCidrs": "the public ranges of the people who open this run's viewport (`curl https://checkip.amazonaws.com`"
    " prints this machine's address, use it as a /32)",
    "internalLoadBalancer": "the private ranges (the VPC, your VPN, peered VPCs) of the clients that call this service",
}


def workload_names(
    runs: Sequence[tuple[int, RunSpec]],
    services: Sequence[tuple[int, ServiceSpec]],
    jobs: Sequence[tuple[int, JobSpec]] = (),
) -> list[tuple[str, str]]:
    """(path of the name, name) of every named workload in the stack file, in file order.

    One list for every kind, so a rule across kinds (say, a run and a service or a job sharing a name) is one pass
    over it; add each new kind of workload here.
    """
    return (
        [(f"runs[{i}].name", run.name) for i, run in runs]
        + [(f"jobs[{i}].name", job.name) for i, job in jobs]
        + [(f"services[{i}].name", s.name) for i, s in services]
    )


# Objects a run or job creates beside the one named after it (workloads/renderers/run.py and job.py), in the runs
# namespace: a run or job named like one of these would collide with them.
DERIVED_SUFFIXES = ("-runtime", "-gate", "-viewport")


def name_clashes(names: Sequence[tuple[str, str]]) -> list[Issue]:
    """Names unique across runs, jobs and services, including the names of the objects each one creates.

    Within one kind a duplicate is reported by that kind's own rules; here only clashes across kinds, and a name
    that equals another workload's derived object name (a job `trot-gate` beside a run `trot`).
    """
    issues = []
    owner: dict[str, tuple[str, str]] = {}  # object name -> (path, workload name) of the first to make it
    for path, name in names:
        section = path.split("[")[0]
        # Services live in their own namespace: only their names count, not what runs and jobs derive from theirs.
        made = (name, *(name + suffix for suffix in DERIVED_SUFFIXES)) if section != "services" else (name,)
        for candidate in made:
            other_path, other_name = owner.get(candidate, ("", ""))
            if other_path and not (other_name == name and other_path.split("[")[0] == section):
                # Paths of other entries are shown with their names and lines by config.sources.locate.
                if candidate == name == other_name:
                    message = f"{name!r} is already used by {other_path}"
                elif candidate == name:
                    message = f"{name!r} is the name of an object {other_path} creates"
                else:
                    message = f"{name!r} creates {candidate!r}, which is already used by {other_path}"
                issues.append(Issue(path, message + "; names must be unique across runs, jobs and services"))
                break
        else:
            for candidate in made:
                owner.setdefault(candidate, (path, name))
    return issues


def queue_name_issues(
    queues: Sequence[str],
    sections: Sequence[tuple[str, Sequence[tuple[int, RunSpec | JobSpec]]]],
    invalid: Collection[str] = (),
) -> list[Issue]:
    """Every run's and job's `queue:` names one of the stack's queues (LocalQueues in the runs namespace); a queue
    whose own entry has errors (`invalid`) exists, so naming it is not reported."""
    issues = []
    for section, entries in sections:
        for index, spec in entries:
            if spec.queue is not None and spec.queue not in queues and spec.queue not in invalid:
                hint = did_you_mean(spec.queue, queues)
                issues.append(
                    Issue(
                        f"{section}[{index}].queue",
                        f"no queue named {spec.queue!r}; the stack's queues are {list(queues)}{hint} (simfleet:queues)",
                    )
                )
    return issues


def admission_issues(
    queues: QueuesConfig, runs: Sequence[tuple[int, RunSpec]], jobs: Sequence[tuple[int, JobSpec]]
) -> list[Issue]:
    """A run or job whose pods at once need more GPUs than its queue can ever be admitted with stays Queued forever:
    Kueue admits a Job whole (all `parallelism` pods), on one flavor."""
    issues = []
    entries: list[tuple[str, str, int, int, tuple[CapacityType, ...]]] = []
    for index, run in runs:
        flavors: tuple[CapacityType, ...] = ("onDemand",) if run.mode == "interactive" else ("spot", "onDemand")
        entries.append((f"runs[{index}]", run.queue or queues.default_name, run.gpus, run.parallel_pods, flavors))
    for index, job in jobs:
        flavors = ("onDemand",) if job.capacity == "onDemand" else ("spot", "onDemand")
        entries.append((f"jobs[{index}]", job.queue or queues.default_name, job.gpus, job.parallel_pods, flavors))
    for path, queue, gpus, pods, flavors in entries:
        wanted = gpus * pods
        best = max(queues.admissible_gpus(queue, flavor) for flavor in flavors)
        if wanted > best:
            where = "parallelism" if pods > 1 else "gpus"
            message = (
                f"{pods} pod(s) x {gpus} GPU(s) = {wanted} GPUs at once, but queue {queue!r} can be admitted with at "
                f"most {best} ({' or '.join(flavors)}: its nominal quota plus what it may borrow, within the cohort); "
                "Kueue admits a Job whole, so it would stay Queued. Lower parallelism, or raise the queue's quota "
                "or borrowingLimit (simfleet:queues)"
            )
            # The caller tells a queue with no GPUs for it (a warning) by this prefix, which it strips.
            issues.append(Issue(f"{path}.{where}", f"0 {message}" if best == 0 else message))
    return issues


# What to put in place of a stand-in name, per kind of value.
_NAME_HINTS = {
    "principal": "the ARN of your own role or user (`aws sts get-caller-identity` prints your account and identity)",
    "securityGroup": "the id of your own security group, or remove the entry",
    "registry": "the prefix of the registry you pull from",
    "repository": "the name of the ECR repository to create",
    "bucket": "the s3:// URI of your own bucket: anyone can register a bucket under a sample name and serve what "
    "simfleet would read",
}


def _name_lists(
    platform: PlatformConfig | None,
    runs: Sequence[tuple[int, RunSpec]],
    services: Sequence[tuple[int, ServiceSpec]],
) -> list[tuple[str, str, list[str]]]:
    """(path, kind, values) of every name the stack file gives that a deploy would create or trust."""
    lists: list[tuple[str, str, list[str]]] = []
    if platform is not None:
        for key in ("clusterAdmins", "deployRoles", "runOperators"):
            lists.append((f"platform.{key}", "principal", list(getattr(platform, to_snake(key)))))
        security_groups = list(platform.endpoint.deployer_access.security_group_ids)
        lists.append(("platform.endpoint.deployerAccess.securityGroupIds", "securityGroup", security_groups))
        lists.append(("platform.imageAllowList", "registry", list(platform.image_allow_list)))
        lists.append(("platform.repositories", "repository", list(platform.repositories)))
        for index, entry in enumerate(platform.shared_storage.imports):
            # An import's role reads this prefix and copies it into the volume every job and run mounts.
            lists.append((f"platform.sharedStorage.imports[{index}].from", "bucket", [entry.from_]))
    for index, run in runs:
        source = run.checkpoint.from_
        if source and source.startswith("s3://"):
            lists.append((f"runs[{index}].checkpoint.from", "bucket", [source]))
    for index, service in services:
        if service.model_repository is not None:
            lists.append((f"services[{index}].modelRepository", "bucket", [service.model_repository]))
    return lists


def placeholder_issues(
    platform: PlatformConfig | None,
    runs: Sequence[tuple[int, RunSpec]],
    services: Sequence[tuple[int, ServiceSpec]] = (),
) -> list[Issue]:
    """Sample values nobody replaced: documentation-range CIDRs (RFC 5737) in every CIDR list a user fills in, and
    stand-in names (example accounts, buckets, registries, security groups) in every name a deploy creates or trusts."""
    lists: list[tuple[str, str, list[Any]]] = []
    if platform is not None:
        endpoint = platform.endpoint
        lists.append(("platform.endpoint.publicAccessCidrs", "publicAccessCidrs", list(endpoint.public_access_cidrs)))
        lists.append(("platform.endpoint.deployerAccess.cidrs", "deployerAccess", list(endpoint.deployer_access.cidrs)))
    for index, run in runs:
        if run.viewport is not None:
            lists.append((f"runs[{index}].viewport.allowedCidrs", "allowedCidrs", list(run.viewport.allowed_cidrs)))
    for index, service in services:
        lb = service.expose.internal_load_balancer
        if lb is not None:
            path = f"services[{index}].expose.internalLoadBalancer.allowedCidrs"
            lists.append((path, "internalLoadBalancer", list(lb.allowed_cidrs)))
    issues = []
    for path, kind, cidrs in lists:
        for position, cidr in enumerate(cidrs):
            reserved = documentation_range(cidr)
            if reserved is not None:
                where = "is" if cidr == reserved else f"lies in {reserved},"
                issues.append(
                    Issue(
                        f"{path}[{position}]",
                        f"{cidr} is a placeholder: it {where} a documentation range (RFC 5737) that no real network "
                        f"uses. Put {_PLACEHOLDER_HINTS[kind]}",
                    )
                )
    for path, kind, names in _name_lists(platform, runs, services):
        for position, name in enumerate(names):
            reason = placeholder_name(name)
            if reason is not None:
                where = path if kind == "bucket" else f"{path}[{position}]"
                issues.append(Issue(where, f"{name} is a placeholder: it {reason}. Put {_NAME_HINTS[kind]}"))
    return issues
