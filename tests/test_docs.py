"""The documentation matches the program (issue 6).

Where an option must be documented, decided here once:

* README.md is the reference. Each command has a passage that starts
  "Options of `CMD`" (or "Of `CMD`:") and runs to the next such passage or the
  next heading; every long option of the command that is not hidden must be
  written there as `--name` (in backticks), and every `--name` written there
  must be an option of that command (no stale options).
* Commands in OPS_ONLY are tools for the people who run nightly jobs; their
  passage may be in docs/operations.md instead of README.md.
* Not checked: ``--help`` (every command has it) and the group's ``--version``,
  click's standard options; and short forms (``-m``), which always come with
  their long form.

Also: every ``bulksend ...`` command line in the fenced code blocks of both
files parses with the real command line (no option that does not exist); the
README's first two fenced blocks are the two set-up commands; ``.ci/run`` runs
the same test command as the README's second block.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from bulksend.cli.main import cli

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
OPERATIONS = ROOT / "docs" / "operations.md"
CI_RUN = ROOT / ".ci" / "run"

OPS_ONLY = frozenset({"reconcile"})
NOT_CHECKED = frozenset({"--help", "--version"})

MARKER = re.compile(r"(?:Options of|\bOf) `(?P<cmd>[a-z][a-z-]*)`:?")
HEADING = re.compile(r"^#", re.M)


def long_options(command: click.Command, *, hidden: bool = False) -> set[str]:
    names: set[str] = set()
    for param in command.params:
        if not isinstance(param, click.Option) or (param.hidden and not hidden):
            continue
        names.update(n for n in [*param.opts, *param.secondary_opts] if n.startswith("--"))
    return names - NOT_CHECKED


def passages(text: str) -> dict[str, str]:
    """Command name -> the text of its options passage."""
    found: dict[str, str] = {}
    marks = list(MARKER.finditer(text))
    for i, mark in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        heading = HEADING.search(text, mark.end(), end)
        if heading is not None:
            end = heading.start()
        found[mark["cmd"]] = found.get(mark["cmd"], "") + text[mark.end():end]
    return found


def written(option: str, passage: str) -> bool:
    return re.search("`" + re.escape(option) + r"(?![\w-])", passage) is not None


def doc_problems(group: click.Group, readme: str, operations: str) -> list[str]:
    """Every way the docs and the command tree disagree, one line each."""
    problems: list[str] = []
    in_readme, in_ops = passages(readme), passages(operations)
    for name, command in sorted(group.commands.items()):
        options = long_options(command)
        passage = in_readme.get(name)
        where = "README.md"
        if passage is None and name in OPS_ONLY:
            passage, where = in_ops.get(name), "docs/operations.md"
        if passage is None:
            if options:
                allowed = "README.md or docs/operations.md" if name in OPS_ONLY else "README.md"
                problems.append(f"{name}: no 'Options of `{name}`' passage in {allowed}")
            continue
        for option in sorted(options):
            if not written(option, passage):
                problems.append(f"{name} {option}: not in its passage of {where}")
        known = long_options(command, hidden=True)
        for option in sorted(set(re.findall(r"`(--[a-z][a-z0-9-]*)", passage)) - known - NOT_CHECKED):
            problems.append(f"{name} {option}: in {where} but not an option of `bulksend {name}`")
    return problems


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(info string, content) of each fenced code block, in order."""
    return [(m["info"], m["body"]) for m in
            re.finditer(r"^```(?P<info>[^\n`]*)\n(?P<body>.*?)^```\s*$", text, re.M | re.S)]


def test_every_option_of_every_command_is_documented() -> None:
    problems = doc_problems(cli, README.read_text(encoding="utf-8"),
                            OPERATIONS.read_text(encoding="utf-8"))
    assert problems == []


def test_the_check_catches_a_missing_or_stale_option() -> None:
    readme = README.read_text(encoding="utf-8")
    operations = OPERATIONS.read_text(encoding="utf-8")
    assert doc_problems(cli, readme, operations) == []

    # An option dropped from the README.
    assert "`--summary-json" in readme
    cut = readme.replace("`--summary-json", "`--summary")
    assert doc_problems(cli, cut, operations) == [
        "send --summary-json: not in its passage of README.md",
        "send --summary: in README.md but not an option of `bulksend send`",
    ]
    # An option mentioned only in another command's passage does not count.
    cut = re.sub(r"Of `demo`: `--results FILE`\.?", "", readme)
    assert "demo: no 'Options of `demo`' passage in README.md" in doc_problems(cli, cut, operations)
    # A command-only-for-operations passage removed from docs/operations.md.
    assert doc_problems(cli, readme, "") == [
        "reconcile: no 'Options of `reconcile`' passage in README.md or docs/operations.md"]

    # An option added to a command without documentation.
    @click.group()
    def group() -> None: ...

    for name, command in cli.commands.items():
        group.add_command(command, name)

    @group.command("report")
    @click.option("--examples", type=int)
    @click.option("--since", help="new and undocumented")
    @click.option("--secret-thing", hidden=True)
    def report(examples: int, since: str, secret_thing: str) -> None: ...

    assert doc_problems(group, readme, operations) == ["report --since: not in its passage of README.md"]


