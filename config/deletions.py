"""`simfleet:deletions`: how many deployed runs and jobs one change may delete without naming them, and which it names.

Removing a run's entry deletes its Job: a running run is stopped, a finished one keeps its record and data in S3. A
typo or a bad merge can remove many entries at once, so a change that deletes a running run or job, or more than
`limit` of them, must name each one under `acknowledge` (workloads/deletions.py checks it before anything is
registered, under `pulumi preview`/`up` and the offline plan against a stack export).
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from config.types import Model

# A run or job name (DNS-1123 label), optionally with `*` and `?` wildcards (fnmatch).
_PATTERN_RE = re.compile(r"^[a-z0-9*?]([-a-z0-9*?]*[a-z0-9*?])?$")
DEFAULT_LIMIT = 3


class DeletionsConfig(Model):
    limit: int = Field(
        DEFAULT_LIMIT,
        ge=0,
        description="How many deployed runs and jobs one `pulumi up` may delete without each being listed under "
        "acknowledge; a running one always needs it.",
    )
    acknowledge: list[str] = Field(
        default_factory=list,
        description="Runs and jobs this change may delete even when running or above the limit: names, or patterns "
        "with * and ? (trot-2026-11-*). Remove them once the change is deployed.",
    )

    @field_validator("acknowledge")
    @classmethod
    def _names(cls, patterns: list[str]) -> list[str]:
        bad = [p for p in patterns if not _PATTERN_RE.match(p)]
        if bad:
            raise ValueError(f"{bad} are not run or job names (lowercase letters, digits and '-', with * or ? wildcards)")
        return patterns
