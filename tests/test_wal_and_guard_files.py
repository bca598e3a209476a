"""The validator's files that make a restart safe: the consensus WAL and the sign guard.

The simulator restarts validators from their in-memory counterparts; these tests hold
the files themselves, as a node writes them and as a crash or a bad disk leaves them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ledger.errors import StorageError
from node.consensus import FileGuard, FileWAL

PREVOTE, PRECOMMIT = 1, 2


def rec(i: int, **kw: object) -> dict[str, object]:
    return {"t": "vote", "height": 7, "round": i, "type": "prevote", "value": None, "from": "league",
            "sig": bytes([i]) * 64, **kw}


# -- the WAL ----------------------------------------------------------------------------

def one_record_then(directory: Path, tail: bytes) -> Path:
    """Height 7's log in ``directory``: one whole record, then ``tail`` as a crash left it."""
    wal = FileWAL(directory)
    wal.append(7, rec(0))
    wal.close()
    path = next(directory.glob("*.wal"))
    with open(path, "ab") as f:
        f.write(tail)
    return path


def test_records_read_back_in_order_across_a_restart(tmp_path: Path) -> None:
    wal = FileWAL(tmp_path)
    for i in range(3):
        wal.append(7, rec(i))
    wal.close()
    assert FileWAL(tmp_path).records(7) == [rec(0), rec(1), rec(2)]
    assert FileWAL(tmp_path).records(8) == []


@pytest.mark.parametrize("tail", [b"\x00\x00", b"\x00\x00\x01\x00" + b"\x91" * 10, b"\x00\x00\x00\x02\xc1\xc1"],
                         ids=["torn-length", "torn-record", "unreadable-record"])
def test_a_torn_tail_is_cut_before_the_next_run_appends(tmp_path: Path, tail: bytes) -> None:
    """A crash in mid-write leaves part of a record at the end of the height's file.  The
    next run must not append after those bytes: the run after it would stop reading at
    them and lose everything that run logged (its own votes, hence its lock)."""
    one_record_then(tmp_path, tail)
    second = FileWAL(tmp_path)
    assert second.records(7) == [rec(0)]
    second.append(7, rec(1))  # the second run votes, then crashes too
    second.close()
    third = FileWAL(tmp_path)
    assert third.records(7) == [rec(0), rec(1)]


def test_forget_below_removes_older_heights_only(tmp_path: Path) -> None:
    wal = FileWAL(tmp_path)
    for h in (5, 6, 7):
        wal.append(h, rec(0, height=h))
    (tmp_path / "notes.wal").write_bytes(b"")  # not a height: left alone
    wal.forget_below(7)
    assert sorted(p.name for p in tmp_path.glob("*.wal")) == ["000000000007.wal", "notes.wal"]
    assert wal.records(6) == [] and wal.records(7) == [rec(0, height=7)]


