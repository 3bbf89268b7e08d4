"""Recording: a DXLink stream -> write-ahead journal -> rotating, crash-safe Parquet files.

Modules: :mod:`.layout` (where files go), :mod:`.journal` (write-ahead journal), :mod:`.sink`
(rotation, atomic Parquet publication, the crash-safety argument), :mod:`.recorder` (the
:class:`Recorder` and :func:`recover`), :mod:`.convert` (user events -> Arrow), :mod:`.status`
(terminal status).
"""

from __future__ import annotations

from .journal import FsyncPolicy
from .recorder import Recorder, RecoveryReport, recover
from .sink import RotationPolicy, WrittenFile
from .status import RecorderStats

__all__ = (
    "FsyncPolicy",
    "Recorder",
    "RecorderStats",
    "RecoveryReport",
    "RotationPolicy",
    "WrittenFile",
    "recover",
)
