"""The OpenAPI 3 document of the HTTP API, served at ``/openapi.json`` (``xdnsd.api.server``).

It describes every route of ``xdnsd.api.server.ROUTES`` (``operationId`` is the route's handler
name), ``/metrics``, ``/openapi.json`` and the status page ``/``: the bodies
``xdnsd.api.ops.Operations`` returns, the status documents the replication and sync processes
keep in the store (``peer/NODE``, ``target/NAME``, ``target-history/NAME``,
``target-conflict/NAME/ID``), the zones' history lines and conflicts (``xdnsd.store``), and
every error each operation can answer.  ``tests/test_openapi.py`` checks that the paths and
methods here are exactly the routes and validates real answers of a running node against it,
so the two cannot drift apart silently.
"""

from __future__ import annotations

import copy
from typing import Any

from xdnsd import __version__

OPENAPI_VERSION = "3.0.3"
JSON = "application/json"
PREFIX = "/api/v1"

# a cell of the status matrix, and a target's state (xdnsd.api.ops)
TARGET_STATES = ["in-sync", "pending", "out-of-sync", "held", "unknown"]
CELL_STATES = ["in-sync", "pending", "out-of-sync", "held", "down", "unknown"]
# the kinds of conflict between nodes (xdnsd.replication.merge)
REPLICATION_KINDS = ["record", "delete-vs-add", "replaced", "cname-and-other", "ttl"]


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _array(items: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {"type": "array", "items": items, **more}


def _obj(
    properties: dict[str, Any],
    required: list[str] | None = None,
    *,
    closed: bool = True,
    **more: Any,
) -> dict[str, Any]:
    """An object; ``closed``: the code builds it with exactly these keys (no others)."""
    doc: dict[str, Any] = {"type": "object", "properties": properties}
    if required is None:
        required = list(properties)
    if required:
        doc["required"] = required
    if closed:
        doc["additionalProperties"] = False
    doc.update(more)
    return doc


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


STRING = {"type": "string"}
INT = {"type": "integer"}
COUNT = {"type": "integer", "minimum": 0}
NUMBER = {"type": "number"}
BOOL = {"type": "boolean"}
SERIAL = {"type": "integer", "minimum": 0, "maximum": 4294967295, "description": "SOA serial"}
TIME = {"type": "number", "description": "seconds since the epoch (UTC)"}
DOMAIN = {"type": "string", "description": "an absolute domain name, with the final dot"}
VERSION_VECTOR = {
    "type": "object",
    "additionalProperties": COUNT,
    "description": "version vector: node id -> the number of that node's changes included",
}

SCHEMAS: dict[str, Any] = {
    "Error": _obj(
        {
            "error": _obj(
                {
                    "code": {
                        **STRING,
                        "description": (
                            "a short code: unauthorized, forbidden, not-found, "
                            "method-not-allowed, bad-path, bad-body, bad-json, too-large, "
                            "bad-field, bad-zone-file, no-zone, no-target, no-conflict, exists, "
                            "secondary, catalog, refused, not-applied, internal"
                        ),
                    },
                    "message": {
                        **STRING,
                        "description": "what went wrong, naming the field or line at fault",
                    },
                }
            )
        },
        description="Every error: the HTTP status, a code and a message.",
    ),
    "Transfer": _nullable(
        _obj(
            {
                "zone": DOMAIN,
                "primaries": _array(STRING),
                "primary": _nullable(STRING),
                "serial": _nullable(SERIAL),
                "error": _nullable(STRING),
                "error_since": _nullable(TIME),
                "last_ok": _nullable(TIME),
                "last_check": _nullable(TIME),
                "full_check": _nullable(TIME),
                "checked": _nullable(TIME),
                "next_check": _nullable(TIME),
                "expires_at": _nullable(TIME),
                "expired": BOOL,
                "last_transfer": _nullable(TIME),
                "transfer": _nullable(STRING),
                "records": _nullable(COUNT),
            },
            [],
            closed=False,
            description=(
                "A secondary zone's transfer state (the ``xfr-in/ZONE`` status document the "
                "secondary service keeps; its fields appear as the service learns them); null "
                "for a zone this node is primary for."
            ),
        )
    ),
    "Zone": _obj(
        {
            "zone": DOMAIN,
            "kind": {"type": "string", "enum": ["primary", "secondary"]},
            "serial": _nullable({**SERIAL, "description": "null: a secondary not transferred"}),
            "vv": VERSION_VECTOR,
            "expired": {
                **BOOL,
                "description": "a secondary past its SOA expire time (answered SERVFAIL)",
            },
            "transfer": _ref("Transfer"),
            "targets": _array(STRING, description="the targets mirroring the zone"),
            "records": {**COUNT, "description": "the number of records (with ``count``)"},
        },
        ["zone", "kind", "serial", "vv", "expired", "transfer", "targets"],
    ),
    "ZoneDetail": _obj(
        {
            "zone": DOMAIN,
            "kind": {"type": "string", "enum": ["primary", "secondary"]},
            "serial": SERIAL,
            "vv": VERSION_VECTOR,
            "expired": BOOL,
            "transfer": _ref("Transfer"),
            "targets": _array(STRING),
            "records": COUNT,
        },
        description="One zone held here, with its number of records.",
    ),
    "Record": _obj(
        {
            "name": DOMAIN,
            "type": {**STRING, "example": "A"},
            "ttl": {"type": "integer", "minimum": 0, "maximum": 2147483647},
            "data": {**STRING, "description": "the RDATA in master file form"},
        }
    ),
    "HistoryEntry": _obj(
        {
            "sequence": COUNT,
            "origin": {
                **STRING,
                "description": (
                    "who made the change: api:TOKEN, key:NAME (an update), provider:TARGET, "
                    "a peer's change, ..."
                ),
            },
            "time_ms": {**COUNT, "description": "milliseconds since the epoch (the change's HLC)"},
            "dot": _nullable(
                _array(
                    {"anyOf": [STRING, COUNT]},
                    minItems=2,
                    maxItems=2,
                    description="[node, counter]: the change's id; null for a state merge",
                )
            ),
            "serial_from": _nullable(SERIAL),
            "serial_to": SERIAL,
            "added": COUNT,
            "removed": COUNT,
            "op": {"type": "string", "enum": ["change", "create", "drop", "state"]},
            "changes": _nullable(
                _obj(
                    {"removed": _array(_ref("Record")), "added": _array(_ref("Record"))},
                    description=(
                        "with ?records=1: what the commit removed and added (without the SOA "
                        "serial step); null once the IXFR journal no longer holds it, and for "
                        "the zone's creation"
                    ),
                )
            ),
        },
        [
            "sequence",
            "origin",
            "time_ms",
            "dot",
            "serial_from",
            "serial_to",
            "added",
            "removed",
            "op",
        ],
        description="One commit to a zone, newest first.",
    ),
    "Peer": _obj(
        {
            "peer": STRING,
            "address": {**STRING, "description": "HOST:PORT"},
            "connected": BOOL,
            "send_paused": BOOL,
            "since": _nullable({**TIME, "description": "connected since"}),
            "acked": {
                "type": "object",
                "additionalProperties": VERSION_VECTOR,
                "description": "zone -> the version vector the peer acknowledged",
            },
            "lag": {**COUNT, "description": "changes the peer has not acknowledged"},
            "error": _nullable(STRING),
            "updated": TIME,
        },
        ["peer", "address", "connected"],
        description=(
            "A configured peer: the replication process's ``peer/NODE`` status document, or "
            "only peer, address and connected (false) before that process wrote one."
        ),
    ),
    "SyncRun": _obj(
        {
            "start": TIME,
            "end": TIME,
            "pushed": COUNT,
            "imported": COUNT,
            "conflicts": COUNT,
            "held": _nullable({**STRING, "description": "why the push was held (safety limit)"}),
            "skipped": _array(STRING, description="NAME TYPE of RRsets the target cannot hold"),
            "calls": COUNT,
            "error": _nullable(STRING),
            "full": {**BOOL, "description": "the target was read (a reconcile)"},
            "requested_by": {
                **STRING,
                "description": "who resolved the conflict this run acted on (api:TOKEN, ...)",
            },
        },
        [
            "start",
            "end",
            "pushed",
            "imported",
            "conflicts",
            "held",
            "skipped",
            "calls",
            "error",
            "full",
        ],
        description="One run of a target's sync.",
    ),
    "Target": _obj(
        {
            "target": STRING,
            "kind": {"type": "string", "enum": ["route53", "azure", "rfc2136"]},
            "zone": _nullable(DOMAIN),
            "owner": {**STRING, "description": "the node that pushes to it"},
            "state": {"type": "string", "enum": TARGET_STATES},
            "reason": _nullable(STRING),
            "since": _nullable(TIME),
            "last_run": _ref("SyncRun"),
            "next_run": TIME,
        },
        ["target", "kind", "zone", "owner", "state"],
        description=(
            "A target's state: the sync process's ``target/NAME`` status document, or (before "
            "its first run) target, kind, zone, owner and state ``pending`` (this node owns "
            "it) or ``unknown``."
        ),
    ),
    "ConflictSide": _obj(
        {
            "node": STRING,
            "counter": COUNT,
            "hlc": COUNT,
            "origin": STRING,
            "what": {
                **STRING,
                "description": "the record as written, ``delete RECORD`` or ``delete OWNER TYPE``",
            },
        }
    ),
    "ReplicationConflict": _obj(
        {
            "zone": DOMAIN,
            "id": STRING,
            "closed": BOOL,
            "kind": {"type": "string", "enum": REPLICATION_KINDS},
            "owner": DOMAIN,
            "rdtype": {**COUNT, "description": "the record type's number"},
            "subject": STRING,
            "sides": _array(
                _ref("ConflictSide"),
                minItems=1,
                description="highest rank first: the first is the provisional winner",
            ),
        },
        description="Concurrent changes from several nodes that do not commute.",
    ),
    "ProviderRRset": _nullable(
        _array(
            {"anyOf": [STRING, COUNT, _array(STRING)]},
            minItems=4,
            maxItems=4,
            description="[name, type, ttl, [values]]; null: no such RRset",
        )
    ),
    "ProviderConflict": _obj(
        {
            "id": STRING,
            "kind": {"type": "string", "enum": ["provider"]},
            "target": STRING,
            "zone": DOMAIN,
            "owner": STRING,
            "rdtype": {**STRING, "description": "the record type's name"},
            "local": _ref("ProviderRRset"),
            "remote": _ref("ProviderRRset"),
            "last": _ref("ProviderRRset"),
            "since": TIME,
        },
        description="An RRset changed both in the zone and at a target since the last run.",
    ),
    "Conflict": {"oneOf": [_ref("ReplicationConflict"), _ref("ProviderConflict")]},
    "StatusNode": _obj(
        {
            "id": STRING,
            "self": BOOL,
            "address": _nullable(STRING),
            "connected": BOOL,
            "since": _nullable(TIME),
            "lag": COUNT,
            "error": _nullable(STRING),
        },
        ["id", "self", "connected"],
        description="This node (self: true, id and connected only) or a peer.",
    ),
    "StatusZone": _obj(
        {
            "zone": DOMAIN,
            "kind": {"type": "string", "enum": ["primary", "secondary"]},
            "serial": SERIAL,
            "cells": {
                "type": "object",
                "additionalProperties": {"type": "string", "enum": CELL_STATES},
                "description": "node id or target name -> the zone's state there",
            },
        }
    ),
    "Status": _obj(
        {
            "node": STRING,
            "time": TIME,
            "nodes": _array(_ref("StatusNode")),
            "targets": _array(_ref("Target")),
            "zones": _array(_ref("StatusZone")),
            "conflicts": _array(_ref("Conflict")),
            "conflicts_detected": {**COUNT, "description": "conflicts this node saw appear"},
            "changes": _array(_ref("Change"), maxItems=20),
            "syncs": _array(_ref("StatusSync"), maxItems=20),
        },
        description="The status page's one view.",
    ),
    "DeletedZone": _obj(
        {
            "zone": DOMAIN,
            "incarnation": {**COUNT, "description": "which life of the zone was deleted"},
            "deleted_by": {**STRING, "description": "the change's origin, e.g. api:TOKEN"},
            "node": {**STRING, "description": "the node it was deleted on"},
            "time": TIME,
            "serial": {**SERIAL, "description": "the last serial this node served"},
        },
        description="A deleted zone's tombstone: who deleted it, where and when.",
    ),
    "ZoneCreated": _obj(
        {
            "zone": DOMAIN,
            "created": {"type": "boolean", "enum": [True]},
            "records": COUNT,
            "serial_from": _nullable(SERIAL),
            "serial_to": SERIAL,
        }
    ),
    "ZoneImported": _obj(
        {
            "zone": DOMAIN,
            "created": {**BOOL, "description": "the zone was new"},
            "added": COUNT,
            "removed": COUNT,
            "serial_from": _nullable(SERIAL),
            "serial_to": SERIAL,
        }
    ),
    "ZoneDeleted": _obj(
        {
            "zone": DOMAIN,
            "deleted": {"type": "boolean", "enum": [True]},
            "serial": {**SERIAL, "description": "the serial the zone had"},
        }
    ),
    "RecordsWritten": _obj(
        {
            "zone": DOMAIN,
            "changed": {**BOOL, "description": "false: the RRset was already so"},
            "serial": SERIAL,
        }
    ),
    "Resolved": _obj(
        {
            "id": STRING,
            "resolved": {"type": "boolean", "enum": [True]},
            "message": STRING,
            "serial": {**SERIAL, "description": "a conflict between nodes: the serial after"},
        },
        ["id", "resolved", "message"],
    ),
    # --- request bodies ---------------------------------------------------------------------
    "CreateZoneFromFile": _obj(
        {
            "zone": {**STRING, "minLength": 1, "example": "example.org"},
            "file": {**STRING, "description": "master file text (no $INCLUDE)"},
        },
        closed=False,
    ),
    "CreateZoneWithNs": _obj(
        {
            "zone": {**STRING, "minLength": 1, "example": "example.org"},
            "ns": _array(
                {**STRING, "minLength": 1},
                minItems=1,
                description="the apex NS names (relative to the zone or absolute); the first "
                "is the SOA MNAME",
            ),
            "email": {
                **STRING,
                "minLength": 1,
                "description": "the SOA RNAME (an @ becomes a dot); hostmaster.ZONE if not given",
            },
        },
        ["zone", "ns"],
        closed=False,
    ),
    "CreateZone": {
        "oneOf": [_ref("CreateZoneFromFile"), _ref("CreateZoneWithNs")],
        "description": "A master file, or NS names for a zone of an SOA and NS records only.",
    },
    "RecordWrite": _obj(
        {
            "name": {
                **STRING,
                "minLength": 1,
                "description": "the owner, relative to the zone (@: the apex) or absolute",
                "example": "www",
            },
            "type": {**STRING, "minLength": 1, "example": "A"},
            "ttl": {"type": "integer", "minimum": 0, "maximum": 2147483647, "default": 300},
            "data": _array(
                {**STRING, "example": "192.0.2.1"},
                minItems=1,
                description="RDATA in master file form",
            ),
        },
        ["name", "type", "data"],
        closed=False,
    ),
    "ResolveKeep": _obj(
        {
            "keep": {
                **STRING,
                "minLength": 1,
                "description": "local, remote or a node id (a target conflict: local, remote "
                "or the target's name)",
            }
        },
        closed=False,
    ),
    "ResolveValue": _obj(
        {
            "value": {
                **STRING,
                "minLength": 1,
                "description": "RDATA text put in place of every side (conflicts between nodes)",
            }
        },
        closed=False,
    ),
    "Resolve": {"oneOf": [_ref("ResolveKeep"), _ref("ResolveValue")]},
}


def _plus(base: str, key: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    """``base``'s closed document with one more (required) field."""
    doc: dict[str, Any] = copy.deepcopy(SCHEMAS[base])
    doc["properties"] = {key: schema, **doc["properties"]}
    doc["required"] = [key, *doc["required"]]
    doc["description"] = description
    return doc


# a history line with its zone, a sync run with its target (the status page's lists)
SCHEMAS["Change"] = _plus("HistoryEntry", "zone", DOMAIN, "A history line with its zone.")
SCHEMAS["StatusSync"] = _plus("SyncRun", "target", STRING, "A sync run with its target.")


def _error(description: str, **headers: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "description": description,
        "content": {JSON: {"schema": _ref("Error")}},
    }
    if headers:
        doc["headers"] = headers
    return doc


RESPONSES: dict[str, Any] = {
    "BadRequest": _error(
        "A field, parameter, path or body that is not right (bad-field, bad-json, bad-body, "
        "bad-zone-file, bad-path): the message names it."
    ),
    "Unauthorized": _error(
        "No token, or an unknown one.",
        **{"WWW-Authenticate": {"required": True, "schema": {**STRING, "example": "Bearer"}}},
    ),
    "Forbidden": _error("A read-only token asked to write."),
    "NotFound": _error("No such zone, target or conflict (no-zone, no-target, no-conflict)."),
    "MethodNotAllowed": _error(
        "The path is known but not with this method: the answer to every method a path does "
        "not list.",
        Allow={"required": True, "schema": {**STRING, "example": "GET, PUT"}},
    ),
    "Conflict": _error(
        "The zone exists already (exists), is a secondary (its data comes from its primaries) "
        "or is the catalog (which xdnsd maintains)."
    ),
    "TooLarge": _error("The body is over 256 MiB."),
    "Refused": _error(
        "The change was refused as an RFC 2136 update would be (code `refused`: the message "
        "names the RCODE), or a record asked for would be ignored by the update rules, e.g. "
        "a CNAME beside other data (code `ignored`): nothing was changed."
    ),
    "NotApplied": _error("The change was planned but the store did not apply it."),
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    names = {
        400: "BadRequest",
        401: "Unauthorized",
        403: "Forbidden",
        404: "NotFound",
        409: "Conflict",
        413: "TooLarge",
        422: "Refused",
        500: "NotApplied",
    }
    return {str(s): {"$ref": f"#/components/responses/{names[s]}"} for s in statuses}


ZONE_PARAM = {
    "name": "zone",
    "in": "path",
    "required": True,
    "schema": {**STRING, "minLength": 1},
    "description": "the zone's name (the final dot may be left out)",
    "example": "example.test",
}
TARGET_PARAM = {
    "name": "target",
    "in": "path",
    "required": True,
    "schema": {**STRING, "minLength": 1},
    "description": "a configured target's name",
}
CONFLICT_PARAM = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {**STRING, "minLength": 1},
    "description": "the conflict's id (``GET /api/v1/conflicts``)",
}
READ, WRITE = (401,), (401, 403)  # who may not: no / an unknown token; a read-only token


def _op(
    handler: str,
    summary: str,
    ok: dict[str, Any],
    errors: tuple[int, ...],
    *,
    status: int = 200,
    params: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
    tag: str,
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "operationId": handler,
        "summary": summary,
        "tags": [tag],
        "responses": {str(status): ok, **_errors(*sorted(errors))},
    }
    if params:
        doc["parameters"] = params
    if body is not None:
        doc["requestBody"] = body
    return doc


def _paths() -> dict[str, dict[str, Any]]:
    z = f"{PREFIX}/zones/{{zone}}"
    json_body = {"required": True, "content": {JSON: {"schema": _ref("RecordWrite")}}}
    record_write = (*WRITE, 400, 404, 409, 413, 422, 500)
    return {
        "/": {
            "get": {
                "operationId": "status_page",
                "summary": "The status page (HTML; it holds no data: its script asks for a token)",
                "tags": ["status"],
                "security": [],
                "responses": {
                    "200": {
                        "description": "The page.",
                        "headers": {
                            "Content-Security-Policy": {"required": True, "schema": STRING}
                        },
                        "content": {"text/html": {"schema": STRING}},
                    }
                },
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "tags": ["status"],
                "security": [],
                "responses": {
                    "200": _json({"type": "object"}, "The OpenAPI document."),
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus' text exposition format (zones, conflicts, peers, "
                "targets, the store's size)",
                "tags": ["status"],
                "responses": {
                    "200": {
                        "description": "The metrics.",
                        "content": {"text/plain": {"schema": STRING}},
                    },
                    **_errors(*READ),
                },
            }
        },
        f"{PREFIX}/status": {
            "get": _op(
                "get_status",
                "Every zone against every node and target, the conflicts, the latest changes "
                "and sync runs",
                _json(_ref("Status"), "The status."),
                READ,
                tag="status",
            )
        },
        f"{PREFIX}/zones": {
            "get": _op(
                "get_zones",
                "Every zone",
                _json(_array(_ref("Zone")), "The zones, secondaries not transferred yet too."),
                READ,
                params=[
                    {
                        "name": "count",
                        "in": "query",
                        "schema": {**STRING, "example": "1"},
                        "description": "1, true or yes: each zone's number of records too "
                        "(anything else: not)",
                    }
                ],
                tag="zones",
            ),
            "post": _op(
                "post_zones",
                "Create a zone from a master file, or of an SOA and NS records",
                _json(_ref("ZoneCreated"), "The zone was created."),
                (*WRITE, 400, 409, 413),
                status=201,
                body={"required": True, "content": {JSON: {"schema": _ref("CreateZone")}}},
                tag="zones",
            ),
        },
        z: {
            "parameters": [ZONE_PARAM],
            "get": _op(
                "get_zone",
                "One zone",
                _json(_ref("ZoneDetail"), "The zone."),
                (*READ, 400, 404),
                tag="zones",
            ),
            "delete": _op(
                "delete_zone",
                "Delete a zone and everything in it, on every node",
                _json(_ref("ZoneDeleted"), "The zone was deleted."),
                (*WRITE, 400, 404, 409),
                tag="zones",
            ),
        },
        f"{z}/file": {
            "parameters": [ZONE_PARAM],
            "get": _op(
                "get_file",
                "The zone as a master file",
                {
                    "description": "The master file.",
                    "content": {"text/dns": {"schema": STRING}},
                },
                (*READ, 400, 404),
                tag="zones",
            ),
            "put": _op(
                "put_file",
                "Make the zone hold exactly a master file's records (one change; a new zone "
                "is created)",
                _json(_ref("ZoneImported"), "The zone holds the file's records."),
                (*WRITE, 400, 409, 413),
                body={
                    "required": True,
                    "description": "master file text, UTF-8 (no $INCLUDE)",
                    "content": {"text/dns": {"schema": STRING}},
                },
                tag="zones",
            ),
        },
        f"{z}/records": {
            "parameters": [ZONE_PARAM],
            "get": _op(
                "get_records",
                "The zone's records, or those of one name and / or type",
                _json(_array(_ref("Record")), "The records."),
                (*READ, 400, 404),
                params=[
                    {
                        "name": "name",
                        "in": "query",
                        "schema": STRING,
                        "description": "an owner name, relative to the zone or absolute",
                    },
                    {"name": "type", "in": "query", "schema": {**STRING, "example": "A"}},
                ],
                tag="records",
            ),
            "put": _op(
                "put_records",
                "Replace an RRset (an RFC 2136 update of that RRset)",
                _json(_ref("RecordsWritten"), "The RRset is as given."),
                record_write,
                body=json_body,
                tag="records",
            ),
            "post": _op(
                "post_records",
                "Add records to an RRset (an RFC 2136 update)",
                _json(_ref("RecordsWritten"), "The records are in the RRset."),
                record_write,
                body=json_body,
                tag="records",
            ),
            "delete": _op(
                "delete_records",
                "Delete an RRset, or only the records ``data`` names (an RFC 2136 update)",
                _json(_ref("RecordsWritten"), "The records are gone."),
                (*WRITE, 400, 404, 409, 422, 500),
                params=[
                    {
                        "name": "name",
                        "in": "query",
                        "required": True,
                        "schema": {**STRING, "minLength": 1},
                        "description": "the owner, relative to the zone or absolute",
                    },
                    {
                        "name": "type",
                        "in": "query",
                        "required": True,
                        "schema": {**STRING, "minLength": 1, "example": "A"},
                    },
                    {
                        "name": "data",
                        "in": "query",
                        "style": "form",
                        "explode": True,
                        "schema": _array(STRING),
                        "description": "RDATA of a record to delete (repeatable); none: the "
                        "whole RRset",
                    },
                ],
                tag="records",
            ),
        },
        f"{z}/history": {
            "parameters": [ZONE_PARAM],
            "get": _op(
                "get_history",
                "The zone's latest commits, newest first: who, when, serials, how much",
                _json(_array(_ref("HistoryEntry")), "The history."),
                (*READ, 400, 404),
                params=[
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": 10000,
                            "default": 50,
                        },
                    },
                    {
                        "name": "records",
                        "in": "query",
                        "description": "1: each line with the records it removed and added",
                        "schema": {"type": "string", "example": "1"},
                    },
                ],
                tag="zones",
            ),
        },
        f"{PREFIX}/peers": {
            "get": _op(
                "get_peers",
                "The configured peers and their replication state",
                _json(_array(_ref("Peer")), "The peers."),
                READ,
                tag="cluster",
            )
        },
        f"{PREFIX}/deleted-zones": {
            "get": _op(
                "get_deleted_zones",
                "The zones deleted in the cluster: who, where, when (newest first)",
                _json(_array(_ref("DeletedZone")), "The deleted zones."),
                READ,
                tag="zones",
            )
        },
        f"{PREFIX}/targets": {
            "get": _op(
                "get_targets",
                "The configured targets (provider mirrors) and their state",
                _json(_array(_ref("Target")), "The targets."),
                READ,
                tag="targets",
            )
        },
        f"{PREFIX}/targets/{{target}}/history": {
            "parameters": [TARGET_PARAM],
            "get": _op(
                "get_target_history",
                "A target's last sync runs, oldest first",
                _json(_array(_ref("SyncRun")), "The runs."),
                (*READ, 404),
                tag="targets",
            ),
        },
        f"{PREFIX}/conflicts": {
            "get": _op(
                "get_conflicts",
                "The open conflicts: between nodes, and between zones and targets",
                _json(_array(_ref("Conflict")), "The conflicts."),
                READ,
                tag="conflicts",
            )
        },
        f"{PREFIX}/conflicts/{{id}}/resolve": {
            "parameters": [CONFLICT_PARAM],
            "post": _op(
                "post_resolve",
                "End a conflict: keep one side, or put a value in place of every side",
                _json(_ref("Resolved"), "The conflict is resolved."),
                (*WRITE, 400, 404, 413),
                body={"required": True, "content": {JSON: {"schema": _ref("Resolve")}}},
                tag="conflicts",
            ),
        },
    }


DESCRIPTION = """\
The HTTP JSON API of one xdnsd node.

Every request but ``GET /`` and ``GET /openapi.json`` carries ``Authorization: Bearer TOKEN``
(no or an unknown token: 401); a read-only token may only read (any other method: 403).
Writes are changesets through the node's one commit path with origin ``api:TOKEN``: journalled,
replicated and mirrored like any change.  Every error is
``{"error": {"code": ..., "message": ...}}``; a path outside the API answers 404, and a method
a path does not list answers 405 (``#/components/responses/MethodNotAllowed``).
"""


def _with_other_methods(paths: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each API path says what any method it does not list answers: 405, which no operation
    of OpenAPI can hold (``#/components/responses/MethodNotAllowed``)."""
    for path, item in paths.items():
        if path.startswith(PREFIX + "/"):
            listed = ", ".join(m.upper() for m in item if m != "parameters")
            item["description"] = (
                f"Methods: {listed}.  Any other method (with a token that may use it) answers "
                f"405 Method Not Allowed with Allow: {listed} "
                "(#/components/responses/MethodNotAllowed)."
            )
    return paths


def document() -> dict[str, Any]:
    """The OpenAPI document (a fresh copy: callers may change it)."""
    return copy.deepcopy(
        {
            "openapi": OPENAPI_VERSION,
            "info": {
                "title": "xdnsd",
                "version": __version__,
                "description": DESCRIPTION,
                "license": {"name": "MIT"},
            },
            "tags": [
                {"name": "status"},
                {"name": "zones"},
                {"name": "records"},
                {"name": "cluster"},
                {"name": "targets"},
                {"name": "conflicts"},
            ],
            "security": [{"bearer": []}],
            "paths": _with_other_methods(_paths()),
            "components": {
                "securitySchemes": {
                    "bearer": {
                        "type": "http",
                        "scheme": "bearer",
                        "description": "an [api.tokens.NAME] secret",
                    }
                },
                "schemas": SCHEMAS,
                "responses": RESPONSES,
            },
        }
    )


__all__ = ["document"]
