"""Synchronisation: the engine and per-source runtimes, one cycle of a source
(load, plan, media, commit, mark), its media phase and the rounds of
``synchrod once``."""
