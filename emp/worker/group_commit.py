"""Group commit: the completes of a process's slots go to Redis together, one call for many of them.

A slot that finished its job hands its :class:`Completion` to :meth:`GroupCommit.complete` and waits
for its own :class:`Outcome` (with its next claim). Up to ``max_in_flight`` (2) calls are in flight
per process, each with up to ``max_batch`` entries:

- a call can go: the slot sends at once, after one event-loop turn (so the slots that finish in
  the same turn ride along). A process that is not busy adds no latency.
- ``max_in_flight`` calls in flight: the slots that finish meanwhile queue up, and the next call
  takes them all (up to ``max_batch``).

So the batch size follows the load: one entry when jobs finish apart, many when they finish
together; the fixed cost of a call (a round trip, FCALL's own cost, the event loop's send) is paid
once per batch. Two calls in flight with batches of half the slots keep Redis and the process busy
at the same time (while Redis runs one batch, the process runs the jobs the other claimed) instead
of taking turns. There is no timer and no background task: the slot that finds room sends the
queue itself (it "leads"); the others wait for a call to end.

Each entry keeps every guarantee of a single complete (``emp_complete_many`` fences and answers
per entry). ``send`` retries transient errors with the same entries (each is idempotent: ALREADY
and the same next claim by request id); any other error is raised to every slot of that batch.
Entries of different slots are independent (each its own worker), so two calls in flight may
reach Redis in either order.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import anyio
import anyio.lowlevel

from emp.redis.calls import Completion, Outcome

Send = Callable[[Sequence[Completion]], Awaitable[list[Outcome]]]


class _Entry:
    __slots__ = ("completion", "sent", "outcome", "error")

    def __init__(self, completion: Completion) -> None:
        self.completion = completion
        self.sent = False  # in a call now (or done)
        self.outcome: Outcome | None = None
        self.error: Exception | None = None


class GroupCommit:
    def __init__(self, send: Send, max_in_flight: int = 2, max_batch: int = 64) -> None:
        self._send = send
        self.max_in_flight = max_in_flight
        self.max_batch = max_batch
        self._queue: list[_Entry] = []
        self._in_flight = 0
        self._call_ended = anyio.Event()
        self.calls = 0
        """Calls made (each carries one batch); with :attr:`entries`, the mean batch size."""
        self.entries = 0

    @property
    def queued(self) -> int:
        """Completions waiting for a call."""
        return len(self._queue)

    async def complete(self, completion: Completion) -> Outcome:
        """Queue this completion and return its outcome once a call carried it."""
        entry = _Entry(completion)
        self._queue.append(entry)
        while entry.outcome is None:
            if entry.error is not None:
                raise entry.error
            if entry.sent or self._in_flight >= self.max_in_flight:
                await self._call_ended.wait()
                continue
            await self._lead(entry)
        return entry.outcome

    async def _lead(self, own: _Entry) -> None:
        """Send what is queued (the caller's entry included) in one call."""
        self._in_flight += 1
        batch: list[_Entry] = []
        try:
            if self.max_batch > 1 and len(self._queue) < self.max_batch:
                # One loop turn: the slots finishing in this same turn join the batch.
                await anyio.lowlevel.checkpoint()
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
            if not batch:  # another call took them during that turn
                return
            for entry in batch:
                entry.sent = True
            outcomes = await self._send([e.completion for e in batch])
            self.calls += 1
            self.entries += len(batch)
            for entry, outcome in zip(batch, outcomes, strict=True):
                entry.outcome = outcome
        except Exception as exc:
            for entry in batch:
                entry.error = exc
        except BaseException:
            # Cancelled mid-call: the other slots' entries go back in front of the queue and whoever
            # sends next sends them again (a repeated entry is idempotent).
            if own in self._queue:
                self._queue.remove(own)
            again = [e for e in batch if e.outcome is None and e is not own]
            for entry in again:
                entry.sent = False
            self._queue[:0] = again
            raise
        finally:
            self._in_flight -= 1
            ended, self._call_ended = self._call_ended, anyio.Event()
            ended.set()
