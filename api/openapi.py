"""The OpenAPI 3.1 description served at ``/openapi.json``.

Written out by hand for every route (a test walks the app's URL map and requires each
rule and method here), with the body schema of every event kind generated from its
declaration (:func:`ledger.schema.describe`), so the document cannot drift from the
rules' schema.  Bytes are lowercase hex in JSON; with ``Accept: application/msgpack``
the same values come as canonical msgpack with ``bin`` bytes.
"""

from __future__ import annotations

import copy
import functools
import re
from typing import Any

from ledger.events import KINDS, ROLES
from ledger.schema import ID_RE, TAG_PATTERN, describe

from .params import UINT_MAX
from .submit import DEFAULT_WAIT_MS, MAX_WAIT_MS

VERSION = "0.1.0"


def _ecma(rx: re.Pattern[str]) -> str:
    """``rx`` as a JSON Schema ``pattern``: ECMA-262, where ``\\Z`` is no anchor (it matches a
    literal ``Z``, or is a syntax error under the ``u`` flag) and ``$`` ends the input."""
    return rx.pattern.replace("\\Z", "$")


_ID = _ecma(ID_RE)
_TAG = TAG_PATTERN

_HEX = {"type": "string", "pattern": "^([0-9a-f]{2})*$", "description": "bytes as lowercase hex"}
_HASH = {"type": "string", "pattern": "^[0-9a-f]{64}$", "description": "32 bytes as lowercase hex"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {
        "description": description,
        "content": {
            "application/json": {"schema": schema},
            "application/msgpack": {"schema": schema},
        },
    }


def _err(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


def _bounded(schema: dict[str, Any]) -> dict[str, Any]:
    """An integer parameter reads at most 19 digits (``api.params``): say so."""
    if schema.get("type") == "integer" and "maximum" not in schema:
        return {**schema, "maximum": UINT_MAX}
    return schema


def _path_param(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": _bounded(schema), "description": description}


def _query(name: str, schema: dict[str, Any], description: str, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": _bounded(schema),
            "description": description}


_LANG = _query("lang", {"type": "string", "default": "zh"}, "page language: zh or en (any other value: zh)")


def _get(summary: str, ok: dict[str, Any], errors: dict[str, str], parameters: list[Any] | None = None,
         tag: str = "ledger") -> dict[str, Any]:
    responses: dict[str, Any] = {"200": _json(ok)}
    for status, why in errors.items():
        responses[status] = _err(why)
    op: dict[str, Any] = {"summary": summary, "tags": [tag], "responses": responses}
    if parameters:
        op["parameters"] = parameters
    return {"get": op}


def _kind_schemas() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, kind in KINDS.items():
        out[f"Envelope.{name}"] = {
            "type": "object",
            "description": f"{kind.doc}. Signed by: {', '.join(kind.roles)}."
            + (f" EPCIS business step: {kind.biz_step}." if kind.biz_step else ""),
            "properties": {
                "v": {"const": 1},
                "chain": {"type": "string"},
                "kind": {"const": name},
                "actor": {"type": "string", "pattern": _ID},
                "time": {"type": "integer", "minimum": 0, "description": "ms since the Unix epoch, UTC"},
                "body": describe(kind.body),
            },
            "required": ["v", "chain", "kind", "actor", "time", "body"],
            "additionalProperties": False,
        }
    return out


def _components() -> dict[str, Any]:
    schemas: dict[str, Any] = {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {
                        "code": {"type": "string", "description": "stable snake_case code"},
                        "message": {"type": "string"},
                    },
                    "additionalProperties": True,
                }
            },
        },
        "Signature": {
            "type": "object",
            "required": ["key", "sig"],
            "properties": {
                "key": {"type": "string", "pattern": "^[0-9a-f]{32}$", "description": "key id"},
                "sig": {**_HEX, "description": "64-byte signature as hex"},
            },
            "additionalProperties": False,
        },
        "Envelope": {
            "oneOf": [_ref(f"Envelope.{name}") for name in KINDS],
            "discriminator": {
                "propertyName": "kind",
                "mapping": {name: f"#/components/schemas/Envelope.{name}" for name in KINDS},
            },
        },
        "SignedEvent": {
            "type": "object",
            "required": ["event", "sigs"],
            "properties": {
                "event": _ref("Envelope"),
                "sigs": {"type": "array", "minItems": 1, "maxItems": 4, "items": _ref("Signature")},
            },
            "additionalProperties": False,
        },
        "SubmitResult": {
            "type": "object",
            "required": ["id", "status"],
            "properties": {
                "id": {"oneOf": [_HASH, {"type": "null"}]},
                "status": {"enum": ["accepted", "duplicate", "rejected"]},
                "code": {"type": "string"},
                "message": {"type": "string"},
                "state": {"enum": ["pending", "committed", "rejected", "unknown"]},
                "height": {"type": "integer"},
                "index": {"type": "integer"},
            },
        },
        "SubmitAnswer": {
            "type": "object",
            "required": ["results", "accepted", "duplicate", "rejected"],
            "properties": {
                "results": {"type": "array", "items": _ref("SubmitResult")},
                "accepted": {"type": "integer"},
                "duplicate": {"type": "integer"},
                "rejected": {"type": "integer"},
                "timed_out": {"type": "boolean", "description": "only with ?wait=1"},
            },
        },
        "Status": {
            "type": "object",
            "required": [
                "chain", "node", "role", "genesis_hash", "height", "log_size", "log_root", "last_block_hash",
                "last_block_time", "mempool_size", "peers", "time"
            ],
            "properties": {
                "chain": {"type": "string"},
                "node": {"type": "string"},
                "role": {"enum": ["validator", "observer"]},
                "height": {"type": "integer"},
                "log_size": {"type": "integer"},
                "log_root": _HASH,
                "last_block_hash": {"oneOf": [_HASH, {"type": "null"}]},
                "last_block_time": {"type": ["integer", "null"]},
                "genesis_hash": _HASH,
                "mempool_size": {"type": "integer"},
                "peers": {"type": "array", "items": {"type": "string"}},
                "time": {"type": "integer"},
                "consensus": {
                    "type": "object",
                    "description": "in a network: the consensus machine's step (Tendermint); step `idle` while "
                                   "the next height waits for events",
                    "properties": {
                        "height": {"type": "integer"},
                        "round": {"type": "integer"},
                        "step": {"type": "string"},
                        "locked_round": {"type": "integer"},
                        "valid_round": {"type": "integer"},
                        "decided": {"type": ["string", "null"]},
                    },
                },
                "peers_connected": {"type": "array", "items": {"type": "string"},
                                    "description": "in a network: peers with a live, authenticated link"},
                "transport": {"type": "object", "additionalProperties": {"type": "integer"},
                              "description": "in a network: frames sent, received and dropped, by reason"},
                "dial_failures": {
                    "type": "object",
                    "description": "in a network: per peer this node dials and has not linked to since, why "
                                   "the last dial failed (`unreachable`, `handshake_timeout`, `wrong_version`, "
                                   "`wrong_genesis`, `wrong_chain`, `unexpected_peer`, `bad_signature`, ...) "
                                   "and when (ms)",
                    "additionalProperties": {
                        "type": "object", "required": ["code", "message", "at"],
                        "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                                       "at": {"type": "integer"}},
                    },
                },
                "replica": {
                    "type": "object",
                    "description": "in a network: blocks decided by consensus, fetched by sync, messages dropped "
                                   "(by reason), signatures the sign guard refused, conflicting votes and proposals "
                                   "seen from validators",
                    "properties": {"decided": {"type": "integer"}, "late_rounds": {"type": "integer"},
                                   "synced": {"type": "integer"},
                                   "dropped": {"type": "object", "additionalProperties": {"type": "integer"}},
                                   "refused_to_sign": {"type": "integer"},
                                   "equivocations": {"type": "integer"}},
                },
                "sign_guard": {
                    "type": ["object", "null"],
                    "description": "a validator in a network: the last (height, round, step) it signed, and, while "
                                   "it signs nothing (its guard lost, its consensus log damaged, or an earlier run "
                                   "of it seen), the block time (ms) it waits for and why",
                    "properties": {"height": {"type": "integer"}, "round": {"type": "integer"},
                                   "step": {"type": "integer"}, "paused_until": {"type": ["integer", "null"]},
                                   "paused_because": {"type": ["string", "null"]}},
                },
            },
        },
        "EventRecord": {
            "type": "object",
            "required": ["id", "state"],
            "properties": {
                "id": _HASH,
                "state": {"enum": ["pending", "committed", "rejected"]},
                "height": {"type": ["integer", "null"]},
                "index": {"type": ["integer", "null"], "description": "leaf index in the log"},
                "kind": {"enum": list(KINDS)},
                "actor": {"type": "string"},
                "time": {"type": "integer"},
                "event": _ref("SignedEvent"),
                "code": {"type": "string", "description": "rejected events only"},
                "message": {"type": "string"},
            },
        },
        "EventSummary": {
            "type": "object",
            "required": ["id", "index", "height", "kind", "actor", "time", "body"],
            "properties": {
                "id": _HASH,
                "index": {"type": "integer"},
                "height": {"type": ["integer", "null"]},
                "kind": {"enum": list(KINDS)},
                "actor": {"type": "string"},
                "time": {"type": "integer"},
                "body": {"type": "object"},
            },
        },
        "Recall": {
            "type": "object",
            "required": ["type", "id", "at", "reason", "event"],
            "properties": {
                "type": {"enum": ["lamb", "carcass", "label"]},
                "id": {"type": "string"},
                "at": {"type": "integer"},
                "reason": {"type": "string"},
                "event": _HASH,
            },
        },
        "TagLifecycle": {
            "type": "object",
            "required": ["tag", "status"],
            "properties": {
                "tag": {"type": "string", "pattern": _TAG},
                "status": {"enum": ["issued", "held", "in_transit", "slaughtered", "labelled"]},
                "banner": {"type": "string"},
                "banner_name": {"type": ["string", "null"]},
                "owner": {"type": ["string", "null"], "description": "actor the tag's range was issued to"},
                "range": {"type": ["object", "null"]},
                "holder": {"type": ["string", "null"]},
                "recalled": {"type": "boolean"},
                "lamb": {"type": ["object", "null"]},
                "carcass": {"type": ["object", "null"]},
                "labels": {"type": "array", "items": {"type": "object"}},
                "recalls": {"type": "array", "items": _ref("Recall")},
                "events": {"type": "array", "items": _ref("EventSummary")},
            },
        },
        "LabelSummary": {
            "type": "object",
            "required": [
                "label", "tag", "carcass", "cut", "net_mass_g", "packed", "plant", "lamb", "slaughter", "issued",
                "check_commitment", "recalled", "recalls"
            ],
            "properties": {
                "label": {"type": "string"},
                "cut": {"type": "string"},
                "net_mass_g": {"type": "integer"},
                "packed": {"type": "string", "format": "date"},
                "check_commitment": {**_HASH, "description": "salted hash of the scratch-off check code"},
                "carcass": {"type": "string"},
                "tag": {"type": "string"},
                "lamb": {"type": "object"},
                "plant": {"type": "object"},
                "slaughter": {"type": ["object", "null"]},
                "issued": {"type": ["object", "null"]},
                "recalled": {"type": "boolean"},
                "recalls": {"type": "array", "items": _ref("Recall")},
            },
        },
        "Header": {
            "type": "object",
            "properties": {
                "chain": {"type": "string"},
                "height": {"type": "integer"},
                "time": {"type": "integer"},
                "prev": _HASH,
                "log_size": {"type": "integer"},
                "log_root": _HASH,
                "validators": _HASH,
                "proposer": {"type": "string"},
                "state_root": {**_HASH, "description": "on chains whose genesis sets params.state_root "
                               "(\"recalls/v1\"): the root of the recall map after this block (docs/genesis.md)"},
            },
            "required": ["chain", "height", "time", "prev", "log_size", "log_root", "validators", "proposer"],
        },
        "Certificate": {
            "type": "object",
            "required": ["height", "round", "block", "precommits"],
            "properties": {
                "height": {"type": "integer"},
                "round": {"type": "integer"},
                "block": _HASH,
                "precommits": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"validator": {"type": "string"}, "sig": _HEX},
                    },
                },
            },
        },
        "Block": {
            "type": "object",
            "required": ["height", "hash", "header", "certificate", "log_range", "events"],
            "properties": {
                "height": {"type": "integer"},
                "hash": _HASH,
                "header": _ref("Header"),
                "certificate": _ref("Certificate"),
                "log_range": {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2},
                "events": {"type": "array", "items": _HASH},
            },
        },
        "BlockLeaves": {
            "type": "object",
            "description": "one block with its raw leaves: what an auditor replays",
            "required": ["height", "hash", "header", "certificate", "log_range", "leaves"],
            "properties": {
                "height": {"type": "integer"},
                "hash": _HASH,
                "header": _ref("Header"),
                "certificate": _ref("Certificate"),
                "log_range": {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2},
                "leaves": {"type": "array", "items": {**_HEX, "description": "canonical signed event (a log leaf)"}},
            },
        },
        "StateHash": {
            "type": "object",
            "required": ["height", "log_size", "state_hash"],
            "properties": {
                "height": {"type": "integer", "description": "the tip the hash belongs to"},
                "log_size": {"type": "integer"},
                "state_hash": {**_HASH, "description": "ledger.state.state_hash of the committed state"},
            },
        },
        "LabelProof": {
            "type": "object",
            "description": "see docs/label-proof.md (format v3 on chains whose genesis commits the recall map, "
                           "v2 on older chains; verifiers also read archived v1 bundles)",
            "required": ["format", "genesis_hash", "label", "checkpoint", "events", "proof", "gaps"],
            "properties": {
                "format": {"enum": ["lambtrace-label-proof/v3", "lambtrace-label-proof/v2"]},
                "genesis_hash": _HASH,
                "genesis": {**_ref("Genesis"), "description": "only with ?genesis=1"},
                "label": {"type": "string"},
                "checkpoint": {
                    "type": "object",
                    "properties": {
                        "header": _ref("Header"),
                        "certificate": {
                            "description": "v2: the whole certificate; v3: only round and precommits (its "
                                           "height and block hash are the header's)",
                            "oneOf": [_ref("Certificate"), {
                                "type": "object",
                                "required": ["round", "precommits"],
                                "additionalProperties": False,
                                "properties": {"round": {"type": "integer"},
                                               "precommits": {"type": "array", "items": {"type": "object"}}},
                            }],
                        },
                    },
                },
                "events": {
                    "type": "array",
                    "description": "ascending by index, no index twice; v3: [index, leaf] pairs, v2: maps",
                    "items": {"oneOf": [
                        {
                            "type": "array",
                            "prefixItems": [{"type": "integer", "minimum": 0},
                                            {**_HEX, "description": "canonical signed event"}],
                            "minItems": 2,
                            "maxItems": 2,
                        },
                        {
                            "type": "object",
                            "required": ["leaf", "index"],
                            "additionalProperties": False,
                            "properties": {
                                "leaf": {**_HEX, "description": "canonical signed event"},
                                "index": {"type": "integer"},
                            },
                        },
                    ]},
                },
                "proof": {
                    "oneOf": [{**_HEX, "pattern": "^([0-9a-f]{64})*$"}, {"type": "array", "items": _HASH}],
                    "description": "one multiproof of every event's leaf against checkpoint.header.log_root: "
                                   "the hashes of the subtrees holding no event, left to right (v3: one "
                                   "byte string of 32-byte hashes; v2: a list)",
                },
                "gaps": {"type": "array", "items": {"type": "object"}},
                "recalls": {
                    "type": "object",
                    "description": "v3 only: the label's path in the recall map, whose root is "
                                   "checkpoint.header.state_root (docs/label-proof.md, 'The recall map')",
                    "required": ["depth", "mask", "siblings", "other"],
                    "properties": {
                        "depth": {"type": "integer", "minimum": 0, "maximum": 256},
                        "mask": {**_HEX, "description": "(depth + 7) // 8 bytes: which siblings are not empty"},
                        "siblings": {**_HEX, "pattern": "^([0-9a-f]{64})*$",
                                     "description": "the non-empty siblings, top down, 32 bytes each"},
                        "other": {**_HEX, "pattern": "^([0-9a-f]{128})?$",
                                  "description": "empty, or the key and value of another label's entry"},
                    },
                },
            },
        },
        "Genesis": {
            "type": "object",
            "description": "ledger.genesis: its hash H(lambtrace/genesis/v1, canonical msgpack) anchors every proof",
            "required": ["chain", "time", "validators", "trace_office", "params"],
            "properties": {
                "chain": {"type": "string"},
                "time": {"type": "integer"},
                "validators": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "name": {"type": "string"},
                            "banner": {"type": "string"},
                            "alg": {"type": "string"},
                            "pub": _HEX,
                            "power": {"type": "integer"},
                        },
                    },
                },
                "trace_office": {"type": "object", "description": "id, banner, name, keys [{alg, pub, storage}]"},
                "params": {"type": "object"},
            },
        },
        "ConsistencyProof": {
            "type": "object",
            "required": ["first", "second", "first_root", "second_root", "proof"],
            "properties": {
                "first": {"type": "integer"},
                "second": {"type": "integer"},
                "first_root": _HASH,
                "second_root": _HASH,
                "proof": {"type": "array", "items": _HASH},
            },
        },
        "InclusionProof": {
            "type": "object",
            "required": ["id", "index", "size", "leaf", "leaf_hash", "root", "proof"],
            "properties": {
                "index": {"type": "integer"},
                "size": {"type": "integer"},
                "root": _HASH,
                "leaf": _HEX,
                "leaf_hash": _HASH,
                "id": _HASH,
                "proof": {"type": "array", "items": _HASH},
            },
        },
        "Actor": {
            "type": "object",
            "required": [
                "id", "role", "banner", "banner_name", "name", "parent", "root", "enrolled_at", "revoked_at",
                "key_ids", "keys", "devices"
            ],
            "properties": {
                "id": {"type": "string"},
                "role": {"enum": list(ROLES)},
                "banner": {"type": "string"},
                "banner_name": {"type": ["string", "null"]},
                "name": {"type": "string"},
                "parent": {"type": ["string", "null"]},
                "root": {"type": "boolean", "description": "the genesis trace office, whose keys genesis holds"},
                "enrolled_at": {"type": "integer"},
                "revoked_at": {"type": ["integer", "null"]},
                "key_ids": {"type": "array", "items": {"type": "string"}},
                "keys": {"type": "array", "items": {"type": "object"}},
                "devices": {"type": "array", "items": {"type": "object"}},
            },
        },
        "Stats": {
            "type": "object",
            "required": ["height", "banners", "cooperatives", "plants", "totals"],
            "properties": {
                "height": {"type": "integer"},
                "banners": {"type": "object", "additionalProperties": {"type": "object"}},
                "cooperatives": {"type": "object", "additionalProperties": {"type": "object"}},
                "plants": {"type": "object", "additionalProperties": {"type": "object"}},
                "totals": {"type": "object", "additionalProperties": {"type": "integer"}},
            },
        },
    }
    schemas.update(_kind_schemas())
    return {"schemas": schemas}


