"""deploy/systemd/ and docs/deploy.md: the units hold what a league node needs, and every
``lambtrace`` command they run or the guide shows is one the real command line accepts.

Units are read with configparser the way systemd reads them (every value of a repeated
key kept, no interpolation, keys case-sensitive); ``ExecStart=`` lines are unescaped as
systemd does (specifiers, ``%%``, ``$$``) and split into words, ``/bin/sh -c`` scripts
into shell commands, and each ``lambtrace`` invocation goes through
``lambtrace.cli.build_parser``. Where ``systemd-analyze`` exists the units are verified
by it too.
"""

from __future__ import annotations

import argparse
import configparser
import contextlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from lambtrace.cli import build_parser, main
from ledger.schema import COUNTIES
from signer import load_public_key

ROOT = Path(__file__).resolve().parent.parent
UNITS = ROOT / "deploy" / "systemd"
NODE_UNIT = UNITS / "lambtrace-node.service"
BACKUP_UNIT = UNITS / "lambtrace-backup.service"
BACKUP_TIMER = UNITS / "lambtrace-backup.timer"
WITNESS_UNIT = UNITS / "lambtrace-witness.service"
DOC = ROOT / "docs" / "deploy.md"
INSTALLED = "/opt/lambtrace/.venv/bin/lambtrace"
"""Where docs/deploy.md installs the command and the units run it."""

CREDENTIALS = "/run/credentials/lambtrace-node.service"
HOST = "node-host"
SPECIFIERS = {"%": "%", "d": CREDENTIALS, "H": HOST, "n": "lambtrace-node.service", "N": "lambtrace-node",
              "S": "/var/lib", "t": "/run", "C": "/var/cache", "L": "/var/log", "E": "/etc"}
"""systemd's specifiers the units may use, with the values a test machine gives them."""

Unit = dict[str, dict[str, list[str]]]


class _MultiDict(dict[str, Any]):
    """configparser's option store that keeps every value of a repeated key (systemd
    reads ``Environment=`` twice as two settings; configparser would keep the last)."""

    def __setitem__(self, key: str, value: Any) -> None:
        if isinstance(value, list) and isinstance(self.get(key), list):
            self[key].extend(value)
        else:
            super().__setitem__(key, value)


class _UnitParser(configparser.RawConfigParser):
    def optionxform(self, optionstr: str) -> str:
        return optionstr  # systemd's keys are case-sensitive


def read_unit(path: Path) -> Unit:
    parser = _UnitParser(strict=False, interpolation=None, dict_type=_MultiDict, delimiters=("=",),
                         comment_prefixes=("#", ";"), empty_lines_in_values=False)
    parser.read_string(path.read_text(encoding="utf-8"), source=str(path))
    unit: Unit = {}
    for section in parser.sections():
        unit[section] = {}
        for key, raw in parser.items(section):
            values: list[str] = []
            for line in (raw or "").split("\n"):
                if values and values[-1].endswith("\\"):  # systemd's line continuation
                    values[-1] = values[-1][:-1] + " " + line.strip()
                else:
                    values.append(line.strip())
            unit[section][key] = values
    return unit


def one(unit: Unit, section: str, key: str) -> str:
    values = unit.get(section, {}).get(key)
    assert values, f"[{section}] has no {key}="
    assert len(values) == 1, f"[{section}] sets {key}= {len(values)} times: {values}"
    return values[0]


def truthy(value: str) -> bool:
    return value.lower() in {"1", "yes", "true", "on"}


def seconds(value: str) -> float:
    """A systemd time span such as ``30``, ``30s``, ``1min 30s``, ``1h``."""
    units = {"": 1.0, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "hr": 3600.0, "ms": 0.001}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value):
        assert unit in units, f"time span {value!r}: unit {unit!r}"
        total += float(number) * units[unit]
    return total


