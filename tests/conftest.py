"""Shared helpers: the real CLI, run as a process of its own, against the real sandbox."""

from __future__ import annotations

import atexit
import csv
import io
import json
import locale
import os
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

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


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


def run_cli(*args: str, cwd: Path, key: str | None = KEY, timeout: float = 120,
            env: dict[str, str] | None = None, stdin: str | None = None) -> Result:
    """``python -m bulksend ARGS`` in ``cwd``: its exit code and what it printed.

    The environment is this process's, without COLLECT_API_KEY unless ``key``
    is given, plus ``env``. The run is a process of its own, forked from the
    already-imported fork server (tests/cli_server.py), or a fresh interpreter
    where the environment changes what is read at start-up. Raises
    subprocess.TimeoutExpired after ``timeout`` seconds (the run is killed).
    """
    full_env = {k: v for k, v in os.environ.items() if k != "COLLECT_API_KEY"}
    if key is not None:
        full_env["COLLECT_API_KEY"] = key
    full_env.update(env or {})
    command = [sys.executable, "-m", "bulksend", *args]
    if _needs_fresh_interpreter(env or {}):
        proc = subprocess.run(command, cwd=cwd, env=full_env, capture_output=True, text=True,
                              timeout=timeout, input=stdin)
        return Result(proc.returncode, proc.stdout, proc.stderr)
    return _fork_server().run(command, cwd, full_env, timeout, stdin)


def _needs_fresh_interpreter(env: dict[str, str]) -> bool:
    """Variables read when an interpreter or bulksend starts (not at each run)."""
    return any(name.startswith(("PYTHON", "LC_", "BULKSEND_")) or name in ("LANG", "PATH")
               for name in env)


class _ForkServer:
    """The test process's end of tests/cli_server.py: one server per test process."""

    def __init__(self) -> None:
        self._channel, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._process = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("cli_server.py")), str(theirs.fileno())],
            pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
        )
        theirs.close()
        self._lock = threading.Lock()
        self._channel.settimeout(60)
        if self._channel.recv(16) != b"ready":
            raise RuntimeError("tests/cli_server.py did not start")
        self._channel.settimeout(None)
        atexit.register(self.close)

    def close(self) -> None:
        """End the server: it exits when its end of the channel reads end-of-file."""
        self._channel.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def run(self, command: list[str], cwd: Path, env: dict[str, str], timeout: float,
            stdin: str | None) -> Result:
        """One CLI run (see run_cli); runs from several threads at once take turns."""
        with self._lock, tempfile.TemporaryFile() as fin, tempfile.TemporaryFile() as fout, \
                tempfile.TemporaryFile() as ferr:
            fin.write((stdin or "").encode())
            fin.seek(0)
            request = {"args": command[3:], "cwd": str(cwd), "env": env, "timeout": timeout}
            socket.send_fds(self._channel, [json.dumps(request).encode()],
                            [fin.fileno(), fout.fileno(), ferr.fileno()])
            self._channel.settimeout(timeout + 60)
            answer = json.loads(self._channel.recv(4096))
            fout.seek(0)
            ferr.seek(0)
            stdout, stderr = (_text(f.read()) for f in (fout, ferr))
        if answer["timed_out"]:
            raise subprocess.TimeoutExpired(command, timeout, stdout, stderr)
        return Result(answer["code"], stdout, stderr)


def _text(data: bytes) -> str:
    """As subprocess.run(text=True) decodes: the locale's encoding, universal newlines."""
    return io.TextIOWrapper(io.BytesIO(data), encoding=locale.getpreferredencoding(False)).read()


_server: tuple[int, _ForkServer] | None = None


def _fork_server() -> _ForkServer:
    global _server
    if _server is None or _server[0] != os.getpid():
        _server = (os.getpid(), _ForkServer())
    return _server[1]


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