def _label_check_paths() -> dict[str, Any]:
    """Scan counts and check-code verification (api/routes/checks.py): node-local records."""
    label = [_path_param("label", {"type": "string", "pattern": _ID}, "label id")]
    place = {"type": "string", "maxLength": 64, "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]*$",
             "description": "coarse place (region or city) the consumer gives: printable characters, at most 64 "
                            "once spaces are collapsed"}
    stats: dict[str, Any] = {
        "type": "object",
        "required": ["label", "scans", "verifications", "first_verified_at", "suspect_clone", "reasons"],
        "properties": {
            "label": {"type": "string"},
            "scans": {"type": "integer", "minimum": 0},
            "scan_threshold": {"type": "integer"},
            "verifications": {"type": "integer", "minimum": 0},
            "first_verified_at": {"type": ["integer", "null"], "description": "instant (ms) of the first success"},
            "first_place": {"type": ["string", "null"]},
            "places": {"type": "integer", "description": "distinct places of successful checks"},
            "suspect_clone": {"type": "boolean"},
            "reasons": {"type": "array", "items": {"enum": ["scans_over_threshold", "verified_in_several_places"]}},
        },
    }
    checked = {**stats, "properties": {**stats["properties"], "ok": {"const": True}, "first": {"type": "boolean"}}}

    def body(schema: dict[str, Any], required: bool) -> dict[str, Any]:
        return {"required": required, "content": {"application/json": {"schema": schema},
                                                  "application/msgpack": {"schema": schema}}}

    errors = {"400": _err("bad_label, bad_place, malformed"), "404": _err("not_found")}
    return {
        "/v1/labels/{label}/scans": {
            "get": _get("Scan count, first verification and clone flags (this node's records)", stats,
                        {"400": "bad_label", "404": "not_found"}, label, "trace")["get"],
            "post": {
                "summary": "Count a scan of the label (the consumer page does on opening); a client's scans of "
                           "one label count once an hour",
                "tags": ["trace"],
                "parameters": label,
                "requestBody": body({"type": "object", "properties": {"place": {
                    **place, "description": "accepted and checked like a check's place, but not kept: the "
                                            "clone flag counts the places of successful checks only"}}}, False),
                "responses": {"200": _json(stats), **errors},
            },
        },
        "/v1/labels/{label}/check": {
            "get": _get("First verification of the check code and clone flags; checks nothing", stats,
                        {"400": "bad_label", "404": "not_found"}, label, "trace")["get"],
            "post": {
                "summary": "Check the scratch-off code against the label's commitment on the ledger",
                "tags": ["trace"],
                "parameters": label,
                "requestBody": body({"type": "object", "required": ["code"], "properties": {
                    "code": {"type": "string", "maxLength": 64,
                             "pattern": "^[-\\t ]*(?:[0-9A-TV-Za-tv-z][-\\t ]*){12}$",
                             "description": "12 symbols, as printed: any case, dashes and spaces ignored, O read as "
                                            "0, I and L as 1; full-width forms read as these"},
                    "place": place}}, True),
                "responses": {
                    "200": _json(checked),
                    "400": _err("bad_code (reason: format | mismatch, attempts_left), bad_label, bad_place"),
                    "404": _err("not_found"),
                    "429": _err("too_many_attempts: too many wrong codes for this label (retry_after_s)"),
                },
            },
        },
    }


