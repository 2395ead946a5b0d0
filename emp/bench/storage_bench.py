"""Upload throughput of the output sink against a plain obstore ``put`` of the same bytes.

``python -m emp.bench.storage_bench [--endpoint URL --bucket B] [--size-mb 1,8,32] [--repeat 5]``

Without ``--endpoint`` it starts a loopback S3-compatible server (moto in server mode, the dev
dependency the tests use) and a bucket of its own; with one, it uses that endpoint (MinIO, R2...) and
the ``AWS_*`` credentials of the environment. For each size it uploads the same random bytes
``repeat`` times three ways and prints the median MB/s of each:

- ``plain``: ``obstore.put_async(store, key, data)``, nothing else (the transport's own figure);
- ``sink``: :meth:`emp.storage.OutputSink.put` with bytes: the same put plus the sha256, the
  content type, the retention tag and the bookkeeping the worker does for every output;
- ``sink-stream``: the sink fed 1 MiB chunks (sha256 on the way, always multipart).

The difference between ``plain`` and ``sink`` is what emp adds per output. Loopback moto is far
slower than a real store (it is Python), so read the ratio, not the absolute MB/s.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio
import httpx
import obstore

from emp.storage import ObjectStorage, OutputOptions, OutputSink


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _median_mbps(upload: Callable[[int], Awaitable[object]], size: int, repeat: int) -> float:
    rates = []
    for i in range(repeat):
        start = time.perf_counter()
        await upload(i)
        rates.append(size / (time.perf_counter() - start) / 1e6)
    return statistics.median(rates)


async def measure(url: str, sizes_mb: list[float], repeat: int) -> list[dict[str, float]]:
    """One row per size: MB/s of plain put, sink put, and sink streamed put (medians)."""
    storage = ObjectStorage(url, OutputOptions())
    rows = []
    for size_mb in sizes_mb:
        size = int(size_mb * 1024 * 1024)
        data = os.urandom(size)
        run = uuid.uuid4().hex[:8]

        async def plain(i: int, data: bytes = data, run: str = run) -> object:
            return await obstore.put_async(
                storage.store, f"bench/{run}/plain-{i}", data, chunk_size=storage.options.chunk_bytes
            )

        async def sink(i: int, data: bytes = data, run: str = run) -> object:
            return await OutputSink(storage, f"bench-{run}", i).put("out.bin", data)

        async def stream(i: int, data: bytes = data, run: str = run) -> object:
            async def chunks() -> AsyncIterator[bytes]:
                for at in range(0, len(data), 1 << 20):
                    yield data[at : at + (1 << 20)]

            return await OutputSink(storage, f"bench-stream-{run}", i).put("out.bin", chunks())

        rows.append(
            {
                "size_mb": size_mb,
                "plain_mbps": await _median_mbps(plain, size, repeat),
                "sink_mbps": await _median_mbps(sink, size, repeat),
                "sink_stream_mbps": await _median_mbps(stream, size, repeat),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--endpoint", help="an S3-compatible endpoint (default: a loopback moto server)")
    parser.add_argument("--bucket", default="", help="bucket to use with --endpoint")
    parser.add_argument("--size-mb", default="1,8,32", help="comma list of output sizes in MiB")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    sizes = [float(s) for s in args.size_mb.split(",") if s.strip()]
    server = None
    if args.endpoint:
        if not args.bucket:
            parser.error("--bucket is required with --endpoint")
        os.environ["AWS_ENDPOINT_URL"] = args.endpoint
        bucket = args.bucket
    else:
        try:
            from moto.server import ThreadedMotoServer
        except ImportError:
            print("moto[server] is not installed (pip install -e '.[dev]'), or pass --endpoint", file=sys.stderr)
            return 2
        port = _free_port()
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        endpoint = f"http://127.0.0.1:{port}"
        os.environ.update(
            AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_REGION="us-east-1"
        )
        bucket = "emp-bench"
        httpx.put(f"{endpoint}/{bucket}").raise_for_status()  # moto takes an unsigned CreateBucket
    try:
        rows = anyio.run(measure, f"s3://{bucket}/emp-bench", sizes, args.repeat)
    finally:
        if server is not None:
            server.stop()
    print(f"{'size MiB':>9} {'plain MB/s':>11} {'sink MB/s':>10} {'stream MB/s':>12} {'sink/plain':>11}")
    for r in rows:
        ratio = r["sink_mbps"] / r["plain_mbps"]
        print(
            f"{r['size_mb']:>9g} {r['plain_mbps']:>11.1f} {r['sink_mbps']:>10.1f} "
            f"{r['sink_stream_mbps']:>12.1f} {ratio:>11.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
