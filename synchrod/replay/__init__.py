"""Replay (target) database I/O: synchrod's schema, reads for planning, the
batch write, and the file journal that makes crashes repairable."""
