"""Helpers for tests, the demo and the benchmark: an embedded PostgreSQL
server, the callrec schema, and recorders filled with calls and real media.

- ``pgserver``: :class:`~synchrod.testing.pgserver.PgServer`, the embedded server.
- ``recorders``: the CallREC schema, databases built from it, calls and media.
- ``stage``: what the scripts set up around them: a work directory with its
  server (and the clean-up after a ``--keep`` run), a template and the
  recorder and replay databases cloned from it, synchrod's configuration file.
"""
