#!/usr/bin/env python3
"""Check that the documentation works as written on a fresh clone.

The README and docs are read by someone with nothing but a checkout, so
every file they point at must be in that checkout, and the README's quick
start must run. Two subcommands (Python 3.11 standard library only):

``links [FILE...]``
    In README.md, every ``*.md`` under docs/, hosts/*/README.md,
    wit/README.md and tests/conformance/README.md (whichever exist; or the
    FILEs given):

    * every relative Markdown link or image target, ``[text](path)`` and
      ``[ref]: path``, must exist relative to the file that contains it
      (a leading ``/`` means the repository root). ``http(s):``,
      ``mailto:`` and other URLs and pure ``#anchor`` links are not
      checked; a ``#anchor`` or ``?query`` is cut off the path.
    * every inline code span (`like/this.rs`) that looks like a path into
      the repository must exist: its first component is a top-level entry
      of the repository (``host/``, ``docs/``, ``.ci/``, ``Cargo.toml``,
      ...) or, for a file below the root, an entry of that file's own
      directory (hosts/node/README.md may say `src/worker.js`). It may name
      a file or a directory, relative to the repository root or to the
      containing file's directory. A span starting with ``../`` is
      relative to the containing file and checked when it stays inside the
      repository. A leading ``./`` and a trailing ``:LINE``,
      ``:LINE:COL``, ``::item`` or ``#anchor`` are cut off.
    * every file path in the prose itself, outside code spans: a top-level
      directory of the repository (or of the file's directory), a slash
      and a name with an extension, such as docs/security.md (so that
      words like "host/guest" are not taken for paths).

    Left alone, because they are not one fixed path: spans with blanks,
    globs or placeholders (``* ? [ ] { } < > | $ ~ = ...``), spans under
    ``target/`` or ``dist/`` (build outputs, absent from a fresh clone),
    and missing paths with an all-capitals component (``tests/X.rs``,
    ``dist/NAME``: a placeholder). Fenced code blocks are not read (they
    are commands, which the quick start check runs for the README).

    "Exists" means present on disk *and* in the checkout git would give a
    fresh clone (tracked, or new and not ignored), so a path that only a
    build or a local venv created counts as missing. Outside a git work
    tree, present on disk is enough.

    Prints ``FILE:LINE: missing PATH`` for each broken one and exits 1, or
    ``docs: N links and paths checked, all present``.

``quickstart [--run] [--skip PATTERN]... [--only PATTERN]...``
    The shell commands of README.md's "## Quick start" section, taken from
    the README text itself so that the README and what CI runs cannot
    drift apart. The rule: every fenced code block whose info string is
    ``sh`` that lies after the ``## Quick start`` heading and before the
    next heading of level 1 to 3 (``#``, ``##`` or ``###``). The section's
    ``### `` subsections (such as "### Install") describe other ways to
    install and use the project, not the quick start, and a ``### ``
    subsection runs until the next ``## `` heading, so nothing after the
    first one is taken. Headings inside code blocks do not count.

    Without ``--run`` the blocks are printed, one after the other. With
    ``--run`` each one is run as written, ``bash -euo pipefail -c BLOCK``
    from the repository root, in order, after printing
    ``==> quickstart: BLOCK``; the first failure stops the run with a
    message naming the command and its exit status (exit 1).
    ``--skip PATTERN`` (repeatable) leaves out every block whose text
    contains PATTERN; ``--only PATTERN`` (repeatable) keeps only blocks
    containing one of the PATTERNs. No quick start section, or no block
    left to take, is an error (exit 2): the README changed shape and this
    check must be looked at.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([^`\s]*)")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
# [text](target "title") and ![alt](target); the text is matched loosely,
# the target up to a blank or the closing parenthesis.
INLINE_LINK = re.compile(r"\]\(\s*<?([^)\s>]*)>?(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")
REFERENCE_LINK = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)")
URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
# Characters that make a code span a pattern or a command, not one path.
NOT_A_PATH = re.compile(r"[\s*?\[\]{}<>|$~=…]|\.\.\.")
PLACEHOLDER = re.compile(r"^[A-Z][A-Z0-9_-]*(\.[A-Za-z0-9]+)*$")
LOCATION_SUFFIX = re.compile(r"(::.*|:\d+(?:[-:]\d+)*|#.*)$")
BUILD_OUTPUTS = ("target", "dist")


def doc_files() -> list[Path]:
    """The Markdown files `links` reads by default, those that exist."""
    files = [ROOT / "README.md"]
    files += sorted((ROOT / "docs").rglob("*.md"))
    files += sorted(ROOT.glob("hosts/*/README.md"))
    files += [ROOT / "wit" / "README.md", ROOT / "tests" / "conformance" / "README.md"]
    return [f for f in files if f.is_file()]


class Checkout:
    """What a fresh clone holds: the files git would give it, and their directories."""

    def __init__(self) -> None:
        self.paths: set[str] | None = None
        try:
            out = subprocess.run(
                ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                cwd=ROOT,
                capture_output=True,
                check=True,
            ).stdout
        except (OSError, subprocess.CalledProcessError):
            return  # not a git work tree (an unpacked tarball): the disk decides
        paths: set[str] = set()
        for name in out.decode("utf-8", "surrogateescape").split("\0"):
            if not name:
                continue
            parts = name.split("/")
            for i in range(1, len(parts) + 1):
                paths.add("/".join(parts[:i]))
        self.paths = paths

    def has(self, path: Path) -> bool:
        """True if `path` (absolute) is inside the repository, on disk and in the checkout."""
        path = Path(os.path.normpath(path))
        try:
            rel = path.relative_to(ROOT).as_posix()
        except ValueError:
            return False  # outside the repository: not something a clone has
        if rel == ".":
            return True
        if not os.path.lexists(path):
            return False
        return self.paths is None or rel in self.paths

    def entries(self, directory: Path) -> set[str]:
        """The names directly inside `directory` (absolute) that the checkout has."""
        try:
            names = {p.name for p in directory.iterdir()}
        except OSError:
            return set()
        return {n for n in names if n != ".git" and self.has(directory / n)}


def strip_fences(lines: list[str]) -> list[str]:
    """The lines with every fenced code block blanked (line numbers kept)."""
    out: list[str] = []
    fence: str | None = None
    for line in lines:
        m = FENCE.match(line)
        if fence is None:
            if m:
                fence = m.group(1)
                out.append("")
                continue
            out.append(line)
        else:
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) and not m.group(2):
                fence = None
            out.append("")
    return out


def code_spans(text: str) -> tuple[list[tuple[int, str]], str]:
    """The inline code spans of `text` (offset, content) and `text` with them masked.

    Spans are found as CommonMark does: a run of N backticks opens a span
    closed by the next run of exactly N; an unclosed run is literal. The
    caller passes one paragraph at a time, since a span does not cross a
    blank line. Masking keeps offsets and newlines, so links can be found
    in what is left.
    """
    spans: list[tuple[int, str]] = []
    masked = list(text)
    runs = [(m.start(), len(m.group())) for m in re.finditer(r"`+", text)]
    i = 0
    while i < len(runs):
        start, n = runs[i]
        close = next((j for j in range(i + 1, len(runs)) if runs[j][1] == n), None)
        if close is None:
            i += 1
            continue
        end = runs[close][0]
        content = text[start + n : end].replace("\n", " ")
        if content.startswith(" ") and content.endswith(" ") and content.strip():
            content = content[1:-1]
        spans.append((start, content))
        for k in range(start, end + n):
            if masked[k] != "\n":
                masked[k] = " "
        i = close + 1
    return spans, "".join(masked)


def paragraphs(lines: list[str]) -> Iterator[tuple[int, str]]:
    """(first line number, text) of each run of non-blank lines."""
    start = None
    for number, line in enumerate([*lines, ""], start=1):
        if line.strip():
            if start is None:
                start = number
        elif start is not None:
            yield start, "\n".join(lines[start - 1 : number - 1])
            start = None


def check_file(doc: Path, checkout: Checkout, root_entries: set[str]) -> list[tuple[int, str, str, bool]]:
    """(line, kind, path, present) for each link or repository path of one file."""
    here = doc.parent
    local_entries = checkout.entries(here) if here != ROOT else set()
    directories = sorted(
        (e for e in root_entries | local_entries if (ROOT / e).is_dir() or (here / e).is_dir()),
        key=len,
        reverse=True,
    )
    bare_path = re.compile(
        r"(?<![\w./@:~$-])((?:%s)/[\w.+/-]*\.[A-Za-z0-9]+)(?![\w/-])"
        % ("|".join(re.escape(d) for d in directories) or "(?!)")
    )
    results: list[tuple[int, str, str, bool]] = []

    def in_repo(path: str) -> bool:
        return checkout.has(ROOT / path) or checkout.has(here / path)

    lines = strip_fences(doc.read_text(encoding="utf-8").splitlines())
    for first, text in paragraphs(lines):
        spans, masked = code_spans(text)

        def line_of(offset: int, first: int = first, text: str = text) -> int:
            return first + text.count("\n", 0, offset)

        # Markdown links (outside code spans), relative to this file.
        targets = [(m.start(), m.group(1)) for m in INLINE_LINK.finditer(masked)]
        for m in re.finditer(r"(?m)^.*$", masked):
            ref = REFERENCE_LINK.match(m.group())
            if ref:
                targets.append((m.start(), ref.group(1)))
        for offset, target in targets:
            if not target or target.startswith("#") or URL_SCHEME.match(target):
                continue
            path = urllib.parse.unquote(target.split("#", 1)[0].split("?", 1)[0])
            base = ROOT if path.startswith("/") else here
            results.append((line_of(offset), "link", target, checkout.has(base / path.lstrip("/"))))

        # Repository file paths in the prose itself (outside code spans and
        # link targets): a top-level directory, a slash, and a name with an
        # extension, such as docs/security.md (so not "host/guest").
        prose = INLINE_LINK.sub(lambda m: " " * len(m.group()), masked)
        for m in bare_path.finditer(prose):
            path = m.group(1)
            if path.split("/", 1)[0] not in BUILD_OUTPUTS:
                results.append((line_of(m.start()), "text", path, in_repo(path)))

        # Repository paths in code spans.
        for offset, content in spans:
            span = content.strip()
            if not span or NOT_A_PATH.search(span):
                continue
            if span.startswith("./"):
                span = span[2:]
            span = LOCATION_SUFFIX.sub("", span)
            first_part = span.split("/", 1)[0]
            if first_part == "..":
                # Relative to this file, if that stays in the repository
                # (docs/security.md's `../../etc` is an attacker's path).
                target = Path(os.path.normpath(here / span))
                if target.is_relative_to(ROOT) and target.relative_to(ROOT).parts[:1] != (".git",):
                    results.append((line_of(offset), "code", span, checkout.has(target)))
                continue
            if first_part not in root_entries and first_part not in local_entries:
                continue  # not a path into the repository (such as /usr/bin)
            if first_part in BUILD_OUTPUTS:
                continue  # a build output: not in a fresh clone
            present = in_repo(span)
            if not present and any(PLACEHOLDER.match(part) for part in span.split("/")):
                continue  # tests/tests/X.rs, dist/NAME: stands for a name
            results.append((line_of(offset), "code", span, present))
    return sorted(results, key=lambda r: r[0])


def cmd_links(args: argparse.Namespace) -> int:
    checkout = Checkout()
    root_entries = checkout.entries(ROOT) | set(BUILD_OUTPUTS)
    docs = [Path(f).resolve() for f in args.files] if args.files else doc_files()
    total = 0
    missing = 0
    for doc in docs:
        name = doc.relative_to(ROOT).as_posix() if doc.is_relative_to(ROOT) else str(doc)
        for line, kind, path, present in check_file(doc, checkout, root_entries):
            total += 1
            if not present:
                missing += 1
                print(f"{name}:{line}: missing {path}")
            elif args.verbose:
                print(f"{name}:{line}: {kind} {path}")
    if missing:
        print(f"docs: {missing} of {total} links and paths missing", file=sys.stderr)
        return 1
    print(f"docs: {total} links and paths checked, all present")
    return 0


def quickstart_blocks(readme: Path) -> list[str]:
    """The `sh` blocks of the README's quick start (see the module docstring)."""
    lines = readme.read_text(encoding="utf-8").splitlines()
    blocks: list[str] = []
    in_section = False
    fence: str | None = None
    take = False
    body: list[str] = []
    for line in lines:
        m = FENCE.match(line)
        if fence is not None:
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) and not m.group(2):
                if take:
                    blocks.append("\n".join(body))
                fence = None
            elif take:
                body.append(line)
            continue
        if m:
            fence, take, body = m.group(1), in_section and m.group(2) == "sh", []
            continue
        h = HEADING.match(line)
        if h and len(h.group(1)) <= 3:
            if in_section:
                break  # the next section, or the first ### subsection
            in_section = len(h.group(1)) == 2 and h.group(2) == "Quick start"
    else:
        if not in_section:
            raise SystemExit(f"check-docs: no '## Quick start' section in {readme}")
    return blocks


