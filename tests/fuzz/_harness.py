"""What every fuzz harness under tests/fuzz shares (tests/fuzz/README.md).

* :func:`instrumented`: a context manager to import the project under, so atheris's
  coverage instrumentation covers it when a harness runs as a fuzzer (and nothing
  happens when a test imports the harness).
* :func:`run`: the command line of a harness (libFuzzer's flags and corpus directories);
  an empty or missing corpus directory is seeded with the harness's genuine inputs.
* :class:`Mutator`: a structure-aware mutator for msgpack inputs (decode, edit the tree:
  replace, delete, duplicate, retype, tweak, splice; re-encode canonically or not),
  with byte-level edits mixed in.  It is deterministic for a seed, so
  tests/test_fuzz_regressions.py can replay a bounded sample of it without atheris.
* :func:`replay`: that bounded, deterministic sample run.

Nothing in this module imports the project: :func:`instrumented` must see it first.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import msgpack

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
for _p in (str(ROOT), str(TESTS), str(Path(__file__).resolve().parent)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

PACKAGES = ["ledger", "verify", "node", "api", "signer", "lambtrace"]
"""The project's packages: what atheris instruments."""

TestOneInput = Callable[[bytes], None]

INPUT_DEPTH = 24
"""Nesting a harness accepts in its own (msgpack) input (:func:`input_limits`): deeper
than any limit of the project, so the values inside (frames, events) can exceed theirs."""


class Finding(Exception):
    """Raised by a harness for a violation that is not an exception of the target itself
    (a broken invariant, or an allowed error type with a safety-net reason)."""


def input_limits() -> Any:
    """:class:`ledger.limits.Limits` for a harness's own input (imported when called)."""
    from ledger.limits import Limits

    return Limits(max_depth=INPUT_DEPTH)


def fuzzing() -> bool:
    """Whether the running program is a harness started as a fuzzer (``python fuzz_x.py``)."""
    main = sys.modules.get("__main__")
    name = Path(getattr(main, "__file__", "") or "").name
    return name.startswith("fuzz_") and name.endswith(".py")


def instrumented() -> contextlib.AbstractContextManager[Any]:
    """Instrument the project's modules imported inside the block, when fuzzing."""
    if not fuzzing():
        return contextlib.nullcontext()
    import atheris

    return atheris.instrument_imports(include=PACKAGES)


# --------------------------------------------------------------------------- running


def _seed_dir(d: Path, seeds: Sequence[bytes]) -> None:
    d.mkdir(parents=True, exist_ok=True)
    if any(d.iterdir()):
        return
    for s in seeds:
        (d / ("seed-" + hashlib.sha1(s).hexdigest())).write_bytes(s)


def run(test_one_input: TestOneInput, seeds: Callable[[], Sequence[bytes]], mutator: Mutator | None = None) -> None:
    """``python fuzz_x.py [libFuzzer flags] [corpus dir ...]``: fuzz ``test_one_input``.

    The first corpus directory is created and filled with ``seeds()`` if it is missing
    or empty; without any, a directory under /tmp is used.  ``-timeout`` defaults to 20 s
    (an input that slow is a finding too).
    """
    import atheris

    argv = list(sys.argv)
    dirs = [a for a in argv[1:] if not a.startswith("-")]
    if not dirs:
        d = Path("/tmp") / f"lambtrace-{Path(argv[0]).stem}-corpus"
        argv.append(str(d))
        dirs = [str(d)]
    _seed_dir(Path(dirs[0]), seeds())
    if not any(a.startswith("-timeout=") for a in argv):
        argv.insert(1, "-timeout=20")
    kwargs: dict[str, Any] = {}
    if mutator is not None:
        kwargs["custom_mutator"] = mutator.libfuzzer
    atheris.Setup(argv, test_one_input, **kwargs)
    atheris.Fuzz()


def replay(test_one_input: TestOneInput, seeds: Sequence[bytes], mutator: Mutator, *, rounds: int,
           seed: int = 0) -> int:
    """Run every seed, then ``rounds`` deterministic mutants of them (pure Python, no
    atheris); return how many inputs ran.  Any finding propagates."""
    rng = random.Random(seed)
    n = 0
    for s in seeds:
        test_one_input(s)
        n += 1
    pool = list(seeds)
    for _ in range(rounds):
        data = mutator.mutate(rng.choice(pool), 1 << 20, rng.randrange(2**32), native=False)
        test_one_input(data)
        n += 1
        if rng.random() < 0.3:
            pool.append(data)  # mutants of mutants, as a fuzzer's corpus grows
    return n


# --------------------------------------------------------------------------- mutation

