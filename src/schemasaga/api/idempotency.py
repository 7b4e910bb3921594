"""``Idempotency-Key`` on POST, PATCH and DELETE: a retry answers what the first request answered.

Two halves. :func:`claim_key`, run by the caller dependency of every write route
(:data:`IdempotentWriter`, :data:`IdempotentAdmin`) once the token is known and before its scope is
checked, looks the key up (the caller's keys only) and replays the stored answer, refuses a key that answered
another request (422 ``idempotency_key_reused``), or binds a claim for the unit of work (which takes
the key in the transaction of the request's events: see ``services/idempotency.py``). The
:class:`IdempotencyRecorder` middleware then stores a successful answer with its key, and, when a
request lost a race to a concurrent one with the same key (its unit of work found the key taken, or
its command was refused by what the other one did), answers what the other one answered.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import time
from typing import Annotated

from fastapi import Depends, FastAPI, Header, Request
from fastapi.params import Depends as DependsParam
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from schemasaga.api.deps import authenticate, get_services
from schemasaga.api.errors import error_response, status_of
from schemasaga.domain.access import Caller
from schemasaga.domain.access import Scope as TokenScope
from schemasaga.domain.errors import IdempotencyKeyInFlight, IdempotencyKeyReused, InvalidIdempotencyKey
from schemasaga.services import idempotency
from schemasaga.services.idempotency import Claim, IdempotencyStore, StoredAnswer

log = logging.getLogger(__name__)

HEADER = "idempotency-key"
REPLAYED = "idempotency-replayed"
WRITES = frozenset({"POST", "PATCH", "DELETE"})
_KEY = re.compile(r"[!-~]{1,255}")
# The headers of an answer that are stored and replayed with it.
_KEPT_HEADERS = ("content-type", "location", "etag", "cache-control")
# How long a request waits for the answer of another one holding its key, polling.
ANSWER_WAIT_SECONDS = 10.0
_POLL_SECONDS = 0.05
# Expired keys are purged by the processes that answer requests, at most this often each.
PURGE_EVERY_SECONDS = 600.0
_STATE = "idempotency"
SECRET_FIELDS = "idempotency_secret_fields"


class Replay(Exception):
    """Answer the stored answer (raised by the dependency, answered by :func:`replay_response`)."""

    def __init__(self, answer: StoredAnswer) -> None:
        super().__init__("replay")
        self.answer = answer


def replay_response(answer: StoredAnswer) -> Response:
    assert answer.status is not None and answer.body is not None
    headers = {**answer.headers, REPLAYED: "true"}
    return Response(answer.body, status_code=answer.status, headers=headers)


def fingerprint(method: str, path: str, query: str, body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode(), query.encode(), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def principal_of(caller: Caller) -> str:
    """Whose keys: the token's name; ``-`` when no token is required (every caller may do everything)."""
    return caller.name or "-"


async def settled(store: IdempotencyStore, claim: Claim, found: StoredAnswer) -> StoredAnswer:
    """The answer of the key ``found`` holds, once stored; IdempotencyKeyReused when it answered another
    request, IdempotencyKeyInFlight when no answer is stored within ANSWER_WAIT_SECONDS."""
    deadline = time.monotonic() + ANSWER_WAIT_SECONDS
    answer: StoredAnswer | None = found
    while True:
        if answer is not None and answer.fingerprint != claim.fingerprint:
            raise IdempotencyKeyReused(
                "this Idempotency-Key answered another request (another method, path, query or body) "
                "within the last 24 hours; use a new key for a new request"
            )
        if answer is not None and answer.status is not None:
            return answer
        if time.monotonic() > deadline:
            operation = f" (operation {answer.operation_id})" if answer and answer.operation_id else ""
            raise IdempotencyKeyInFlight(
                f"another request with this Idempotency-Key was accepted{operation} and its answer is not "
                "recorded yet; ask again"
            )
        await asyncio.sleep(_POLL_SECONDS)
        answer = await store.find(claim.principal, claim.key)
        if answer is None:  # it expired or was purged meanwhile: nothing to answer from
            raise IdempotencyKeyInFlight("the request holding this Idempotency-Key left no answer; ask again")


KeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="1 to 255 visible ASCII characters, new for each request: a retry with the same "
        "key and the same request answers what the first one answered (kept 24 h); the same key with "
        "another request is 422 `idempotency_key_reused`",
    ),
]


async def claim_key(request: Request, caller: Caller, idempotency_key: str | None) -> None:
    """Replay the stored answer of the caller's key (raises :class:`Replay`), refuse a key that answered
    another request, or bind the claim for the request's unit of work; nothing without a key."""
    if idempotency_key is None or request.method not in WRITES:
        return
    if not _KEY.fullmatch(idempotency_key):
        raise InvalidIdempotencyKey("Idempotency-Key must be 1 to 255 visible ASCII characters")
    body = await request.body()
    claim = Claim(
        principal=principal_of(caller),
        key=idempotency_key,
        fingerprint=fingerprint(request.method, request.url.path, request.url.query, body),
    )
    store = (await get_services(request)).idempotency
    found = await store.find(claim.principal, claim.key)
    if found is not None:
        raise Replay(await settled(store, claim, found))
    setattr(request.state, _STATE, claim)
    idempotency.current.set(claim)


