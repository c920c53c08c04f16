"""The stack config contract (pydantic), one module per section; import from here.

`load_from_pulumi()` validates `simfleet:*` once at program start; components get typed slices of it.
"""

from config.errors import ConfigError, Issue
from config.platform import (
    ArtifactRetention,
    BucketsConfig,
    EndpointConfig,
    GpuNodeGroupConfig,
    NetworkConfig,
    NodeGroupConfig,
    NodeGroupsConfig,
    PlatformConfig,
    SystemNodeGroupConfig,
    is_prod_stack,
)
from config.runs import Checkpoint, Images, RunSpec, Viewport, checkpoint_order
from config.stack import PROJECT_ROOT, StackConfig, load_from_pulumi, load_stack_config
from config.types import (
    ALL_CONTROL_PLANE_LOGS,
    QUANTITY_RE,
    ImageRef,
    parse_duration,
    parse_image,
    quantity_value,
)

__all__ = [
    "ALL_CONTROL_PLANE_LOGS",
    "PROJECT_ROOT",
    "QUANTITY_RE",
    "ArtifactRetention",
    "BucketsConfig",
    "Checkpoint",
    "ConfigError",
    "EndpointConfig",
    "GpuNodeGroupConfig",
    "ImageRef",
    "Images",
    "Issue",
    "NetworkConfig",
    "NodeGroupConfig",
    "NodeGroupsConfig",
    "PlatformConfig",
    "RunSpec",
    "StackConfig",
    "SystemNodeGroupConfig",
    "Viewport",
    "checkpoint_order",
    "is_prod_stack",
    "load_from_pulumi",
    "load_stack_config",
    "parse_duration",
    "parse_image",
    "quantity_value",
]
