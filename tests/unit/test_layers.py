"""The arrows between tastyrec's packages point down only.

Every module under ``tastyrec/`` belongs to one unit of :data:`UNITS`; :data:`MAY_IMPORT` says
which units each may import. The imports are read with :mod:`ast` (plain, relative, inside
functions and ``TYPE_CHECKING`` blocks alike) together with the lazy re-export tables
(``_EXPORTS``) of the package ``__init__`` modules, so an upward import anywhere fails here.

The layers, bottom to top::

    base        exceptions, version, lazy exports, Arrow value helpers, the time rule,
                recording locations, the drop-oldest queue, the redactor
    events      the event Structs and their registry
    schema      Arrow/polars schemas derived from the events
    transport   websocket plumbing, and the streaming shell both live streamers stand on
    storage     the on-disk format (tastyrec.storage) and the catalog of a recording's files
    rest        the REST session and option chains
    dxlink, account   the two live protocols and their streamers
    live        the in-memory live frame
    record, query, replay   writers and readers of recordings, over storage
    sim         the simulators (beside record/query/replay: they serve the protocols)
    demo        wiring the simulators into sessions for --demo
    cli         the command line (click commands, ``tastyrec.cli``); nothing imports it
    api         the package's public face (``tastyrec/__init__``) and the pytest plugin
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import tastyrec

ROOT = Path(tastyrec.__file__).parent

#: module-name prefix -> unit; the longest matching prefix wins
UNITS: dict[str, str] = {
    "tastyrec": "api",
    "tastyrec.pytest_plugin": "api",
    "tastyrec.__main__": "cli",
    "tastyrec.cli": "cli",
    "tastyrec._cli": "cli",
    "tastyrec.exceptions": "base",
    "tastyrec._version": "base",
    "tastyrec._lazy": "base",
    "tastyrec._arrow_values": "base",
    "tastyrec._time": "base",
    "tastyrec._location": "base",
    "tastyrec._queue": "base",
    "tastyrec._redact": "base",
    "tastyrec._closing": "base",
    "tastyrec._taskgroup": "base",
    "tastyrec.events": "events",
    "tastyrec.schema": "schema",
    "tastyrec.transport": "transport",
    "tastyrec._stream": "transport",
    "tastyrec.storage": "storage",
    "tastyrec.catalog": "storage",
    "tastyrec.objectstore": "storage",
    "tastyrec.session": "rest",
    "tastyrec.quote_tokens": "rest",
    "tastyrec.chain": "rest",
    "tastyrec.dxlink": "dxlink",
    "tastyrec.account": "account",
    "tastyrec.live": "live",
    "tastyrec.record": "record",
    "tastyrec.query": "query",
    "tastyrec.replay": "replay",
    "tastyrec.sim": "sim",
    "tastyrec.demo": "demo",
}
#: a module named ``commands`` in any package is command-line code
CLI_MODULE = "commands"

_LOW = {"base", "events", "schema"}
#: unit -> the other units it may import (its own is always allowed)
MAY_IMPORT: dict[str, set[str]] = {
    "base": set(),
    "events": {"base"},
    "schema": {"base", "events"},
    "transport": {"base"},
    "storage": _LOW,
    "rest": {"base"},
    "dxlink": _LOW | {"transport", "rest"},  # quote tokens: session.QuoteTokenSource
    "account": _LOW | {"transport"},
    "live": _LOW,
    "record": _LOW | {"storage", "transport", "rest", "dxlink", "account", "live"},
    "query": _LOW | {"storage"},
    "replay": _LOW | {"storage", "dxlink", "account"},
    "sim": _LOW | {"transport", "dxlink", "account"},
    "demo": _LOW | {"transport", "rest", "dxlink", "account", "sim"},
    "cli": set(UNITS.values()) - {"api", "cli"},
    "api": set(UNITS.values()) - {"api", "cli"},
}

#: (importer, imported) edges that break the table today, each with who removes it. Allowed, not
#: required: delete the entry once the edge is gone.
KNOWN_EXCEPTIONS: dict[tuple[str, str], str] = {
}


def unit_of(module: str) -> str | None:
    """The unit of a module name (``None``: not tastyrec's)."""
    if module.rsplit(".", 1)[-1] == CLI_MODULE:
        return "cli"
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        unit = UNITS.get(".".join(parts[:n]))
        if unit is not None:
            return unit
    return None


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, is_package: bool, level: int, name: str | None) -> str:
    if not level:
        return name or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, *([name] if name else [])])