INTERESTING_INTS = [0, 1, -1, 2, 7, 31, 32, 33, 63, 64, 65, 127, 128, 255, 256, 1023, 1024, 1025, 65535, 65536,
                    2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**53 - 1, 2**53, 2**63 - 1, 2**63, 2**64 - 1,
                    -(2**31), -(2**63), -32, -33, -129]
INTERESTING: list[Any] = [None, True, False, "", b"", [], {}, "x" * 65, "x" * 513, b"\x00" * 31, b"\x00" * 32,
                          b"\xff" * 32, b"\x00" * 33, b"\x00" * 64, b"\x01" * 64, "\u0660", "é", "\x00", "a" * 64,
                          [None], [[]], {"": None}]


def _json_encode(value: Any) -> bytes:
    """JSON text of a mutant of a JSON input (bytes spliced in become hex, as the API writes them)."""
    try:
        return json.dumps(value, ensure_ascii=False, default=lambda b: b.hex() if type(b) is bytes else str(b)).encode()
    except (ValueError, TypeError, RecursionError):
        return b"{}"


def _paths(v: Any, path: tuple[Any, ...] = (), out: list[tuple[Any, ...]] | None = None,
           depth: int = 0) -> list[tuple[Any, ...]]:
    """Every path to a value inside ``v`` (the root is ``()``), at most a few thousand."""
    if out is None:
        out = []
    out.append(path)
    if depth > 12 or len(out) > 4000:
        return out
    if type(v) is dict:
        for k, x in v.items():
            _paths(x, (*path, k), out, depth + 1)
    elif type(v) is list:
        for i, x in enumerate(v):
            _paths(x, (*path, i), out, depth + 1)
    return out


