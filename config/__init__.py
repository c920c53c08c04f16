"""The stack config contract (pydantic), one module per section; import from here.

`load_from_pulumi()` validates `simfleet:*` once at program start; components get typed slices of it.
"""

from config.errors import ConfigError, Issue
from config.platform import (
    ArtifactRetention,
    BucketsConfig,
    DeployerAccess,
    EndpointConfig,
    GpuNodeGroupConfig,
    NetworkConfig,
    NodeGroupConfig,
    NodeGroupsConfig,
    PlatformConfig,
    SystemNodeGroupConfig,
    default_control_plane_log_retention,
    is_prod_stack,
)
from config.runs import Checkpoint, Images, RunSpec, Viewport, checkpoint_order
from config.stack import (
    BOOTSTRAP_ENV,
    OFFLINE_PLAN_ENV,
    PROJECT_ROOT,
    StackConfig,
    load_from_pulumi,
    load_stack_config,
    placeholder_issues,
)
from config.types import (
    ALL_CONTROL_PLANE_LOGS,
    DOCUMENTATION_RANGES,
    LOG_RETENTION_DAYS,
    QUANTITY_RE,
    ImageRef,
    documentation_range,
    parse_duration,
    parse_image,
    quantity_value,
)

__all__ = [
    "ALL_CONTROL_PLANE_LOGS",
    "BOOTSTRAP_ENV",
    "DOCUMENTATION_RANGES",
    "LOG_RETENTION_DAYS",
    "OFFLINE_PLAN_ENV",
    "PROJECT_ROOT",
    "QUANTITY_RE",
    "ArtifactRetention",
    "BucketsConfig",
    "Checkpoint",
    "ConfigError",
    "DeployerAccess",
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
    "default_control_plane_log_retention",
    "documentation_range",
    "is_prod_stack",
    "load_from_pulumi",
    "load_stack_config",
    "parse_duration",
    "parse_image",
    "placeholder_issues",
    "quantity_value",
]
