"""The command line: parses, loads the configuration, dispatches to a command."""
from .main import main

__all__ = ["main"]
