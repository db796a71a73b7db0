"""SQL text kept in ``.sql`` files inside the package of the database role
that runs it (``recorder/sql``, ``replay/sql``, ``pg``), and quoting of
identifiers read from a catalog."""
from __future__ import annotations

import functools
from importlib import resources


@functools.cache
def load(package: str, name: str) -> str:
    """The text of ``name`` in ``package``'s ``sql`` folder (``pg``'s own files
    sit beside this module)."""
    folder = resources.files(package)
    if package != __package__:
        folder = folder.joinpath("sql")
    return folder.joinpath(name).read_text(encoding="utf-8")


def migrations(package: str) -> list[tuple[int, str, str]]:
    """(version, name, sql) of every numbered migration of ``package``, in order."""
    out = []
    for entry in resources.files(package).joinpath("sql", "migrations").iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            out.append((version, entry.name, entry.read_text(encoding="utf-8")))
    return sorted(out)


def ident(name: str) -> str:
    """A quoted SQL identifier (names read from a database's catalog)."""
    return '"' + name.replace('"', '""') + '"'
