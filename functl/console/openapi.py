"""The OpenAPI 3.1 document of the v1 API, as data (served at /api/v1/openapi.json).

The request body of deploy and update is the function schema of functions.yaml itself
(functl/functions.schema.json, its ``$defs`` under ``components.schemas`` as ``fy_*``), so
the document cannot drift from what functl validates. tests/console checks that every route
of the app is here and every response matches its schema.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "functions.schema.json"
Json = dict[str, Any]


def _ref(name: str) -> Json:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(kind: str) -> Json:
    return {"type": [kind, "null"]}


def _object(required: list[str], **props: Json) -> Json:
    return {"type": "object", "required": required, "properties": props}


def _functions_yaml() -> dict[str, Json]:
    """functions.schema.json's definitions, their $refs pointed at components.schemas."""
    text = SCHEMA_FILE.read_text(encoding="utf-8").replace('"#/$defs/', '"#/components/schemas/fy_')
    return {f"fy_{k}": v for k, v in json.loads(text)["$defs"].items()}


NUM, INT, STR = {"type": "number"}, {"type": "integer"}, {"type": "string"}
POINT = _object(
    ["t", "invocations_per_s", "errors_per_s"],
    t={**NUM, "description": "seconds since the epoch"},
    invocations_per_s=NUM,
    errors_per_s={**NUM, "description": "error_reply, retry, dead_letter, malformed"},
    p50_ms=_nullable("number"),
    p99_ms=_nullable("number"),
    cold_start_s=_nullable("number"),
    in_flight=_nullable("number"),
    depth=_nullable("integer"),
    dead=_nullable("integer"),
    ready=_nullable("integer"),
    desired=_nullable("integer"),
)
BUS = {
    "type": ["object", "null"],
    "description": "the channel's figures; null when the bus cannot be reached",
    "required": ["depth", "in_flight", "delayed", "dead"],
    "properties": {"depth": INT, "in_flight": INT, "delayed": INT, "dead": INT},
}
ROW = _object(
    ["name", "topic", "channel", "origin", "replicas", "bus", "live"],
    name=STR,
    topic=STR,
    channel=STR,
    origin={"enum": ["file", "cluster", "dev"]},
    replicas=_object(
        ["ready", "desired"], ready=_nullable("integer"), desired=_nullable("integer")
    ),
    bus=BUS,
    live={"oneOf": [_ref("Point"), {"type": "null"}], "description": "the last scrape interval"},
)
DETAIL = {
    "allOf": [
        _ref("FunctionRow"),
        _object(
            ["spec", "source"],
            spec={"type": "object", "description": "resolved settings (defaults filled in)"},
            source={"type": ["object", "null"], "description": "as written in functions.yaml"},
        ),
    ]
}
DEAD = _object(
    ["id", "time", "attempt", "reason"],
    id=STR,
    time={**STR, "format": "date-time"},
    attempt=INT,
    reason=STR,
    message_id=STR,
    kind=STR,
    headers={"type": "object", "additionalProperties": STR},
    payload={},
    undecodable=STR,
    body_base64=STR,
)
INVOKE_REQUEST = {
    "type": "object",
    "properties": {
        "payload": {"description": "sent as a request message (any JSON value)"},
        "http": _object(
            [],
            method={**STR, "default": "GET"},
            path={**STR, "default": "/", "description": "may carry ?query"},
            headers={"type": "object", "additionalProperties": STR},
            body={**STR, "default": ""},
        ),
        "timeout_s": {**NUM, "exclusiveMinimum": 0, "maximum": 300, "default": 10},
        "async": {
            "type": "boolean",
            "default": False,
            "description": "true: answer 202 with a call id at once; GET /api/v1/calls/{call_id}",
        },
    },
}
CALL = _object(
    ["call_id", "function", "status"],
    call_id=STR,
    function=STR,
    status={"enum": ["pending", "done"]},
    location=STR,
    http_status={**INT, "description": "what the synchronous invoke would have answered"},
    result={"oneOf": [_ref("InvokeResult"), _ref("Error")]},
)
INVOKE_RESULT = {
    "type": "object",
    "required": ["outcome", "duration_ms"],
    "properties": {
        "outcome": {"enum": ["reply", "http", "error"]},
        "duration_ms": NUM,
        "reply": {},
        "status": INT,
        "headers": {"type": "object", "additionalProperties": STR},
        "body": STR,
        "body_base64": STR,
        "error": _object(
            ["type", "message", "retryable"], type=STR, message=STR, retryable={"type": "boolean"}
        ),
    },
}
ERROR = _object(
    ["error", "message"],
    error=STR,
    message=STR,
    issues={
        "type": "array",
        "items": _object(["path", "problem", "hint"], path=STR, problem=STR, hint=STR),
    },
)
SCHEMAS: dict[str, Json] = {
    "Error": ERROR,
    "Point": POINT,
    "FunctionRow": ROW,
    "FunctionList": _object(
        ["mode", "writable", "functions"],
        mode={"enum": ["file", "cluster", "dev"]},
        writable={"type": "boolean"},
        functions={"type": "array", "items": _ref("FunctionRow")},
    ),
    "FunctionDetail": DETAIL,
    "Deployed": {
        "allOf": [
            _ref("FunctionDetail"),
            _object(["changes"], changes={"type": "array", "items": STR}),
        ]
    },
    "Deleted": _object(["name", "changes"], name=STR, changes={"type": "array", "items": STR}),
    "InvokeRequest": INVOKE_REQUEST,
    "InvokeResult": INVOKE_RESULT,
    "Call": CALL,
    "DeadLetters": _object(
        ["name", "dead_letters"],
        name=STR,
        dead_letters={"type": "array", "items": _ref("DeadLetter")},
    ),
    "DeadLetter": DEAD,
    "Replayed": _object(["name", "replayed"], name=STR, replayed=INT),
    "Purged": _object(["name", "purged"], name=STR, purged=INT),
    "Ids": {"type": "object", "properties": {"ids": {"type": ["array", "null"], "items": STR}}},
    "Metrics": _object(
        ["name", "window_s", "interval_s", "points"],
        name=STR,
        window_s=NUM,
        interval_s=NUM,
        source={"enum": ["scrape", "prometheus"], "description": "FUNCTL_SERVE_PROMETHEUS_URL"},
        points={"type": "array", "items": _ref("Point")},
    ),
    **_functions_yaml(),
}
ERRORS = {
    "400": "malformed request (body, window, limit)",
    "401": "no or bad credentials",
    "403": "the credential's role may not do this",
    "404": "no such function",
    "409": "already deployed, or the server is read-only (no cluster)",
    "413": "the request body is over 256 KiB",
    "429": "too many background calls kept",
    "422": "the function is invalid: issues carry functl's field paths",
    "502": "the cluster refused the server's credentials",
    "503": "the cluster or the bus cannot be reached",
    "504": "no reply within timeout_s",
    "500": "a bug in the server (logged with its traceback)",
}