def _alert_paths() -> dict[str, Any]:
    """Fraud and anomaly signals and the premium audit (api/routes/alerts.py, reports.py)."""
    from .alerts import KINDS as ALERT_KINDS

    alert = {
        "type": "object",
        "required": ["id", "kind", "source", "time", "message", "subject", "evidence"],
        "properties": {
            "id": {"type": "string", "description": "<kind>/<event id, label or actor>: stable"},
            "kind": {"enum": list(ALERT_KINDS)},
            "source": {"enum": ["ledger", "rejected_attempt", "label_checks"]},
            "time": {"type": ["integer", "null"], "description": "block time, or when the attempt was recorded"},
            "message": {"type": "string"},
            "subject": {"type": "object", "description": "tags, plant, actor, shipment or label concerned"},
            "evidence": {
                "type": "object",
                "properties": {
                    "events": {"type": "array", "items": _HASH, "description": "committed event ids"},
                    "rejected": {"type": "object", "description": "the rejected attempt: id, actor, kind, code, "
                                 "message, time, recorded_at"},
                },
                "additionalProperties": True,
            },
        },
    }
    listing = {
        "type": "object",
        "required": ["height", "total", "counts", "alerts"],
        "properties": {
            "height": {"type": "integer", "description": "ledger height the ledger alerts were computed at"},
            "total": {"type": "integer", "description": "alerts matching the filters (before limit)"},
            "counts": {"type": "object", "additionalProperties": {"type": "integer"},
                       "description": "alerts per kind, unfiltered"},
            "alerts": {"type": "array", "items": alert},
        },
    }
    row = {"type": "object", "additionalProperties": True, "description": "lambs, carcass_mass_g, carcass_kg, "
           "paid_fen, market_value_fen, avg prices per kg, premium_paid_fen, premium_due_fen, shortfall_fen"}
    report = {
        "type": "object",
        "required": ["chain", "height", "premium_due_fen_per_kg", "plants", "cooperatives", "herders", "total"],
        "properties": {
            "chain": {"type": "string"},
            "height": {"type": "integer"},
            "premium_due_fen_per_kg": {"type": "integer"},
            "plants": {"type": "array", "items": row},
            "cooperatives": {"type": "array", "items": row},
            "herders": {"type": "array", "items": row},
            "total": row,
        },
    }
    alerts_get = _get(
        "Fraud and anomaly signals with their evidence, newest first",
        listing,
        {"400": "bad_param"},
        [
            _query("kind", {"enum": list(ALERT_KINDS)}, "only this kind"),
            _query("since", {"type": "integer", "minimum": 0}, "only alerts at or after this instant (ms)"),
            _query("limit", {"type": "integer", "minimum": 1, "maximum": 10_000, "default": 100}, "at most this many"),
        ],
        "audit",
    )
    premium_get = _get(
        "Premium audit per plant, cooperative and herder: paid vs due (1 yuan/kg of carcass), shortfalls",
        report,
        {"400": "bad_param"},
        [_query("format", {"enum": ["json", "csv"], "default": "json"}, "json, or csv for spreadsheets")],
        "audit",
    )
    premium_get["get"]["responses"]["200"] = {"description": "OK", "content": {
        "application/json": {"schema": report}, "text/csv": {"schema": {"type": "string"}}}}
    return {"/v1/alerts": alerts_get, "/v1/reports/premium": premium_get}


