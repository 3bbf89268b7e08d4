"""The pytest plugin, tested the way pytest plugins are: pytester runs a user's test suite."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.readme import block_under

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


def test_the_readme_example_passes_as_written_in_a_fresh_project(pytester: pytest.Pytester) -> None:
    """The README's test file, taken from README.md, in a project with no pytest configuration:
    no ini file, no conftest, no async test plugin configured (only the plugins installed with
    tastyrec: its own and anyio's)."""
    example = block_under("Recordings in your tests")
    shutil.copytree(SAMPLE, pytester.path / "tests" / "recordings" / "spy_open")
    (pytester.path / "tests" / "test_strategy.py").write_text(example.code)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-W", "error")
    result.assert_outcomes(passed=1)


def test_a_test_that_fails_inside_the_replay_fails(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        **{
            "tests/test_fails.py": """
                import pytest
                from tastyrec import Quote

                @pytest.mark.tastyrec_recording("recordings/day")
                async def test_wrong(replay_streamer):
                    await replay_streamer.subscribe(Quote, ["SPY"])
                    quotes = [q async for q in replay_streamer.listen(Quote)]
                    assert len(quotes) == -1, "fails on purpose"
            """
        }
    )
    result = suite.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*fails on purpose*"])


def test_tests_that_anyio_runs_are_left_to_it(suite: pytest.Pytester) -> None:
    """With anyio's plugin in charge (auto mode here), every test runs once, under anyio, and
    the async tests that do not use the replay fixtures are anyio's as before."""
    suite.makeini("[pytest]\nanyio_mode = auto\n")
    suite.makepyfile(
        **{
            "tests/test_anyio.py": """
                import pytest
                from tastyrec import Quote

                RUNS = []

                @pytest.mark.tastyrec_recording("recordings/day")
                async def test_replay(replay_streamer, anyio_backend_name):
                    RUNS.append(anyio_backend_name)
                    await replay_streamer.subscribe(Quote, ["SPY"])
                    assert await replay_streamer.get_event(Quote)

                async def test_other(anyio_backend_name):
                    RUNS.append(anyio_backend_name)

                def test_each_ran_once():
                    assert RUNS == ["asyncio", "asyncio"]
            """
        }
    )
    result = suite.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


def test_async_tests_without_the_replay_fixtures_are_not_taken_over(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_plain="""
            async def test_plain():
                pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*async def functions are not natively supported*"])
