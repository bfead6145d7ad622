"""The admin HTTP API under /admin/v1: the device lifecycle for HMC's operators and their tools.

Every request needs `Authorization: Bearer <operator token>` (`gateway operator add NAME
--role ROLE`); a missing, wrong or disabled token gets 401 before anything else is looked at,
and a task the operator's roles do not allow gets 403, audited (gateway/ownership/operators.py).
The operator's name is the actor of every audit entry the request appends. Answers are JSON:
404 for an unknown device, 409 with the state machine's message for an impossible transition,
413 for a body over 64 KiB, 422 naming the field for a value that cannot be accepted (the
offending value is never echoed: it may be a subject reference). See docs/lifecycle.md.

Bodies are validated here rather than by FastAPI so a validation answer never carries the input.
The router keeps its own small connection pool, opened on the first admin request: admin work
never takes a connection from ingest's pool, and ingest never waits for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Header, Request
from fastapi.responses import Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from gateway.ownership import lifecycle, operators
from gateway.ownership.lifecycle import (
    TRANSITIONS,
    Action,
    Forbidden,
    InvalidRequest,
    LifecycleError,
    NewAssignment,
    TransitionRefused,
)
from gateway.ownership.operators import Principal, Task
from gateway.ownership.specs import DeviceId, DeviceType, HeartbeatSeconds, Name, Refusal
from gateway.settings import Settings
from gateway.store.connector import Store
from gateway.transports.http.body import read_limited
from gateway.transports.http.common import bearer, json_response

M = TypeVar("M", bound=BaseModel)
MAX_BODY = 65536


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RegisterIn(_In):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"id": "SCALE-10417", "type": "scale", "heartbeat_interval_s": 86400}]})
    id: DeviceId
    type: DeviceType
    model: Name | None = None
    heartbeat_interval_s: HeartbeatSeconds | None = None
    hub: DeviceId | None = None


class AssignIn(_In):
    model_config = ConfigDict(json_schema_extra={"examples": [{"assignments": [
        {"huvudman": "1480", "subject_ref": "opaque-ref-from-the-kommun",
         "legal_basis": "SoL", "kinds": ["weight"]}]}]})
    assignments: Annotated[list[NewAssignment], Field(min_length=1, max_length=10)] = Field(
        description="One per huvudman using the device's data (e.g. region HSL + kommun SoL)")
    valid_from: AwareDatetime | None = Field(None, description="Default: now")


class ReturnIn(_In):
    model_config = ConfigDict(json_schema_extra={"examples": [{}]})
    at: AwareDatetime | None = Field(None, description="When it was returned; default now")


class _Stores:
    """One small pool for admin requests, opened lazily in the serving event loop."""

    def __init__(self, dsn: str | None) -> None:
        self._dsn = dsn
        self._store: Store | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> Store | None:
        if self._store is None and self._dsn:
            async with self._lock:
                if self._store is None:
                    self._store = await Store.connect(
                        self._dsn, min_size=0, max_size=2, application_name="gateway-admin")
        return self._store


def _error(err: Refusal) -> Response:
    body: dict[str, Any] = {"error": str(err)}
    if isinstance(err, InvalidRequest):
        body["field"] = err.field
    if isinstance(err, TransitionRefused):
        body["state"] = err.state.value
        body["possible"] = [a.value for a in lifecycle.possible(err.state)]
    return json_response(err.status if isinstance(err, LifecycleError) else 400, body)


class BodyTooLarge(LifecycleError):
    status = 413

    def __init__(self) -> None:
        super().__init__(f"body: larger than {MAX_BODY} bytes")


async def _body(request: Request, model: type[M], *, optional: bool = False) -> M:
    raw = await read_limited(request, MAX_BODY)
    if raw is None:
        raise BodyTooLarge
    if optional and not raw.strip():
        raw = b"{}"
    try:
        return model.model_validate_json(raw)
    except ValidationError as err:
        raise InvalidRequest.from_validation(err) from None


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with its $defs inlined, for an OpenAPI request body."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return inline(defs[ref.removeprefix("#/$defs/")])
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    return inline(schema)  # type: ignore[no-any-return]


def _operation_id(task: Task) -> str:
    return f"{task.value}Device"


def _doc(task: Task, body: type[BaseModel] | None = None, *,
         required: bool = True) -> dict[str, Any]:
    """The OpenAPI of a step: its body, and links to the steps possible after it, taking the
    device from the answer (so a client, or schemathesis, can follow the lifecycle)."""
    doc: dict[str, Any] = {"operationId": _operation_id(task)}
    if body is not None:
        doc["requestBody"] = {"required": required,
                              "content": {"application/json": {"schema": _schema(body)}}}
    if task is not Task.SHOW:
        after = TRANSITIONS[Action(task.value)].target
        doc["responses"] = {"201" if task in (Task.REGISTER, Task.ASSIGN) else "200": {"links": {
            _operation_id(t): {"operationId": _operation_id(t),
                               "parameters": {"device_id": "$response.body#/device"}}
            for t in (Task.SHOW, *(Task(a.value) for a in lifecycle.possible(after)))}}}
    return doc


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "No valid, enabled operator token"},
    403: {"description": "The operator's roles do not allow it (audited)"},
    404: {"description": "Unknown device"},
    413: {"description": f"A body larger than {MAX_BODY} bytes"},
    409: {"description": "Impossible transition: the message says the state and what is possible"},
    422: {"description": "A value that cannot be accepted; `field` names it"},
}

Authorization = Annotated[str | None, Header()]


def lifecycle_router(settings: Settings) -> APIRouter:
    router = APIRouter(prefix="/admin/v1", tags=["admin"], responses=ERRORS)
    stores = _Stores(settings.database_url)

    async def guarded(authorization: str | None, task: Task, target: str,
                      work: Callable[[Store, Principal], Awaitable[Response]]) -> Response:
        store = await stores.get()
        if store is None:
            return json_response(503, {"error": "no database configured"})
        who = await operators.authenticate(store, bearer(authorization))
        if who is None:
            return json_response(401, {"error": "missing, invalid or disabled operator token"},
                         {"WWW-Authenticate": "Bearer"})
        try:
            who.check(task)
            return await work(store, who)
        except Forbidden as err:
            await operators.refused(store, who, task, target, err)
            return _error(err)
        except Refusal as err:
            return _error(err)

    async def answer(store: Store, who: Principal, outcome: lifecycle.LifecycleResult,
                     status: int = 200) -> Response:
        return json_response(status, {**outcome.as_json(), "view": await lifecycle.show(
            store, outcome.device, within=who.within)})

    @router.post("/devices", status_code=201, openapi_extra=_doc(Task.REGISTER, RegisterIn),
                 summary="Register a device (in stock); its credential is in the answer, once")
    async def register(request: Request, authorization: Authorization = None) -> Response:
        async def work(store: Store, who: Principal) -> Response:
            spec = await _body(request, RegisterIn)
            outcome = await lifecycle.register(store, spec.id, spec.type, spec.model,
                                               spec.heartbeat_interval_s, spec.hub,
                                               actor=who.actor)
            return await answer(store, who, outcome, 201)
        return await guarded(authorization, Task.REGISTER, "-", work)

    @router.get("/devices/{device_id}", openapi_extra=_doc(Task.SHOW),
                summary="A device: state, credential, hub, assignments")
    async def show(device_id: str, authorization: Authorization = None) -> Response:
        async def work(store: Store, who: Principal) -> Response:
            return json_response(200, await lifecycle.show(store, device_id, within=who.within))
        return await guarded(authorization, Task.SHOW, device_id, work)

    @router.post("/devices/{device_id}/assignments", status_code=201,
                 openapi_extra=_doc(Task.ASSIGN, AssignIn),
                 summary="Assign an in-stock device (a reissue after reconditioning)")
    async def assign(device_id: str, request: Request,
                     authorization: Authorization = None) -> Response:
        async def work(store: Store, who: Principal) -> Response:
            spec = await _body(request, AssignIn)
            outcome = await lifecycle.assign(store, device_id, spec.assignments,
                                             spec.valid_from, actor=who.actor,
                                             within=who.within)
            return await answer(store, who, outcome, 201)
        return await guarded(authorization, Task.ASSIGN, device_id, work)

    @router.post("/devices/{device_id}/return",
                 openapi_extra=_doc(Task.RETURN, ReturnIn, required=False),
                 summary="Return (återlämning): every open assignment ends at `at`")
    async def return_device(device_id: str, request: Request,
                            authorization: Authorization = None) -> Response:
        async def work(store: Store, who: Principal) -> Response:
            spec = await _body(request, ReturnIn, optional=True)
            return await answer(store, who, await lifecycle.return_device(
                store, device_id, spec.at, actor=who.actor, within=who.within))
        return await guarded(authorization, Task.RETURN, device_id, work)

    def simple(task: Task, summary: str,
               operation: Callable[..., Awaitable[lifecycle.LifecycleResult]]) -> None:
        """An HMC-only step (no integrator has these tasks, so `within` never applies)."""
        async def endpoint(device_id: str, authorization: Authorization = None) -> Response:
            async def work(store: Store, who: Principal) -> Response:
                return await answer(store, who, await operation(store, device_id,
                                                                actor=who.actor))
            return await guarded(authorization, task, device_id, work)
        endpoint.__name__ = task.value
        router.post(f"/devices/{{device_id}}/{task.value}", openapi_extra=_doc(task),
                    summary=summary)(endpoint)

    simple(Task.RECONDITION, "Recondition (rekonditionering): unbind everything, rotate the "
           "credential (the new one is in the answer, once)", lifecycle.recondition)
    simple(Task.READY, "Reconditioning done: back in stock", lifecycle.ready)
    simple(Task.RETIRE, "Retire: the credential is removed; history stays", lifecycle.retire)
    return router
