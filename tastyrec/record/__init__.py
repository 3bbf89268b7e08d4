"""Recording: a DXLink stream -> write-ahead journal -> rotating, crash-safe Parquet files.

Modules: :mod:`.layout` (where files go), :mod:`.journal` (write-ahead journal), :mod:`.sink`
(rotation, atomic Parquet publication, the crash-safety argument), :mod:`.recorder` (the
:class:`Recorder` and :func:`recover`), :mod:`.convert` (user events -> Arrow), :mod:`.status`
(terminal status), :mod:`.chains` (option chains around the money), :mod:`.account_schema`
(account events -> Arrow).

Names are imported on first use (:mod:`tastyrec._lazy`): importing :mod:`.layout` alone does not
load the recorder.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from .._lazy import lazy_exports as _lazy_exports

if TYPE_CHECKING:
    from .journal import FsyncPolicy
    from .recorder import Recorder, RecoveryReport, recover
    from .sink import RotationPolicy, WrittenFile
    from .status import RecorderStats

_EXPORTS: Final = {
    "FsyncPolicy": ".journal",
    "Recorder": ".recorder",
    "RecorderStats": ".status",
    "RecoveryReport": ".recorder",
    "RotationPolicy": ".sink",
    "WrittenFile": ".sink",
    "recover": ".recorder",
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
