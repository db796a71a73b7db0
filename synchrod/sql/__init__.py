"""SQL text lives in ``.sql`` files beside this module; ``load`` reads one."""
from __future__ import annotations

import functools
from importlib import resources


@functools.cache
def load(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every numbered migration, in order."""
    out = []
    for entry in resources.files(__package__).joinpath("migrations").iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            out.append((version, entry.name, entry.read_text(encoding="utf-8")))
    return sorted(out)


def ident(name: str) -> str:
    """A quoted SQL identifier (names read from a database's catalog)."""
    return '"' + name.replace('"', '""') + '"'