def shown(prefix: str, block: str) -> str:
    """`prefix` and `block`, the block's later lines indented under its first."""
    return prefix + block.replace("\n", "\n" + " " * len(prefix))


def cmd_quickstart(args: argparse.Namespace) -> int:
    readme = ROOT / "README.md"
    blocks = quickstart_blocks(readme)
    if not blocks:
        print("check-docs: no ```sh block in README.md's '## Quick start' section", file=sys.stderr)
        return 2
    chosen: list[str] = []
    for block in blocks:
        if args.only and not any(p in block for p in args.only):
            print(shown("quickstart: not selected (--only): ", block), file=sys.stderr)
        elif any(p in block for p in args.skip):
            print(shown("quickstart: skipped (--skip): ", block), file=sys.stderr)
        else:
            chosen.append(block)
    if not chosen:
        print("check-docs: --only/--skip left no quick start command", file=sys.stderr)
        return 2
    if not args.run:
        for block in chosen:
            print(block)
        return 0
    for block in chosen:
        print(shown("==> quickstart: ", block), flush=True)
        status = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=ROOT).returncode
        if status != 0:
            if status < 0:
                status = 128 - status  # killed by a signal: as a shell reports it
            print(shown(f"quickstart: FAILED (exit status {status}): ", block), file=sys.stderr)
            return 1
    print(f"quickstart: {len(chosen)} of {len(blocks)} commands passed")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    links = sub.add_parser("links", help="every relative link and repository path in the docs exists")
    links.add_argument("files", nargs="*", help="Markdown files (default: the project's docs)")
    links.add_argument("-v", "--verbose", action="store_true", help="also list every link and path found present")
    links.set_defaults(func=cmd_links)
    quick = sub.add_parser("quickstart", help="print or run the README's quick start commands")
    quick.add_argument("--run", action="store_true", help="run them, not just print them")
    quick.add_argument(
        "--skip",
        action="append",
        default=[],
        metavar="PATTERN",
        help="leave out commands containing PATTERN (repeatable)",
    )
    quick.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="PATTERN",
        help="run only commands containing PATTERN (repeatable)",
    )
    quick.set_defaults(func=cmd_quickstart)
    args = parser.parse_args()
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
