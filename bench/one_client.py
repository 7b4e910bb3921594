"""One client, request to outcome (issue 12's "p50 <= 20 ms"), three ways interleaved on one service.

Run: ``.venv/bin/python -m bench.one_client [--n 150]``

Starts ``schemasaga serve`` (in-process worker) on a fresh core database and BYODB (``bench.saga``'s) and
creates tables one at a time, the three ways taking turns saga by saga so that the machine's moods fall on
all of them alike:

  * ``httpx``: ``POST /table/create`` then ``GET /v1/operations/{id}?wait=10`` with httpx (bench.saga's
    one-client ``?wait=`` case);
  * ``http1``: the same two requests with bench.http1's minimal client, which leaves out httpx's own
    cost (about 1.3 ms a request here; ``python -m bench.http1``);
  * ``http1, one request``: ``POST /v1/tables?wait=10``, the API's way to ask for a change and its
    outcome in one exchange.

Prints each way's p50/p90 and the median of the per-round differences against ``http1``.

``--base OTHER_CHECKOUT``: an A/B instead. Both checkouts' ``serve`` run at once (each on fresh databases
of its own) and take turns saga by saga (``http1``, create then ``GET ?wait=``), so that both see the same
machine; prints both p50s and the median of the paired differences (this checkout minus the base).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from bench.http1 import Http1
from bench.saga import create, create_and_wait, fresh_databases, new_name, running_service


async def measure(n: int, warm: int) -> dict[str, list[float]]:
    with fresh_databases("one") as (core, byodb):
        async with (
            running_service(core, byodb) as service,
            httpx.AsyncClient(base_url=service.base_url, timeout=30) as client,
            Http1(service.base_url) as http,
        ):

            async def with_httpx() -> None:
                _table_id, op = await create(client, new_name("hx"))
                r = await client.get(f"/v1/operations/{op}", params={"wait": 10})
                if r.json()["status"] != "completed":
                    raise RuntimeError(f"operation {op} not completed: {r.text}")

            async def with_http1() -> None:
                await create_and_wait(http, "h1")

            async def one_request() -> None:
                status, body = await http.post("/v1/tables", {"name": new_name("h1w")}, {"wait": 10})
                if status != 200 or body["status"] != "completed":
                    raise RuntimeError(f"POST /v1/tables?wait= answered {status}: {body}")

            ways: dict[str, Callable[[], Awaitable[None]]] = {
                "httpx": with_httpx,
                "http1": with_http1,
                "http1, one request": one_request,
            }
            times: dict[str, list[float]] = {name: [] for name in ways}
            for i in range(warm + n):
                for name, way in ways.items():
                    start = time.perf_counter()
                    await way()
                    if i >= warm:
                        times[name].append(time.perf_counter() - start)
                    await asyncio.sleep(0.01)
            return times


async def versus(base: Path, n: int, warm: int) -> dict[str, list[float]]:
    with fresh_databases("one_a") as (core_a, byodb_a), fresh_databases("one_b") as (core_b, byodb_b):
        async with (
            running_service(core_a, byodb_a) as this,
            running_service(core_b, byodb_b, executable=str(base / ".venv" / "bin" / "schemasaga")) as other,
            Http1(this.base_url) as http_this,
            Http1(other.base_url) as http_base,
        ):
            times: dict[str, list[float]] = {"this checkout": [], "base": []}
            for i in range(warm + n):
                order = [("this checkout", http_this), ("base", http_base)]
                for name, http in order if i % 2 else reversed(order):
                    start = time.perf_counter()
                    await create_and_wait(http, "ab")
                    if i >= warm:
                        times[name].append(time.perf_counter() - start)
                    await asyncio.sleep(0.01)
            return times


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=150, help="sagas per way")
    parser.add_argument("--warm", type=int, default=10, help="rounds left out at the start")
    parser.add_argument("--base", type=Path, help="another checkout (with its .venv): an A/B against it")
    args = parser.parse_args()
    if args.base is not None:
        times = asyncio.run(versus(args.base.resolve(), args.n, args.warm))
        reference = "base"
    else:
        times = asyncio.run(measure(args.n, args.warm))
        reference = "http1"
    base = times[reference]
    for name, values in times.items():
        ordered = sorted(values)
        p50 = 1000 * statistics.median(values)
        p90 = 1000 * ordered[int(0.9 * (len(ordered) - 1))]
        diff = 1000 * statistics.median(v - b for v, b in zip(values, base, strict=True))
        print(
            f"{name:20} n={len(values)} p50={p50:.1f} ms p90={p90:.1f} ms  "
            f"paired median vs {reference} {diff:+.2f} ms"
        )


if __name__ == "__main__":
    main()
