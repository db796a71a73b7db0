"""Helpers for tests, the demo and the benchmark: an embedded PostgreSQL
server, the callrec schema, and recorders filled with calls and real media."""
