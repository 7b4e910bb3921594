"""A Python client of schemasaga's ``/v1`` API, sync (:class:`Client`) and async (:class:`AsyncClient`) on
httpx, its answers typed by the API's own models (``schemasaga.api.models``)::

    from schemasaga.client import Client

    with Client("http://127.0.0.1:8000", token=None) as client:
        accepted = client.tables.create("people", columns=[{"name": "email", "type": "string"}])
        operation = client.operations.wait(accepted, timeout=60)
        table = client.tables.show(accepted.table_id)

An error answer raises :class:`SchemasagaError`, carrying the problem's fields (``status``, ``code``,
``title``, ``detail``, ``type``, ``details``).
"""

from schemasaga.client.aio import AsyncClient
from schemasaga.client.errors import SchemasagaError
from schemasaga.client.sync import Client

__all__ = ["AsyncClient", "Client", "SchemasagaError"]
