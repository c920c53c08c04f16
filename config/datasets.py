"""`platform.sharedStorage.imports`: S3 prefixes copied into the shared `datasets` volume, each by a sync Job with its own
read-only role.

An import is the declared way to get data into the volume: a job's or run's own program has no AWS credentials. Each
import is one Kubernetes Job (components/dataset_imports.py) running `aws s3 sync` from its prefix into its directory
of the volume, under an IRSA role that may only list and read that prefix.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence
from typing import Annotated

from pydantic import BeforeValidator, Field, field_validator

from config.types import Duration, Model, overlaps, s3_prefix

# The Job is named datasets-import-<name>-<8 hex>: at most 63 characters, a label value's limit (the Job controller
# labels its pods with the Job's name).
IMPORT_NAME_MAX = 30
IMPORT_NAME_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
MAX_IMPORT_RUNTIME = 7 * 24 * 3600


def _relative_dir(path: str) -> str:
    if not path or path.startswith("/") or posixpath.normpath(path) != path or ".." in path.split("/") or path == ".":
        raise ValueError(f"{path!r} must be a directory inside the volume, relative and normalised, like trajectories/raw")
    return path


class DatasetImport(Model):
    name: str = Field(
        description=f"DNS-1123 label starting with a letter, at most {IMPORT_NAME_MAX} characters; names the sync Job, "
        "its service account and its role."
    )
    from_: Annotated[str, BeforeValidator(s3_prefix)] = Field(
        alias="from",
        description="s3://bucket/prefix/ to copy; the import's role may list and read this prefix and nothing else.",
    )
    path: str | None = Field(
        None, description="Directory inside the volume the prefix is copied to (a job sees it under its datasets.path)."
    )
    max_runtime: Duration = Field(6 * 3600, gt=0, le=MAX_IMPORT_RUNTIME, description="The sync Job's activeDeadlineSeconds.")
    rerun: int = Field(0, ge=0, description="Bump to sync again (new and changed objects are copied; nothing is deleted).")

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not IMPORT_NAME_RE.match(name) or len(name) > IMPORT_NAME_MAX:
            raise ValueError(
                f"{name!r} must be a DNS-1123 label that starts with a letter and has at most {IMPORT_NAME_MAX} "
                "characters, like trajectories"
            )
        return name

    @field_validator("path")
    @classmethod
    def _path(cls, path: str | None) -> str | None:
        return None if path is None else _relative_dir(path)

    @property
    def directory(self) -> str:
        """Where in the volume the prefix lands: `path`, or the import's name."""
        return self.path or self.name


def import_problems(imports: Sequence[DatasetImport], enabled: bool) -> list[str]:
    """`sharedStorage.imports` as a whole: shared storage on, names unique, and each import writing a directory of its
    own (two syncs into one directory would copy over each other)."""
    problems = []
    if imports and not enabled:
        problems.append("imports fill the datasets volume, which needs enabled: true")
    seen: dict[str, int] = {}
    for index, entry in enumerate(imports):
        if entry.name in seen:
            problems.append(f"imports[{index}].name {entry.name!r} is already used by imports[{seen[entry.name]}]")
        seen.setdefault(entry.name, index)
        clash = next((o for o in imports[:index] if overlaps(o.directory, entry.directory)), None)
        if clash is not None:
            problems.append(
                f"imports[{index}] ({entry.name}) writes {entry.directory}, which overlaps {clash.directory} of import "
                f"{clash.name}; give each import a directory of its own (path)"
            )
    return problems
