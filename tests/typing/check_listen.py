"""Checked by mypy (tests/test_typing.py): listen() and get_event() are typed by their argument."""

from __future__ import annotations

from typing import assert_type

from tastyrec import DXLinkStreamer, Greeks, Quote


async def check(streamer: DXLinkStreamer) -> None:
    async for quote in streamer.listen(Quote):
        assert_type(quote, Quote)
        assert_type(quote.bid_price, float)
    assert_type(await streamer.get_event(Greeks), Greeks)
    assert_type(streamer.get_event_nowait(Quote), Quote | None)
