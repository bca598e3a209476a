"""docs/deploy.md end to end: a league network set up the way separate machines set it up.

Each node makes its encrypted key in its own directory (a machine of its own) and hands
over only the public-only key file; the league builds genesis from those files and the
trace office's public key; each node writes its config with ``lambtrace network
node-config`` from the genesis it received; the four validators and a regulator's
observer start as real processes with their passphrases in files, and commit the trace
office's first events together. The checks of ``node-config`` (a key that is not the one
genesis names, an unknown peer, an observer named like a validator) refuse before anything
is written.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from api.client import Client
from helpers import OFFICE, World, free_ports, healthy, stop_processes, wait_until
from lambtrace.config import NodeConfig
from signer import load_public_key, save_key_file

pytestmark = pytest.mark.cluster

VALIDATORS = {"league": "152500", "banner-152523": "152523", "banner-152524": "152524", "banner-152526": "152526"}
OBSERVER = "regulator"
PASSPHRASE = "grassland and sky, 2026"


def lambtrace(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lambtrace", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})


def ok(r: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert r.returncode == 0, r.stderr
    out: dict[str, Any] = json.loads(r.stdout)
    return out


def test_a_network_set_up_machine_by_machine_commits(tmp_path: Path) -> None:
    w = World(now=int(time.time() * 1000), chain="xilingol-lamb-test")
    machines = {n: tmp_path / n for n in [*VALIDATORS, OBSERVER, "office"]}
    for m in machines.values():
        m.mkdir()
        (m / "pass").write_text(PASSPHRASE + "\n")
        (m / "pass").chmod(0o600)
    league = machines["league"]

    # 1. every node makes its own key; only the public-only file leaves the machine
    for name in [*VALIDATORS, OBSERVER]:
        m = machines[name]
        made = ok(lambtrace("keygen", "--out", "node-key.json", "--public-out", f"{name}.pub.json", cwd=m,
                            env={"LAMBTRACE_KEY_PASSPHRASE_FILE": str(m / "pass")}))
        assert made["encrypted"] is True and made["public_file"] == f"{name}.pub.json"
        pub_doc = json.loads((m / f"{name}.pub.json").read_text())
        assert pub_doc["private_key"] is None and pub_doc["encryption"] is None
        (league / f"{name}.pub.json").write_bytes((m / f"{name}.pub.json").read_bytes())
    # the trace office's root key (the test keeps its signer to sign the first events)
    office = machines["office"]
    save_key_file(w.keys[OFFICE], office / "office-key.json", passphrase=PASSPHRASE)
    shown = ok(lambtrace("pubkey", "--key", "office-key.json", "--out", "office.pub.json", cwd=office))
    assert shown["public_key"] == w.keys[OFFICE].public_key.hex()
    (league / "office.pub.json").write_bytes((office / "office.pub.json").read_bytes())

    # 2. the league builds genesis from public files alone and sends it to everyone
    made = ok(lambtrace("genesis", "--chain", w.chain, "--time", str(w.now - 60_000),
                        *[a for n, b in VALIDATORS.items() for a in ("--validator", f"{n}:{b}:{n}.pub.json")],
                        "--trace-office-key", "office.pub.json", "--quota", "152523=1000", "--out", "genesis.json",
                        cwd=league))
    genesis_hash = made["hash"]
    for m in machines.values():
        if m != league:
            (m / "genesis.json").write_bytes((league / "genesis.json").read_bytes())

    # 3. each node writes its own config, checked against genesis
    ports = free_ports(2 * len(machines))
    api = {n: ports[i] for i, n in enumerate([*VALIDATORS, OBSERVER])}
    p2p = {n: ports[len(machines) + i] for i, n in enumerate([*VALIDATORS, OBSERVER])}
    for name in VALIDATORS:
        m = machines[name]
        (m / f"{OBSERVER}.pub.json").write_bytes((machines[OBSERVER] / f"{OBSERVER}.pub.json").read_bytes())
        peers = [a for o in [*VALIDATORS, OBSERVER] if o != name for a in ("--peer", f"{o}@127.0.0.1:{p2p[o]}")]
        written = ok(lambtrace("network", "node-config", "--genesis", "genesis.json", "--name", name,
                               "--key", "node-key.json", "--data", "data", "--listen", f"127.0.0.1:{api[name]}",
                               "--p2p-listen", f"127.0.0.1:{p2p[name]}", *peers,
                               "--observer", f"{OBSERVER}:{OBSERVER}.pub.json", "--out", "node.json", cwd=m))
        assert written["genesis_hash"] == genesis_hash and written["role"] == "validator"
    m = machines[OBSERVER]
    ok(lambtrace("network", "node-config", "--genesis", "genesis.json", "--name", OBSERVER, "--role", "observer",
                 "--key", "node-key.json", "--data", "data", "--listen", f"127.0.0.1:{api[OBSERVER]}",
                 "--p2p-listen", f"127.0.0.1:{p2p[OBSERVER]}",
                 *[a for v in VALIDATORS for a in ("--peer", f"{v}@127.0.0.1:{p2p[v]}")],
                 "--out", "node.json", cwd=m))
    cfg = NodeConfig.load(machines["banner-152523"] / "node.json")
    assert cfg.key == machines["banner-152523"] / "node-key.json"
    assert cfg.observers == [{"name": OBSERVER, "alg": "ed25519",
                              "pub": load_public_key(m / f"{OBSERVER}.pub.json").public_key.hex()}]

    # 4. every node runs as its own process, its passphrase in a file
    procs = []
    try:
        for name in [*VALIDATORS, OBSERVER]:
            mm = machines[name]
            with open(mm / "node.log", "ab") as log:
                procs.append(subprocess.Popen([sys.executable, "-m", "lambtrace", "node", "--config", "node.json"],
                                              cwd=mm, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                              env={**os.environ, "LAMBTRACE_KEY_PASSPHRASE_FILE": str(mm / "pass")}))
        for name in [*VALIDATORS, OBSERVER]:
            assert wait_until(lambda n=name: healthy(f"http://127.0.0.1:{api[n]}"), 60), (
                (machines[name] / "node.log").read_text()[-3000:])
        first = [w.enroll("coop", "cooperative", "152523"), w.issue("coop", "315252300000001", 100)]
        res = Client(f"http://127.0.0.1:{api['banner-152524']}").submit(first, wait=True, timeout_ms=30_000)
        assert [r.get("state") for r in res] == ["committed", "committed"], res

        def status(n: str) -> dict[str, Any]:
            st: dict[str, Any] = requests.get(f"http://127.0.0.1:{api[n]}/v1/status", timeout=5).json()
            return st

        top = status("banner-152524")["height"]
        assert wait_until(lambda: all(status(n)["height"] >= top for n in api), 30), {n: status(n) for n in api}
        hashes = {n: requests.get(f"http://127.0.0.1:{api[n]}/v1/blocks/{top}", timeout=5).json()["hash"]
                  for n in api}
        assert len(set(hashes.values())) == 1, hashes
        assert {status(n)["genesis_hash"] for n in api} == {genesis_hash}
        assert status(OBSERVER)["role"] == "observer"
    finally:
        stop_processes(procs)


def test_node_config_refuses_what_would_not_work(tmp_path: Path) -> None:
    """A key that is not the one genesis names, a name genesis does not know, a peer
    nobody declared, an observer named like a validator: exit 2, nothing written."""
    for who in ("a", "b", "obs"):
        ok(lambtrace("keygen", "--out", f"{who}.json", "--public-out", f"{who}.pub.json", "--insecure-plain",
                     cwd=tmp_path))
    ok(lambtrace("genesis", "--chain", "c1", "--validator", "a:152500:a.pub.json", "--validator",
                 "b:152523:b.pub.json", "--trace-office-key", "obs.pub.json", "--out", "genesis.json", cwd=tmp_path))
    base = ["network", "node-config", "--genesis", "genesis.json", "--data", "data", "--p2p-listen", "0.0.0.0:26656",
            "--out", "node.json"]
    cases = [
        (["--name", "a", "--key", "b.json", "--peer", "b@h:1"], "wrong_node_key"),
        (["--name", "c", "--key", "a.json", "--peer", "b@h:1"], "genesis names no validator 'c'"),
        (["--name", "a", "--key", "a.json", "--peer", "zz@h:1"], "neither a validator"),
        (["--name", "a", "--key", "a.json", "--peer", "b@h:70000"], "TCP port"),
        (["--name", "a", "--key", "a.json", "--peer", "b@h:1", "--observer", "b:obs.pub.json"], "is a validator"),
        (["--name", "a", "--key", "a.json"], "other validators' peer addresses"),
        (["--name", "b", "--role", "observer", "--key", "b.json", "--peer", "a@h:1"], "needs a name of its own"),
        (["--name", "obs", "--role", "observer", "--key", "a.json", "--peer", "a@h:1", "--observer",
          "obs:obs.pub.json"], "another key"),
        (["--name", "a", "--key", "missing.json", "--peer", "b@h:1"], "key_file_missing"),
        (["--name", "a", "--key", "a.json", "--peer", "b@h:1", "--trusted-proxy", "proxy.lan"], "trusted_proxy"),
    ]
    for extra, said in cases:
        r = lambtrace(*base, *extra, cwd=tmp_path)
        assert r.returncode == 2 and said in r.stderr and "Traceback" not in r.stderr, (extra, r.stderr)
        assert not (tmp_path / "node.json").exists(), extra
    ok(lambtrace(*base, "--name", "a", "--key", "a.json", "--peer", "b@h:1", cwd=tmp_path))
    r = lambtrace(*base, "--name", "a", "--key", "a.json", "--peer", "b@h:1", cwd=tmp_path)
    assert r.returncode == 2 and "exists" in r.stderr
    # an observer's own config needs no validator key, and keygen never overwrites
    ok(lambtrace(*base, "--force", "--name", "obs", "--role", "observer", "--key", "obs.json", "--peer", "a@h:1",
                 cwd=tmp_path))
    r = lambtrace("keygen", "--out", "new.json", "--public-out", "a.pub.json", "--insecure-plain", cwd=tmp_path)
    assert r.returncode == 2 and "exists" in r.stderr and not (tmp_path / "new.json").exists()
    r = lambtrace("pubkey", "--key", "a.json", "--out", "a.pub.json", cwd=tmp_path)
    assert r.returncode == 2 and "exists" in r.stderr


def test_a_node_whose_config_claims_a_validator_genesis_does_not_name_refuses_to_start(tmp_path: Path) -> None:
    """It used to run as an observer while its status said validator."""
    ok(lambtrace("keygen", "--out", "a.json", "--public-out", "a.pub.json", "--insecure-plain", cwd=tmp_path))
    ok(lambtrace("genesis", "--chain", "c1", "--validator", "a:152500:a.pub.json", "--trace-office-key", "a.pub.json",
                 "--out", "genesis.json", cwd=tmp_path))
    NodeConfig(name="stranger", genesis=tmp_path / "genesis.json", data=tmp_path / "data", key=tmp_path / "a.json",
               listen=f"127.0.0.1:{free_ports(1)[0]}").save(tmp_path / "node.json")
    r = lambtrace("node", "--config", "node.json", cwd=tmp_path)
    assert r.returncode == 2 and "bad_config" in r.stderr and "'stranger'" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "data").exists()
