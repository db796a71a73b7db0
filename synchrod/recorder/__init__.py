"""The recorder (source) databases: loading batches, marking calls, the
speech definitions synchrod keeps identical on them."""
from .database import MINUS_INFINITY, Recorder, install_timestamp_codec, open_recorder

__all__ = ["MINUS_INFINITY", "Recorder", "install_timestamp_codec", "open_recorder"]
