"""The config package depends on no component: validating a stack file loads no components/ module and no provider SDK."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMPONENT_PACKAGES = ("components", "pulumi_aws", "pulumi_eks", "pulumi_kubernetes")


def test_no_config_module_imports_a_component() -> None:
    """Every import statement in config/, including the ones inside functions."""
    found = []
    for path in sorted((ROOT / "config").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            else:
                continue
            found += [f"{path.name}:{node.lineno} {name}" for name in names if name.split(".")[0] in COMPONENT_PACKAGES]
    assert found == []


def test_validating_the_example_stacks_loads_no_component() -> None:
    """What actually gets imported while both example stack files are validated, lazy imports included."""
    probe = f"""
import json, sys
sys.path.insert(0, {str(ROOT)!r})
import yaml
from config import load_stack_config
for stack in ("dev", "prod"):
    raw = yaml.safe_load(open({str(ROOT)!r} + f"/Pulumi.{{stack}}.yaml"))["config"]
    load_stack_config(
        raw.get("simfleet:platform"), raw.get("simfleet:runs"), services=raw.get("simfleet:services"),
        jobs=raw.get("simfleet:jobs"), queues=raw.get("simfleet:queues"), stack=stack, source=f"Pulumi.{{stack}}.yaml",
        offline=True,
    )
print(json.dumps(sorted(sys.modules)))
"""
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    assert "config.stack" in loaded and "config.runs" in loaded
    assert [m for m in loaded if m.split(".")[0] in COMPONENT_PACKAGES] == []