async def idempotent(
    request: Request, caller: Annotated[Caller, Depends(authenticate)], idempotency_key: KeyHeader = None
) -> None:
    await claim_key(request, caller, idempotency_key)


IDEMPOTENT: list[DependsParam] = [Depends(idempotent)]
"""The ``dependencies`` of a write route that takes its caller some other way than the two below."""


# A write route's caller, its key and its scope in one dependency: the key first (as a route-level
# dependency would), then the scope. One node of FastAPI's dependency tree where there were three
# (the key's, the scope's, and their shared token's walked once more under each): FastAPI walks the
# tree on every request, cached dependencies included, at about 40 us a node.
async def idempotent_writer(
    request: Request, caller: Annotated[Caller, Depends(authenticate)], idempotency_key: KeyHeader = None
) -> Caller:
    await claim_key(request, caller, idempotency_key)
    caller.require(TokenScope.WRITE)
    return caller


async def idempotent_admin(
    request: Request, caller: Annotated[Caller, Depends(authenticate)], idempotency_key: KeyHeader = None
) -> Caller:
    await claim_key(request, caller, idempotency_key)
    caller.require(TokenScope.ADMIN, every_database=True)
    return caller


IdempotentWriter = Annotated[Caller, Depends(idempotent_writer)]
"""A ``write`` token's caller, with ``Idempotency-Key`` honoured (``deps.Writer`` plus IDEMPOTENT)."""
IdempotentAdmin = Annotated[Caller, Depends(idempotent_admin)]
"""An ``admin`` token limited to no database, with ``Idempotency-Key`` honoured (``deps.Admin`` plus
IDEMPOTENT)."""


def _redacted(body: bytes, fields: tuple[str, ...]) -> bytes:
    """The answer as stored: ``fields`` (a secret shown once, like a new token) set to null."""
    try:
        document = json.loads(body)
    except ValueError:
        return body
    if isinstance(document, dict):
        for name in fields:
            if name in document:
                document[name] = None
    return json.dumps(document, separators=(",", ":")).encode()


class IdempotencyRecorder:
    """Pure ASGI. Buffers the answer of a write request that carries a key (answers are small JSON)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._next_purge = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # The claim the dependency binds is this request's only, even where requests share a context (an
        # ASGI server that runs them in one task).
        bound = idempotency.current.set(None)
        try:
            await self._answer(scope, receive, send)
        finally:
            idempotency.current.reset(bound)

    async def _answer(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] not in WRITES or not any(
            name == HEADER.encode() for name, _ in scope.get("headers", ())
        ):
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []

        async def keep(message: Message) -> None:
            messages.append(message)

        await self.app(scope, receive, keep)
        state = scope.get("state") or {}
        claim: Claim | None = state.get(_STATE)
        start = next((m for m in messages if m["type"] == "http.response.start"), None)
        if claim is None or start is None:
            for message in messages:
                await send(message)
            return
        store: IdempotencyStore = scope["app"].state.services.idempotency
        status = int(start["status"])
        body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
        if 200 <= status < 300:
            headers = {
                name.decode("latin-1"): value.decode("latin-1")
                for name, value in start.get("headers", ())
                if name.decode("latin-1").lower() in _KEPT_HEADERS
            }
            secret = tuple(state.get(SECRET_FIELDS, ()))
            try:
                await store.record_answer(
                    claim, status=status, headers=headers, body=_redacted(body, secret) if secret else body
                )
                await self._purge(store)
            except Exception as exc:  # the request succeeded: say so; a retry is told to ask again (409)
                log.warning("the answer of an idempotent request could not be recorded: %s", exc)
            for message in messages:
                await send(message)
            return
        # Refused: perhaps because a concurrent request with the same key got there first (its unit of
        # work held the key, or what it did made this one invalid): then answer what it answered.
        path = str(scope.get("path", ""))
        try:
            found = await store.find(claim.principal, claim.key)
            response = None if found is None else replay_response(await settled(store, claim, found))
        except (IdempotencyKeyReused, IdempotencyKeyInFlight) as exc:
            response = error_response(status_of(exc), exc.code, exc.message, path=path)
        except Exception as exc:  # the core database is gone too (a 503, say): the refusal stands
            log.info("the key of a refused request could not be looked up: %s", exc)
            response = None
        if response is None:
            for message in messages:
                await send(message)
            return
        await response(scope, receive, send)

    async def _purge(self, store: IdempotencyStore) -> None:
        now = time.monotonic()
        if now >= self._next_purge:
            self._next_purge = now + PURGE_EVERY_SECONDS
            await store.purge_expired()


def install_idempotency(app: FastAPI) -> None:
    """The replay of a stored answer, and the recorder; add it before the request context's middleware
    (a replay carries its own request id)."""

    @app.exception_handler(Replay)
    async def replay(_: Request, exc: Replay) -> Response:
        return replay_response(exc.answer)

    app.add_middleware(IdempotencyRecorder)
