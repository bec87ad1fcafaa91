"""`Batcher`: calls made together share one write; each caller gets its own outcome."""

from __future__ import annotations

import asyncio
import threading

import pytest

from pvoq.manager.batching import Batcher


class TestBatcher:
    def test_calls_made_together_share_one_write_each_its_own_result(self) -> None:
        batches: list[list[int]] = []
        gate = threading.Event()

        def write(items: list[int]) -> list[int | Exception]:
            if not batches:
                assert gate.wait(10)  # the first batch is slow: the others queue up
            batches.append(items)
            return [i * 10 for i in items]

        batcher: Batcher[int, int] = Batcher(write)

        async def main() -> list[int]:
            first = asyncio.ensure_future(batcher.submit(1))
            await asyncio.sleep(0.05)
            rest = [asyncio.ensure_future(batcher.submit(i)) for i in range(2, 7)]
            await asyncio.sleep(0.05)
            gate.set()
            return await asyncio.gather(first, *rest)
        assert asyncio.run(main()) == [10, 20, 30, 40, 50, 60]
        assert batches == [[1], [2, 3, 4, 5, 6]]

    def test_a_failed_item_fails_only_its_caller(self) -> None:
        def write(items: list[int]) -> list[int | Exception]:
            return [ValueError(f"item {i} is bad") if i == 3 else i for i in items]

        batcher: Batcher[int, int] = Batcher(write)

        async def main() -> list[int | BaseException]:
            return await asyncio.gather(*(batcher.submit(i) for i in range(1, 6)),
                                        return_exceptions=True)
        results = asyncio.run(main())
        assert results[:2] == [1, 2] and results[3:] == [4, 5]
        assert isinstance(results[2], ValueError) and "item 3" in str(results[2])

    def test_a_failed_batch_fails_its_callers_and_the_next_batch_goes_on(self) -> None:
        calls: list[list[int]] = []

        def write(items: list[int]) -> list[int | Exception]:
            calls.append(items)
            if len(calls) == 1:
                raise OSError(5, "Input/output error")
            return list(items)

        batcher: Batcher[int, int] = Batcher(write)

        async def main() -> int:
            with pytest.raises(OSError):
                await batcher.submit(1)
            return await batcher.submit(2)
        assert asyncio.run(main()) == 2
        assert calls == [[1], [2]]

    def test_batches_are_bounded(self) -> None:
        sizes: list[int] = []

        def write(items: list[int]) -> list[int | Exception]:
            sizes.append(len(items))
            return list(items)

        batcher: Batcher[int, int] = Batcher(write, max_batch=4)

        async def main() -> list[int]:
            return await asyncio.gather(*(batcher.submit(i) for i in range(10)))
        assert asyncio.run(main()) == list(range(10))
        assert max(sizes) <= 4 and sum(sizes) == 10
