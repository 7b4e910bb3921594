"""A change to a table with a long history: what one more change costs once a table has had many.

Run: ``.venv/bin/python -m bench.long_history [--history 1000] [--n 40] [--base OTHER_CHECKOUT]``

Starts ``schemasaga serve`` (in-process worker) on fresh databases (``bench.saga``'s), creates a table,
and gives it ``history`` completed changes (a column added, then removed, in turn; each asked with
``POST /v1/tables/{id}/columns?wait=`` and the removals with ``DELETE ...?wait=``, bench.http1's
client). Then it times ``n`` more changes, request to outcome, on that table and on a new table, in turn.
Every load of a table (each request that changes it, each saga) reads its newest snapshot and the events
since: what the table remembers (its columns, its operations in flight, what an undo of each completed
operation needs) is what each of its changes pays for.

``--base OTHER_CHECKOUT``: the same on that checkout's ``serve`` beside this one's, the timed changes
taking turns between them.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from contextlib import AsyncExitStack
from pathlib import Path

from bench.http1 import Http1
from bench.saga import fresh_databases, new_name, running_service


async def change(http: Http1, table_id: str, column: str, add: bool) -> None:
    if add:
        status, body = await http.post(
            f"/v1/tables/{table_id}/columns", {"name": column, "type": "integer"}, {"wait": 30}
        )
    else:
        status, body = await http.request("DELETE", f"/v1/tables/{table_id}/columns/{column}?wait=30")
    if status != 200 or body["status"] != "completed":
        raise RuntimeError(f"change of {table_id} answered {status}: {body}")


async def new_table(http: Http1) -> str:
    status, body = await http.post("/v1/tables", {"name": new_name("hist")}, {"wait": 30})
    if status != 200 or body["status"] != "completed":
        raise RuntimeError(f"create answered {status}: {body}")
    return str(body["table_id"])


async def main_async(args: argparse.Namespace) -> None:
    sides = [("this checkout", None)] + ([("base", args.base.resolve())] if args.base else [])
    async with AsyncExitStack() as stack:
        clients: dict[str, tuple[Http1, str, str]] = {}
        for label, checkout in sides:
            core, byodb = stack.enter_context(fresh_databases("hist"))
            executable = {} if checkout is None else {"executable": str(checkout / ".venv/bin/schemasaga")}
            service = await stack.enter_async_context(running_service(core, byodb, **executable))
            http = await stack.enter_async_context(Http1(service.base_url))
            old, fresh = await new_table(http), await new_table(http)
            started = time.perf_counter()
            for i in range(args.history):
                await change(http, old, f"h{i // 2}", add=i % 2 == 0)
            print(f"[{label}] {args.history} changes of one table in {time.perf_counter() - started:.1f} s")
            clients[label] = (http, old, fresh)
        times: dict[tuple[str, str], list[float]] = {}
        for i in range(2 * args.n):
            for label, (http, old, fresh) in clients.items():
                for which, table_id in (("long history", old), ("new table", fresh)):
                    start = time.perf_counter()
                    await change(http, table_id, f"t{i // 2}", add=i % 2 == 0)
                    times.setdefault((label, which), []).append(time.perf_counter() - start)
    for (label, which), values in times.items():
        print(
            f"[{label}] one more change, {which}: "
            f"p50 {1000 * statistics.median(values):.1f} ms (n={len(values)})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--history", type=int, default=1000, help="changes the long-history table has had")
    parser.add_argument("--n", type=int, default=40, help="timed changes of each kind (add, remove)")
    parser.add_argument("--base", type=Path, help="another checkout (with its .venv) beside this one")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
