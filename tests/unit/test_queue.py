"""The one bounded drop-oldest queue (tastyrec._queue): both drop policies, both ways of taking."""

from __future__ import annotations

import anyio
import pytest

from tastyrec._queue import ChunkQueue


def test_whole_chunks_are_dropped_oldest_first_and_counted() -> None:
    q: ChunkQueue[str] = ChunkQueue(5)
    assert q.put("a", 2) == 0
    assert q.put("b", 2) == 0
    assert q.put("c", 2) == 2  # "a" goes whole
    assert len(q) == 4
    assert q.take_chunk() == ("b", 0)
    assert q.take_chunk() == ("c", 0)
    assert q.take_chunk() is None
    assert len(q) == 0


def test_whole_chunk_policy_drops_a_new_chunk_larger_than_the_bound() -> None:
    q: ChunkQueue[str] = ChunkQueue(3)
    q.put("a", 1)
    assert q.put("big", 4) == 5  # the DXLink listener queue's rule, kept
    assert len(q) == 0 and q.take_chunk() is None


def test_whole_chunk_policy_counts_only_the_untaken_part_of_a_started_chunk() -> None:
    q: ChunkQueue[list[int]] = ChunkQueue(4)
    q.put([1, 2, 3], 3)
    q.advance()  # one item taken from the head
    assert q.put([4, 5, 6], 3) == 2  # the two left of the first chunk
    assert q.head_chunk() == ([4, 5, 6], 0)


def test_partial_policy_cuts_the_head_and_keeps_the_newest_chunk_whole() -> None:
    q: ChunkQueue[list[int]] = ChunkQueue(4, partial=True)
    q.put([1, 2, 3], 3)
    assert q.put([4, 5], 2) == 1  # item 1 cut from the head
    assert q.take_chunk() == ([1, 2, 3], 1)
    assert q.put([6, 7, 8, 9, 10, 11], 6) == 2  # over the bound alone: kept whole
    assert len(q) == 6
    assert q.take_chunk() == ([6, 7, 8, 9, 10, 11], 0)


def test_items_are_taken_one_by_one_in_order() -> None:
    q: ChunkQueue[list[int]] = ChunkQueue(10, partial=True)
    q.put([1, 2], 2)
    q.put([3], 1)
    taken = []
    while (head := q.head_chunk()) is not None:
        chunk, pos = head
        taken.append(chunk[pos])
        q.advance()
    assert taken == [1, 2, 3] and len(q) == 0
    q.put([4], 1)
    q.clear()
    assert len(q) == 0 and q.head_chunk() is None


def test_nothing_is_put_for_an_empty_chunk() -> None:
    q: ChunkQueue[list[int]] = ChunkQueue(1)
    assert q.put([], 0) == 0 and q.take_chunk() is None


@pytest.mark.anyio
async def test_wait_returns_once_something_is_put() -> None:
    q: ChunkQueue[str] = ChunkQueue(2)
    woke = anyio.Event()

    async def reader() -> None:
        await q.wait()
        woke.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(reader)
        await anyio.wait_all_tasks_blocked()
        assert not woke.is_set()
        q.put("a", 1)
        with anyio.fail_after(5):
            await woke.wait()
    await q.wait()  # not empty: returns at once
