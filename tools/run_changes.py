"""What `pulumi up` would do to each run, and why: create, keep, update, replace or delete, against an earlier state.

The earlier state is a `pulumi stack export` file (the deployed truth) or a previous plan's resources.json (what
a branch would change). Each planned run is compared with its earlier record by the provider's own `diff`, so
the answer is the one the engine would get; the reasons name the fields that moved.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DYNAMIC_TYPE = "pulumi-python:dynamic:Resource"
ACTIONS = ("create", "replace", "update", "move", "delete", "keep")
MOVE_REASON = (
    "its URN changed without an alias: the engine creates the new resource, which adopts the live Job or records the "
    "finished run from S3 (nothing reruns), then deletes the old one, which leaves the adopted Job alone"
)


@dataclass(frozen=True)
class RunChange:
    run: str
    action: str  # one of ACTIONS
    reasons: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {"run": self.run, "action": self.action, "reasons": list(self.reasons)}


class EarlierStateError(Exception):
    """The file to compare with is not a stack export or a plan's resources.json."""


STACK_TYPE = "pulumi:pulumi:Stack"


def _resources(path: Path) -> list[Any]:
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise EarlierStateError(f"{path}: no such file") from None
    except json.JSONDecodeError as err:
        raise EarlierStateError(f"{path}: not JSON ({err})") from None
    # A `pulumi stack export` is {"version": 3, "deployment": {"resources": [...]}}; a plan's resources.json a list.
    resources = (document.get("deployment") or {}).get("resources") if isinstance(document, dict) else document
    if not isinstance(resources, list):
        raise EarlierStateError(f"{path}: neither a `pulumi stack export` file nor a plan's resources.json")
    return resources


def load_deployed_outputs(path: Path) -> dict[str, Any] | None:
    """The stack's outputs from a `pulumi stack export` (its root Stack resource); None for a plan's resources.json,
    which records what was planned, not what is deployed."""
    for resource in _resources(path):
        if isinstance(resource, dict) and resource.get("type") == STACK_TYPE:
            outputs = resource.get("outputs")
            return outputs if isinstance(outputs, dict) else {}
    return None


def load_earlier(path: Path) -> dict[str, dict[str, Any]]:
    """URN -> the run's earlier record (its outputs when the file has them, else its inputs)."""
    resources = _resources(path)
    earlier = {}
    for resource in resources:
        if isinstance(resource, dict) and resource.get("type") == DYNAMIC_TYPE:
            record = resource.get("outputs") or resource.get("inputs") or {}
            if "runName" in record:
                earlier[str(resource.get("urn"))] = record
    return earlier


def alias_urns(reg: Any) -> list[str]:
    """The URNs a registration's aliases name: full URNs as given, a `name` alias as the URN with that last name.

    A name alias keeps the type chain (a renamed parent changes names, not types), so only the last `::` part moves.
    """
    urns = []
    for alias in (getattr(reg, "options", None) or {}).get("aliases") or []:
        if alias.get("urn"):
            urns.append(str(alias["urn"]))
        elif alias.get("name") and set(alias) == {"name"}:
            urns.append(f"{reg.urn.rsplit('::', 1)[0]}::{alias['name']}")
    return urns


def compare(planned: list[Any], earlier: dict[str, dict[str, Any]]) -> list[RunChange]:
    """One change per planned run (matched by URN or alias), then a delete per earlier run the plan no longer has.

    A run created under one URN while the same run name is deleted under another is one `move`, not a create and
    a delete: that is what the provider does with it (adopt, then a delete that finds the claim moved).
    """
    from workloads import legacy
    from workloads.provider import SimRunProvider

    provider = SimRunProvider()
    changes: list[RunChange] = []
    seen = set()
    created: dict[str, tuple[int, Any]] = {}  # run name -> (index of its create in changes, its spec hash)
    for reg in planned:
        if reg.type != DYNAMIC_TYPE or "runName" not in reg.inputs:
            continue
        news = reg.inputs
        urn = next((u for u in [reg.urn, *alias_urns(reg)] if u in earlier), None)
        run = str(news["runName"])
        if urn is None:
            created[run] = (len(changes), news.get("specHash"))
            changes.append(RunChange(run, "create", ("new in this plan",)))
            continue
        seen.add(urn)
        # The stored provider reference may differ between files (secret or plain); it never decides a run's fate.
        olds = {**earlier[urn], "__provider": news.get("__provider")}
        diff = provider.diff("", olds, news)
        if diff.replaces:
            changes.append(RunChange(run, "replace", tuple(replace_reasons(olds, news))))
        elif diff.changes:
            reasons = legacy_reasons(olds) if legacy.is_legacy(olds) else update_reasons(olds, news)
            changes.append(RunChange(run, "update", tuple(reasons)))
        else:
            changes.append(RunChange(run, "keep"))
    for urn, olds in earlier.items():
        if urn in seen:
            continue
        run = str(olds.get("runName"))
        index, new_hash = created.get(run, (None, None))
        if index is not None and olds.get("specHash") == new_hash:
            changes[index] = RunChange(run, "move", (MOVE_REASON,))
            continue
        changes.append(RunChange(run, "delete", (f"no longer declared: {deleted(olds).what_is_lost()}",)))
    return changes


