"""Keyset paging of every list: the cursor of the next page (``after``) in the answer's ``Link`` header
(``rel="next"``, RFC 8288), and in its ``next_after`` field when the answer is an object. No list is paged
with OFFSET: each page starts where the previous one ended, so rows added meanwhile are never seen twice
and no row that was there when the walk began is skipped."""

from __future__ import annotations

from typing import Annotated, TypeVar
from urllib.parse import urlencode

from fastapi import Query, Request, Response

T = TypeVar("T")

Limit = Annotated[int, Query(ge=1, le=1000, description="at most this many items (default 100)")]


def next_after(count: int, limit: int, last: T | None) -> T | None:
    """The ``after`` of the next page: the last item's cursor when the page is full, else None."""
    return last if count and count == limit else None


def link_next(request: Request, response: Response, after: object | None) -> None:
    """Say where the next page is: this request with ``after`` set (no header on the last page)."""
    if after is None:
        return
    params = [(k, v) for k, v in request.query_params.multi_items() if k != "after"]
    params.append(("after", str(after)))
    response.headers["Link"] = f'<{request.url.path}?{urlencode(params)}>; rel="next"'