def unescape_exec(value: str) -> str:
    """An ``Exec*=`` value as systemd hands it to the command: the prefixes ``-@:+!``
    dropped, specifiers replaced, ``$$`` a literal ``$``. A lone ``$`` would be an
    environment variable systemd substitutes itself: refused, since the units mean none."""
    value = value.lstrip("-@:+!")

    def spec(m: re.Match[str]) -> str:
        if m.group(1) not in SPECIFIERS:
            pytest.fail(f"unexpected systemd specifier %{m.group(1)} in {value!r}")
        return SPECIFIERS[m.group(1)]

    value = re.sub(r"%(.)", spec, value)
    parts = value.split("$$")
    for part in parts:
        if "$" in part:
            pytest.fail(f"systemd would substitute an environment variable in {value!r}; write $$ for a shell's $")
    return "$".join(parts)


# ---------------------------------------------------------------- shell commands

_REDIRECTS = {"<", ">", ">>", "<<", "<<<", ">&", "<&", "&>", ">|"}
_WRAPPERS = {"sudo", "runuser", "env", "exec", "nice", "nohup", "time", "command"}
_WRAPPER_VALUE_OPTIONS = {"-u", "-g", "-n", "--user", "--group"}
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def _is_lambtrace(word: str) -> bool:
    return word == "lambtrace" or word.endswith("/lambtrace")


