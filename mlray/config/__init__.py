"""Platform configuration: defaults, then a YAML file, then ``MLRAY_*`` environment variables."""

from mlray.config.platform import (
    PlatformConfig,
    adopt_running,
    config_differences,
    load_config,
)

__all__ = ["PlatformConfig", "adopt_running", "config_differences", "load_config"]
