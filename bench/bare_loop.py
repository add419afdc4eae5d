"""The yardstick for bulksend's throughput: the least a client can do.

One aiohttp ClientSession, C workers pulling from one list of payloads, each
POSTing ``/request`` with a hand-built ``Authorization: Basic base64(":"+key)``
header and reading the answer. Nothing else: no mapping, no journal, no rate
gate, no retries, no results file.

    python bench/bare_loop.py --url http://127.0.0.1:PORT/v1 --key K \\
        --payloads payloads.jsonl --concurrency 16 [--out result.json]

The payloads file holds one JSON object per line (bench.py writes it next to the
contacts CSV: the very bodies bulksend's mapping produces). Prints (and writes
with --out) a JSON object: rows, elapsed_seconds (first POST to last answer,
payload loading excluded), rows_per_second and the HTTP statuses seen.
Run by bench.py as its own process, so it gets a core of its own like bulksend.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
import time
from collections import Counter
from urllib.parse import urlsplit

import aiohttp


async def run(url: str, key: str, payloads: list[dict], concurrency: int, per_request: float) -> dict:
    host = urlsplit(url).hostname or ""
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"bare_loop: refusing a non-loopback URL: {url}")
    headers = {
        "Authorization": "Basic " + base64.b64encode(b":" + key.encode()).decode("ascii"),
        "Content-Type": "application/json",
        "Accept": "application/json",
    }
    statuses: Counter[str] = Counter()
    it = iter(payloads)
    endpoint = url.rstrip("/") + "/request"
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(
        connector=connector, headers=headers, timeout=aiohttp.ClientTimeout(total=per_request)
    ) as session:

        async def worker() -> None:
            for payload in it:  # one shared iterator: bounded by len(payloads)
                try:
                    async with session.post(endpoint, data=json.dumps(payload).encode()) as resp:
                        await resp.read()
                        statuses[str(resp.status)] += 1
                except (aiohttp.ClientError, TimeoutError) as exc:
                    statuses[type(exc).__name__] += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {
        "rows": len(payloads),
        "elapsed_seconds": round(elapsed, 4),
        "rows_per_second": round(len(payloads) / elapsed, 1) if elapsed > 0 else None,
        "statuses": dict(statuses),
        "concurrency": concurrency,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True, help="sandbox base URL ending in /v1 (loopback only)")
    ap.add_argument("--key", required=True, help="the sandbox's API key")
    ap.add_argument("--payloads", required=True, help="JSON lines file, one request body a line")
    ap.add_argument("--concurrency", "-c", type=int, default=16)
    ap.add_argument("--timeout", type=float, default=30.0, help="per request, seconds")
    ap.add_argument("--out", help="also write the result JSON here")
    args = ap.parse_args()
    with open(args.payloads, encoding="utf-8") as f:
        payloads = [json.loads(line) for line in f if line.strip()]
    result = asyncio.run(run(args.url, args.key, payloads, args.concurrency, args.timeout))
    text = json.dumps(result)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    print(text)
    answered = sum(n for status, n in result["statuses"].items() if status.startswith("2"))
    sys.exit(0 if answered == len(payloads) else 1)  # every row answered 2xx (200, or a 201)


if __name__ == "__main__":
    main()