def _dashboard_paths() -> dict[str, Any]:
    """The trace offices' dashboard (api/routes/dashboard.py)."""
    html = {"description": "OK", "content": {"text/html": {"schema": {"type": "string"}}}}
    summary = {
        "type": "object",
        "description": "counters (totals, by banner, cooperative and plant), quota use for the season's year, "
                       "sampled block headers (height, time, log_size), consensus health",
        "required": ["height", "totals", "banners", "cooperatives", "plants", "quota", "series", "health"],
        "properties": {
            "chain": {"type": "string"},
            "node": {"type": "string"},
            "height": {"type": "integer"},
            "log_size": {"type": "integer"},
            "time": {"type": ["integer", "null"]},
            "totals": {"type": "object", "additionalProperties": {"type": "integer"}},
            "banners": {"type": "array", "items": {"type": "object"}},
            "cooperatives": {"type": "object"},
            "plants": {"type": "object"},
            "quota": {"type": "object"},
            "series": {"type": "array", "items": {"type": "object"}},
            "health": {"type": "object"},
        },
    }
    return {
        "/dashboard": {
            "get": {
                "summary": "Trace offices' dashboard (zh, ?lang=en): live counts, quota use, season chart, "
                           "alerts, consensus health",
                "tags": ["operations"],
                "parameters": [_LANG],
                "responses": {"200": html},
            }
        },
        "/dashboard/summary": _get("What the dashboard shows, as data", summary, {}, None, "operations"),
        "/dashboard/stream": {
            "get": {
                "summary": "Server-sent events: a `summary` event (id: height) at once and after every committed "
                           "block, a heartbeat comment every 5 s, a `bye` event when the stream ends (after an hour)",
                "tags": ["operations"],
                "responses": {
                    "200": {"description": "OK", "content": {"text/event-stream": {"schema": {
                        "type": "object",
                        "description": "one event of the stream (heartbeats are comments, not events)",
                        "properties": {
                            "event": {"enum": ["summary", "bye"]},
                            "id": {"type": "string", "pattern": "^[0-9]+$", "description": "a summary's height"},
                            "data": {"type": "string", "contentMediaType": "application/json",
                                     "description": "a summary: what GET /dashboard/summary answers, as JSON; "
                                                    "bye: {\"reason\": \"closed\"}"},
                            "retry": {"type": "integer", "description": "reconnect after this many ms"},
                        },
                    }}}},
                    "503": _err("too_many_streams"),
                },
            }
        },
    }