def shell_words(line: str) -> list[str]:
    lex = shlex.shlex(line, posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    return list(lex)


def _segments(words: list[str]) -> Iterator[list[str]]:
    """Simple commands of a word list: split at ``;``, ``&&``, ``|``, ...; a redirection
    and its target are dropped (``2>&1`` too)."""
    seg: list[str] = []
    i = 0
    while i < len(words):
        w = words[i]
        if w and set(w) <= set("();<>|&"):
            if w in _REDIRECTS:
                if seg and seg[-1].isdigit():
                    seg.pop()
                i += 2
                continue
            yield seg
            seg = []
        else:
            seg.append(w)
        i += 1
    yield seg


def _invocations_of(seg: list[str]) -> Iterator[list[str]]:
    i = 0
    while i < len(seg):
        w = seg[i]
        m = _ASSIGNMENT.match(w)
        if m:  # VAR=value before a command, or a unit's ExecStart=/path/lambtrace ... in a drop-in
            if _is_lambtrace(w[m.end():]):
                yield seg[i + 1:]
                return
            i += 1
            continue
        if w in _WRAPPERS:
            i += 1
            while i < len(seg) and seg[i].startswith("-"):
                if seg[i] == "--":
                    i += 1
                    break
                i += 2 if seg[i] in _WRAPPER_VALUE_OPTIONS else 1
            continue
        if _is_lambtrace(w):
            yield seg[i + 1:]
        elif Path(w).name in {"sh", "bash"} and i + 2 < len(seg) and seg[i + 1] == "-c":
            yield from shell_invocations(seg[i + 2])
        return


def shell_invocations(script: str) -> Iterator[list[str]]:
    """The arguments of every ``lambtrace`` command in a shell script."""
    for seg in _segments(shell_words(script)):
        yield from _invocations_of(seg)


def exec_invocations(value: str) -> list[list[str]]:
    """The arguments of every ``lambtrace`` command an ``Exec*=`` line runs."""
    words = shlex.split(unescape_exec(value))
    return list(_invocations_of(words))


def parse(args: list[str], where: str) -> argparse.Namespace | None:
    """``args`` through the real parser; ``None`` for ``--help``/``--version``."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            ns = build_parser().parse_args(args)
    except SystemExit as exc:
        if exc.code == 0:
            return None
        pytest.fail(f"{where}: `lambtrace {shlex.join(args)}` does not parse: {err.getvalue().strip()}")
    assert callable(getattr(ns, "func", None)), f"{where}: `lambtrace {shlex.join(args)}` runs nothing"
    return ns


# ---------------------------------------------------------------- docs/deploy.md

def sh_blocks(markdown: str) -> Iterator[tuple[int, str]]:
    """``(first line number, text)`` of every ```` ```sh ```` block, indented ones too."""
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*)```(\S*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        indent, lang = m.group(1), m.group(2)
        start, body = i + 1, []
        i += 1
        while i < len(lines) and not re.match(r"^\s*```\s*$", lines[i]):
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
            i += 1
        i += 1
        if lang in {"sh", "bash", "shell"}:
            yield start + 1, "\n".join(body)


def logical_lines(start: int, text: str) -> Iterator[tuple[int, str]]:
    """Lines with their backslash continuations joined, with the document's line number."""
    buf, first = "", start
    for n, line in enumerate(text.splitlines(), start):
        if not buf:
            first = n
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        yield first, buf + line
        buf = ""
    if buf:
        yield first, buf


def doc_commands() -> list[tuple[str, list[str]]]:
    """``(docs/deploy.md:LINE, args)`` of every ``lambtrace`` command in its sh blocks."""
    out = []
    for start, block in sh_blocks(DOC.read_text(encoding="utf-8")):
        for n, line in logical_lines(start, block):
            for args in shell_invocations(line):
                out.append((f"docs/deploy.md:{n}", args))
    return out


DOC_COMMANDS = doc_commands()


@pytest.mark.parametrize(("where", "args"), DOC_COMMANDS,
                         ids=[f"{w.rsplit(':', 1)[1]}-{'-'.join(a[:2])}" for w, a in DOC_COMMANDS])
def test_every_lambtrace_command_in_the_guide_parses(where: str, args: list[str]) -> None:
    parse(args, where)


def _parsed(command: str, sub: str | None = None) -> list[argparse.Namespace]:
    out = []
    for where, args in DOC_COMMANDS:
        if args[:1] == [command] and (sub is None or args[1:2] == [sub]):
            ns = parse(args, where)
            if ns is not None:
                out.append(ns)
    return out


def test_the_guide_shows_every_step_with_commands() -> None:
    shown = {" ".join(a[:2]) if a[:1] in (["network"], ["hsm"]) else a[0] for _w, a in DOC_COMMANDS if a}
    for needed in ("keygen", "pubkey", "hsm keygen", "genesis", "network node-config", "node", "status",
                   "backup", "restore", "audit"):
        assert needed in shown, f"docs/deploy.md shows no `lambtrace {needed}` in a sh block"
    assert any(ns.public_out for ns in _parsed("keygen")), "no keygen with --public-out"
    configs = _parsed("network", "node-config")
    assert any(ns.observer for ns in configs), "no node-config adding an observer"
    assert any(ns.role == "observer" for ns in configs), "no observer's own node-config"
    assert any(ns.fresh_sign_guard for ns in _parsed("node")), "no node --fresh-sign-guard"
    text = DOC.read_text(encoding="utf-8")
    for start, block in sh_blocks(text):
        for n, line in logical_lines(start, block):
            assert not re.search(r"<[A-Za-z][\w .-]*>", line), f"docs/deploy.md:{n}: a placeholder in {line!r}"


def test_the_guide_example_network_is_consistent() -> None:
    """The genesis, configs and units of the guide describe one network."""
    (g,) = _parsed("genesis")
    validators = {}
    for spec in g.validator:
        name, banner, _keyfile = spec.split(":", 2)
        assert banner in COUNTIES, f"--validator {spec}: {banner} is not a county code"
        validators[name] = banner
    assert len(validators) >= 4, "a network that survives one machine down has at least 4 validators"
    for q in g.quota or []:
        assert q.partition("=")[0] in COUNTIES, f"--quota {q}"
    configs = _parsed("network", "node-config")
    assert configs
    for ns in configs:
        observers = {spec.partition(":")[0] for spec in ns.observer or []}
        assert (ns.name in validators) == (ns.role == "validator"), ns.name
        for peer in ns.peer or []:
            name = peer.partition("@")[0]
            assert name in validators or name in observers, f"--peer {peer} is not in the guide's genesis"
            assert name != ns.name
        if ns.role == "validator":
            assert {p.partition("@")[0] for p in ns.peer} >= set(validators) - {ns.name}, "peers miss a validator"
        assert ns.out == "/etc/lambtrace/node.json" and ns.data == "/var/lib/lambtrace"
        assert ns.genesis == "/etc/lambtrace/genesis.json"
    keys = {ns.out for ns in _parsed("keygen")}
    assert {ns.key for ns in configs} <= keys | {"/etc/lambtrace/node-key.json"}
    assert "/etc/lambtrace/node-key.json" in keys
    node = read_unit(NODE_UNIT)
    (run,) = exec_invocations(one(node, "Service", "ExecStart"))
    assert run[run.index("--config") + 1] == "/etc/lambtrace/node.json"
    source = one(node, "Service", "LoadCredential").split(":", 1)[1]
    assert f"LAMBTRACE_KEY_PASSPHRASE_FILE={source} lambtrace keygen" in DOC.read_text(encoding="utf-8")


def test_the_guide_names_files_that_exist() -> None:
    text = DOC.read_text(encoding="utf-8")
    for unit in (NODE_UNIT, BACKUP_UNIT, BACKUP_TIMER, WITNESS_UNIT):
        assert f"deploy/systemd/{unit.name}" in text
    assert INSTALLED in text and "/opt/lambtrace" in text
    for ref in sorted(set(re.findall(r"\b((?:docs|docker|scripts)/[\w./-]*\w)", text))):
        assert (ROOT / ref).exists(), f"docs/deploy.md names {ref}, which does not exist"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "`docs/deploy.md`" in readme.split("## Documents", 1)[1]


def test_the_guides_genesis_check_prints_the_hash_and_key_ids(tmp_path: Path) -> None:
    """The ``lambtrace fingerprint`` line the guide gives operators prints what the rest of
    LambTrace calls the genesis hash, the labels' fingerprint and every key id."""
    text = DOC.read_text(encoding="utf-8")
    (line,) = [ln for _s, b in sh_blocks(text) for _n, ln in logical_lines(0, b) if "lambtrace fingerprint" in ln]
    words = shlex.split(line)
    assert words[:2] == ["lambtrace", "fingerprint"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["network", "init", "--dir", str(tmp_path / "net"), "--validators", "2", "--insecure-plain"]) == 0
    expected = json.loads(out.getvalue())["genesis_hash"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["fingerprint", "--genesis", str(tmp_path / "net" / "genesis.json")]) == 0
    shown = json.loads(out.getvalue())
    assert shown["hash"] == expected and shown["fingerprint"] == expected[:32]
    pub = load_public_key(tmp_path / "net" / "keys" / "node-league.json")
    assert shown["validators"][0] == {"name": "league", "banner": "152500", "alg": "ed25519",
                                      "key_id": pub.key_id, "power": 1}
    office = load_public_key(tmp_path / "net" / "keys" / "trace-office.json")
    assert [k["key_id"] for k in shown["trace_office"]["keys"]] == [office.key_id]


# ---------------------------------------------------------------- the units

def test_node_unit() -> None:
    u = read_unit(NODE_UNIT)
    assert set(u) == {"Unit", "Service", "Install"}
    assert one(u, "Unit", "Description")
    assert "network-online.target" in one(u, "Unit", "After").split()
    svc = "Service"
    assert one(u, svc, "User") == "lambtrace" and one(u, svc, "Group") == "lambtrace"
    exec_start = one(u, svc, "ExecStart")
    assert shlex.split(exec_start) == [INSTALLED, "node", "--config", "/etc/lambtrace/node.json"]
    assert one(u, svc, "LoadCredential") == "passphrase:/etc/lambtrace/node-key.pass"
    assert "LAMBTRACE_KEY_PASSPHRASE_FILE=%d/passphrase" in u[svc]["Environment"]
    assert not any(v.startswith("LAMBTRACE_KEY_PASSPHRASE=") for v in u[svc]["Environment"]), \
        "the passphrase itself never goes into a unit"
    assert one(u, svc, "StateDirectory") == "lambtrace"
    assert "/var/lib/lambtrace" in one(u, svc, "ReadWritePaths").split()
    assert one(u, svc, "Restart") == "on-failure"
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp"):
        assert truthy(one(u, svc, key)), key
    assert one(u, svc, "ProtectSystem") == "strict"
    assert one(u, svc, "CapabilityBoundingSet") == ""
    assert set(one(u, svc, "RestrictAddressFamilies").split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    assert one(u, svc, "SystemCallFilter") == "@system-service"
    assert "MemoryDenyWriteExecute" not in u[svc]
    assert "MemoryDenyWriteExecute" in NODE_UNIT.read_text(encoding="utf-8"), "say why it is left out"
    # the node exits by itself at the latest 10 s after SIGTERM (lambtrace/runner.py)
    assert seconds(one(u, svc, "TimeoutStopSec")) > 10
    assert u[svc].get("KillSignal", ["SIGTERM"]) == ["SIGTERM"]
    assert one(u, svc, "LimitNOFILE") == "65536"
    assert one(u, "Install", "WantedBy") == "multi-user.target"


def test_backup_units() -> None:
    u = read_unit(BACKUP_UNIT)
    svc = "Service"
    assert one(u, svc, "Type") == "oneshot"
    assert one(u, svc, "User") == "lambtrace"
    assert "/var/backups/lambtrace" in one(u, svc, "ReadWritePaths").split()
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp"):
        assert truthy(one(u, svc, key)), key
    assert one(u, svc, "ProtectSystem") == "strict"
    (args,) = exec_invocations(one(u, svc, "ExecStart"))
    ns = parse(args, str(BACKUP_UNIT))
    assert ns is not None and ns.command == "backup"
    url = urlparse(ns.url)
    assert url.hostname in {"127.0.0.1", "::1", "localhost"}, "GET /v1/backup answers loopback clients only"
    node_configs = [c for c in _parsed("network", "node-config") if c.role == "validator"]
    assert {c.listen.rpartition(":")[2] for c in node_configs} == {str(url.port)}, "the guide's API port"
    cleanup = [shlex.split(unescape_exec(v)) for v in u[svc].get("ExecStartPost", [])]
    assert any(Path(w[0]).name == "find" and "-delete" in w and "-mtime" in w and "/var/backups/lambtrace" in w
               for w in cleanup), "old backups are deleted with find ... -mtime N -delete"

    t = read_unit(BACKUP_TIMER)
    assert one(t, "Timer", "OnCalendar")
    assert truthy(one(t, "Timer", "Persistent"))
    assert seconds(one(t, "Timer", "RandomizedDelaySec")) > 0
    assert t["Timer"].get("Unit", [BACKUP_UNIT.name]) == [BACKUP_UNIT.name]
    assert one(t, "Install", "WantedBy") == "timers.target"


def test_every_exec_line_of_the_units_parses() -> None:
    found = 0
    for path in (NODE_UNIT, BACKUP_UNIT, WITNESS_UNIT):
        unit = read_unit(path)
        for key, values in unit["Service"].items():
            if not key.startswith("Exec"):
                continue
            for value in values:
                for args in exec_invocations(value):
                    parse(args, f"{path.name} {key}")
                    found += 1
    assert found >= 2


def _stub(tmp_path: Path) -> Path:
    """A stand-in for the installed ``lambtrace`` that records its arguments, one per line."""
    stub = tmp_path / "lambtrace"
    stub.write_text('#!/bin/sh\nprintf \'%s\\n\' "$@" > "$STUB_ARGS"\n', encoding="utf-8")
    stub.chmod(0o755)
    return stub


def test_the_backup_command_systemd_runs_names_a_dated_file(tmp_path: Path) -> None:
    """The ``/bin/sh -c`` script, unescaped as systemd does, run for real with a stub in
    place of ``lambtrace``: one ``--out`` argument holding the host and today's date."""
    if shutil.which("sh") is None:
        pytest.skip("no sh")
    words = shlex.split(unescape_exec(one(read_unit(BACKUP_UNIT), "Service", "ExecStart")))
    stub = _stub(tmp_path)
    words = [w.replace(INSTALLED, str(stub)) for w in words]
    env = {**os.environ, "STUB_ARGS": str(tmp_path / "args")}
    before = time.strftime("%Y-%m-%d", time.gmtime())
    r = subprocess.run(words, capture_output=True, text=True, timeout=10, env=env)
    assert r.returncode == 0, r.stderr
    args = (tmp_path / "args").read_text(encoding="utf-8").splitlines()
    ns = parse(args, "lambtrace-backup.service as run")
    assert ns is not None
    days = {before, time.strftime("%Y-%m-%d", time.gmtime())}
    assert ns.out in {f"/var/backups/lambtrace/{HOST}-{day}.ltbackup" for day in days}


def test_the_backup_cleanup_deletes_only_old_backups(tmp_path: Path) -> None:
    if shutil.which("find") is None:
        pytest.skip("no find")
    (post,) = read_unit(BACKUP_UNIT)["Service"]["ExecStartPost"]
    words = [w.replace("/var/backups/lambtrace", str(tmp_path)) for w in shlex.split(unescape_exec(post))]
    old = time.time() - 30 * 86400
    files = {"host-2026-01-01.ltbackup": old, "host-2026-01-02.ltbackup.part": old, "notes.txt": old,
             "host-today.ltbackup": time.time()}
    for name, mtime in files.items():
        (tmp_path / name).write_bytes(b"x")
        os.utime(tmp_path / name, (mtime, mtime))
    r = subprocess.run(words, capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["host-today.ltbackup", "notes.txt"]


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("no systemd-analyze on this machine")
    real = Path(sys.executable).parent / "lambtrace"
    if not real.exists():
        real = Path(shutil.which("lambtrace") or "")
    assert real.is_file(), "the lambtrace command of this checkout"
    copies = []
    for path in (NODE_UNIT, BACKUP_UNIT, BACKUP_TIMER, WITNESS_UNIT):
        copy = tmp_path / path.name
        copy.write_text(path.read_text(encoding="utf-8").replace(INSTALLED, str(real)), encoding="utf-8")
        copies.append(str(copy))
    r = subprocess.run([tool, "verify", *copies], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    ours = [ln for ln in (r.stdout + r.stderr).splitlines() if "lambtrace" in ln]
    assert not ours, "\n".join(ours)
    version = subprocess.run([tool, "--version"], capture_output=True, text=True, timeout=10).stdout
    m = re.match(r"systemd (\d+)", version)
    if m and int(m.group(1)) >= 250:  # --offline and --threshold (exposure x 10)
        services = [c for c in copies if c.endswith(".service")]
        r = subprocess.run([tool, "security", "--offline=yes", "--threshold=30", *services],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr


def test_witness_unit() -> None:
    """The alarm (exit 3) is never restarted over; the witness watches every validator of
    the guide's example network, keeping its state where systemd gives it a directory."""
    u = read_unit(WITNESS_UNIT)
    assert one(u, "Service", "User") == "lambtrace"
    assert "3" in one(u, "Service", "RestartPreventExitStatus").split()
    assert one(u, "Service", "Restart") == "on-failure"
    (run,) = exec_invocations(one(u, "Service", "ExecStart"))
    ns = parse(run, WITNESS_UNIT.name)
    assert ns is not None
    assert ns.every and ns.every >= 10 and ns.genesis == "/etc/lambtrace/genesis.json"
    assert ns.state.startswith(f"/var/lib/{one(u, 'Service', 'StateDirectory')}/")
    text = DOC.read_text(encoding="utf-8")
    validators = set(re.findall(r"--validator ([a-z][\w-]*):\d{6}:", text))
    hosts = {urlparse(x).hostname for x in ns.url}
    assert len(validators) == 4 and hosts == {f"{v}.trace.example" for v in validators}
    assert {urlparse(x).scheme for x in ns.url} == {"https"}
