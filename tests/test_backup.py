"""Backup and restore (docs/backup.md): the framed snapshot format, ``GET /v1/backup``,
``lambtrace backup|restore``, and a restored node that audits clean and rejoins its network."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from test_e2e_node import chain_view

from api.client import Client
from helpers import World, free_port, healthy, start, wait_until
from helpers_api import COOP, ApiWorld
from lambtrace.cli import main
from lambtrace.config import NodeConfig, genesis_to_json
from ledger.errors import LedgerError, StorageError
from node.backup import BackupError, read_backup, restore, snapshot_stream, write_backup
from node.kv import LevelKV
from node.store import STORE_FORMAT, ChainStore
from signer import generate, save_key_file
from test_rejections_http import base


def lambtrace(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lambtrace", *args], capture_output=True, text=True, timeout=300)


# --------------------------------------------------------------------------- in process


@pytest.fixture
def chain(tmp_path: Path) -> Any:
    """An ApiWorld over a real LevelDB with a few committed blocks, and its genesis file."""
    (tmp_path / "src").mkdir()
    w = ApiWorld(kv=LevelKV(str(tmp_path / "src" / "chain.ldb")))
    for i in range(4):
        w.submit([w.enroll(f"{COOP}-{i}", "cooperative", "152523"), w.enroll(f"{COOP}-b{i}", "cooperative", "152524")])
        w.commit()
    (tmp_path / "genesis.json").write_text(genesis_to_json(w.genesis))
    yield w, tmp_path
    w.store.close()


def test_backup_is_a_consistent_snapshot_and_restores(chain: Any) -> None:
    w, tmp = chain
    stream = snapshot_stream(w.store.kv)
    assert stream.header.height == 4 and stream.header.log_size == 8
    w.submit([w.enroll("late", "cooperative", "152523")])
    w.commit()  # committed after the snapshot: not in the backup
    header, records, size = write_backup(iter(stream), tmp / "b.ltb")
    assert (header.height, header.log_size, header.log_root) == (4, 8, w.store.header(4).log_root)
    assert size == (tmp / "b.ltb").stat().st_size and records > 10
    summary = restore(tmp / "b.ltb", tmp / "dst", genesis=w.genesis)
    assert summary["height"] == 4 and summary["records"] == records
    store = ChainStore(LevelKV(str(tmp / "dst" / "chain.ldb")), w.genesis)
    try:
        assert store.height == 4 and store.last_hash == w.store.header(4).hash
        assert store.log_size == 8 and store.leaf(8) is None
    finally:
        store.close()
    assert main(["audit", "--data", str(tmp / "dst"), "--genesis", str(tmp / "genesis.json"),
                 "--workers", "0", "--quiet"]) == 0


def test_restore_refuses_corrupt_truncated_foreign_and_occupied(chain: Any, capsys: pytest.CaptureFixture[str]
                                                                ) -> None:
    w, tmp = chain
    write_backup(iter(snapshot_stream(w.store.kv)), tmp / "b.ltb")
    raw = (tmp / "b.ltb").read_bytes()
    bad = bytearray(raw)
    bad[len(raw) // 2] ^= 0x01
    (tmp / "flipped.ltb").write_bytes(bytes(bad))
    (tmp / "short.ltb").write_bytes(raw[: len(raw) - 100])
    (tmp / "junk.ltb").write_bytes(b"not a backup at all")

    for name, code in (("flipped", "backup_corrupt"), ("short", "backup_corrupt"), ("junk", "backup_format")):
        rc = main(["restore", "--in", str(tmp / f"{name}.ltb"), "--data", str(tmp / name), "--quiet"])
        out, err = capsys.readouterr()
        assert rc == 1, (name, out, err)
        assert json.loads(out.splitlines()[-1])["code"] == code and f"error: {code}:" in err
        assert not (tmp / name / "chain.ldb").exists() and not (tmp / name / "chain.ldb.restoring").exists()

    other = World()
    (tmp / "other.json").write_text(genesis_to_json(other.genesis))
    rc = main(["restore", "--in", str(tmp / "b.ltb"), "--data", str(tmp / "foreign"), "--genesis",
               str(tmp / "other.json"), "--quiet"])
    assert rc == 1 and "error: genesis_mismatch:" in capsys.readouterr().err
    assert not (tmp / "foreign" / "chain.ldb").exists()

    (tmp / "occupied").mkdir()
    (tmp / "occupied" / "wal").mkdir()
    rc = main(["restore", "--in", str(tmp / "b.ltb"), "--data", str(tmp / "occupied"), "--quiet"])
    assert rc == 2 and "error: target_not_empty:" in capsys.readouterr().err

    # only a sign guard may already be there: a validator keeps its own
    (tmp / "kept").mkdir()
    (tmp / "kept" / "sign-guard.json").write_text("{}")
    rc = main(["restore", "--in", str(tmp / "b.ltb"), "--data", str(tmp / "kept"), "--quiet"])
    assert rc == 0, capsys.readouterr()
    assert (tmp / "kept" / "sign-guard.json").read_text() == "{}"


def test_read_backup_checks_the_record_count_and_trailing_hash(chain: Any) -> None:
    w, tmp = chain
    data = b"".join(snapshot_stream(w.store.kv, chunk=64))
    header, records = read_backup(io.BytesIO(data))
    assert header.chain == w.genesis.chain and header.genesis_hash == w.genesis.hash
    with pytest.raises(BackupError) as e:
        read_backup(io.BytesIO(data + b"x"))
    assert e.value.code == "backup_corrupt"
    with pytest.raises(BackupError):
        read_backup(io.BytesIO(data[:-1] + bytes([data[-1] ^ 1])))


def test_backup_endpoint_streams_to_loopback_only(chain: Any) -> None:
    w, tmp = chain
    r = w.http.get("/v1/backup", environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert r.status_code == 403 and r.get_json()["error"]["code"] == "forbidden"
    r = w.http.get("/v1/backup")
    assert r.status_code == 200 and r.headers["X-LambTrace-Height"] == "4"
    header, _records = read_backup(io.BytesIO(r.get_data()))
    assert header.height == 4
    w.app.config["backup_allow"] = "10.1.2.3"
    assert w.http.get("/v1/backup", environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code == 200


def test_backup_of_a_stopped_node_by_data_dir(chain: Any, capsys: pytest.CaptureFixture[str]) -> None:
    w, tmp = chain
    w.store.close()
    try:
        assert main(["backup", "--data", str(tmp / "src"), "--out", str(tmp / "b.ltb"), "--quiet"]) == 0
        summary = json.loads(capsys.readouterr().out)
        assert summary["height"] == 4 and summary["source"].startswith("data:")
        assert main(["restore", "--in", str(tmp / "b.ltb"), "--data", str(tmp / "dst"), "--quiet",
                     "--genesis", str(tmp / "genesis.json")]) == 0
    finally:
        w.store = ChainStore(LevelKV(str(tmp / "src" / "chain.ldb")), w.genesis)  # the fixture closes it


def test_restore_refuses_a_store_whose_records_do_not_make_the_chain(chain: Any) -> None:
    w, tmp = chain
    w.store.kv.write({b"N" + bytes([3]) + (0).to_bytes(8, "big"): bytes(32)})  # a wrong Merkle root node
    write_backup(iter(snapshot_stream(w.store.kv)), tmp / "b.ltb")
    with pytest.raises(LedgerError) as e:
        restore(tmp / "b.ltb", tmp / "dst")
    assert e.value.code == "backup_inconsistent"
    assert not (tmp / "dst" / "chain.ldb").exists()


# --------------------------------------------------------------------------- real processes


class Tagger:
    """Keeps submitting lamb.tag events to ``url`` (each waited for) until stopped."""

    def __init__(self, w: World, urls: list[str], first: int) -> None:
        self.w, self.urls, self.serial = w, urls, first
        self.committed: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.is_set():
            url = self.urls[self.serial % len(self.urls)]
            ev = self.w.tag("agent", f"31525230{self.serial:07d}")
            self.serial += 1
            try:
                res = Client(url, timeout=10).submit([ev], wait=True, timeout_ms=3000)
                if res[0].get("state") == "committed":
                    self.committed.append(res[0]["id"])
            except Exception:  # a node being killed: the next one takes the next event
                pass
            time.sleep(0.02)

    def halt(self) -> None:
        self.stop.set()
        self.thread.join(timeout=20)


@pytest.mark.cluster
def test_backup_of_a_running_node_under_load(tmp_path: Path) -> None:
    w = World(now=int(time.time() * 1000))
    (tmp_path / "genesis.json").write_text(genesis_to_json(w.genesis))
    save_key_file(w.validator, tmp_path / "node.json", passphrase=None, insecure_plain=True)
    port = free_port()
    NodeConfig(name="league", genesis=tmp_path / "genesis.json", data=tmp_path / "data",
               listen=f"127.0.0.1:{port}", key=tmp_path / "node.json").save(tmp_path / "config.json")
    url = f"http://127.0.0.1:{port}"
    proc = start(tmp_path / "config.json", tmp_path / "node.log")
    try:
        assert wait_until(lambda: healthy(url), 30), (tmp_path / "node.log").read_text()
        res = Client(url).submit([*base(w), w.issue("coop", "315252300001000", 800)], wait=True)
        assert all(r.get("state") == "committed" for r in res), res
        load = Tagger(w, [url], 1000)
        try:
            assert wait_until(lambda: len(load.committed) >= 5, 30)
            done = lambtrace("backup", "--url", url, "--out", str(tmp_path / "live.ltb"))
            assert done.returncode == 0, done.stderr
            assert wait_until(lambda: len(load.committed) >= 15, 30)  # it kept committing meanwhile
        finally:
            load.halt()
        summary = json.loads(done.stdout)
        hashes, _root, size = chain_view(url)
        assert 0 < summary["height"] < len(hashes) and summary["log_size"] < size
        assert not (tmp_path / "live.ltb.part").exists()

        done = lambtrace("restore", "--in", str(tmp_path / "live.ltb"), "--data", str(tmp_path / "restored"),
                         "--genesis", str(tmp_path / "genesis.json"))
        assert done.returncode == 0, done.stderr
        done = lambtrace("audit", "--data", str(tmp_path / "restored"), "--genesis", str(tmp_path / "genesis.json"),
                         "--quiet", "--workers", "0")
        assert done.returncode == 0, done.stdout + done.stderr
        assert json.loads(done.stdout)["height"] == summary["height"]
        store = ChainStore(LevelKV(str(tmp_path / "restored" / "chain.ldb")), w.genesis)
        try:
            restored = [store.header(h).hash.hex() for h in range(1, store.height + 1)]  # type: ignore[union-attr]
        finally:
            store.close()
        assert restored == hashes[: summary["height"]]
        # a node's API is for loopback clients only by default; the running node keeps serving
        assert requests.get(url + "/healthz", timeout=5).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=15)


@pytest.mark.cluster
def test_restored_validator_rejoins_the_network(tmp_path: Path) -> None:
    from test_cluster import NAMES, RealCluster, same_chain

    c = RealCluster(tmp_path)
    try:
        setup = [*base(c.world), c.world.issue("coop", "315252300001000", 20_000)]
        res = Client(c.url("league")).submit(setup, wait=True, timeout_ms=30_000)
        assert all(r.get("state") == "committed" for r in res), res
        victim = "banner-152524"
        others = [n for n in NAMES if n != victim]
        load = Tagger(c.world, [c.url(n) for n in others], 1000)
        try:
            assert wait_until(lambda: len(load.committed) >= 5, 30)
            done = lambtrace("backup", "--url", c.url(victim), "--out", str(tmp_path / "victim.ltb"))
            assert done.returncode == 0, done.stderr
            at = json.loads(done.stdout)["height"]
            c.kill(victim)
            data = tmp_path / victim
            for p in data.iterdir():  # the disk is lost; the validator's own sign guard survives
                if p.name != "sign-guard.json":
                    shutil.rmtree(p) if p.is_dir() else p.unlink()
            assert wait_until(lambda: min(c.heights().values()) > at + 3, 40), c.heights()
            done = lambtrace("restore", "--in", str(tmp_path / "victim.ltb"), "--data", str(data),
                             "--genesis", str(tmp_path / "genesis.json"))
            assert done.returncode == 0, done.stdout + done.stderr
            audit = lambtrace("audit", "--data", str(data), "--genesis", str(tmp_path / "genesis.json"),
                              "--quiet", "--workers", "0")
            assert audit.returncode == 0, audit.stdout + audit.stderr
            c.start(victim)
            assert wait_until(lambda: c.status(victim)["height"] > at, 60), c.heights(NAMES)
        finally:
            load.halt()
        assert load.committed
        assert wait_until(lambda: len(set(c.heights(NAMES).values())) == 1, 60), c.heights(NAMES)
        same_chain(c, NAMES)
        for eid in load.committed[-5:]:
            assert Client(c.url(victim)).event(eid)["state"] == "committed"
    finally:
        c.close()


def test_restore_replaces_the_scratch_copy_a_killed_restore_left(chain: Any) -> None:
    w, tmp = chain
    write_backup(iter(snapshot_stream(w.store.kv)), tmp / "b.ltb")
    left = tmp / "dst" / "chain.ldb.restoring"
    left.mkdir(parents=True)
    (left / "000003.log").write_bytes(b"half of a LevelDB")
    assert restore(tmp / "b.ltb", tmp / "dst", genesis=w.genesis)["height"] == 4
    assert sorted(p.name for p in (tmp / "dst").iterdir()) == ["chain.ldb"]


# --------------------------------------------------------------------------- store format


def test_a_store_records_its_format_and_a_newer_one_is_refused_everywhere(
        chain: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """Format 1 is written at creation; a store without the marker (written before it
    existed) gets it when opened; a later version's store is refused by the node's store,
    audit and export (exit 2, ``store_too_new``) and by restore, and is left as it was."""
    w, tmp = chain
    kv = w.store.kv
    assert kv.get(b"F") == bytes([STORE_FORMAT])
    kv.write({}, (b"F",))  # as a store from before the marker
    w.store.close()
    reopened = ChainStore(LevelKV(str(tmp / "src" / "chain.ldb")), w.genesis)
    assert reopened.kv.get(b"F") == bytes([STORE_FORMAT]) and reopened.height == 4
    reopened.kv.write({b"F": bytes([STORE_FORMAT + 1])})
    write_backup(iter(snapshot_stream(reopened.kv)), tmp / "newer.ltb")
    reopened.close()
    newer = LevelKV(str(tmp / "src" / "chain.ldb"))
    with pytest.raises(StorageError) as e:
        ChainStore(newer, w.genesis)
    newer.close()
    assert e.value.code == "store_too_new" and "newer LambTrace" in e.value.message
    genesis = str(tmp / "genesis.json")
    for argv in (["audit", "--data", str(tmp / "src"), "--genesis", genesis, "--quiet"],
                 ["export", "epcis", "--data", str(tmp / "src"), "--out", str(tmp / "e.json"), "--quiet"]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "store_too_new" in err and "Traceback" not in err, (argv, err)
    with pytest.raises(LedgerError) as r:
        restore(tmp / "newer.ltb", tmp / "dst")
    assert r.value.code == "store_too_new"
    assert not (tmp / "dst" / "chain.ldb").exists()
    # and a marker no version writes is a corrupt store, not a newer one
    kv2 = LevelKV(str(tmp / "src" / "chain.ldb"))
    kv2.write({b"F": b"\x00\x07"})
    with pytest.raises(StorageError) as c:
        ChainStore(kv2, w.genesis)
    kv2.close()
    assert c.value.code == "corrupt_store"


def test_a_node_refuses_a_store_of_a_newer_version(tmp_path: Path) -> None:
    """``lambtrace node`` on a later version's data directory: exit 2 with the code, no
    traceback, and the store untouched."""
    w = World()
    key = tmp_path / "league.key"
    save_key_file(generate("ed25519"), key, passphrase=None, insecure_plain=True)
    (tmp_path / "genesis.json").write_text(genesis_to_json(w.genesis))
    data = tmp_path / "data"
    data.mkdir()
    kv = LevelKV(str(data / "chain.ldb"))
    ChainStore(kv, w.genesis)
    kv.write({b"F": bytes([STORE_FORMAT + 1])})
    kv.close()
    cfg = NodeConfig(name="league", genesis=tmp_path / "genesis.json", data=data, key=key,
                     listen=f"127.0.0.1:{free_port()}")
    cfg.save(tmp_path / "node.json")
    r = lambtrace("node", "--config", str(tmp_path / "node.json"))
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert "store_too_new" in r.stderr and "Traceback" not in r.stderr
    kv = LevelKV(str(data / "chain.ldb"))
    assert kv.get(b"F") == bytes([STORE_FORMAT + 1])
    kv.close()


def _frame(head: dict[str, Any], records: list[tuple[bytes, bytes]], *, count: int | None = None) -> bytes:
    """A backup written by hand, with a correct trailing SHA-256 (the hash only detects
    accidents: anyone can write one, so what lies beneath it must be checked too)."""
    import hashlib
    import struct

    from ledger import codec
    from node.backup import MAGIC

    h = codec.encode(head)
    body = MAGIC + struct.pack(">I", len(h)) + h
    for k, v in records:
        body += struct.pack(">I", len(k)) + k + struct.pack(">I", len(v)) + v
    body += struct.pack(">IQ", 0, len(records) if count is None else count)
    return body + hashlib.sha256(body).digest()


def test_restore_refuses_a_well_hashed_backup_whose_contents_lie(chain: Any) -> None:
    """Every backup here carries a correct SHA-256: what is refused is refused for what
    it holds (its framing, its record order and count, its genesis, its chain), with a
    stable code, and the target is left as it was."""
    from ledger import codec

    w, tmp = chain
    raw = b"".join(snapshot_stream(w.store.kv))
    recs: list[tuple[bytes, bytes]] = []
    header, _n = read_backup(io.BytesIO(raw), on_record=lambda k, v: recs.append((k, v)))
    head = codec.decode(raw[20:20 + int.from_bytes(raw[16:20], "big")])
    assert head["height"] == header.height == 4
    other = World().genesis
    tip = b"H" + (4).to_bytes(8, "big")
    cases: dict[str, tuple[bytes, str]] = {
        "genuine, re-framed": (_frame(head, recs), ""),
        "another format": (_frame({**head, "format": 2}, recs), "backup_format"),
        "records out of order": (_frame(head, [recs[1], recs[0], *recs[2:]]), "backup_corrupt"),
        "a record repeated": (_frame(head, [recs[0], *recs]), "backup_corrupt"),
        "an empty key": (_frame(head, [(b"", b"x"), *recs]), "backup_corrupt"),
        "a count that lies": (_frame(head, recs, count=len(recs) + 1), "backup_corrupt"),
        "no genesis record": (_frame(head, [(k, v) for k, v in recs if k != b"G"]), "backup_inconsistent"),
        "another genesis record": (_frame(head, [(k, other.encode() if k == b"G" else v) for k, v in recs]),
                                   "backup_inconsistent"),
        "the tip block left out": (_frame(head, [(k, v) for k, v in recs if k != tip]), "backup_inconsistent"),
        "a header naming a later height": (_frame({**head, "height": 5}, recs), "backup_inconsistent"),
    }
    for what, (data, code) in cases.items():
        path, dst = tmp / "forged.ltb", tmp / f"dst-{len(code)}-{abs(hash(what)) % 10**6}"
        path.write_bytes(data)
        if not code:
            assert restore(path, dst, genesis=w.genesis)["height"] == 4, what
            continue
        with pytest.raises(LedgerError) as e:
            restore(path, dst, genesis=w.genesis)
        assert e.value.code == code, (what, e.value.code, e.value.message)
        assert not (dst / "chain.ldb").exists() and not (dst / "chain.ldb.restoring").exists(), what
