"""A fault-injecting TCP proxy for real-cluster tests: cut, delay and drop real links.

``FaultProxy(listen_port, target_port)`` accepts on ``127.0.0.1:listen_port`` and
forwards every connection to ``127.0.0.1:target_port``.  Point one node's peer address
at the proxy instead of the peer, and the link between the two node processes can be
broken and healed at run time, with no mock anywhere:

* :meth:`FaultProxy.cut` closes every connection through the proxy and stops listening,
  so dials are refused until :meth:`FaultProxy.heal` listens again on the same port;
* :meth:`FaultProxy.delay` holds every unit of data for that many milliseconds (order is
  kept; latency, not bandwidth, changes);
* :meth:`FaultProxy.drop_rate` drops each unit with probability ``p`` from a seeded RNG.

A *unit* is one transport frame (4-byte big-endian length + body) when ``framed`` is
true (the default, for :mod:`node.transport` links), so a dropped unit is a lost
message and the stream stays well framed; a frame longer than ``max_frame_bytes`` makes
that direction fall back to raw forwarding.  Frames after the handshake are sealed in
sequence (ADR 0022), so the receiver notices a dropped one at the next frame and closes
the link, as it would an attacker's: drops exercise reconnects, not silent loss.  With
``framed=False`` a unit is whatever one read returned, and a "drop" resets the
connection instead (a real network never loses bytes from the middle of a TCP stream).

The proxy runs its own asyncio loop in a daemon thread; every public method is
thread-safe and returns once the change has taken effect.  A link between two nodes that
both dial needs one proxy per direction; cut both to partition the pair.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import struct
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Final

__all__ = ["FaultProxy"]

log = logging.getLogger(__name__)

_LEN: Final = struct.Struct(">I")
_READ_CHUNK: Final = 64 * 1024
_MAX_IN_FLIGHT_UNITS: Final = 4096
_CALL_TIMEOUT_S: Final = 10.0


class _Pair:
    """One proxied connection: the client side and the upstream side."""

    __slots__ = ("client", "tasks", "upstream")

    def __init__(self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream = upstream
        self.tasks: list[asyncio.Task[None]] = []

    def abort(self) -> None:
        for w in (self.client, self.upstream):
            with contextlib.suppress(Exception):
                w.transport.abort()


class FaultProxy:
    """Forward ``host:listen_port`` → ``target_host:target_port``, with switchable faults.

    ``listen_port`` 0 picks a free port (see :attr:`port` after :meth:`start`).  ``seed``
    seeds the drop decisions.  Use as a context manager or call :meth:`start` /
    :meth:`close`.
    """

    def __init__(
        self,
        listen_port: int,
        target_port: int,
        *,
        host: str = "127.0.0.1",
        target_host: str = "127.0.0.1",
        seed: int = 0,
        framed: bool = True,
        max_frame_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self._host = host
        self._port = listen_port
        self._target = (target_host, target_port)
        self._framed = framed
        self._max_frame = max_frame_bytes
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._delay_s = 0.0
        self._drop_p = 0.0
        self._cut = False
        self._stats: dict[str, int] = {
            "connections": 0,
            "refused": 0,
            "units_forwarded": 0,
            "units_dropped": 0,
            "bytes_forwarded": 0,
            "resets": 0,
        }
        self._pairs: set[_Pair] = set()
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stopped: asyncio.Event | None = None
        self._error: BaseException | None = None

    # -- thread-safe controls --

    @property
    def port(self) -> int:
        """The port the proxy listens on (known after :meth:`start`)."""
        return self._port

    @property
    def stats(self) -> dict[str, int]:
        """A snapshot of the counters: connections, refused, units_forwarded, units_dropped,
        bytes_forwarded, resets."""
        with self._lock:
            return dict(self._stats)

    def start(self) -> int:
        """Start the proxy thread and listen; return the port.

        Raises ``OSError`` if the port cannot be bound, ``RuntimeError`` if started twice.
        """
        if self._thread is not None:
            raise RuntimeError("a proxy starts once")
        self._thread = threading.Thread(target=self._run, name=f"faultproxy-{self._port}", daemon=True)
        self._thread.start()
        if not self._ready.wait(_CALL_TIMEOUT_S):
            raise TimeoutError("the proxy did not start in time")
        if self._error is not None:
            raise self._error
        return self._port

    def cut(self) -> None:
        """Close every connection through the proxy and refuse new ones until :meth:`heal`."""
        with self._lock:
            self._cut = True
        self._call(self._do_cut())

    def heal(self) -> None:
        """Listen again on the same port; new connections are forwarded.

        Raises ``OSError`` if the port cannot be bound again.
        """
        with self._lock:
            self._cut = False
        self._call(self._do_heal())

    def delay(self, ms: int) -> None:
        """Hold every unit ``ms`` milliseconds before forwarding it (0 turns the delay off).

        Raises ``ValueError`` for a negative delay.
        """
        if ms < 0:
            raise ValueError("a delay cannot be negative")
        with self._lock:
            self._delay_s = ms / 1000.0

    def drop_rate(self, p: float) -> None:
        """Drop each unit with probability ``p`` (seeded); 0 turns dropping off.

        Raises ``ValueError`` unless ``0 <= p <= 1``.
        """
        if not 0.0 <= p <= 1.0:
            raise ValueError("a drop rate is a probability in [0, 1]")
        with self._lock:
            self._drop_p = float(p)

    def close(self) -> None:
        """Close every connection, stop listening and stop the thread; idempotent."""
        loop, stopped = self._loop, self._stopped
        if loop is None or stopped is None or self._thread is None:
            return
        with contextlib.suppress(RuntimeError):
            self._call(self._do_cut())
            loop.call_soon_threadsafe(stopped.set)
        self._thread.join(_CALL_TIMEOUT_S)

    def __enter__(self) -> FaultProxy:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- the loop thread --

    def _call(self, coro: Coroutine[Any, Any, None]) -> None:
        loop = self._loop
        if loop is None or not loop.is_running():
            coro.close()
            raise RuntimeError("the proxy is not running")
        asyncio.run_coroutine_threadsafe(coro, loop).result(_CALL_TIMEOUT_S)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            if not self._ready.is_set():
                self._error = exc
                self._ready.set()
            else:
                log.exception("fault proxy on port %s failed", self._port)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        try:
            await self._listen()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        await self._stopped.wait()
        await self._do_cut()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._on_client, self._host, self._port, reuse_address=True)
        self._port = int(self._server.sockets[0].getsockname()[1])

    async def _do_cut(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), _CALL_TIMEOUT_S)
            self._server = None
        pairs, self._pairs = list(self._pairs), set()
        tasks: list[asyncio.Task[None]] = []
        for pair in pairs:
            pair.abort()
            tasks.extend(pair.tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=_CALL_TIMEOUT_S)

    async def _do_heal(self) -> None:
        if self._server is None:
            await self._listen()

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._stats[name] += n

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with self._lock:
            refused = self._cut
        if refused:
            self._count("refused")
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError as exc:
            log.debug("fault proxy: upstream %s unreachable: %r", self._target, exc)
            self._count("refused")
            writer.transport.abort()
            return
        self._count("connections")
        pair = _Pair(writer, up_writer)
        self._pairs.add(pair)
        pair.tasks = [
            asyncio.create_task(self._direction(reader, up_writer, pair)),
            asyncio.create_task(self._direction(up_reader, writer, pair)),
        ]

    async def _direction(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, pair: _Pair) -> None:
        """Pump one direction: this task reads and stamps units, a sender releases them on time.

        At end of stream the units in flight are delivered and ``dst`` closed gracefully,
        which ends the other direction too; on a cut or an error both sides are reset.
        """
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue(_MAX_IN_FLIGHT_UNITS)
        sender = asyncio.create_task(self._send_due(queue, dst, pair))
        framed = self._framed
        graceful = False
        try:
            while True:
                unit = await self._read_unit(src, framed)
                if unit is None:
                    graceful = True
                    break
                data, framed = unit
                with self._lock:
                    delay_s, drop_p = self._delay_s, self._drop_p
                if drop_p and self._rng.random() < drop_p:
                    self._count("units_dropped")
                    if not framed:
                        self._count("resets")
                        break
                    continue
                await queue.put((loop.time() + delay_s, data))
        except (OSError, asyncio.IncompleteReadError) as exc:
            log.debug("fault proxy: connection ended: %r", exc)
        finally:
            if graceful:
                while not sender.done():  # a sender stuck on a dead socket ends by itself
                    try:
                        queue.put_nowait(None)
                        break
                    except asyncio.QueueFull:
                        await asyncio.sleep(0.01)
                with contextlib.suppress(Exception):
                    await sender
                with contextlib.suppress(Exception):
                    dst.close()
            else:
                sender.cancel()
                pair.abort()
                with contextlib.suppress(BaseException):
                    await sender
            self._pairs.discard(pair)

    async def _read_unit(self, src: asyncio.StreamReader, framed: bool) -> tuple[bytes, bool] | None:
        """The next unit and whether the stream still counts as framed; ``None`` at end of stream."""
        if not framed:
            data = await src.read(_READ_CHUNK)
            return (data, False) if data else None
        try:
            head = await src.readexactly(_LEN.size)
        except asyncio.IncompleteReadError as exc:
            return (exc.partial, False) if exc.partial else None
        (size,) = _LEN.unpack(head)
        if size > self._max_frame:
            return head, False  # not a frame we are willing to buffer: forward raw from here on
        try:
            body = await src.readexactly(size)
        except asyncio.IncompleteReadError as exc:
            return (head + exc.partial, False)
        return head + body, True

    async def _send_due(
        self, queue: asyncio.Queue[tuple[float, bytes] | None], dst: asyncio.StreamWriter, pair: _Pair
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                item = await queue.get()
                if item is None:
                    break
                due, data = item
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                dst.write(data)
                await dst.drain()
                with self._lock:
                    self._stats["units_forwarded"] += 1
                    self._stats["bytes_forwarded"] += len(data)
        except (OSError, ConnectionError) as exc:
            log.debug("fault proxy: forwarding failed: %r", exc)
            pair.abort()
