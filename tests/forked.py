"""``python -m bulksend`` as a process of its own, forked from tests/cli_server.py.

``spawn`` returns a ``ForkedProcess``, which answers as much of
``subprocess.Popen`` as the tests use (``pid``, ``returncode``, ``poll``,
``wait``, ``send_signal``, ``terminate``, ``kill``). The run is the real CLI
in its own process; it only skips the interpreter's start and the imports
(see cli_server.py for why and how). Use ``needs_fresh_interpreter`` to tell
when it cannot stand in for a new interpreter.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any

Stream = IO[Any] | int | None  # an open file, subprocess.DEVNULL, or None (stdin only: empty)


def needs_fresh_interpreter(env: dict[str, str]) -> bool:
    """Whether ``env`` differs from this process's environment (which the fork
    server inherited) in a variable read when an interpreter or bulksend starts,
    not at each run: a forked run would not see the difference."""

    def read_at_start(name: str) -> bool:
        return name.startswith(("PYTHON", "LC_")) or name == "LANG"

    names = {name for name in [*env, *os.environ] if read_at_start(name)}
    return any(env.get(name) != os.environ.get(name) for name in names)


class ForkedProcess:
    """A run started by ``spawn``: the parts of subprocess.Popen the tests use."""

    def __init__(self, server: _ForkServer, pid: int, args: list[str]) -> None:
        self._server = server
        self.pid = pid
        self.args = args
        self.returncode: int | None = None

    def poll(self) -> int | None:
        """The exit code (negative: killed by that signal), or None while it runs."""
        if self.returncode is None:
            self.returncode = self._server.exit_code(self.pid, timeout=0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the end; raises subprocess.TimeoutExpired after ``timeout`` seconds."""
        if self.returncode is None:
            self.returncode = self._server.exit_code(self.pid, timeout=timeout)
        if self.returncode is None:
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        """Signal the run if it has not ended (like Popen, a no-op once it has)."""
        if self.poll() is None:
            self._server.signal(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class _ForkServer:
    """The test process's end of cli_server.py. A reader thread files the
    server's answers; callers from any thread wait on them."""

    def __init__(self) -> None:
        self._channel, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._process = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("cli_server.py")), str(theirs.fileno())],
            pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
        )
        theirs.close()
        self._channel.settimeout(60)
        if self._channel.recv(16) != b"ready":
            raise RuntimeError("tests/cli_server.py did not start")
        self._channel.settimeout(None)
        self._ids = itertools.count()
        self._send_lock = threading.Lock()
        self._changed = threading.Condition()
        self._answers: dict[int, dict[str, Any]] = {}
        self._exits: dict[int, int] = {}
        self._closed = False
        threading.Thread(target=self._read, name="fork-server", daemon=True).start()
        atexit.register(self.close)

    def spawn(self, args: list[str], cwd: Path, env: dict[str, str], stdin: IO[Any],
              stdout: IO[Any], stderr: IO[Any]) -> ForkedProcess:
        answer = self._ask({"op": "spawn", "args": args, "cwd": str(cwd), "env": env},
                           [stdin.fileno(), stdout.fileno(), stderr.fileno()])
        return ForkedProcess(self, int(answer["pid"]), [sys.executable, "-m", "bulksend", *args])

    def signal(self, pid: int, sig: int) -> None:
        self._ask({"op": "signal", "pid": pid, "signal": int(sig)})

    def exit_code(self, pid: int, timeout: float | None) -> int | None:
        """The run's exit code once it has ended, or None after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while pid not in self._exits:
                left = None if deadline is None else deadline - time.monotonic()
                if self._closed or (left is not None and left <= 0):
                    return None
                self._changed.wait(left)
            return self._exits[pid]

    def close(self) -> None:
        """End the server: it kills what still runs and exits at end-of-file."""
        self._channel.shutdown(socket.SHUT_RDWR)
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._channel.close()

    def _ask(self, request: dict[str, Any], fds: list[int] | None = None) -> dict[str, Any]:
        number = next(self._ids)
        with self._send_lock:
            socket.send_fds(self._channel, [json.dumps({**request, "id": number}).encode()], fds or [])
        with self._changed:
            while number not in self._answers:
                if self._closed:
                    raise RuntimeError("tests/cli_server.py has stopped")
                self._changed.wait()
            return self._answers.pop(number)

    def _read(self) -> None:
        try:
            while message := self._channel.recv(1 << 16):
                answer = json.loads(message)
                with self._changed:
                    if answer["op"] == "exited":
                        self._exits[answer["pid"]] = answer["code"]
                    else:
                        if answer["op"] == "spawned":  # an earlier run's pid, now reused
                            self._exits.pop(answer["pid"], None)
                        self._answers[answer["id"]] = answer
                    self._changed.notify_all()
        except OSError:
            pass
        with self._changed:
            self._closed = True
            self._changed.notify_all()


_server: tuple[int, _ForkServer] | None = None
_server_lock = threading.Lock()


def spawn(args: list[str], *, cwd: Path, env: dict[str, str], stdin: Stream = None,
          stdout: Stream, stderr: Stream, fresh: bool = False) -> ForkedProcess | subprocess.Popen[bytes]:
    """Start ``python -m bulksend ARGS`` in ``cwd`` with exactly ``env``; its
    standard streams are open files or subprocess.DEVNULL. Forked from the
    server, or a fresh interpreter when ``fresh`` (a test of timing as a
    person's run has it, imports and all) or ``needs_fresh_interpreter(env)``,
    or where the server cannot run (it needs fork and pidfd_open: Linux)."""
    if fresh or needs_fresh_interpreter(env) or not hasattr(os, "pidfd_open"):
        return subprocess.Popen([sys.executable, "-m", "bulksend", *args], cwd=cwd, env=env,
                                stdin=subprocess.DEVNULL if stdin is None else stdin,
                                stdout=stdout, stderr=stderr)
    with contextlib.ExitStack() as stack:

        def opened(stream: Stream, mode: str) -> IO[Any]:
            if stream is None or stream == subprocess.DEVNULL:
                return stack.enter_context(open(os.devnull, mode))
            assert not isinstance(stream, int), "an open file or subprocess.DEVNULL"
            return stream

        files = opened(stdin, "rb"), opened(stdout, "wb"), opened(stderr, "wb")
        return _the_server().spawn(args, cwd, env, *files)


def _the_server() -> _ForkServer:
    global _server
    with _server_lock:
        if _server is None or _server[0] != os.getpid():
            _server = (os.getpid(), _ForkServer())
        return _server[1]


def run(args: list[str], *, cwd: Path, env: dict[str, str], stdin: bytes = b"", timeout: float = 120,
        fresh: bool = False) -> tuple[int, bytes, bytes]:
    """``python -m bulksend ARGS`` to its end (see spawn): exit code, standard
    output and standard error as bytes. Raises subprocess.TimeoutExpired after
    ``timeout`` seconds, the run killed."""
    with tempfile.TemporaryFile() as fin, tempfile.TemporaryFile() as fout, \
            tempfile.TemporaryFile() as ferr:
        fin.write(stdin)
        fin.seek(0)
        process = spawn(args, cwd=cwd, env=env, stdin=fin, stdout=fout, stderr=ferr, fresh=fresh)
        try:
            code = process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
        fout.seek(0)
        ferr.seek(0)
        return code, fout.read(), ferr.read()
