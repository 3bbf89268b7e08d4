"""Lazy re-exports for package ``__init__`` modules (PEP 562).

A package lists which module defines each public name; the name is imported on first use. So
``import tastyrec`` (and ``tastyrec sql``) do not pay for polars, pyarrow and websockets before
they need them. Type checkers see the plain imports each package makes under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ("lazy_exports",)


def lazy_exports(
    package: str, namespace: dict[str, Any], exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for a package whose ``exports`` map names to modules.

    Example usage (in a package's ``__init__``)::

        __getattr__, __dir__ = lazy_exports(__name__, globals(), {"Recorder": ".recorder"})
    """

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value  # later lookups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *exports})

    return __getattr__, __dir__
