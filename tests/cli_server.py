"""A fork server for the tests' CLI runs: `python -m bulksend`, without paying for the imports.

Each ``run_cli`` used to start a fresh interpreter, which spends ~0.4 s importing
aiohttp (its connector builds an SSL context at import), PyYAML, calamine and
bulksend before doing anything; the suite makes about a thousand such runs. This
process imports all of that once, then forks a child per run. The child is the
real CLI in its own process — its own cwd, environment, standard streams, exit
code, signal handling and ``atexit`` — exactly as ``python -m bulksend`` would
run it, only already imported.

Protocol (one server per test process, over an AF_UNIX SOCK_SEQPACKET socket
given as argv[1]), one JSON object a message:

- ``{"op": "spawn", "id", "args", "cwd", "env"}`` with three file descriptors
  attached (stdin, stdout, stderr): forks; answers ``{"op": "spawned", "id",
  "pid"}``.
- ``{"op": "signal", "id", "pid", "signal"}``: signals the child if it has not
  been reaped (so its pid cannot be another process's); answers ``{"op":
  "signalled", "id", "alive"}``.
- when a child ends: ``{"op": "exited", "pid", "code"}`` (negative: the signal
  that killed it), as ``subprocess`` reports it.

It exits when the test process closes its end, killing any child still running.
The server never runs a command itself and stays single-threaded, so a fork
copies nothing half-done.

A run whose environment changes what is read at start-up (``PYTHON*``, locale
variables) is not sent here: forked.spawn starts
a real interpreter for it. The client side is tests/forked.py.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import signal
import socket
import sys
import time
import traceback


def _preload() -> None:
    """Import everything a CLI run can import, except optional pandas (tests check it stays out)."""
    import importlib
    import pkgutil

    import bulksend
    import bulksend.cli.main

    for info in pkgutil.walk_packages(bulksend.__path__, "bulksend."):
        if info.name in ("bulksend.reading.frames", "bulksend.__main__"):
            continue
        importlib.import_module(info.name)
    assert "pandas" not in sys.modules, "the fork server must not preload pandas"


def _run_child(request: dict[str, object], fds: list[int]) -> None:
    """In the forked child: become ``python -m bulksend ARGS`` and exit with its code."""
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(str(request["cwd"]))
    os.environ.clear()
    os.environ.update(dict(request["env"]))  # type: ignore[call-overload]
    time.tzset()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    package_dir = os.path.dirname(sys.modules["bulksend"].__file__ or "")
    sys.argv = [os.path.join(package_dir, "__main__.py"), *request["args"]]  # type: ignore[misc]
    sys.path[0] = os.getcwd()  # as `python -m` sets it
    code = 0
    try:
        from bulksend.cli.main import main

        main()
    except SystemExit as exc:
        code = _exit_code(exc.code)
    except BaseException:
        traceback.print_exc()
        code = 1
    try:
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def _exit_code(value: object) -> int:
    """What the interpreter makes of ``SystemExit(value)``."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value & 0xFF
    print(value, file=sys.stderr)
    return 1


class _Server:
    """The loop: start runs, signal them, report each one's end; one thread, no blocking wait."""

    def __init__(self, channel: socket.socket) -> None:
        self.channel = channel
        self.children: dict[int, int] = {}  # pidfd -> pid, for each child not reaped yet

    def serve(self) -> None:
        """Until the test process closes the channel; then no child outlives it."""
        try:
            while True:
                ready, _, _ = select.select([self.channel, *self.children], [], [])
                for fd in ready:
                    if fd is self.channel:
                        if not self._answer():
                            return
                    else:
                        self._reap(fd)
        finally:
            for pidfd, pid in self.children.items():
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                os.close(pidfd)

    def _answer(self) -> bool:
        message, fds, _, _ = socket.recv_fds(self.channel, 1 << 20, 3)
        if not message:
            return False
        request = json.loads(message)
        if request["op"] == "spawn":
            pid = self._fork(request, fds)
            self._send({"op": "spawned", "id": request["id"], "pid": pid})
        elif request["op"] == "signal":
            # Only a child not reaped yet: its pid cannot have been reused.
            alive = request["pid"] in self.children.values()
            if alive:
                os.kill(request["pid"], request["signal"])
            self._send({"op": "signalled", "id": request["id"], "alive": alive})
        return True

    def _fork(self, request: dict[str, object], fds: list[int]) -> int:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            self.channel.close()
            for pidfd in self.children:
                os.close(pidfd)
            _run_child(request, fds)
        for fd in fds:
            os.close(fd)
        self.children[os.pidfd_open(pid)] = pid
        return pid

    def _reap(self, pidfd: int) -> None:
        pid = self.children.pop(pidfd)
        _, status = os.waitpid(pid, 0)
        os.close(pidfd)
        self._send({"op": "exited", "pid": pid, "code": os.waitstatus_to_exitcode(status)})

    def _send(self, answer: dict[str, object]) -> None:
        self.channel.send(json.dumps(answer).encode())


def main() -> None:
    channel = socket.socket(fileno=int(sys.argv[1]))
    _preload()
    channel.send(b"ready")
    _Server(channel).serve()


if __name__ == "__main__":
    main()
