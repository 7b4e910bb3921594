from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query

from schemasaga.api.deps import Tables
from schemasaga.api.models import OperationOut
from schemasaga.domain.errors import DomainError

router = APIRouter(prefix="/v1/operations", tags=["operations"])


class OperationNotFound(DomainError):
    code = "operation_not_found"
    status = 404


@router.get("/{operation_id}", response_model=OperationOut)
async def get_operation(operation_id: UUID, tables: Tables) -> dict[str, Any]:
    row = await tables.operation(operation_id)
    if row is None:
        raise OperationNotFound(f"no operation with id {operation_id}")
    return row


@router.get("", response_model=list[OperationOut])
async def list_operations(
    tables: Tables,
    table_id: UUID | None = None,
    status: Annotated[str | None, Query(pattern="^(pending|running|completed|rejected)$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    return await tables.operations(table_id=table_id, status=status, limit=limit)
