"""Platform configuration: defaults, then a YAML file, then ``MLRAY_*`` environment variables."""

from mlray.config.platform import PlatformConfig, load_config

__all__ = ["PlatformConfig", "load_config"]