def imports_of(module: str, source: str, *, is_package: bool = False) -> set[str]:
    """Every tastyrec module (or package) ``source`` imports, resolved to absolute names.

    ``from pkg import name`` counts as importing ``pkg.name`` (a module or a name defined in
    ``pkg``: both tie the importer to ``pkg``'s unit).
    """
    found: set[str] = set()
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, is_package, node.level, node.module)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "_EXPORTS" for t in targets):
                assert node.value is not None
                for const in ast.walk(node.value):
                    if isinstance(const, ast.Constant) and isinstance(const.value, str):
                        if const.value.startswith("."):
                            level = len(const.value) - len(const.value.lstrip("."))
                            rest = const.value[level:] or None
                            found.add(_resolve(module, is_package, level, rest))
    return {name for name in found if name == "tastyrec" or name.startswith("tastyrec.")}


def violations(module: str, imported: set[str]) -> list[str]:
    """The imports of ``module`` its unit may not make, as ``"a -> b (unit -> unit)"``."""
    unit = unit_of(module)
    assert unit is not None, f"{module} belongs to no unit: add it to UNITS"
    bad = []
    for name in sorted(imported):
        target = unit_of(name)
        if name == "tastyrec" or target is None or target == unit:
            continue  # ``from tastyrec import x`` names the submodule x, resolved above
        if target not in MAY_IMPORT[unit] and (module, _module_part(name)) not in KNOWN_EXCEPTIONS:
            bad.append(f"{module} -> {name} ({unit} -> {target})")
    return bad


def _module_part(name: str) -> str:
    """The longest prefix of ``name`` that is a module file under ``tastyrec/``."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        candidate = ROOT.parent.joinpath(*parts[:n])
        if candidate.with_suffix(".py").is_file() or (candidate / "__init__.py").is_file():
            return ".".join(parts[:n])
    return name


def all_modules() -> list[Path]:
    return sorted(ROOT.rglob("*.py"))


def test_every_module_has_a_unit() -> None:
    missing = [module_name(p) for p in all_modules() if unit_of(module_name(p)) is None]
    assert not missing, f"add these to UNITS: {missing}"
    assert set(MAY_IMPORT) == set(UNITS.values())


def test_the_arrows_point_down_only() -> None:
    bad = []
    for path in all_modules():
        module = module_name(path)
        imported = imports_of(module, path.read_text(), is_package=path.name == "__init__.py")
        bad += violations(module, imported)
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_the_table_is_acyclic() -> None:
    """A unit may not import one that imports it back: the units form layers."""
    seen: dict[str, int] = {}

    def depth(unit: str, stack: tuple[str, ...] = ()) -> int:
        assert unit not in stack, f"cycle: {' -> '.join((*stack, unit))}"
        if unit not in seen:
            seen[unit] = 1 + max((depth(u, (*stack, unit)) for u in MAY_IMPORT[unit]), default=0)
        return seen[unit]

    for unit in MAY_IMPORT:
        depth(unit)
    assert seen["base"] < seen["storage"] < seen["record"] < seen["cli"]


def test_nothing_below_the_cli_imports_it() -> None:
    assert all("cli" not in allowed for unit, allowed in MAY_IMPORT.items() if unit != "cli")


def test_the_known_exceptions_are_real_modules() -> None:
    for importer, imported in KNOWN_EXCEPTIONS:
        for name in (importer, imported):
            assert _module_part(name) == name, f"{name} is not a module under tastyrec/"


@pytest.mark.parametrize(
    ("module", "source", "is_package", "upward"),
    [
        ("tastyrec.record.recorder", "from ..query._scan import scan", False, True),
        ("tastyrec.record.recorder", "from .. import sim", False, True),
        ("tastyrec.record.chains", "def f():\n    from tastyrec.sim import Simulator", False, True),
        ("tastyrec.storage.layout", "from ..record import sink", False, True),
        ("tastyrec.events.base", "import tastyrec.schema", False, True),
        ("tastyrec.dxlink.streamer", "from .._cli import run", False, True),
        ("tastyrec.query", '_EXPORTS = {"x": "..record.recorder"}', True, True),
        ("tastyrec.record.recorder", "from ..storage import layout", False, False),
        ("tastyrec.record.commands", "from ..sim import Simulator", False, False),
        ("tastyrec.query._compact", "from ..storage.parquet import parquet_options", False, False),
    ],
)
def test_the_checker_sees_an_upward_import(
    module: str, source: str, is_package: bool, upward: bool
) -> None:
    """The check itself can fail: an upward import, however written, is reported."""
    assert bool(violations(module, imports_of(module, source, is_package=is_package))) is upward
