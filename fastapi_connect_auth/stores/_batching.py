"""Group the database calls that arrive together into one: batched reads and group commit.

The stores read the tenants whose credentials are wanted at the same moment in one
query; the example app inserts the events that arrive together in one transaction.
Under a burst of webhooks each request reads its tenant and writes its event. Done
one by one, every call pays the driver's round trips (for aiosqlite, thread hops)
and every write its own commit. `Batcher` runs one call for all the items that
arrived while the previous call was in flight: a lone request goes straight
through, and under load the batches grow by themselves. Each caller still waits
for its own item: a webhook is answered only once its batch is committed, and a
failed batch fails every caller in it (the app answers 503, the product retries).
`run` may instead answer one item with an exception, which only its caller gets.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["Batcher"]

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")


class Batcher(Generic[ItemT, ResultT]):
    """`await batcher.submit(item)`: `run(items)` returns one result (or exception) per item, in order.

    ```python
    inserts = Batcher(insert_all)  # async def insert_all(rows: list[Row]) -> list[None]
    await inserts.submit(row)  # answered once the batch holding it is committed
    ```
    """

    def __init__(
        self, run: Callable[[list[ItemT]], Awaitable[Sequence[ResultT | Exception]]], *, max_batch: int = 256
    ) -> None:
        self._run = run
        self._max_batch = max_batch
        self._pending: list[tuple[ItemT, asyncio.Future[ResultT]]] = []
        self._draining: asyncio.Task[None] | None = None

    async def submit(self, item: ItemT) -> ResultT:
        """Wait for `item`'s own result, run with whatever else arrived meanwhile."""
        future: asyncio.Future[ResultT] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._draining is None:
            self._draining = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
                try:
                    results = await self._run([item for item, _ in batch])
                except Exception as exc:  # every caller of the batch gets the error
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():  # a caller that gave up (its client left) is skipped
                        continue
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self._draining = None