def _get(v: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        v = v[p]
    return v


def _subtrees(v: Any, out: list[Any], depth: int = 0) -> None:
    if len(out) > 2000 or depth > 12:
        return
    out.append(v)
    if type(v) is dict:
        for x in v.values():
            _subtrees(x, out, depth + 1)
    elif type(v) is list:
        for x in v:
            _subtrees(x, out, depth + 1)


def _copy(v: Any) -> Any:
    if type(v) is dict:
        return {k: _copy(x) for k, x in v.items()}
    if type(v) is list:
        return [_copy(x) for x in v]
    return v


def _tweak(x: Any, rng: random.Random, pick: Callable[[], Any], same: Callable[[type], Any]) -> Any:
    """A value like ``x`` but slightly off (or another one altogether)."""
    t = type(x)
    r = rng.random()
    if r < 0.25 and t in (str, int, bytes):
        alike = same(t)
        if alike is not None:
            return alike
    if r < 0.15:
        return _copy(pick())
    if r < 0.3:
        return _copy(rng.choice(INTERESTING))
    if t is bool:
        return not x
    if t is int:
        return rng.choice([x + 1, x - 1, -x, x * 2, x // 2, rng.choice(INTERESTING_INTS), x ^ (1 << rng.randrange(64))])
    if t is bytes:
        b = bytearray(x)
        op = rng.randrange(5)
        if op == 0 and b:
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        elif op == 1 and b:
            del b[rng.randrange(len(b)):]
        elif op == 2:
            b += bytes(rng.randrange(256) for _ in range(rng.choice([1, 2, 31, 32, 33])))
        elif op == 3:
            return x.hex()
        else:
            return bytes(rng.randrange(256) for _ in range(len(b)))
        return bytes(b)
    if t is str:
        op = rng.randrange(7)
        if op == 0 and x:
            i = rng.randrange(len(x))
            return x[:i] + chr(ord(x[i]) ^ (1 << rng.randrange(7))) + x[i + 1:]
        if op == 1:
            return x[: rng.randrange(len(x) + 1)]
        if op == 2:
            return x + rng.choice(["0", "1", "9", "-", ".", "_", "é", "\u0661", " ", "\x00", x])
        if op == 3:
            return x.upper()
        if op == 4:
            return x.encode()
        if op == 5 and x.isdigit() and len(x) < 30:
            return int(x)
        return x * 2
    if t is list:
        if x and rng.random() < 0.5:
            return x[:-1]
        return [*x, _copy(rng.choice(x)) if x else _copy(pick())]
    if t is dict:
        return {k: v for k, v in x.items() if rng.random() < 0.8}
    if x is None:
        return _copy(pick())
    return x


class Mutator:
    """Structure-aware mutations of msgpack inputs; see the module docstring.

    ``dictionary``: values worth splicing in (ids, names, hashes of the world the
    harness runs in); subtrees of the input are spliced too.  ``post``: a harness's own
    repair or refinement of a mutated value (e.g. re-signing), applied before encoding.
    """

    def __init__(self, dictionary: Sequence[Any] = (), post: Callable[[Any, random.Random], Any] | None = None,
                 canonical_share: float = 0.9, byte_share: float = 0.15) -> None:
        self.dictionary = list(dictionary)
        self._by_type: dict[type, list[Any]] = {}
        for x in self.dictionary:
            self._by_type.setdefault(type(x), []).append(x)
        self.post = post
        self.canonical_share = canonical_share
        self.byte_share = byte_share

    def libfuzzer(self, data: bytes, max_size: int, seed: int) -> bytes:
        return self.mutate(data, max_size, seed, native=True)

    def mutate(self, data: bytes, max_size: int, seed: int, *, native: bool) -> bytes:
        rng = random.Random(seed)
        if rng.random() < self.byte_share:
            return self._bytes(data, max_size, rng, native)
        as_json = data.lstrip(b" \t\r\n")[:1] == b"{"
        try:
            value = json.loads(data) if as_json else msgpack.unpackb(data, raw=False, strict_map_key=False,
                                                                     use_list=True)
        except Exception:
            return self._bytes(data, max_size, rng, native)
        for _ in range(1 + int(rng.expovariate(0.7))):
            value = self.mutate_value(value, rng)
        if self.post is not None:
            try:
                value = self.post(value, rng)
            except Exception:  # a repair that does not apply to this mutant: keep it as it is
                pass
        out = _json_encode(value) if as_json else self.encode(value, rng)
        return out if len(out) <= max_size else data[:max_size]

    def encode(self, value: Any, rng: random.Random) -> bytes:
        try:
            if rng.random() < self.canonical_share:
                from ledger import codec

                return codec.encode(value)
            return msgpack.packb(value, use_bin_type=rng.random() < 0.8)
        except Exception:
            try:
                return msgpack.packb(value, use_bin_type=True)
            except Exception:
                return b"\xc0"

    def mutate_value(self, value: Any, rng: random.Random) -> Any:
        value = _copy(value)
        paths = _paths(value)
        path = rng.choice(paths)
        subs: list[Any] = []
        _subtrees(value, subs)

        def pick() -> Any:
            if self.dictionary and rng.random() < 0.6:
                return rng.choice(self.dictionary)
            return rng.choice(subs)

        def same(t: type) -> Any:
            """A value of type ``t`` from the dictionary or the input itself, if any."""
            pool = self._by_type.get(t, []) + [x for x in subs if type(x) is t]
            return rng.choice(pool) if pool else None

        if not path:
            return _tweak(value, rng, pick, same) if rng.random() < 0.3 else value
        parent = _get(value, path[:-1])
        key = path[-1]
        op = rng.randrange(10)
        if op <= 4:
            parent[key] = _tweak(parent[key], rng, pick, same)
        elif op == 5:  # delete
            del parent[key]
        elif op == 6:  # duplicate / insert
            if type(parent) is list:
                parent.insert(rng.randrange(len(parent) + 1), _copy(parent[key]))
            else:
                names = [k for k in self.dictionary if type(k) is str] or ["x"]
                new = rng.choice([*names, "", "x", f"{key}_", str(key).upper()])
                parent[new] = _copy(pick())
        elif op == 7:  # swap with a sibling
            keys = list(range(len(parent))) if type(parent) is list else list(parent)
            other = rng.choice(keys)
            parent[key], parent[other] = parent[other], parent[key]
        elif op == 8:  # splice
            parent[key] = _copy(pick())
        else:  # wrap or unwrap
            x = parent[key]
            if type(x) is list and len(x) == 1:
                parent[key] = x[0]
            elif rng.random() < 0.5:
                parent[key] = [x]
            else:
                parent[key] = {"x": x} if rng.random() < 0.5 else {str(key): x}
        return value

    def _bytes(self, data: bytes, max_size: int, rng: random.Random, native: bool) -> bytes:
        if native:
            import atheris

            return atheris.Mutate(data, max_size)
        b = bytearray(data)
        for _ in range(1 + rng.randrange(4)):
            op = rng.randrange(6)
            if op == 0 and b:
                b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
            elif op == 1 and b:
                i = rng.randrange(len(b))
                del b[i: i + rng.randrange(1, 9)]
            elif op == 2:
                i = rng.randrange(len(b) + 1)
                b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 9)))
            elif op == 3 and b:
                b[rng.randrange(len(b))] = rng.choice([0x00, 0x7F, 0x80, 0x90, 0xC0, 0xC1, 0xC4, 0xCC, 0xCD, 0xD0,
                                                       0xD9, 0xDC, 0xDE, 0xFF])
            elif op == 4 and b:
                del b[rng.randrange(len(b) + 1):]
            elif b:
                i, j = rng.randrange(len(b)), rng.randrange(len(b))
                b[i], b[j] = b[j], b[i]
        return bytes(b[:max_size])


@contextlib.contextmanager
def quiet_logs() -> Iterator[None]:
    """Silence the project's loggers (a harness feeds them junk by design)."""
    import logging

    old = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(old)


def env_flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")
