"""The pytest plugin, tested the way pytest plugins are: pytester runs a user's test suite."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

SAMPLE = Path(__file__).resolve().parent / "data" / "sample"


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    """A user's project: a recording in tests/recordings/, an async test runner (anyio)."""
    shutil.copytree(SAMPLE, pytester.path / "tests" / "recordings" / "day")
    return pytester


def test_the_fixture_replays_the_recording_the_marker_names(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        **{
            "tests/test_strategy.py": """
                import math
                import pytest
                from tastyrec import Quote, Trade

                pytestmark = pytest.mark.anyio

                @pytest.fixture
                def anyio_backend():
                    return "asyncio"

                @pytest.mark.tastyrec_recording("recordings/day")
                async def test_counts(replay_streamer):
                    await replay_streamer.subscribe(Quote, ["SPY"])
                    quotes = [q async for q in replay_streamer.listen(Quote)]
                    assert len(quotes) > 100
                    assert {q.event_symbol for q in quotes} == {"SPY"}
                    assert replay_streamer.finished

                @pytest.mark.tastyrec_recording("recordings/day", speed=math.inf, queue_size=5)
                async def test_marker_options_reach_the_streamer(replay_streamer):
                    assert replay_streamer.queue_size == 5

                async def test_factory(replay_recording):
                    a = replay_recording("recordings/day")
                    b = replay_recording("recordings/day", end="2026-11-21T13:44:25Z")
                    for replay in (a, b):
                        await replay.subscribe(Trade, ["*"])
                    n_all = len([t async for t in a.listen(Trade)])
                    n_part = len([t async for t in b.listen(Trade)])
                    assert 0 < n_part < n_all
            """
        }
    )
    result = suite.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


def test_without_a_recording_the_error_says_how_to_give_one(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        **{
            "tests/test_missing.py": """
                def test_no_marker(replay_streamer):
                    pass
            """,
            "tests/test_wrong.py": """
                import pytest

                @pytest.mark.tastyrec_recording("recordings/nope")
                def test_wrong_path(replay_streamer):
                    pass
            """,
        }
    )
    result = suite.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(["*mark the test @pytest.mark.tastyrec_recording(PATH)*"])
    result.stdout.fnmatch_lines(["*'recordings/nope' not found next to test_wrong.py*"])


def test_the_ini_option_names_a_default_recording(suite: pytest.Pytester) -> None:
    suite.makeini("[pytest]\ntastyrec_recording = tests/recordings/day\n")
    suite.makepyfile(
        **{
            "tests/test_ini.py": """
                from tastyrec import Greeks

                def test_sync_use(replay_streamer):
                    assert replay_streamer.path.name == "day"
                    assert replay_streamer.connected
            """
        }
    )
    result = suite.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_the_marker_is_registered(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--markers")
    result.stdout.fnmatch_lines(["*tastyrec_recording(path, **options)*"])
