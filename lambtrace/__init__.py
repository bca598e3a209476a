"""LambTrace: command line, configuration and demo orchestration."""

__version__ = "0.1.0"
