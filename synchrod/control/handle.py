"""What the monitor and the actions may use of the running daemon: a
Protocol, so they depend on this contract and not on ``daemon.process``."""
from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..daemon.archivewatch import ArchiveWatch
    from ..daemon.ownership import Ownership
    from ..daemon.runner import Control
    from ..sync.engine import Engine


class DaemonHandle(Protocol):
    """The running daemon (``daemon.process.Daemon`` implements it)."""
    path: str                   # the configuration file
    engine: Engine              # the sources' runtimes and the replay database
    control: Control            # the flags the daemon loop acts on
    ownership: Ownership        # which sources this daemon holds
    config_error: str | None    # why the last reload was refused, if it was
    archive: ArchiveWatch       # archive runs: listeners, those running, start one by hand

    async def reload(self, reason: str) -> bool:
        """Reloads the configuration file; False when it was refused."""
        ...

    def source_bases(self) -> dict[str, dict]:
        """Each configured source's published state (see ``control.views.source_base``)."""
        ...

    def deletion_queued(self) -> None:
        """A bulk delete job was queued: the daemon looks for it at once."""
        ...

    def identity(self) -> dict:
        """The daemon itself: name, host, pid, version, configuration state."""
        ...
