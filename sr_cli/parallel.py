"""A thread-pool map that yields results in input order, with a bounded number in flight.

Used by the streaming PNG encoder (png.py; tiff.py takes THREADS): zlib releases the GIL, so blocks deflate
in parallel while the results still come out in file order, and memory stays bounded.
"""
from __future__ import annotations

import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, TypeVar

THREADS = min(4, os.cpu_count() or 1)
Item = TypeVar("Item")
Result = TypeVar("Result")


def map_in_order(fn: Callable[[Item], Result], items: Iterable[Item], *, threads: int = THREADS) -> Iterator[Result]:
    """``map(fn, items)`` on ``threads`` threads: at most 2 x threads + 1 items in flight,
    results yielded in order as soon as the oldest is done."""
    with ThreadPoolExecutor(max_workers=threads) as pool:
        futures: deque = deque()
        for item in items:
            futures.append(pool.submit(fn, item))
            while futures and (len(futures) > 2 * threads or futures[0].done()):
                yield futures.popleft().result()
        while futures:
            yield futures.popleft().result()
