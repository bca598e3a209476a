"""A small HTTP client for the LambTrace API (DESIGN §8).

``Client(url)`` wraps one node's ``/v1`` routes.  Events are *sent* as canonical
msgpack (``Content-Type: application/msgpack``): pass signed events exactly as
:func:`ledger.events.sign` makes them, with real ``bytes``.  Answers are *read* as
JSON, so every dict a method returns keeps bytes as lowercase hex strings, as the
server wrote them (``bytes.fromhex`` them where you need bytes);
:meth:`Client.label_proof` can also return the bundle as raw canonical msgpack.

Errors: an error answer raises :class:`ClientError` (``code``, ``message``,
``status``, plus the server's details); a connection failure or timeout raises
:class:`~ledger.errors.TransportError`.  ``429`` answers (mempool full) are retried a
bounded number of times with exponential backoff, honouring ``Retry-After``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import requests

from ledger import codec
from ledger.errors import LedgerError, TransportError

__all__ = ["Client", "ClientError", "WaitTimeout"]

MSGPACK = "application/msgpack"


class ClientError(LedgerError):
    """The server answered with an error: its ``code``, ``message`` and HTTP ``status``."""

    code = "client_error"

    def __init__(self, code: str, message: str, status: int, **details: Any) -> None:
        super().__init__(message, code=code, **details)
        self.status = status


class WaitTimeout(ClientError):
    """A ``wait_*`` helper ran out of time (``status`` is 0: no HTTP error happened)."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__("wait_timeout", message, 0, **details)