def deleted(olds: dict[str, Any]) -> Any:
    """The earlier record of a run or job that goes, as workloads/deletions.py describes what it loses. A plan's
    resources.json has no status (inputs only), so the run counts as possibly running."""
    from workloads.deletions import Deletion

    kind = str(olds.get("kind") or "run")
    context = _json(olds.get("context"))
    uri = olds.get("artifactsUri")
    if not uri and context.get("artifactsBucket") and olds.get("specHash"):
        top = "jobs" if kind == "job" else "runs"
        uri = f"s3://{context['artifactsBucket']}/{top}/{olds.get('runName')}/{olds.get('specHash')}/"
    return Deletion(str(olds.get("runName")), kind, olds.get("status"), uri)


def _json(text: Any) -> dict[str, Any]:
    try:
        value = json.loads(text) if isinstance(text, str) else text
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _flatten(value: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"images": {"sim": "a"}} -> {"images.sim": "a"}: a change is named down to the field that moved."""
    flat: dict[str, Any] = {}
    for key, item in value.items():
        if isinstance(item, dict) and item:
            flat.update(_flatten(item, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = item
    return flat


def _field_changes(old: dict[str, Any], new: dict[str, Any], skip: tuple[str, ...] = ()) -> list[str]:
    old_flat, new_flat = _flatten(old), _flatten(new)
    return [
        f"{key}: {_short(old_flat.get(key, 'default'))} -> {_short(new_flat.get(key, 'default'))}"
        for key in sorted(set(old_flat) | set(new_flat))
        if key.split(".")[0] not in skip and old_flat.get(key) != new_flat.get(key)
    ]


def replace_reasons(olds: dict[str, Any], news: dict[str, Any]) -> list[str]:
    """Why the run's hash moved: the spec fields and the context it resolves to."""
    reasons = [
        f"{key} {olds.get(key)} -> {news.get(key)}" for key in ("runName", "namespace", "kind") if olds.get(key) != news.get(key)
    ]
    old_spec, new_spec = _json(olds.get("spec")), _json(news.get("spec"))
    reasons += _field_changes(old_spec, new_spec, skip=("labels", "ttlAfterFinished"))
    old_ctx, new_ctx = _json(olds.get("context")), _json(news.get("context"))
    if old_ctx.get("glueSha256") != new_ctx.get("glueSha256"):
        reasons.append(f"glue content of {new_spec.get('glue')} changed")
    old_source, new_source = old_ctx.get("source") or {}, new_ctx.get("source") or {}
    if old_source.get("specHash") != new_source.get("specHash") and new_source:
        reasons.append(
            f"its source run {new_source.get('run')} changed (hash {old_source.get('specHash')} -> {new_source.get('specHash')})"
        )
    reasons += _field_changes(old_ctx, new_ctx, skip=("glueSha256", "source", "serviceAccount", "kubernetesVersion", "region"))
    if not reasons:
        reasons.append(f"spec hash {olds.get('specHash')} -> {news.get('specHash')} (identity rules changed)")
    return [*reasons, "the Job is deleted and the run starts again under a new prefix; the earlier run's data stays"]


def update_reasons(olds: dict[str, Any], news: dict[str, Any]) -> list[str]:
    """What an in-place update changes: labels and TTL on the live Job, or only what the state records."""
    from workloads.provider import MUTABLE_SPEC_KEYS

    old_spec, new_spec = _json(olds.get("spec")), _json(news.get("spec"))
    reasons = [
        f"{key}: {_short(old_spec.get(key, 'default'))} -> {_short(new_spec.get(key, 'default'))} (applied to the live Job)"
        for key in MUTABLE_SPEC_KEYS
        if old_spec.get(key) != new_spec.get(key)
    ]
    others = sorted(
        key
        for key in set(olds) | set(news)
        if key not in ("spec", "__provider", "status", "viewportAddress", "jobName", "jobUid", "companions")
        and key not in ("startTime", "completionTime")
        and olds.get(key) != news.get(key)
    )
    reasons += [f"{key} (state only; nothing reruns)" for key in others]
    return reasons or ["the stored provider reference (state only; nothing reruns)"]


def legacy_reasons(olds: dict[str, Any]) -> list[str]:
    return [
        f"recorded by simfleet before identity version 1: adopted in place (its Job and S3 data stay under hash "
        f"{olds.get('specHash')}); nothing reruns"
    ]


def summary(changes: list[RunChange], against: str, limit: int = 20) -> list[str]:
    """One line per change that is not a keep; every delete is listed first, whatever their number, with what it
    loses (deleting is the change that cannot be taken back)."""
    counts = {action: sum(1 for c in changes if c.action == action) for action in ACTIONS}
    tally = ", ".join(f"{counts[a]} {a}" for a in ACTIONS if counts[a]) or "no runs or jobs, before or now"
    lines = [f"runs compared with {against}: {tally}"]
    deletes = [c for c in changes if c.action == "delete"]
    if deletes:
        lines.append(f"  DELETES {len(deletes)} run(s) and job(s): each one's Job goes (simfleet:deletions)")
    for change in deletes:
        lines.append(f"  {change.action:<8} {change.run}: {'; '.join(change.reasons)}")
    shown = [c for c in changes if c.action not in ("keep", "delete")]
    for change in shown[:limit]:
        why = f": {'; '.join(change.reasons)}" if change.reasons else ""
        lines.append(f"  {change.action:<8} {change.run}{why}")
    if len(shown) > limit:
        lines.append(f"  ... and {len(shown) - limit} more in changes.json")
    return lines