def bulksend_lines(text: str) -> list[tuple[str, list[str]]]:
    """Each `bulksend CMD ...` of the fenced blocks, as (line, arguments after CMD)."""
    found = []
    for _, body in fenced_blocks(text):
        body = body.replace("\\\n", " ")
        for line in body.splitlines():
            if not re.search(r"(?:^|[/\s=])bulksend\s+[a-z]", line):
                continue
            flat = re.sub(r"\$\([^)]*\)", "X", line)  # $(date +%F) and the like
            try:
                # Quotes kept, so that an operator is told from a quoted ';'.
                lexer = shlex.shlex(flat, posix=False)
                lexer.whitespace_split = True
                tokens = list(lexer)
            except ValueError as exc:
                pytest.fail(f"cannot split {line!r}: {exc}")
            segment: list[str] = []
            for raw in [*tokens, "&&"]:
                token = raw if raw in ("&&", "||", ";", "|") else " ".join(shlex.split(raw))
                if raw in ("&&", "||", ";", "|"):
                    for i, word in enumerate(segment[:-1]):
                        word = word.removeprefix("ExecStart=")
                        if word.rsplit("/", 1)[-1] == "bulksend" and segment[i + 1] in cli.commands:
                            found.append((line, segment[i + 1:]))
                            break
                    segment = []
                elif not re.match(r"^\d*[<>]", token):  # redirections
                    segment.append(token)
    return found


@pytest.mark.parametrize("doc", [README, OPERATIONS], ids=lambda p: p.name)
def test_command_lines_in_the_docs_parse(doc: Path) -> None:
    lines = bulksend_lines(doc.read_text(encoding="utf-8"))
    assert len(lines) >= 3
    for line, (name, *args) in lines:
        command = cli.commands[name]
        try:
            command.make_context(name, list(args))
        except click.ClickException as exc:
            pytest.fail(f"{doc.name}: {line.strip()!r}: {exc.format_message()}")


def test_operations_doc_covers_a_nightly_job() -> None:
    text = OPERATIONS.read_text(encoding="utf-8")
    sends = [args for _, (name, *args) in bulksend_lines(text) if name == "send"]
    assert len(sends) >= 3  # cron, systemd with a key file, systemd with EnvironmentFile
    results = set()
    for args in sends:
        # Every scheduled send names its results file (a fixed path), logs JSON
        # and writes a summary.
        assert "--results" in args and "--log-format" in args and "--summary-json" in args, args
        assert args[args.index("--log-format") + 1] == "json"
        results.add(args[args.index("--results") + 1])
        assert not any(a.startswith("--api-key") and a != "--api-key-file" for a in args), args
    assert len(results) == 1 and next(iter(results)).startswith("/")
    assert any("--api-key-file" in args for args in sends)
    for needed in ("EnvironmentFile=", "OnCalendar=", "[Timer]", "Persistent=true", "Type=oneshot",
                   "bulksend reconcile", "--encoding", "--delimiter", "429", "Retry-After",
                   "| 130 |", "| 3 |", "| 2 |", "| 1 |", "| 0 |"):
        assert needed in text, needed
    # The cron line escapes % (cron makes a bare % a newline).
    cron = next(line for line in text.splitlines() if re.match(r"^[\d*]+ [\d*]+ ", line))
    assert "date +\\%F" in cron and "%F" not in cron.replace("\\%F", "")


def test_readme_starts_with_the_two_set_up_commands() -> None:
    blocks = fenced_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) >= 2
    (info1, demo), (info2, tests) = blocks[0], blocks[1]
    assert info1 == info2 == "sh"
    steps = [s.strip() for s in demo.strip().split("&&")]
    assert "\n" not in demo.strip() and len(steps) == 4, demo
    assert steps[0] == "python3 -m venv .venv" and steps[1] == ". .venv/bin/activate"
    assert re.fullmatch(r"pip install(?: -\w+)* -e \.", steps[2]) and steps[3] == "bulksend demo", steps
    steps = [s.strip() for s in tests.strip().split("&&")]
    assert "\n" not in tests.strip() and len(steps) == 4, tests
    assert steps[0] == "python3 -m venv .venv" and steps[1] == ". .venv/bin/activate"
    assert re.fullmatch(r"pip install(?: -\w+)* -e '\.\[test\]'", steps[2]) and steps[3] == "pytest", steps


def test_ci_runs_the_readme_test_command() -> None:
    readme_cmd = fenced_blocks(README.read_text(encoding="utf-8"))[1][1].strip()
    lines = [line.strip() for line in CI_RUN.read_text(encoding="utf-8").splitlines()]
    commands = [line for line in lines if line and not line.startswith(("#", "set ", "cd "))]
    assert len(commands) == 1, commands
    # pip's -q only quietens pip; every other word must be the README's.
    def words(cmd: str) -> list[str]:
        return [w for w in shlex.split(cmd) if w not in ("-q", "--quiet")]

    assert words(commands[0]) == words(readme_cmd)
    assert commands[0].rstrip().endswith("&& pytest")  # the same test command, no extra arguments
