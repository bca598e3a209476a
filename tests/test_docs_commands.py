"""Every ``lambtrace`` command the README and docs/ show is one the real command line
accepts.

Two kinds of places show commands:

* ``sh`` blocks: each ``lambtrace`` (or ``./lt``) invocation in them goes whole through
  ``lambtrace.cli.build_parser`` (the same shell reading as tests/test_deploy_units.py,
  which holds docs/deploy.md to more than this), with its optional parts written
  ``[--wait]`` or ``[--limit 1000]`` included;
* inline code such as ``lambtrace keygen --out FILE [--public-out PUB]``, which names a
  command and its options in prose or usage syntax: the command (and its subcommand)
  must exist and every ``--option`` named must be one of that command's.

A renamed or removed option therefore fails here rather than in a reader's terminal.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
from test_deploy_units import logical_lines, parse, sh_blocks, shell_invocations

from lambtrace.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", ROOT / "docker" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LT_OWN = {"test"}
"""``./lt`` words that are the wrapper's own, not lambtrace commands."""

_INLINE = re.compile(r"`((?:\./lt|(?:\S*/)?lambtrace) [^`]+)`")
_OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def options(parser: argparse.ArgumentParser) -> set[str]:
    return {s for action in parser._actions for s in action.option_strings}


def _lt_words(line: str) -> str:
    """``./lt`` is the bootstrap wrapper around ``lambtrace``: read it as the command."""
    return re.sub(r"(^|[\s;&|(])\./lt(?=\s)", r"\1lambtrace", line)


def block_commands() -> list[tuple[str, list[str]]]:
    out = []
    for doc in DOCS:
        for start, block in sh_blocks(doc.read_text(encoding="utf-8")):
            for n, line in logical_lines(start, block):
                for args in shell_invocations(_lt_words(line)):
                    if args[:1] and args[0] in LT_OWN:
                        continue
                    out.append((f"{rel(doc)}:{n}", with_optional_parts(args)))
    return out


def with_optional_parts(args: list[str]) -> list[str]:
    """``[--limit 1000]`` as the shell splits it (``[--limit``, ``1000]``) taken as given."""
    out = []
    for w in args:
        if w.startswith("[--"):
            w = w[1:]
        if w.endswith("]") and "[" not in w:
            w = w[:-1]
        out.append(w)
    return out


def inline_commands() -> list[tuple[str, str]]:
    out = []
    for doc in DOCS:
        for n, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
            for m in _INLINE.finditer(line):
                out.append((f"{rel(doc)}:{n}", m.group(1)))
    return out


BLOCKS = block_commands()
INLINE = inline_commands()


def test_the_docs_show_commands_to_check() -> None:
    """The readers above find what they are meant to (a change of markup that hid every
    command from them would otherwise pass silently)."""
    assert len(BLOCKS) >= 40, len(BLOCKS)
    assert len(INLINE) >= 60, len(INLINE)
    assert {w.split(":")[0] for w, _ in BLOCKS} >= {"README.md", "docs/deploy.md", "docs/hsm.md", "docs/verify.md"}


@pytest.mark.parametrize(("where", "args"), BLOCKS, ids=[f"{w}-{'-'.join(a[:2])}" for w, a in BLOCKS])
def test_every_command_in_a_sh_block_parses(where: str, args: list[str]) -> None:
    parse(args, where)


def check_inline(span: str, parser: argparse.ArgumentParser) -> str | None:
    """Why the inline command ``span`` does not fit ``parser``, or None if it does."""
    words = span.split()[1:]
    if not words or words[0] in LT_OWN or words[0].startswith(("-", "<")):
        return None  # ``./lt test``, ``lambtrace --version``, ``lambtrace <command> --help``
    commands = subparsers(parser)
    head = words[0]
    if head not in commands:
        return f"no command {head!r}"
    target = commands[head]
    nested = subparsers(target)
    if nested and len(words) > 1 and not words[1].startswith("-"):
        # ``hsm init-token|keygen|list`` names several subcommands at once
        names = [w for w in re.split(r"[|]", words[1].strip("[]()")) if w]
        unknown = [w for w in names if w not in nested and not w.startswith(("<", "."))]
        if unknown:
            return f"`{head}` has no subcommand {unknown}"
        known = [nested[w] for w in names if w in nested]
        allowed = options(target).union(*(options(p) for p in known)) if known else options(target)
    else:
        allowed = options(target).union(*(options(p) for p in nested.values()))
    missing = sorted({o for o in _OPTION.findall(span) if o not in allowed})
    return f"`{head}` has no option {missing}" if missing else None


def test_every_inline_command_names_real_commands_and_options() -> None:
    parser = build_parser()
    wrong = [f"{where}: `{span}`: {why}" for where, span in INLINE
             if (why := check_inline(span, parser)) is not None]
    assert not wrong, "\n".join(wrong)


def test_the_inline_check_can_fail() -> None:
    parser = build_parser()
    assert check_inline("lambtrace keygen --out FILE [--public-out PUB]", parser) is None
    assert check_inline("lambtrace hsm init-token|keygen|list", parser) is None
    assert check_inline("lambtrace keygen --no-such-option", parser) is not None
    assert check_inline("lambtrace no-such-command --url U", parser) is not None
    assert check_inline("lambtrace hsm no-such-sub", parser) is not None


def test_every_command_and_subcommand_is_documented() -> None:
    """A new command comes with its docs: each is shown as ``lambtrace <command>`` and each
    subcommand as ``lambtrace <command> <sub>`` (or in a list such as ``hsm a|b``)."""
    text = "\n".join(doc.read_text(encoding="utf-8") for doc in DOCS)
    undocumented = []
    for name, parser in subparsers(build_parser()).items():
        if not re.search(rf"lambtrace {re.escape(name)}\b", text):
            undocumented.append(name)
        for sub in subparsers(parser):
            if not re.search(rf"lambtrace {re.escape(name)} (?:[\w-]+\|)*{re.escape(sub)}\b", text):
                undocumented.append(f"{name} {sub}")
    assert not undocumented, f"no docs show `lambtrace` {undocumented}"
