"""Requests the HTTP server refuses before the API sees them get the API's JSON error shape."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from helpers import free_ports
from lambtrace.runner import _server


def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "application/json")])
    return [b'{"ok": true}']


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    (p,) = free_ports(1)
    server = _server(SimpleNamespace(host="127.0.0.1", port=p, trusted_proxy=""), app)  # type: ignore[arg-type]
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    yield p
    server.close()


def ask(port: int, raw: bytes) -> tuple[str, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(raw)
        s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return status, headers, body


@pytest.mark.parametrize(("raw", "status", "code"), [
    (b"GET / HTTP/1.1\r\nHost: x\r\nX-Bad: a\x01b\r\n\r\n", "400", "bad_http"),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: nine\r\n\r\n", "400", "bad_http"),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 262_144 + b"\r\n\r\n", "431", "headers_too_large"),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", "501", "not_implemented"),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "400", "bad_http"),
])
def test_what_the_server_refuses_is_answered_in_json(port: int, raw: bytes, status: str, code: str) -> None:
    line, headers, body = ask(port, raw)
    assert line.split()[1] == status, line
    assert headers["content-type"] == "application/json"
    assert int(headers["content-length"]) == len(body)
    err = json.loads(body)["error"]
    assert err["code"] == code and err["message"]


def test_a_valid_request_still_reaches_the_app(port: int) -> None:
    line, _headers, body = ask(port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert line.split()[1] == "200" and json.loads(body) == {"ok": True}


def test_a_fault_answered_again_and_again_is_logged_once_a_minute(monkeypatch: pytest.MonkeyPatch,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    from api import errors

    clock = [1000.0]
    monkeypatch.setattr(errors.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(errors, "_last_logged", {})
    assert errors._first_in_a_while("storage_unavailable")
    for _ in range(500):  # every request and health probe while the disk is full
        clock[0] += 0.1
        assert not errors._first_in_a_while("storage_unavailable")
    assert errors._first_in_a_while("corrupt_store")  # another fault is not held back
    clock[0] += 11
    assert errors._first_in_a_while("storage_unavailable")
    assert [r.getMessage() for r in caplog.records] == ["500 more answers with storage_unavailable in the last 61 s"]