class Client:
    """One node's API.  Thread-safe as far as the ``requests.Session`` is."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 30.0,
        session: requests.Session | None = None,
        retries: int = 6,
        backoff_s: float = 0.2,
        max_backoff_s: float = 5.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = session if session is not None else requests.Session()
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s

    # -- transport -------------------------------------------------------------------------
    def _send(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> requests.Response:
        """One request, retried on 429; raises ``TransportError`` or ``ClientError``."""
        url = self.url + path
        for attempt in range(self.retries + 1):
            try:
                resp = self.session.request(
                    method, url, params=params, data=data, headers=headers, timeout=timeout or self.timeout
                )
            except requests.RequestException as exc:
                raise TransportError(f"{method} {url}: {exc}", code="transport_error") from exc
            if resp.status_code == 429 and attempt < self.retries:
                time.sleep(self._delay(resp, attempt))
                continue
            if resp.status_code >= 400:
                raise self._error(resp)
            return resp
        raise RuntimeError("unreachable")  # pragma: no cover - the loop returns or raises

    def _delay(self, resp: requests.Response, attempt: int) -> float:
        delay = self.backoff_s * (2**attempt)
        retry_after = resp.headers.get("Retry-After", "")
        if retry_after.isdigit():
            delay = max(delay, float(retry_after))
        return float(min(delay, self.max_backoff_s))

    @staticmethod
    def _error(resp: requests.Response) -> ClientError:
        body: Any = None
        if resp.headers.get("Content-Type", "").split(";")[0].strip() == MSGPACK:
            try:  # an error answer to a msgpack request (label proofs, block leaves)
                body = codec.decode(resp.content)
            except LedgerError:  # an undecodable body: reported by its status below
                body = None
        else:
            try:
                body = resp.json()
            except ValueError:
                body = None
        err = body.get("error") if isinstance(body, dict) else None
        if isinstance(err, dict) and isinstance(err.get("code"), str):
            details = {k: v for k, v in err.items() if k not in ("code", "message")}
            return ClientError(err["code"], str(err.get("message", err["code"])), resp.status_code, **details)
        return ClientError(f"http_{resp.status_code}", resp.text[:300] or resp.reason, resp.status_code)

    def _json(self, path: str, params: dict[str, Any] | None = None, *, timeout: float | None = None) -> Any:
        resp = self._send("GET", path, params=params, headers={"Accept": "application/json"}, timeout=timeout)
        answer = self._parse(resp)
        if not isinstance(answer, dict):
            # every GET route answers a JSON object: anything else is not a LambTrace node
            raise ClientError("bad_response", f"the server's answer to GET {path} is not a JSON object "
                              f"(got {type(answer).__name__}); is {self.url} a LambTrace node?", resp.status_code)
        return answer

    @staticmethod
    def _parse(resp: requests.Response) -> Any:
        try:
            return resp.json()
        except ValueError as exc:
            raise ClientError("bad_response", "the server's answer is not JSON", resp.status_code) from exc

    # -- routes ----------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """``GET /v1/status``."""
        return self._json("/v1/status")

    def health(self) -> dict[str, Any]:
        """``GET /healthz``."""
        return self._json("/healthz")

    def submit(
        self, signed_events: list[dict[str, Any]] | dict[str, Any], *, wait: bool = False, timeout_ms: int = 10_000
    ) -> list[dict[str, Any]]:
        """``POST /v1/events`` as canonical msgpack; the per-event results, in order.

        ``signed_events`` are values as :func:`ledger.events.sign` returns them (real
        bytes).  With ``wait`` the server answers once every admitted event is committed
        (or ``timeout_ms`` passed); each result then carries ``state`` and ``height``.
        Raises ``ClientError`` (``too_many_events``, ``too_large``, ``mempool_full`` after
        the retries, ...) or ``TransportError``.
        """
        items = [signed_events] if isinstance(signed_events, dict) else list(signed_events)
        params = {"wait": "1", "timeout_ms": str(timeout_ms)} if wait else None
        http_timeout = max(self.timeout, timeout_ms / 1000 + 10) if wait else self.timeout
        resp = self._send(
            "POST",
            "/v1/events",
            params=params,
            data=codec.encode(items),
            headers={"Content-Type": MSGPACK, "Accept": "application/json"},
            timeout=http_timeout,
        )
        answer = self._parse(resp)
        results = answer.get("results") if isinstance(answer, dict) else None
        if (not isinstance(results, list) or len(results) != len(items)
                or not all(isinstance(r, dict) for r in results)):
            raise ClientError("bad_response", f"the server's answer to POST /v1/events has no result per event; "
                              f"is {self.url} a LambTrace node?", resp.status_code)
        return results

    def event(self, event_id: str | bytes) -> dict[str, Any]:
        """``GET /v1/events/<id>``: state (pending/committed/rejected), height, index, event."""
        hexid = event_id.hex() if isinstance(event_id, bytes) else event_id
        return self._json(f"/v1/events/{hexid}")

    def tag(self, tag: str) -> dict[str, Any]:
        """``GET /v1/tags/<tag>``: the lamb's lifecycle and events."""
        return self._json(f"/v1/tags/{tag}")

    def label(self, label: str) -> dict[str, Any]:
        """``GET /v1/labels/<label>``: the label summary."""
        return self._json(f"/v1/labels/{label}")

    def label_proof(self, label: str, *, raw: bool = False, genesis: bool = False) -> Any:
        """``GET /v1/labels/<label>/proof``: the proof bundle as JSON (hex strings), or with
        ``raw`` its canonical msgpack bytes (real bytes inside, for offline verifiers).
        With ``genesis`` the bundle embeds the genesis document (``?genesis=1``)."""
        path = f"/v1/labels/{label}/proof"
        params = {"genesis": "1"} if genesis else None
        if not raw:
            return self._json(path, params)
        return self._send("GET", path, params=params, headers={"Accept": MSGPACK}).content

    def genesis(self) -> dict[str, Any]:
        """``GET /v1/genesis``: the node's genesis document (``pub`` as hex).  Untrusted:
        check that it hashes to the genesis hash you trust."""
        return self._json("/v1/genesis")

    def block(self, height: int | str = "latest") -> dict[str, Any]:
        """``GET /v1/blocks/<height>`` (or ``latest``): header with hash, certificate, event ids."""
        return self._json(f"/v1/blocks/{height}")

    def block_leaves(self, height: int) -> dict[str, Any]:
        """``GET /v1/blocks/<height>/leaves`` as canonical msgpack: header, certificate and
        raw leaves of one block, with real bytes (for audits).  Raises ``ClientError``
        (``not_found`` beyond the tip) or ``TransportError``; ``ClientError``
        ``bad_response`` if the answer is not canonical msgpack."""
        resp = self._send("GET", f"/v1/blocks/{height}/leaves", headers={"Accept": MSGPACK})
        try:
            # a block holds up to max_block_bytes of leaves, plus its header and framing
            value: dict[str, Any] = codec.decode(resp.content, max_bytes=64 * 1024 * 1024)
        except LedgerError as exc:
            raise ClientError("bad_response", f"the block is not canonical msgpack: {exc.message}",
                              resp.status_code) from exc
        return value

    def state_hash(self) -> dict[str, Any]:
        """``GET /v1/state/hash``: ``{height, log_size, state_hash}`` (hex) at the tip."""
        return self._json("/v1/state/hash")

    def consistency(self, first: int, second: int) -> dict[str, Any]:
        """``GET /v1/log/consistency``: RFC 9162 proof and both roots (hex)."""
        return self._json("/v1/log/consistency", {"first": first, "second": second})

    def inclusion(self, index: int, size: int | None = None) -> dict[str, Any]:
        """``GET /v1/log/inclusion``: RFC 9162 inclusion proof of one leaf (hex)."""
        params: dict[str, Any] = {"index": index}
        if size is not None:
            params["size"] = size
        return self._json("/v1/log/inclusion", params)

    def actor(self, actor_id: str) -> dict[str, Any]:
        """``GET /v1/actors/<id>``: membership record with keys and terminals."""
        return self._json(f"/v1/actors/{actor_id}")

    def stats(self) -> dict[str, Any]:
        """``GET /v1/stats``: counters by banner, cooperative and plant, with totals."""
        return self._json("/v1/stats")

    def tag_ranges(self, to: str | None = None, *, limit: int = 1000) -> dict[str, Any]:
        """``GET /v1/tags``: issued ear-tag ranges (only those issued to ``to``)."""
        params: dict[str, Any] = {"limit": limit}
        if to is not None:
            params["to"] = to
        return self._json("/v1/tags", params)

    def sync_offline(self, queue_dir: str, *, batch: int = 200, progress: bool = False, wait: bool = False) -> Any:
        """Upload a terminal's offline queue (:func:`lambtrace.offline.sync`): in order, in
        batches, idempotently and resumably; returns its :class:`~lambtrace.offline.SyncReport`."""
        from lambtrace.offline import sync

        return sync(queue_dir, self, batch=batch, progress=progress, wait=wait)

    # -- waiting ---------------------------------------------------------------------------
    def wait_for_height(self, height: int, timeout_s: float = 30.0, *, poll_s: float = 0.1) -> dict[str, Any]:
        """Poll ``/v1/status`` until the node is at ``height`` or above; returns that status.

        Raises :class:`WaitTimeout` when ``timeout_s`` passes first.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            st = self.status()
            if st["height"] >= height:
                return st
            if time.monotonic() >= deadline:
                raise WaitTimeout(
                    f"height {st['height']} after {timeout_s}s, waiting for {height}", height=st["height"]
                )
            time.sleep(poll_s)

    def wait_committed(
        self, ids: Iterable[str | bytes], timeout_s: float = 30.0, *, poll_s: float = 0.1
    ) -> dict[str, dict[str, Any]]:
        """Poll ``/v1/events/<id>`` until no event of ``ids`` is pending; returns ``{id: record}``.

        A record's ``state`` is ``committed`` or ``rejected`` (dropped at block time):
        check it.  An id the node does not know (yet) is polled on.  Raises
        :class:`WaitTimeout` (with the still-pending ids in ``pending``) when
        ``timeout_s`` passes first.
        """
        todo = [i.hex() if isinstance(i, bytes) else i for i in ids]
        done: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout_s
        while True:
            # Events usually commit in the order given: stop a round at the first one still
            # pending rather than asking about every id every round.
            for i, eid in enumerate(todo):
                try:
                    rec = self.event(eid)
                except ClientError as exc:
                    if exc.code != "not_found":
                        raise
                    rec = {}
                if rec.get("state") not in ("committed", "rejected"):
                    todo = todo[i:]
                    break
                done[eid] = rec
            else:
                todo = []
            if not todo:
                return done
            if time.monotonic() >= deadline:
                raise WaitTimeout(f"{len(todo)} event(s) still not committed after {timeout_s}s", pending=todo)
            time.sleep(poll_s)
