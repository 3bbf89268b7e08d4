"""Recording: a DXLink stream -> write-ahead journal -> rotating, crash-safe Parquet files.

Modules: :mod:`.sink` (rotation, conversion to Parquet, the crash-safety argument),
:mod:`.recorder` (the :class:`Recorder`), :mod:`.recovery` (session locks, :func:`recover`),
:mod:`.live_sql` (SQL over a running recording), :mod:`.account_window` (recent account rows),
:mod:`.convert` (user events -> Arrow), :mod:`.status` (terminal status), :mod:`.chains` (option
chains around the money). The on-disk format they write (layout, journal, bookkeeping tables,
account schema, Parquet settings, atomic publication) is :mod:`tastyrec.storage`, which readers
share.

Names are imported on first use (:mod:`tastyrec._lazy`): importing :mod:`.sink` alone does not
load the recorder.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from .._lazy import lazy_exports as _lazy_exports

if TYPE_CHECKING:
    from ..storage.journal import FsyncPolicy
    from .recorder import Recorder
    from .recovery import RecoveryReport, recover
    from .sink import RotationPolicy, WrittenFile
    from .status import RecorderStats

_EXPORTS: Final = {
    "FsyncPolicy": "..storage.journal",
    "Recorder": ".recorder",
    "RecorderStats": ".status",
    "RecoveryReport": ".recovery",
    "RotationPolicy": ".sink",
    "WrittenFile": ".sink",
    "recover": ".recovery",
}

__all__ = (
    "FsyncPolicy",
    "Recorder",
    "RecorderStats",
    "RecoveryReport",
    "RotationPolicy",
    "WrittenFile",
    "recover",
)

__getattr__, __dir__ = _lazy_exports(__name__, globals(), _EXPORTS)
