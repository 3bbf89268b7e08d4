"""A pytest plugin: replay a recording kept in your tests folder, in your own tests.

Registered by entry point (``pytest11``) when tastyrec is installed, so there is nothing to
configure. Strategy code written against ``DXLinkStreamer`` runs unchanged on a recorded session::

    import pytest
    from tastyrec import Quote

    @pytest.mark.tastyrec_recording("recordings/spy_open", speed=math.inf)
    async def test_my_strategy_buys_the_dip(replay_streamer):
        await replay_streamer.subscribe(Quote, ["SPY"])
        orders = await my_strategy(replay_streamer)     # listen()s until the recording ends
        assert orders == [...]

Fixtures:

* ``replay_streamer`` -- a :class:`~tastyrec.ReplayStreamer`, opened, on the recording the test's
  ``tastyrec_recording`` marker names (else the ``tastyrec_recording`` ini option, else
  ``--tastyrec-recording``); closed after the test. The fixture is synchronous, so it works with
  any async test runner (anyio's plugin, pytest-asyncio...).
* ``replay_recording`` -- a factory, ``replay_recording(path, **options)``, for tests that need
  several replays or other options; every replay it makes is closed after the test.

Async tests: an ``async def`` test that uses these fixtures runs even in a project with no async
test plugin configured. Only a test that nothing else ran reaches this plugin's
``pytest_pyfunc_call`` (an ordinary hook: after anyio's, which is ``tryfirst``, and
pytest-asyncio's wrapper, and before pytest's own, which is ``trylast`` and would fail it with
"async def functions are not natively supported"); it runs the test with ``anyio.run`` on
asyncio, tastyrec's backend. A test that anyio's plugin runs
(``pytest.mark.anyio`` or ``anyio_mode = "auto"``: it has the ``anyio_backend`` fixture) or that
pytest-asyncio runs (which hands pytest a synchronous wrapper) is left to them, so nothing runs
twice and nothing changes for projects that already have a runner. Async *fixtures* of your own
still need one of those runners.

Paths are resolved against the folder of the test file (then the rootdir), so recordings can live
beside the tests that use them. Marker keyword arguments (``start``, ``end``, ``speed``,
``queue_size``...) are passed to :class:`~tastyrec.ReplayStreamer`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import pytest

if TYPE_CHECKING:  # imported when a fixture is used: pytest starts fast in other projects
    from .replay import ReplayStreamer

__all__ = ("replay_recording", "replay_streamer")

MARKER = "tastyrec_recording"
#: the fixtures whose async tests this plugin runs when no other plugin does
FIXTURES: Final = frozenset({"replay_streamer", "replay_recording"})


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("tastyrec", "replaying tastyrec recordings")
    group.addoption(
        "--tastyrec-recording",
        default=None,
        help="recording folder for the replay_streamer fixture (when no marker names one)",
    )
    parser.addini(
        MARKER, "recording folder for the replay_streamer fixture (when no marker names one)"
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(path, **options): the recording the replay_streamer fixture replays "
        "(path relative to the test file; options go to tastyrec.ReplayStreamer)",
    )


def _resolve(request: pytest.FixtureRequest, path: str | Path) -> Path:
    candidate = Path(path)
    if candidate.is_absolute():
        return candidate
    for base in (request.path.parent, request.config.rootpath):
        if (base / candidate).is_dir():
            return base / candidate
    raise pytest.UsageError(
        f"tastyrec recording {str(path)!r} not found next to {request.path.name} or in "
        f"{request.config.rootpath}: give a folder written by `tastyrec record --out`"
    )


@pytest.fixture
def replay_recording(request: pytest.FixtureRequest) -> Iterator[Callable[..., ReplayStreamer]]:
    """A factory of opened replays: ``replay_recording("recordings/day", speed=10)``."""
    made: list[ReplayStreamer] = []

    from .replay import ReplayStreamer

    def make(path: str | Path, **options: Any) -> ReplayStreamer:
        streamer = ReplayStreamer(_resolve(request, path), **options)
        streamer.open()
        made.append(streamer)
        return streamer

    yield make
    for streamer in made:
        streamer.close()


@pytest.fixture
def replay_streamer(
    request: pytest.FixtureRequest, replay_recording: Callable[..., ReplayStreamer]
) -> ReplayStreamer:
    """An opened :class:`~tastyrec.ReplayStreamer` on the recording the marker names."""
    marker = request.node.get_closest_marker(MARKER)
    options: dict[str, Any] = {}
    path: str | None = None
    if marker is not None:
        if not marker.args:
            raise pytest.UsageError(f"@pytest.mark.{MARKER} needs the recording's path")
        path, options = marker.args[0], dict(marker.kwargs)
    else:
        path = request.config.getoption("--tastyrec-recording") or request.config.getini(MARKER)
    if not path:
        raise pytest.UsageError(
            f"replay_streamer needs a recording: mark the test @pytest.mark.{MARKER}(PATH), or "
            f"set `{MARKER} = PATH` in the pytest ini options, or pass --tastyrec-recording PATH"
        )
    return replay_recording(path, **options)


def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run an ``async def`` test that uses the replay fixtures and no other plugin ran."""
    test = pyfuncitem.obj
    if (
        not inspect.iscoroutinefunction(test)
        or "anyio_backend" in pyfuncitem.funcargs  # anyio's plugin runs it
        or FIXTURES.isdisjoint(pyfuncitem.fixturenames)
    ):
        return None
    import anyio

    names = pyfuncitem._fixtureinfo.argnames
    kwargs = {name: pyfuncitem.funcargs[name] for name in names}
    anyio.run(functools.partial(test, **kwargs), backend="asyncio")
    return True
