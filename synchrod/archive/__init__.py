"""Archive export tasks (SPEC §10): runs that copy the target's media with a
sidecar each to an archive location (``run``), and when they run
(``scheduler``)."""