def _json(schema: Json) -> Json:
    return {"content": {"application/json": {"schema": schema}}}


def _op(op_id: str, summary: str, ok: str, schema: str, *errors: str, **extra: Any) -> Json:
    responses = {ok: {"description": "success", **_json(_ref(schema))}}
    body = ("413",) if "requestBody" in extra else ()
    for code in ("401", *errors, *body, "500"):
        responses[code] = {"description": ERRORS[code], **_json(_ref("Error"))}
    return {"operationId": op_id, "summary": summary, "responses": responses, **extra}


NAME = {"name": "name", "in": "path", "required": True, "schema": STR}
FUNCTION_BODY = {
    "required": True,
    "description": "one function in the functions.yaml format (docs/functions-yaml.md)",
    "content": {
        "application/json": {"schema": _ref("fy_function")},
        "application/yaml": {"schema": _ref("fy_function")},
    },
}
IDS = {"required": False, "content": {"application/json": {"schema": _ref("Ids")}}}
IDS_QUERY = {"name": "ids", "in": "query", "schema": STR, "description": "comma-separated ids"}
PATHS: Json = {
    "/api/v1/openapi.json": {
        "get": {
            "operationId": "openapi",
            "summary": "This document",
            "security": [],
            "responses": {
                "200": {"description": "the OpenAPI 3.1 document", **_json({"type": "object"})}
            },
        }
    },
    "/api/v1/functions": {
        "get": _op(
            "listFunctions",
            "Every function with replicas, bus state and live figures",
            "200",
            "FunctionList",
            "503",
        ),
        "post": _op(
            "deployFunction",
            "Deploy one function (render + server-side apply)",
            "201",
            "Deployed",
            "400",
            "403",
            "409",
            "422",
            "502",
            "503",
            requestBody=FUNCTION_BODY,
        ),
    },
    "/api/v1/functions/{name}": {
        "parameters": [NAME],
        "get": _op(
            "getFunction",
            "One function: spec, replicas, bus state, live figures",
            "200",
            "FunctionDetail",
            "404",
            "503",
        ),
        "put": _op(
            "updateFunction",
            "Update a deployed function",
            "200",
            "Deployed",
            "400",
            "403",
            "404",
            "409",
            "422",
            "502",
            "503",
            requestBody=FUNCTION_BODY,
        ),
        "delete": _op(
            "deleteFunction",
            "Delete a function's objects (the bus keeps its data)",
            "200",
            "Deleted",
            "403",
            "404",
            "409",
            "502",
            "503",
        ),
    },
    "/api/v1/functions/{name}/invoke": {
        "parameters": [NAME],
        "post": _op(
            "invoke",
            "Call the function through the bus and wait for its reply",
            "200",
            "InvokeResult",
            "400",
            "403",
            "404",
            "429",
            "503",
            "504",
            requestBody={"required": False, **_json(_ref("InvokeRequest"))},
        ),
    },
    "/api/v1/calls/{call_id}": {
        "parameters": [{"name": "call_id", "in": "path", "required": True, "schema": STR}],
        "get": _op("getCall", "A background call (invoke with async: true)", "200", "Call", "404"),
    },
    "/api/v1/functions/{name}/dead-letters": {
        "parameters": [NAME],
        "get": _op(
            "listDeadLetters",
            "The function's dead letters",
            "200",
            "DeadLetters",
            "400",
            "404",
            "503",
            parameters=[
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {**INT, "minimum": 1, "maximum": 1000, "default": 100},
                }
            ],
        ),
        "post": _op(
            "replayDeadLetters",
            "Replay the dead letters given (all without ids)",
            "200",
            "Replayed",
            "400",
            "403",
            "404",
            "503",
            parameters=[IDS_QUERY],
            requestBody=IDS,
        ),
        "delete": _op(
            "purgeDeadLetters",
            "Purge the dead letters given (all without ids)",
            "200",
            "Purged",
            "400",
            "403",
            "404",
            "503",
            parameters=[IDS_QUERY],
            requestBody=IDS,
        ),
    },
    "/api/v1/functions/{name}/metrics": {
        "parameters": [NAME],
        "get": _op(
            "functionMetrics",
            "Time series of the live figures, replicas and depth",
            "200",
            "Metrics",
            "400",
            "404",
            "503",
            parameters=[
                {
                    "name": "window",
                    "in": "query",
                    "schema": {**STR, "pattern": "^[0-9]{1,5}[smh]$", "default": "15m"},
                }
            ],
        ),
    },
}
PATHS["/api/v1/functions/{name}/invoke"]["post"]["responses"]["202"] = {
    "description": "accepted: the call runs in the background (async: true)",
    **_json(_ref("Call")),
}
DOCUMENT: Json = {
    "openapi": "3.1.0",
    "info": {
        "title": "kubefuncs control plane",
        "version": "1",
        "description": "functl serve: the functions, their live figures, invocation, dead "
        "letters and deploys. The cluster is the source of truth. See docs/console.md.",
    },
    "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
    "security": [{"apiKey": []}, {"bearer": []}],
    "paths": PATHS,
    "components": {
        "schemas": SCHEMAS,
        "securitySchemes": {
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key"},
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT (HS256, claim role: read|write)",
            },
        },
    },
}
