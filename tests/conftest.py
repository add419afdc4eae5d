"""Shared helpers: the real CLI, run as a process of its own, against the real sandbox."""

from __future__ import annotations

import csv
import io
import locale
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from forked import run

from bulksend.sandbox import DEMO_CAMPAIGN_ID, DEMO_ITEM_IDS, Sandbox, SandboxConfig, running_sandbox

KEY = "test-key-0123"
CONTRACT = ["row", "key", "status", "request_id", "portal_url", "contact_id", "http_status",
            "attempts", "error", "sent_at"]

MAPPING = f"""\
campaignId: {{value: {DEMO_CAMPAIGN_ID}}}
contact:
  email: Email
  firstName: First Name
  lastName: {{column: Last Name, required: false}}
items: {{column: Documents, split: ";", required: false}}
sendMessage: true
"""


# -- platform skips (issue 26) ---------------------------------------------------
# What only POSIX offers a test. The hosted CI (.github/workflows/ci.yml) runs the
# suite on Linux, macOS and Windows; a test that needs one of these says so here.
posix_signals = pytest.mark.skipif(
    sys.platform == "win32",
    reason="sends SIGINT, SIGTERM or SIGKILL to a run: Windows cannot signal another process "
    "(os.kill and Popen.send_signal there terminate it) and has no pthread_kill")
posix_permissions = pytest.mark.skipif(
    sys.platform == "win32", reason="chmod 000 and os.geteuid: Windows has neither")
posix_terminal = pytest.mark.skipif(
    sys.platform == "win32", reason="runs a command on a pseudo-terminal (the pty module): Windows has none")
linux_tmpfs = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="mounts a tmpfs: Linux only (and root)")


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


def run_cli(*args: str, cwd: Path, key: str | None = KEY, timeout: float = 120,
            env: dict[str, str] | None = None, stdin: str | None = None,
            fresh: bool = False) -> Result:
    """``python -m bulksend ARGS`` in ``cwd``: its exit code and what it printed.

    The environment is this process's, without COLLECT_API_KEY unless ``key``
    is given, plus ``env``. The run is a process of its own, forked from the
    already-imported fork server (tests/cli_server.py), or a fresh interpreter
    where the environment changes what is read at start-up, or where ``fresh``
    (a test of timing as a person's run has it, imports and all). Raises
    subprocess.TimeoutExpired after ``timeout`` seconds (the run is killed).
    """
    full_env = {k: v for k, v in os.environ.items() if k != "COLLECT_API_KEY"}
    if key is not None:
        full_env["COLLECT_API_KEY"] = key
    full_env.update(env or {})
    code, out, err = run(list(args), cwd=cwd, env=full_env, stdin=(stdin or "").encode(),
                         timeout=timeout, fresh=fresh)
    return Result(code, _text(out), _text(err))


def _text(data: bytes) -> str:
    """As subprocess.run(text=True) decodes: the locale's encoding, universal newlines."""
    return io.TextIOWrapper(io.BytesIO(data), encoding=locale.getpreferredencoding(False)).read()


def write_contacts(path: Path, rows: list[dict[str, str]]) -> Path:
    columns = ["Email", "First Name", "Last Name", "Documents"]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in columns})
    return path


def people(n: int, start: int = 0) -> list[dict[str, str]]:
    items = f"{DEMO_ITEM_IDS['ID card']}; {DEMO_ITEM_IDS['Proof of address']}"
    return [
        {"Email": f"person{i}@example.com", "First Name": f"Person{i}", "Last Name": "Tester",
         "Documents": items if i % 3 == 0 else ""}
        for i in range(start, start + n)
    ]


def read_results(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with running_sandbox(SandboxConfig(api_key=KEY, seed=1)) as sb:
        yield sb


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "mapping.yaml").write_text(MAPPING, encoding="utf-8")
    return tmp_path
