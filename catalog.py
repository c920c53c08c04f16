"""The AWS instance and price catalog (data/aws_catalog.json): shapes for validation, prices for cost."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

CATALOG_PATH = Path(__file__).resolve().parent / "data" / "aws_catalog.json"

# Instance families whose instances carry NVIDIA GPUs and run the AL2023 NVIDIA AMI (x86_64).
# g5g is excluded on purpose: it is Graviton (arm64) and needs the ARM NVIDIA AMI.
GPU_FAMILIES = ("g4dn", "g5", "g6", "g6e", "gr6", "p3", "p4d", "p4de", "p5", "p5e", "p5en", "p6")


@dataclass(frozen=True)
class InstanceType:
    name: str
    vcpu: int
    memory_gib: float
    gpus: int
    gpu_model: str | None
    on_demand_hourly: float


@dataclass(frozen=True)
class Catalog:
    region: str
    as_of: str
    source: str
    spot_discount: float
    spot_note: str
    hours_per_month: int
    services: dict[str, float]
    instances: dict[str, InstanceType]


@lru_cache(maxsize=1)
def load_catalog() -> Catalog:
    raw = json.loads(CATALOG_PATH.read_text())
    return Catalog(
        region=raw["region"],
        as_of=raw["asOf"],
        source=raw["source"],
        spot_discount=raw["spotDiscountAssumption"],
        spot_note=raw["spotDiscountNote"],
        hours_per_month=raw["hoursPerMonth"],
        services=dict(raw["services"]),
        instances={
            name: InstanceType(
                name=name,
                vcpu=spec["vcpu"],
                memory_gib=spec["memoryGiB"],
                gpus=spec["gpus"],
                gpu_model=spec["gpuModel"],
                on_demand_hourly=spec["onDemandHourly"],
            )
            for name, spec in raw["instances"].items()
        },
    )


def instance_family(instance_type: str) -> str:
    return instance_type.split(".", 1)[0]


def is_gpu_family(instance_type: str) -> bool:
    return instance_family(instance_type) in GPU_FAMILIES
