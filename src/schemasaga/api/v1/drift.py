from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from schemasaga.api.deps import Metadata, Tables

if TYPE_CHECKING:
    from schemasaga.bootstrap import Container

router = APIRouter(tags=["drift"])


class ReconcileRequest(BaseModel):
    strategy: Literal["repair", "adopt"]


@router.get("/v1/databases/{name}/drift")
async def database_drift(name: str, request: Request) -> dict[str, Any]:
    """Compare every settled table's confirmed metadata with the live schema of database ``name``."""
    container: Container = request.app.state.container
    report = await container.drift.scan(name)
    return report.to_dict()


@router.post("/v1/tables/{table_id}/reconcile", status_code=202)
async def reconcile(
    table_id: UUID, body: ReconcileRequest, tables: Tables, meta: Metadata, response: Response
) -> dict[str, Any]:
    """Queue a reconciliation: ``repair`` the physical table, or ``adopt`` its live schema."""
    accepted = await tables.reconcile(table_id=table_id, strategy=body.strategy, metadata=meta)
    url = f"/v1/operations/{accepted.operation_id}"
    response.headers["Location"] = url
    return {
        "status": "accepted",
        "table_id": str(table_id),
        "operation_id": str(accepted.operation_id),
        "operation_url": url,
    }
