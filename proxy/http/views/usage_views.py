"""What requests cost, read back: one request's record, and spend over a time range.

- `GET /v1/generation?id=<request id>`: one request's usage record in OpenRouter's generation shape
  (`{"data": {...}}`, `proxy.billing.usage_record.generation_json`; OpenRouter's
  https://openrouter.ai/docs/api-reference/get-a-generation). `id` is the proxy's request id, the
  `x-request-id` of the answer. It is answered to the client key that made the request (its key name
  matches the record's) or to the admin token; 404 otherwise, as for an id never seen, so a key
  learns nothing of another's requests. Without client keys (`FAILOVER_API_KEYS` unset) anyone who
  can reach the proxy may read it. A record is found a moment after its answer: the usage writer's
  pending batch and spool are looked in before the database.
- `GET /admin/usage?since=&until=&group_by=&key=`: requests, cost and tokens over [since, until)
  (ISO 8601 times, UTC when no offset is given; default: the last 24 hours) grouped by up to two of
  `key`, `model`, `provider`, `day` (default `key`), from the database (records reach it within
  `[usage] flush_s`). Admin token only. Costs are decimal text (`"0.0042"`), never rounded.

Errors are OpenAI-shaped: 400 names the bad parameter, 503 when the database is needed and away.
"""

from __future__ import annotations

import hmac
from datetime import UTC, datetime, timedelta

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from proxy.billing.usage_db import check_groups, fetch_usage, parse_time, spend, spend_json, totals
from proxy.billing.usage_record import UsageRecord, generation_json
from proxy.errors import Unauthorized
from proxy.http.answers import client_error, error_body
from proxy.http.gateway import Gateway
from proxy.http.identity import authorize, bearer_token
from proxy.http.views.admin import refusal as admin_refusal
from proxy.store.database import DATABASE_ERRORS

DEFAULT_RANGE = timedelta(hours=24)


def _error(status: int, message: str, error_type: str, code: str, param: str | None = None) -> Response:
    return Response(error_body(message, error_type, code, param), status_code=status, media_type="application/json")


def _not_found(request_id: str) -> Response:
    return _error(404, f"no generation with id {request_id[:100]!r} for this key", "invalid_request_error",
                  "not_found", "id")  # fmt: skip


def _is_admin(gateway: Gateway, request: Request) -> bool:
    token = gateway.config.admin_token
    presented = bearer_token(request.headers.get("authorization", "").encode("latin-1"))
    return token is not None and bool(presented) and hmac.compare_digest(presented, token.reveal().encode())


def caller_key_name(gateway: Gateway, request: Request) -> str:
    """The name of the client key the request presents ("" on a proxy without client keys);
    `Unauthorized` for a bad key."""
    return authorize(gateway.live.current, dict(request.scope["headers"]))


async def _record(gateway: Gateway, request_id: str) -> UsageRecord | None:
    """The record, from the writer (not yet written) and then the database; `DATABASE_ERRORS` propagate."""
    if gateway.usage is not None:
        found = await gateway.usage.find(request_id)
        if found is not None:
            return found
    if gateway.pool is None:
        return None
    return await fetch_usage(gateway.pool, request_id)


async def generation(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    request_id = request.query_params.get("id", "").strip()
    admin = _is_admin(gateway, request)
    key_name = ""
    if not admin:
        try:
            key_name = caller_key_name(gateway, request)
        except Unauthorized as exc:
            status, body = client_error(exc)
            return Response(body, status_code=status, media_type="application/json")
    if not request_id:
        return _error(400, "id is required: GET /v1/generation?id=<x-request-id of the answer>",
                      "invalid_request_error", "missing_id", "id")  # fmt: skip
    if gateway.usage is None:
        return _error(404, "usage records are off on this proxy (no database, or [usage] enabled = false)",
                      "invalid_request_error", "usage_records_off", "id")  # fmt: skip
    try:
        record = await _record(gateway, request_id)
    except DATABASE_ERRORS:
        return _error(503, "usage records are unavailable: the database does not answer; retry later",
                      "api_error", "database_unavailable")  # fmt: skip
    if record is None or not (admin or hmac.compare_digest(record.key_name, key_name)):
        return _not_found(request_id)
    return JSONResponse({"data": generation_json(record)})


async def admin_usage(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    if (refused := admin_refusal(gateway, request)) is not None:
        return refused
    params = request.query_params
    now = datetime.now(UTC)
    try:
        until = parse_time(params.get("until"), now, "until")
        since = parse_time(params.get("since"), until - DEFAULT_RANGE, "since")
        group_by = tuple(params.get("group_by", "key").split(","))
        check_groups(group_by)
    except ValueError as exc:
        param = str(exc).split(":", 1)[0] if str(exc).startswith(("since", "until")) else "group_by"
        return _error(400, str(exc), "invalid_request_error", "invalid_parameter", param)
    if gateway.pool is None:
        return _error(503, "usage needs the database, which is not configured or not reachable", "api_error",
                      "database_unavailable")  # fmt: skip
    try:
        rows = await spend(gateway.pool, since, until, group_by, params.get("key"))
    except DATABASE_ERRORS:
        return _error(503, "the database does not answer; retry later", "api_error", "database_unavailable")
    body = {
        "since": since.isoformat(),
        "until": until.isoformat(),
        "group_by": [g.strip() for g in group_by if g.strip()],
        "data": spend_json(rows),
        "totals": totals(rows),
    }
    return JSONResponse(body)