def test_a_new_height_file_and_each_guard_record_are_made_durable_in_their_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file's own fsync does not make its name durable: after a power loss a new
    height's log (holding fsynced votes) could be missing, or the guard's rename undone
    (back to an older record, which would allow a second, different vote).  Both sync
    their directory; appending to an existing file does not need to."""
    import node.consensus as C

    synced: list[Path] = []
    monkeypatch.setattr(C, "fsync_directory", lambda d: synced.append(Path(d)))
    wal = FileWAL(tmp_path / "wal")
    wal.append(7, rec(0))
    wal.append(7, rec(1))
    assert synced == [tmp_path / "wal"]  # once, when the height's file was created
    wal.close()
    reopened = FileWAL(tmp_path / "wal")
    reopened.append(7, rec(2))  # the file exists: nothing new to name
    reopened.close()
    assert synced == [tmp_path / "wal"]
    guard = FileGuard(tmp_path / "sign_guard.json")
    assert guard.check_and_record(5, 0, PREVOTE, b"prevote 5/0 for A")
    assert guard.check_and_record(5, 0, PRECOMMIT, b"precommit 5/0 for A")
    assert synced == [tmp_path / "wal", tmp_path, tmp_path]


# -- the sign guard ---------------------------------------------------------------------

def test_the_guard_refuses_what_it_recorded_against_across_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "sign_guard.json"
    g = FileGuard(path)
    assert g.check_and_record(5, 0, PREVOTE, b"prevote 5/0 for A")
    again = FileGuard(path)  # the node restarts
    assert again.check_and_record(5, 0, PREVOTE, b"prevote 5/0 for A")  # the same bytes: signed again
    assert not again.check_and_record(5, 0, PREVOTE, b"prevote 5/0 for B")  # a conflicting vote
    assert not again.check_and_record(5, 0, 0, b"proposal 5/0")  # an earlier step
    assert not again.check_and_record(4, 9, PRECOMMIT, b"precommit 4/9")  # an earlier height
    assert again.check_and_record(5, 0, PRECOMMIT, b"precommit 5/0 for A")
    assert again.check_and_record(5, 1, 0, b"proposal 5/1")
    assert json.loads(path.read_text())["round"] == 1
    assert not FileGuard(path).check_and_record(5, 0, PRECOMMIT, b"precommit 5/0 for A")


@pytest.mark.parametrize("content", ["", "{", "[]", '{"height": 5}', '{"height": "x", "round": 0, "step": 1, '
                                     '"sign_bytes_sha256": "00"}'])
def test_an_unreadable_guard_stops_the_node_rather_than_signing_blind(tmp_path: Path, content: str) -> None:
    path = tmp_path / "sign_guard.json"
    path.write_text(content)
    with pytest.raises(StorageError) as e:
        FileGuard(path)
    assert e.value.code == "corrupt_guard"


def test_a_guard_that_cannot_be_written_refuses_and_keeps_its_record(tmp_path: Path) -> None:
    path = tmp_path / "sign_guard.json"
    g = FileGuard(path)
    assert g.check_and_record(5, 0, PREVOTE, b"a")
    g.path = tmp_path / "gone" / "sign_guard.json"  # its directory vanished (a disk unmounted)
    with pytest.raises(StorageError) as e:
        g.check_and_record(5, 0, PRECOMMIT, b"b")
    assert e.value.code == "storage_unavailable"
    assert g.last == (5, 0, PREVOTE)
    assert not g.check_and_record(5, 0, PREVOTE, b"c")


def _damaged_in_the_middle(tmp_path: Path) -> tuple[FileWAL, Path]:
    wal = FileWAL(tmp_path)
    for i in range(4):
        wal.append(7, rec(i))
    wal.close()
    path = next(tmp_path.glob("*.wal"))
    raw = bytearray(path.read_bytes())
    second = 4 + int.from_bytes(raw[:4], "big")
    raw[second + 4] = 0xC1  # the second record's first byte: never valid msgpack
    path.write_bytes(bytes(raw))
    return FileWAL(tmp_path), path


@pytest.mark.parametrize("tail", [b"", b"\x00\x00\x01\x00" + b"\x91" * 10, b"\x00" * 300,
                                  b"\x00\x00\x00\x02\xc1\xc1", b"\x00\x00\x00\x02\xc1\xc1" + b"\x00" * 50],
                         ids=["none", "torn", "zero-filled", "last-unreadable", "last-unreadable-then-zeros"])
def test_what_a_crash_leaves_at_the_end_is_not_damage(tmp_path: Path, tail: bytes) -> None:
    path = one_record_then(tmp_path, tail)
    assert FileWAL(tmp_path).set_aside_if_damaged(7) is None
    assert path.exists() and FileWAL(tmp_path).records(7) == [rec(0)]
    assert FileWAL(tmp_path).set_aside_if_damaged(8) is None  # no log at all


def test_a_log_damaged_before_its_end_is_set_aside(tmp_path: Path) -> None:
    """An unreadable record with whole records after it: those were stepped on and cannot
    be read back (they may hold this validator's lock), so the file is moved aside and the
    height starts from nothing, the caller pausing the validator's signatures."""
    wal, path = _damaged_in_the_middle(tmp_path)
    assert wal.records(7) == [rec(0)]
    aside = wal.set_aside_if_damaged(7)
    assert aside == path.with_name(path.name + ".damaged") and aside.exists() and not path.exists()
    assert wal.records(7) == []
    wal.append(7, rec(9))
    assert FileWAL(tmp_path).records(7) == [rec(9)]


def test_a_validator_with_a_damaged_log_pauses_its_signatures(tmp_path: Path) -> None:
    from helpers import World
    from ledger.genesis import Genesis, Params, Validator
    from node.consensus import LOST_GUARD_MARGIN_MS, damaged_wal_pause
    from node.kv import MemoryKV
    from node.node import Node
    from node.store import ChainStore
    from signer import generate

    w = World()
    key = generate("ed25519")
    g = Genesis(chain=w.chain, time=w.now - 60_000, trace_office=w.genesis.trace_office, params=Params(),
                validators=(Validator("n0", "152500", "ed25519", key.public_key, 1),))
    node = Node(ChainStore(MemoryKV(), g), g, name="n0", signer=key, clock=lambda: 1_000_000, verify_threads=0)
    (tmp_path / "wal").mkdir()
    wal = FileWAL(tmp_path / "wal")
    assert damaged_wal_pause(wal, node) is None
    wal, _path = _damaged_in_the_middle(tmp_path / "wal")
    # the node resumes at height 1: damage at another height does not concern it
    assert damaged_wal_pause(wal, node) is None
    (tmp_path / "wal" / f"{7:012d}.wal").rename(tmp_path / "wal" / f"{1:012d}.wal")
    assert damaged_wal_pause(FileWAL(tmp_path / "wal"), node) == 1_000_000 + LOST_GUARD_MARGIN_MS
