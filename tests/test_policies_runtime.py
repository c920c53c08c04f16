"""The pack's runtime: the virtualenv `pulumi preview --policy-pack policies` runs it in, and what fills that virtualenv."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from policy_stack import run_props

from config.sources import load_yaml

ROOT = Path(__file__).resolve().parent.parent
PACK = ROOT / "policies"


def pins(path: Path) -> dict[str, str]:
    """name -> version of every `name==version` line of a requirements file, following `-r` includes as pip does
    (relative to the file that names them)."""
    found: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            found |= pins(path.parent / line[3:].strip())
        elif line:
            requirement = Requirement(line)
            [specifier] = requirement.specifier
            assert specifier.operator == "==", f"{path}: {line} is not pinned"
            found[canonicalize_name(requirement.name)] = specifier.version
    return found


def installed_closure(names: set[str]) -> set[str]:
    """The distributions `names` need once installed: themselves and their dependencies (extras as requested)."""
    seen: set[str] = set()
    todo = [(name, frozenset[str]()) for name in names]
    while todo:
        name, extras = todo.pop()
        if name in seen and not extras:
            continue
        seen.add(name)
        for text in metadata.requires(name) or []:
            requirement = Requirement(text)
            wanted = requirement.marker is None or any(requirement.marker.evaluate({"extra": extra}) for extra in (*extras, ""))
            if wanted:
                todo.append((canonicalize_name(requirement.name), frozenset(requirement.extras)))
    return seen


def test_the_pack_runs_in_the_program_virtualenv() -> None:
    """Pulumi creates no virtualenv for a local pack, so it names the one `make venv` builds for the program."""
    pack_runtime = load_yaml((PACK / "PulumiPolicy.yaml").read_text())["runtime"]
    program_runtime = load_yaml((ROOT / "Pulumi.yaml").read_text())["runtime"]
    assert pack_runtime["name"] == program_runtime["name"] == "python"
    pack_venv = (PACK / pack_runtime["options"]["virtualenv"]).resolve()
    assert pack_venv == (ROOT / program_runtime["options"]["virtualenv"]).resolve()
    # `make venv` installs requirements-dev.txt, which must bring the pack's requirements (pulumi-policy) along.
    assert pins(PACK / "requirements.txt").items() <= pins(ROOT / "requirements-dev.txt").items()
    assert "pulumi-policy" in pins(PACK / "requirements.txt")
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^\$\(VENV\)/\.installed:.*\bpolicies/requirements\.txt\b", makefile, re.M)


def test_the_pack_requirements_cover_everything_it_imports() -> None:
    """Load the pack as the engine does and run every rule on a run it must render: each third-party module it
    imports comes from a distribution policies/requirements.txt installs (directly or as a dependency)."""
    probe = f"""
import json, sys
sys.path.insert(0, {str(ROOT)!r})
from importlib.metadata import packages_distributions
from policies import pack
from policies.rules import RULES, evaluate
from policies.rules.model import Resource
props = json.load(sys.stdin)
run = Resource("pulumi-python:dynamic:Resource", "urn:pulumi:dev::simfleet::pulumi-python:dynamic:Resource::runs-x", "runs-x", props)
violations = evaluate([run], pack.context_for(run.urn))
assert not any("do not render" in v.message for v in violations), violations
top = {{name.split(".")[0] for name in sys.modules}}
dists = packages_distributions()
print(json.dumps(sorted({{d for name in top for d in dists.get(name, [])}})))
"""
    result = subprocess.run(
        [sys.executable, "-c", probe],
        input=json.dumps(run_props("trot-sweep", batch=True)),
        capture_output=True,
        text=True,
        check=False,
        cwd=PACK,
    )
    assert result.returncode == 0, result.stderr
    imported = {canonicalize_name(d) for d in json.loads(result.stdout)}
    assert {"pulumi-policy", "pulumi", "pydantic", "pyyaml"} <= imported  # the probe loaded what it should
    # The project's own modules (naming, config, workloads) come with the pack's sources; since `make venv` installs the
    # project editable, they also map to its distribution, `simfleet`, which no requirements file should name.
    missing = imported - installed_closure(set(pins(PACK / "requirements.txt"))) - {"simfleet"}
    assert missing == set(), f"the pack imports {sorted(missing)}, which policies/requirements.txt does not install"
