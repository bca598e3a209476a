"""Bad input to the command line: a clear one-line error and a documented exit code, never a
traceback, a hang or a half-written directory (README "Commands")."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from lambtrace import demo
from lambtrace.cli import main
from ledger import codec
from signer import generate, save_key_file


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return rc, out, err


class FakeServer:
    """Not a LambTrace node: answers every request with ``answers[path]`` (or ``default``):
    ``(status, content type, body bytes)``."""

    def __init__(self) -> None:
        self.answers: dict[str, tuple[int, str, bytes]] = {}
        self.default: tuple[int, str, bytes] = (200, "application/json", b"[1, 2, 3]")
        answers, default = self.answers, lambda: self.default

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                if self.command == "POST":
                    self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, ctype, body = answers.get(self.path.split("?", 1)[0], default())
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                self._answer()

            def do_POST(self) -> None:
                self._answer()

            def log_message(self, *_a: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def json(self, path: str, value: Any, status: int = 200) -> None:
        self.answers[path] = (status, "application/json", json.dumps(value).encode())


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    s = FakeServer()
    s.thread.start()
    try:
        yield s
    finally:
        s.httpd.shutdown()
        s.httpd.server_close()


@pytest.fixture
def files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Path]:
    """A plain key file, a genesis of its own chain, and a few broken files."""
    key = tmp_path / "key.json"
    save_key_file(generate("ed25519"), key, passphrase=None, insecure_plain=True)
    genesis = tmp_path / "genesis.json"
    assert main(["genesis", "--chain", "bad-input-test", "--validator", f"league:152500:{key}",
                 "--trace-office-key", str(key), "--time", "1790000000000", "--out", str(genesis)]) == 0
    capsys.readouterr()
    lst = tmp_path / "list.json"
    lst.write_text("[1, 2, 3]\n")
    text = tmp_path / "str.json"
    text.write_text('"config"\n')
    return {"key": key, "genesis": genesis, "list": lst, "str": text}


# --------------------------------------------------------------------------- node


@pytest.mark.parametrize("name", ["list", "str"])
def test_node_config_that_is_not_a_json_object(files: dict[str, Path], capsys: pytest.CaptureFixture[str],
                                               name: str) -> None:
    rc, _, err = run(capsys, "node", "--config", str(files[name]))
    assert rc == 2 and "bad_config" in err and "not a JSON object" in err and str(files[name]) in err


def test_node_config_with_a_port_beyond_65535(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"name": "league", "genesis": "g.json", "data": "data", "listen": "127.0.0.1:70000"}))
    rc, _, err = run(capsys, "node", "--config", str(cfg))
    assert rc == 2 and "bad_config" in err and "listen" in err and "70000" in err
    assert not (tmp_path / "data").exists()


def test_node_config_with_a_trusted_proxy_that_is_no_address(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"name": "league", "genesis": "g.json", "data": "data", "trusted_proxy": "proxy.lan"}))
    rc, _, err = run(capsys, "node", "--config", str(cfg))
    assert rc == 2 and "bad_config" in err and "trusted_proxy" in err and "proxy.lan" in err
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(("extra", "said"), [({"check_scan_treshold": 5}, "check_scan_treshold"),
                                             ({"check_scan_threshold": 0}, "positive integer"),
                                             ({"check_window_ms": "600000"}, "positive integer"),
                                             ({"limits": {"max_event_byte": 9000}}, "max_event_byte"),
                                             ({"limits": {"max_event_bytes": "9000"}}, "limits.max_event_bytes"),
                                             ({"limits": {"max_depth": 0}}, "positive integer"),
                                             ({"limits": [8]}, "limits is a JSON object")])
def test_node_config_with_a_misspelt_or_mistyped_setting(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         extra: dict[str, Any], said: str) -> None:
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"name": "league", "genesis": "g.json", "data": "data", **extra}))
    rc, _, err = run(capsys, "node", "--config", str(cfg))
    assert rc == 2 and "bad_config" in err and said in err
    assert not (tmp_path / "data").exists()


# --------------------------------------------------------------------------- a URL that is no LambTrace node


def _queue(tmp_path: Path, files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> str:
    q = str(tmp_path / "queue")
    rc, _, err = run(capsys, "device", "record", "--queue", q, "--key", str(files["key"]), "--actor", "coop-1",
                     "--kind", "device.retire", "--body", '{"device": "d1", "reason": "lost"}',
                     "--chain", "bad-input-test")
    assert rc == 0, err
    return q


COMMANDS_OVER_HTTP = {
    "status": lambda u, f, q, t: ["status", "--url", u],
    "submit": lambda u, f, q, t: ["submit", "--url", u, "--key", str(f["key"]), "--actor", "a1",
                                  "--kind", "device.retire", "--body", '{"device": "d1", "reason": "x"}'],
    "submit --chain": lambda u, f, q, t: ["submit", "--url", u, "--key", str(f["key"]), "--actor", "a1",
                                          "--chain", "c1", "--kind", "device.retire",
                                          "--body", '{"device": "d1", "reason": "x"}'],
    "audit": lambda u, f, q, t: ["audit", "--url", u, "--genesis", str(f["genesis"]), "--quiet"],
    "witness": lambda u, f, q, t: ["witness", "--url", u, "--genesis", str(f["genesis"]),
                                   "--state", str(t / "w.json")],
    "alerts": lambda u, f, q, t: ["alerts", "--url", u],
    "labels print": lambda u, f, q, t: ["labels", "print", "--site", "https://t.example/", "--url", u,
                                        "--label", "l1", "--out", str(t / "labels")],
    "export epcis": lambda u, f, q, t: ["export", "epcis", "--url", u, "--out", str(t / "e.json"), "--quiet"],
    "report premium": lambda u, f, q, t: ["report", "premium", "--url", u, "--quiet"],
    "tags list": lambda u, f, q, t: ["tags", "list", "--url", u],
    "devices list": lambda u, f, q, t: ["devices", "list", "--url", u, "--owner", "coop-1"],
    "actors show": lambda u, f, q, t: ["actors", "show", "--url", u, "--id", "coop-1"],
    "actors revoke": lambda u, f, q, t: ["actors", "revoke", "--url", u, "--key", str(f["key"]), "--actor", "a1",
                                         "--id", "coop-1", "--reason", "x"],
    "device sync": lambda u, f, q, t: ["device", "sync", "--queue", q, "--url", u, "--no-progress"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS_OVER_HTTP))
def test_a_server_answering_a_json_list(command: str, fake: FakeServer, files: dict[str, Path], tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    q = _queue(tmp_path, files, capsys)
    rc, _, err = run(capsys, *COMMANDS_OVER_HTTP[command](fake.url, files, q, tmp_path))
    assert rc == 2, err
    assert "bad_response" in err and fake.url in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "e.json").exists() and not (tmp_path / "w.json").exists()


@pytest.mark.parametrize("command", sorted(COMMANDS_OVER_HTTP))
def test_a_server_answering_maps_without_the_fields(command: str, fake: FakeServer, files: dict[str, Path],
                                                    tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    q = _queue(tmp_path, files, capsys)
    fake.default = (200, "application/json", b'{"chain": 5, "height": "x", "log_size": "12", "genesis_hash": 7}')
    if command == "audit":  # past the genesis check: a status of the right chain, then nonsense
        from lambtrace.config import load_genesis

        fake.json("/v1/status", {"genesis_hash": load_genesis(files["genesis"]).hash.hex(), "height": "x"})
    rc, out, err = run(capsys, *COMMANDS_OVER_HTTP[command](fake.url, files, q, tmp_path))
    if command in ("status", "tags list", "devices list", "actors show"):
        assert rc == 0 and json.loads(out)  # they print the answer as it is
        return
    assert rc == 2, err
    assert "bad_response" in err and fake.url in err and len(err.strip().splitlines()) == 1


def test_an_error_answer_in_msgpack_is_read(fake: FakeServer, files: dict[str, Path],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    body = codec.encode({"error": {"code": "not_found", "message": "no label l1"}})
    fake.answers["/v1/labels/l1/proof"] = (404, "application/msgpack", body)
    rc, _, err = run(capsys, "verify-label", "--url", fake.url, "--label", "l1", "--genesis", str(files["genesis"]))
    assert rc == 2 and err.strip() == "error: not_found: no label l1"


# --------------------------------------------------------------------------- numbers out of range


@pytest.mark.parametrize("value", ["1e400", "nan", "-5"])
def test_verify_label_max_age(value: str, files: dict[str, Path], tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(capsys, "verify-label", "--bundle", str(tmp_path / "b.bin"), "--genesis", str(files["genesis"]),
                     "--max-age-s", value)
    assert rc == 2 and "bad_argument" in err and "--max-age-s" in err


@pytest.mark.parametrize("value", ["1e400", "nan", "-1"])
def test_witness_every(value: str, files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(capsys, "witness", "--url", "http://127.0.0.1:1", "--state", str(tmp_path / "w.json"),
                     "--genesis", str(files["genesis"]), "--every", value, "--count", "2")
    assert rc == 2 and "bad_argument" in err and "--every" in err and not (tmp_path / "w.json").exists()


def test_witness_state_file_that_is_a_list(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    before = files["list"].read_bytes()
    rc, _, err = run(capsys, "witness", "--url", "http://127.0.0.1:1", "--state", str(files["list"]),
                     "--genesis", str(files["genesis"]))
    assert rc == 2 and "bad_state_file" in err and "not a JSON object" in err
    assert files["list"].read_bytes() == before


@pytest.mark.parametrize("scale", ["100000", "0", "-3"])
def test_labels_png_scale(scale: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(capsys, "labels", "print", "--site", "https://t.example/", "--url", "http://127.0.0.1:1",
                     "--label", "l1", "--out", str(tmp_path / "out"), "--png-scale", scale)
    assert rc == 2 and "bad_argument" in err and "--png-scale" in err and not (tmp_path / "out").exists()


@pytest.mark.parametrize("quota", ["152523=abc", "152523", "=5", "152523=-5"])
def test_genesis_quota(quota: str, files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(capsys, "genesis", "--chain", "c1", "--validator", f"league:152500:{files['key']}",
                     "--trace-office-key", str(files["key"]), "--quota", quota, "--out", str(tmp_path / "g.json"))
    assert rc == 2 and "bad_argument" in err and "--quota" in err and not (tmp_path / "g.json").exists()


# --------------------------------------------------------------------------- network init


@pytest.mark.parametrize(("args", "names"), [
    (["--host", "{nope}"], "--host"),
    (["--host", "{"], "--host"),
    (["--api-port", "70000"], "--api-port"),
    (["--api-port", "-1"], "--api-port"),
    (["--p2p-port", "65535", "--validators", "2"], "--p2p-port"),
    (["--observers", "-3"], "--observers"),
    (["--chain", "bad chain!"], "chain id"),
])
def test_network_init_checks_everything_before_writing(args: list[str], names: str, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "net"
    rc, _, err = run(capsys, "network", "init", "--dir", str(d), "--validators", "1", "--insecure-plain", *args)
    assert rc == 2 and names in err
    assert not (d / "genesis.json").exists() and not (d / "keys").exists()
    # nothing half-written stands in the way of the corrected command
    rc, out, err = run(capsys, "network", "init", "--dir", str(d), "--validators", "1", "--insecure-plain")
    assert rc == 0, err
    assert json.loads(out)["nodes"][0]["name"] == "league"


# --------------------------------------------------------------------------- demo


@pytest.mark.parametrize(("args", "names"), [
    (["--port", "70000"], "--port"),
    (["--port", "-5"], "--port"),
    (["--port", "65500", "--nodes", "4"], "--port"),
    (["--lambs", "-5"], "--lambs"),
    (["--rate", "nan"], "--rate"),
    (["--rate", "-3"], "--rate"),
])
def test_demo_refuses_bad_numbers_before_creating_anything(args: list[str], names: str, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "demo"
    rc, _, err = run(capsys, "demo", "--dir", str(d), "--nodes", "1", "--exit-when-ready", *args)
    assert rc == 2 and "bad_argument" in err and names in err and not d.exists()


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_demo_node_port_held_by_another_chain(fake: FakeServer, sleeper: subprocess.Popen[bytes]) -> None:
    # The demo's node could not bind the port; another chain's node answers there. Before,
    # the demo took it for its own node and drove the season into a foreign chain.
    fake.json("/healthz", {"ok": True})
    fake.json("/v1/status", {"genesis_hash": "00" * 32})
    with pytest.raises(demo.LedgerError) as exc:
        demo._wait_healthy(fake.url, sleeper, timeout_s=10, genesis_hash="11" * 32)
    assert exc.value.code == "port_in_use" and fake.url in exc.value.message


def test_demo_wait_stops_on_ctrl_c(sleeper: subprocess.Popen[bytes]) -> None:
    # nothing answers: before, Ctrl-C was ignored until the 60 s timeout
    with pytest.raises(KeyboardInterrupt):
        demo._wait_healthy("http://127.0.0.1:1", sleeper, timeout_s=60, stopping=lambda: True)


class _NeverCommits:
    def __init__(self) -> None:
        self.calls = 0

    def wait_committed(self, ids: list[str], timeout_s: float) -> None:
        from api.client import WaitTimeout

        self.calls += 1
        raise WaitTimeout("still pending", pending=ids)


def test_demo_waits_for_commits_and_replication_stop_on_ctrl_c() -> None:
    client = _NeverCommits()
    with pytest.raises(KeyboardInterrupt):  # the 3rd slice sees Ctrl-C, not the 120 s deadline
        demo._wait_committed(client, ["e1"], stopping=lambda: client.calls >= 2, timeout_s=120)
    assert client.calls == 2
    with pytest.raises(KeyboardInterrupt):
        demo._wait_replicated(["http://127.0.0.1:1"], timeout_s=60, stopping=lambda: True)


def test_demo_wait_for_commits_still_times_out() -> None:
    from api.client import WaitTimeout

    with pytest.raises(WaitTimeout):
        demo._wait_committed(_NeverCommits(), ["e1"], stopping=lambda: False, timeout_s=0.0)


# --------------------------------------------------------------------------- a store this user may not open


@pytest.mark.parametrize("command", [["audit", "--quiet"], ["export", "epcis", "--quiet"],
                                     ["report", "premium", "--quiet"]])
def test_store_without_permission_is_not_called_locked(command: list[str], files: dict[str, Path], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests run as root, where permissions do not bite: LevelDB's answer to a user without
    # write access to the LOCK file is simulated. It used to be reported as a running node.
    import node.kv
    from ledger.errors import StorageError

    store = tmp_path / "data" / "chain.ldb"
    store.mkdir(parents=True)
    (store / "CURRENT").write_text("MANIFEST-000001\n")

    def denied(path: str, **_kw: Any) -> Any:
        raise StorageError(f"cannot open LevelDB at {path}: b'IO error: {path}/LOCK: Permission denied'",
                           code="storage_unavailable")

    monkeypatch.setattr(node.kv, "LevelKV", denied)
    extra = ["--genesis", str(files["genesis"])] if command[0] == "audit" else []
    extra += ["--out", str(tmp_path / "e.json")] if command[0] == "export" else []
    rc, _, err = run(capsys, *command, "--data", str(tmp_path / "data"), *extra)
    assert rc == 2 and "no permission" in err and "running node" not in err


# --------------------------------------------------------------------------- keygen, device sync


def test_keygen_names_the_cli_flag_and_the_passphrase_file(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LAMBTRACE_KEY_PASSPHRASE", raising=False)
    monkeypatch.delenv("LAMBTRACE_KEY_PASSPHRASE_FILE", raising=False)
    rc, _, err = run(capsys, "keygen", "--out", str(tmp_path / "k.json"))
    assert rc == 2 and "passphrase_required" in err and "--insecure-plain" in err and "insecure_plain=" not in err
    monkeypatch.setenv("LAMBTRACE_KEY_PASSPHRASE_FILE", str(tmp_path / "missing"))
    rc, _, err = run(capsys, "keygen", "--out", str(tmp_path / "k.json"))
    assert rc == 2 and "LAMBTRACE_KEY_PASSPHRASE_FILE" in err and str(tmp_path / "missing") in err
    assert not (tmp_path / "k.json").exists()
    (tmp_path / "k.json").write_text("precious\n")
    rc, _, err = run(capsys, "keygen", "--out", str(tmp_path / "k.json"), "--insecure-plain")
    assert rc == 2 and "exists" in err and "overwrite=True" not in err
    assert (tmp_path / "k.json").read_text() == "precious\n"


@pytest.mark.parametrize("content", [b"grass\n\n", b"grass \r\n", "cafe\u0301\n".encode()])
def test_a_key_made_with_a_passphrase_file_opens_with_that_file(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 content: bytes) -> None:
    """keygen reads LAMBTRACE_KEY_PASSPHRASE_FILE exactly as the node does (one trailing
    newline off, NFC text): a file with two newlines made a key the node then refused."""
    from signer import load_signer

    pfile = tmp_path / "pass"
    pfile.write_bytes(content)
    monkeypatch.delenv("LAMBTRACE_KEY_PASSPHRASE", raising=False)
    monkeypatch.setenv("LAMBTRACE_KEY_PASSPHRASE_FILE", str(pfile))
    rc, out, _ = run(capsys, "keygen", "--out", str(tmp_path / "k.json"))
    assert rc == 0 and json.loads(out)["encrypted"] is True
    assert load_signer(str(tmp_path / "k.json")).key_id == json.loads(out)["key_id"]


def test_device_sync_of_a_directory_that_is_no_queue(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "photos"
    d.mkdir()
    rc, _, err = run(capsys, "device", "sync", "--queue", str(d), "--url", "http://127.0.0.1:1", "--no-progress")
    assert rc == 2 and "not a terminal's queue" in err and list(d.iterdir()) == []


@pytest.mark.parametrize("batch", ["0", "-1"])
def test_device_sync_batch(batch: str, files: dict[str, Path], tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    q = _queue(tmp_path, files, capsys)
    rc, _, err = run(capsys, "device", "sync", "--queue", q, "--url", "http://127.0.0.1:1", "--batch", batch)
    assert rc == 2 and "bad_argument" in err and "--batch" in err


# --------------------------------------------------------------------------- genesis, audit --json


def test_genesis_does_not_replace_a_file_unless_forced(files: dict[str, Path],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    before = files["genesis"].read_bytes()
    argv = ["genesis", "--chain", "other", "--validator", f"league:152500:{files['key']}",
            "--trace-office-key", str(files["key"]), "--out", str(files["genesis"])]
    rc, _, err = run(capsys, *argv)
    assert rc == 2 and "exists" in err and "--force" in err
    assert files["genesis"].read_bytes() == before
    rc, out, _ = run(capsys, *argv, "--force")
    assert rc == 0 and json.loads(out)["chain"] == "other"


@pytest.mark.parametrize("banner", ["bad", "152599", "１５２５００"])
def test_genesis_validator_banner_is_a_county(banner: str, files: dict[str, Path], tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(capsys, "genesis", "--chain", "c1", "--validator", f"league:{banner}:{files['key']}",
                     "--trace-office-key", str(files["key"]), "--out", str(tmp_path / "g.json"))
    assert rc == 2 and "bad_argument" in err and "county code" in err and not (tmp_path / "g.json").exists()


@pytest.mark.parametrize("where", ["missing/report.json", "."])
def test_audit_json_that_cannot_be_written_is_refused_before_the_audit(
        where: str, files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / where
    # --data names nothing: the refusal must come first, naming --json
    rc, out, err = run(capsys, "audit", "--data", str(tmp_path / "no-such-node"), "--genesis", str(files["genesis"]),
                       "--json", str(target), "--quiet")
    assert rc == 2 and "bad_argument" in err and "--json" in err and out == ""


def test_an_option_value_that_is_not_utf8_is_named(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    # what Python makes of the bytes b"a\xff" on a command line (surrogateescape)
    actor = b"a\xff".decode("utf-8", "surrogateescape")
    rc, _, err = run(capsys, "submit", "--url", "http://127.0.0.1:1", "--chain", "c1", "--key", str(files["key"]),
                     "--actor", actor, "--kind", "lamb.tag", "--body", "{}")
    assert rc == 2 and err.strip() == "error: bad_argument: the value of --actor is not UTF-8 text"


# --------------------------------------------------------------------------- restore


@pytest.fixture(scope="module")
def backup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A good backup of a small chain, its genesis, another chain's genesis, and broken copies."""
    from helpers import World
    from helpers_api import COOP, ApiWorld
    from lambtrace.config import genesis_to_json
    from node.backup import snapshot_stream, write_backup

    d = tmp_path_factory.mktemp("backup")
    w = ApiWorld()
    for i in range(2):
        w.submit([w.enroll(f"{COOP}-{i}", "cooperative", "152523")])
        w.commit()
    write_backup(iter(snapshot_stream(w.store.kv)), d / "b.ltb")
    (d / "genesis.json").write_text(genesis_to_json(w.genesis))
    (d / "other.json").write_text(genesis_to_json(World().genesis))
    raw = (d / "b.ltb").read_bytes()
    (d / "junk.ltb").write_bytes(bytes(range(256)) * 4)
    (d / "empty.ltb").write_bytes(b"")
    (d / "short.ltb").write_bytes(raw[: len(raw) // 2])
    (d / "no-hash.ltb").write_bytes(raw[:-32])
    return {"good": d / "b.ltb", "genesis": d / "genesis.json", "other": d / "other.json", "junk": d / "junk.ltb",
            "empty": d / "empty.ltb", "short": d / "short.ltb", "no-hash": d / "no-hash.ltb", "dir": d}


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "LOCK" not in err and "Error:" not in err and "Errno" not in err, err  # no raw OSError / LevelDB text
    return lines[0]


def test_restore_below_a_file_names_the_path_and_the_cause(backup: dict[str, Path], tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    # fails for root as well as for anyone else: a regular file where a directory must be
    (tmp_path / "file").write_text("precious\n")
    for target in (tmp_path / "file" / "sub", tmp_path / "file" / "sub" / "deeper"):
        rc, out, err = run(capsys, "restore", "--in", str(backup["good"]), "--data", str(target), "--quiet")
        line = _one_line(err)
        assert rc == 2 and out == ""
        assert line.startswith("error: target_unwritable: ") and str(target) in line and "Not a directory" in line
        assert f"{tmp_path / 'file'} is a file" in line
    rc, out, err = run(capsys, "restore", "--in", str(backup["good"]), "--data", str(tmp_path / "file"), "--quiet")
    assert rc == 2 and _one_line(err) == f"error: target_unwritable: cannot restore into {tmp_path / 'file'}: " \
        "it is a file, not a directory"
    assert (tmp_path / "file").read_text() == "precious\n" and sorted(tmp_path.iterdir()) == [tmp_path / "file"]


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="permissions do not stop root")
@pytest.mark.parametrize("sub", ["", "new", "new/deeper"])
def test_restore_into_a_read_only_directory(sub: str, backup: dict[str, Path], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        target = ro / sub if sub else ro
        rc, out, err = run(capsys, "restore", "--in", str(backup["good"]), "--data", str(target), "--quiet")
        line = _one_line(err)
        assert rc == 2 and out == ""
        assert line.startswith("error: target_unwritable: ") and str(target) in line and "Permission denied" in line
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o755)


def test_restore_into_a_directory_where_nothing_may_be_created(backup: dict[str, Path], tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests run as root, where chmod 0555 does not bite: the kernel's answer to a user without
    # write access is simulated. It used to reach LevelDB, which reported a missing LOCK file.
    import node.backup

    target = tmp_path / "data"
    target.mkdir()
    real_mkdir = os.mkdir

    def denied(path: Any, *a: Any, **kw: Any) -> None:
        if Path(path).parent == target:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        real_mkdir(path, *a, **kw)

    monkeypatch.setattr(node.backup.os, "mkdir", denied)
    rc, out, err = run(capsys, "restore", "--in", str(backup["good"]), "--data", str(target), "--quiet")
    monkeypatch.undo()
    line = _one_line(err)
    assert rc == 2 and out == "" and line == f"error: target_unwritable: cannot write {target}: Permission denied"
    assert list(target.iterdir()) == []


@pytest.mark.parametrize(("src", "rc", "code", "words"), [
    ("missing", 2, "backup_missing", "No such file or directory"),
    ("dir", 2, "backup_missing", "is a directory"),
    ("junk", 1, "backup_format", "not a LambTrace backup"),
    ("empty", 1, "backup_format", "not a LambTrace backup"),
    ("short", 1, "backup_corrupt", "truncated"),
    ("no-hash", 1, "backup_corrupt", "truncated"),
])
def test_restore_of_a_bad_backup_file(src: str, rc: int, code: str, words: str, backup: dict[str, Path],
                                      tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = backup["dir"] / "no-such.ltb" if src == "missing" else backup[src]
    target = tmp_path / "new" / "data"  # parents restore would create: none may be left behind
    got, out, err = run(capsys, "restore", "--in", str(path), "--data", str(target), "--quiet")
    line = _one_line(err)
    assert got == rc and line.startswith(f"error: {code}: ") and words in line
    if rc == 2:
        assert str(path) in line and out == ""
    else:
        assert json.loads(out) == {"restored": False, "code": code, "message": line.split(": ", 2)[2]}
    assert list(tmp_path.iterdir()) == []


def test_restore_into_a_non_empty_directory_or_of_another_chain(backup: dict[str, Path], tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    full = tmp_path / "full"
    full.mkdir()
    (full / "notes.txt").write_text("mine\n")
    rc, out, err = run(capsys, "restore", "--in", str(backup["good"]), "--data", str(full), "--quiet")
    line = _one_line(err)
    assert rc == 2 and line.startswith("error: target_not_empty: ") and str(full) in line and "notes.txt" in line
    assert sorted(p.name for p in full.iterdir()) == ["notes.txt"] and (full / "notes.txt").read_text() == "mine\n"

    target = tmp_path / "new" / "data"
    rc, out, err = run(capsys, "restore", "--in", str(backup["good"]), "--data", str(target), "--quiet",
                       "--genesis", str(backup["other"]))
    line = _one_line(err)
    assert rc == 1 and line.startswith("error: genesis_mismatch: ") and json.loads(out)["code"] == "genesis_mismatch"
    assert not (tmp_path / "new").exists()

    # nothing half-written stands in the way of the corrected command
    rc, out, err = run(capsys, "restore", "--in", str(backup["good"]), "--data", str(target), "--quiet",
                       "--genesis", str(backup["genesis"]))
    assert rc == 0, err
    assert json.loads(out)["restored"] is True and sorted(p.name for p in target.iterdir()) == ["chain.ldb"]


def test_a_genesis_that_cannot_be_read_names_the_cause_in_words(capsys: pytest.CaptureFixture[str],
                                                                 tmp_path: Path) -> None:
    rc, _out, err = run(capsys, "audit", "--data", str(tmp_path), "--genesis", str(tmp_path / "nope.json"))
    assert rc == 2
    missing = tmp_path / "nope.json"
    assert err.strip() == f"error: genesis_missing: cannot read genesis {missing}: No such file or directory"


def test_node_config_with_a_retired_limit_still_loads(tmp_path: Path) -> None:
    """``max_proof_nodes`` was documented and read by nothing: a config that sets it loads,
    the limit ignored, the others kept."""
    from lambtrace.config import NodeConfig

    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"name": "league", "genesis": "g.json", "data": "data",
                               "limits": {"max_proof_nodes": 64, "max_depth": 6}}))
    loaded = NodeConfig.load(cfg)
    assert loaded.limits.max_depth == 6
    assert not hasattr(loaded.limits, "max_proof_nodes")
