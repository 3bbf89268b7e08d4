"""The one bounded drop-oldest queue: live listener queues (DXLink, account) and replay's buffers.

A queue holds *chunks*, each standing for ``count`` items (a COMPACT FEED_DATA message of many
events, one account notification, a replay step's list of events), in arrival order, and at most
``max_items`` items in all. When a put takes it over the bound the *oldest* items go first, and
:meth:`ChunkQueue.put` says how many went, so the caller counts them (``stats.dropped``). Two
drop policies, one per kind of reader:

* ``partial=False`` (the live streamers): whole chunks are dropped, oldest first, while the
  queue is over its bound, the new chunk included if it alone is larger. A DXLink chunk is
  COMPACT values decoded only when a listener takes it, so it cannot be cut.
* ``partial=True`` (replay): the oldest chunk may be cut at its head (the items are a list), and
  the newest chunk is always kept whole, even if it alone is over the bound: a listener gets the
  newest step whole.

A chunk is taken whole (:meth:`ChunkQueue.take_chunk`, with the offset of its first item not
dropped or taken yet) or one item at a time (:meth:`ChunkQueue.head` then
:meth:`ChunkQueue.advance`). :meth:`ChunkQueue.wait` waits until the queue is not empty.
No I/O, no clock; the only anyio object is the readiness event.
"""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

import anyio

__all__ = ("ChunkQueue",)

C = TypeVar("C")


class ChunkQueue(Generic[C]):
    """Bounded FIFO of chunks of items; the oldest items are dropped when it is full.

    Args:
        max_items: the bound, in items.
        partial: cut the oldest chunk at its head instead of dropping it whole, and never drop
            the newest chunk (see the module docstring).
    """

    __slots__ = ("_ready", "chunks", "head", "max_items", "partial", "size")

    def __init__(self, max_items: int, *, partial: bool = False) -> None:
        self.max_items = max_items
        self.partial = partial
        #: the chunks not taken yet, with their item counts
        self.chunks: deque[tuple[C, int]] = deque()
        #: items already dropped or taken from the head of ``chunks[0]``
        self.head = 0
        #: items waiting
        self.size = 0
        self._ready = anyio.Event()

    def __len__(self) -> int:
        return self.size

    def put(self, chunk: C, count: int) -> int:
        """Append ``chunk`` (``count`` items); the number of oldest items dropped to stay within
        the bound."""
        if count <= 0:
            return 0
        self.chunks.append((chunk, count))
        self.size += count
        self._ready.set()
        if self.size <= self.max_items:
            return 0
        if not self.partial:
            dropped = 0
            while self.size > self.max_items and self.chunks:
                _, n = self.chunks.popleft()
                n -= self.head
                self.head = 0
                self.size -= n
                dropped += n
            return dropped
        limit = max(self.max_items, count)
        dropped = 0
        while self.size > limit:
            first = self.chunks[0][1] - self.head
            excess = self.size - limit
            if first <= excess:
                self.chunks.popleft()
                self.head = 0
                self.size -= first
                dropped += first
            else:
                self.head += excess
                self.size -= excess
                dropped += excess
        return dropped

    def take_chunk(self) -> tuple[C, int] | None:
        """The oldest chunk not taken yet and the offset of its first item still waiting (items
        before it were dropped or taken one by one), or ``None`` when empty."""
        if not self.chunks:
            return None
        chunk, count = self.chunks.popleft()
        head, self.head = self.head, 0
        self.size -= count - head
        return chunk, head

    def head_chunk(self) -> tuple[C, int] | None:
        """The oldest chunk and the offset of its next item, left in the queue (see
        :meth:`advance`), or ``None`` when empty."""
        if not self.chunks:
            return None
        return self.chunks[0][0], self.head

    def advance(self) -> None:
        """One item of the oldest chunk was taken (after :meth:`head_chunk`)."""
        self.head += 1
        self.size -= 1
        if self.head == self.chunks[0][1]:
            self.chunks.popleft()
            self.head = 0

    def clear(self) -> None:
        """Forget every chunk (not counted as dropped)."""
        self.chunks.clear()
        self.size = self.head = 0

    async def wait(self) -> None:
        """Wait until something is waiting (returns at once if it is)."""
        while not self.size:
            if self._ready.is_set():
                self._ready = anyio.Event()
            await self._ready.wait()
