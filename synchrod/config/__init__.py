"""The configuration: the YAML file validated into immutable objects."""
from .model import (
                    DEFAULT_PATH,
                    ArchiveConfig,
                    ArchiveTask,
                    Config,
                    LoggingConfig,
                    MonitorConfig,
                    MonitorUser,
                    SourceConfig,
                    StorageConfig,
                    SynchroConfig,
                    TargetConfig,
                    TargetPath,
                    from_dict,
                    is_loopback,
                    load,
                    load_target_dsn,
                    resolve_path,
)
from .validator import ConfigError

__all__ = ["DEFAULT_PATH", "ArchiveConfig", "ArchiveTask", "Config", "ConfigError", "LoggingConfig", "MonitorConfig", "MonitorUser",
           "SourceConfig", "StorageConfig", "SynchroConfig", "TargetConfig", "TargetPath", "from_dict", "is_loopback",
           "load", "load_target_dsn", "resolve_path"]
