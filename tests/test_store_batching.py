"""`Batcher` (the stores' batched reads, the example app's group commit): each caller keeps its own answer."""

from __future__ import annotations

import anyio

from fastapi_connect_auth.stores import Batcher


def test_callers_arriving_together_share_one_run_and_get_their_own_results() -> None:
    batches: list[list[int]] = []

    async def square(items: list[int]) -> list[int]:
        batches.append(items)
        await anyio.sleep(0.01)  # the next callers arrive while this run is in flight
        return [item * item for item in items]

    async def main() -> list[int]:
        batcher = Batcher(square)
        results = [0] * 10

        async def call(index: int) -> None:
            results[index] = await batcher.submit(index)

        async with anyio.create_task_group() as group:
            for index in range(10):
                group.start_soon(call, index)
        return results

    assert anyio.run(main) == [index * index for index in range(10)]
    assert sorted(item for batch in batches for item in batch) == list(range(10))
    assert len(batches) < 10  # grouped: a lone first caller, then the rest together


def test_a_failed_run_fails_every_caller_in_it_and_the_next_run_still_happens() -> None:
    async def refuse_odd(items: list[int]) -> list[int]:
        await anyio.sleep(0.01)
        if any(item % 2 for item in items):
            raise RuntimeError("database unavailable")
        return items

    async def main() -> tuple[list[str], int]:
        batcher = Batcher(refuse_odd)
        failures: list[str] = []

        async def call(item: int) -> None:
            try:
                await batcher.submit(item)
            except RuntimeError as exc:
                failures.append(str(exc))

        async with anyio.create_task_group() as group:
            for item in (1, 2, 3):
                group.start_soon(call, item)
        return failures, await batcher.submit(4)

    failures, later = anyio.run(main)
    assert failures == ["database unavailable"] * 3  # 1 alone, then 2 and 3 together: every caller told
    assert later == 4


def test_a_caller_that_gives_up_does_not_disturb_the_others() -> None:
    async def echo(items: list[str]) -> list[str]:
        await anyio.sleep(0.02)
        return items

    async def main() -> str:
        batcher = Batcher(echo)
        with anyio.move_on_after(0.005):
            await batcher.submit("abandoned")
        return await batcher.submit("kept")

    assert anyio.run(main) == "kept"


def test_batches_are_bounded() -> None:
    sizes: list[int] = []

    async def count(items: list[int]) -> list[int]:
        sizes.append(len(items))
        await anyio.sleep(0.001)
        return items

    async def main() -> None:
        batcher = Batcher(count, max_batch=3)
        async with anyio.create_task_group() as group:
            for item in range(10):
                group.start_soon(batcher.submit, item)

    anyio.run(main)
    assert sum(sizes) == 10
    assert max(sizes) == 3


def test_run_can_fail_one_item_and_only_its_caller_gets_the_error() -> None:
    async def refuse_three(items: list[int]) -> list[int | Exception]:
        await anyio.sleep(0.01)
        return [ValueError(f"refused {item}") if item == 3 else item for item in items]

    async def main() -> dict[int, int | str]:
        batcher = Batcher(refuse_three)
        outcomes: dict[int, int | str] = {}

        async def call(item: int) -> None:
            try:
                outcomes[item] = await batcher.submit(item)
            except ValueError as exc:
                outcomes[item] = str(exc)

        async with anyio.create_task_group() as group:
            for item in range(1, 6):
                group.start_soon(call, item)
        return outcomes

    assert anyio.run(main) == {1: 1, 2: 2, 3: "refused 3", 4: 4, 5: 5}