def _paths() -> dict[str, Any]:
    bad = "malformed, non-canonical, too deep, or failing a parameter check"
    submit_body = {"oneOf": [_ref("SignedEvent"), {"type": "array", "minItems": 1, "items": _ref("SignedEvent")}]}
    return {
        "/v1/status": _get("Chain id, node, role, tip, log root, genesis hash, mempool, peers", _ref("Status"), {}),
        "/v1/events": {
            "post": {
                "summary": "Submit one signed event or a list of them",
                "tags": ["events"],
                "parameters": [
                    _query("wait", {"enum": ["0", "1", "true", "false"]},
                           "answer once every admitted event is committed (or dropped)"),
                    _query("timeout_ms", {"type": "integer", "minimum": 0, "default": DEFAULT_WAIT_MS},
                           f"how long to wait, at most {MAX_WAIT_MS}"),
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": submit_body},
                        "application/msgpack": {
                            "schema": submit_body,
                            "description": "canonical msgpack, bytes as bin",
                        },
                    },
                },
                "responses": {
                    "200": _json(_ref("SubmitAnswer"), "per-event results, in order"),
                    "400": _err(bad + "; or too_many_events"),
                    "413": _err("too_large: body over the node's max_request_bytes"),
                    "415": _err("unsupported_media_type"),
                    "429": _err("mempool_full: retry later (Retry-After)"),
                    "503": _err("storage_unavailable: the store failed a write (disk full?); nothing admitted"),
                },
            }
        },
        "/v1/events/{event_id}": _get(
            "A committed, pending or recently rejected event",
            _ref("EventRecord"),
            {"400": "bad_id", "404": "not_found"},
            [_path_param("event_id", {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"}, "event id (64 hex)")],
            "events",
        ),
        "/v1/tags": _get(
            "Ear-tag ranges issued (to one banner office or cooperative), in tag order",
            {
                "type": "object",
                "required": ["to", "ranges", "truncated"],
                "properties": {
                    "to": {"type": ["string", "null"]},
                    "ranges": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "first": {"type": "string"},
                                "last": {"type": "string"},
                                "count": {"type": "integer"},
                                "to": {"type": "string"},
                                "banner": {"type": "string"},
                                "year": {"type": "integer"},
                                "event": _HASH,
                                "banner_issued_that_year": {"type": ["integer", "null"]},
                            },
                        },
                    },
                    "truncated": {"type": "boolean"},
                },
            },
            {"400": "bad_id, bad_param"},
            [
                _query("to", {"type": "string", "pattern": _ID}, "only ranges issued to this actor"),
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 10_000}, "at most this many (1000)"),
            ],
            "trace",
        ),
        "/v1/tags/{tag}": _get(
            "A lamb's lifecycle and its committed events",
            _ref("TagLifecycle"),
            {"400": "bad_tag", "404": "not_found"},
            [_path_param("tag", {"type": "string", "pattern": _TAG}, "15-digit ear tag")],
            "trace",
        ),
        "/v1/labels/{label}": _get(
            "Label summary for consumers",
            _ref("LabelSummary"),
            {"400": "bad_label", "404": "not_found"},
            [_path_param("label", {"type": "string", "pattern": _ID}, "label id")],
            "trace",
        ),
        "/v1/labels/{label}/proof": _get(
            "Offline-verifiable proof bundle (lambtrace-label-proof/v3; v2 on chains without a recall map)",
            _ref("LabelProof"),
            {"400": "bad_label, bad_param", "404": "not_found"},
            [
                _path_param("label", {"type": "string", "pattern": _ID}, "label id"),
                _query("genesis", {"enum": ["0", "1", "true", "false"]},
                       "embed the genesis document (a self-contained archive); by default the bundle "
                       "references it by genesis_hash"),
            ],
            "trace",
        ),
        "/v1/genesis": _get(
            "The genesis document (pub keys as hex); check that it hashes to the trusted genesis hash",
            _ref("Genesis"),
            {},
            None,
            "trace",
        ),
        **_label_check_paths(),
        **_alert_paths(),
        "/v1/blocks/latest": _get("The tip: header, certificate, event ids", _ref("Block"),
                                  {"404": "no block yet"}, None, "ledger"),
        "/v1/blocks/{height}": _get(
            "Header (with hash), commit certificate and event ids of a block",
            _ref("Block"),
            {"400": "bad_height", "404": "not_found (beyond the tip)"},
            [_path_param("height", {"type": "integer", "minimum": 1}, "block height")],
        ),
        "/v1/blocks/{height}/leaves": _get(
            "Header, certificate and the raw leaves of a block (for audits)",
            _ref("BlockLeaves"),
            {"400": "bad_height", "404": "not_found (beyond the tip)"},
            [_path_param("height", {"type": "integer", "minimum": 1}, "block height")],
        ),
        "/v1/state/hash": _get(
            "Hash of the whole committed state at the tip (computed under the commit lock, "
            "remembered per height)",
            _ref("StateHash"),
            {},
        ),
        "/v1/log/consistency": _get(
            "RFC 9162 consistency proof between committed log sizes",
            _ref("ConsistencyProof"),
            {"400": "bad_range"},
            [
                _query("first", {"type": "integer", "minimum": 1}, "first tree size M", True),
                _query("second", {"type": "integer", "minimum": 1}, "second tree size N (M <= N <= log_size)", True),
            ],
        ),
        "/v1/log/inclusion": _get(
            "RFC 9162 inclusion proof of one leaf",
            _ref("InclusionProof"),
            {"400": "bad_range"},
            [
                _query("index", {"type": "integer", "minimum": 0}, "leaf index", True),
                _query("size", {"type": "integer", "minimum": 1}, "tree size (default: committed log size)"),
            ],
        ),
        "/v1/actors/{actor_id}": _get(
            "Membership record with keys and terminals",
            _ref("Actor"),
            {"400": "bad_id", "404": "not_found"},
            [_path_param("actor_id", {"type": "string", "pattern": _ID}, "actor id")],
            "members",
        ),
        "/v1/stats": _get("Counts by banner, cooperative and plant", _ref("Stats"), {}, None, "members"),
        "/l/{label}": {
            "get": {
                "summary": "Consumer page (zh, ?lang=en): the label's story, verified in the browser against the "
                           "genesis fingerprint in the QR link's #g= fragment; verdict in data-verdict",
                "tags": ["trace"],
                "parameters": [
                    _path_param("label", {"type": "string", "pattern": _ID},
                                "label id (an unknown or malformed one gets a page saying so)"),
                    _LANG,
                ],
                "responses": {
                    status: {"description": why, "content": {"text/html": {"schema": {"type": "string"}}}}
                    for status, why in (("200", "OK"), ("400", "bad label id"), ("404", "no such label"))
                },
            }
        },
        "/l/{label}/verdict": _get(
            "The node's own verdict on its bundle, for browsers without Ed25519 in WebCrypto",
            {
                "type": "object",
                "required": ["verdict", "checked_by"],
                "properties": {
                    "verdict": {"enum": ["verified", "failed"]},
                    "code": {"type": ["string", "null"]},
                    "reason": {"type": ["string", "null"]},
                    "checked_by": {"const": "server"},
                },
            },
            {"400": "bad_label", "404": "not_found"},
            [_path_param("label", {"type": "string", "pattern": _ID}, "label id")],
            "trace",
        ),
        **_dashboard_paths(),
        "/healthz": _get(
            "Liveness",
            {"type": "object", "required": ["ok", "height"],
             "properties": {"ok": {"const": True}, "height": {"type": "integer"}}},
            {"503": "storage_unavailable: the store failed a write (disk full?); restart once fixed"},
            None,
            "operations",
        ),
        "/v1/backup": {
            "get": {
                "summary": "A consistent snapshot of the node's whole store, streamed (docs/backup.md); "
                           "loopback clients only unless configured",
                "tags": ["operations"],
                "responses": {
                    "200": {"description": "The backup: framed records with a trailing SHA-256",
                            "content": {"application/octet-stream": {"schema": {"type": "string",
                                                                                "format": "binary"}}}},
                    "403": _err("forbidden: the client may not take backups"),
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics (text format 0.0.4)",
                "tags": ["operations"],
                "responses": {
                    "200": {"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}}
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "tags": ["operations"],
                "responses": {
                    "200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}}
                },
            }
        },
    }


@functools.lru_cache(maxsize=1)
def _document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "LambTrace API",
            "version": VERSION,
            "description": (
                "Provenance of Xilingol League lamb. JSON by default with bytes as lowercase hex; "
                "send and accept application/msgpack for canonical msgpack with bin bytes. "
                'Errors: {"error": {"code", "message", ...}} with a 4xx status.'
            ),
        },
        "paths": _paths(),
        "components": _components(),
    }


def document() -> dict[str, Any]:
    """A fresh copy of the OpenAPI document (callers may change it)."""
    return copy.deepcopy(_document())
