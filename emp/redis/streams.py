"""Reading the event streams: the global `events` stream and one job's `job:<id>:events`.

A view starts from ``Calls.snapshot()`` (which returns the stream id it is consistent with) and
then calls :func:`read_after` with that id. :func:`read_after` raises :class:`StreamGap` when the
stream no longer holds the entry after that id (it was trimmed, or Redis restarted and the stream
started over): the view must take a new snapshot. Redis itself gives no error in that case (an
XREAD from a trimmed id silently resumes at the oldest entry), so the check is made here.

Every read names one stream, so on a Redis Cluster it goes to the master of that stream's slot.
"""

from __future__ import annotations

from typing import Any

from emp.model.events import Event, decode_event
from emp.redis.client import RedisClient


class StreamGap(Exception):
    """Entries after the given id are gone: re-snapshot."""


def _id_tuple(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


async def read_after(
    client: RedisClient, stream: str, last_id: str, *, block_ms: int | None = None, count: int = 500
) -> list[Event]:
    """Events after ``last_id`` (blocking up to ``block_ms`` when there are none yet).

    Raises StreamGap when ``last_id`` (an entry this reader saw, or "0-0") is no longer in the
    stream: it was trimmed (entries after it may be gone too) or Redis restarted empty.
    Conservative on purpose: a needless re-snapshot costs one call, a missed gap shows lies.
    """
    if last_id not in ("0", "0-0"):
        first: Any = await client.xrange(stream, "-", "+", count=1)
        if not first or _id_tuple(str(first[0][0])) > _id_tuple(last_id):
            raise StreamGap(f"stream {stream} no longer holds {last_id}: re-snapshot")
    reply: Any = await client.xread({stream: last_id}, count=count, block=block_ms)
    if not reply:
        return []
    if last_id not in ("0", "0-0"):
        # A trim between the check above and the read (a writer trims as it appends) makes XREAD
        # resume silently at the oldest entry. The first entry only moves forward, so when the
        # stream still holds last_id now, it held it when XREAD ran: the entries read are whole.
        first = await client.xrange(stream, "-", "+", count=1)
        if not first or _id_tuple(str(first[0][0])) > _id_tuple(last_id):
            raise StreamGap(f"stream {stream} was trimmed past {last_id} while it was read: re-snapshot")
    entries: list[tuple[str, dict[str, str]]] = reply[0][1]
    return [decode_event({"id": eid, **fields}) for eid, fields in entries]
