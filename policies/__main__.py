"""Entry point of the CrossGuard pack: `pulumi preview --policy-pack policies` runs this file."""

import sys
from pathlib import Path

# The rules share versions.py, catalog.py, naming.py, config/ and workloads/ with the program, one directory up.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pulumi_policy import EnforcementLevel, PolicyPack

from policies.pack import policies

# Starts the analyzer's gRPC server and blocks: only ever constructed here, never on import.
PolicyPack(
    name="simfleet",
    policies=policies(),
    # Each rule sets its own level; anything without one stays advisory.
    enforcement_level=EnforcementLevel.ADVISORY,
    description="simfleet: S3, ECR, EKS, IAM and run rules, shared with the offline plan (tools/plan.py).",
)
