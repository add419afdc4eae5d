"""A fork server for the tests' CLI runs: `python -m bulksend`, without paying for the imports.

Each ``run_cli`` used to start a fresh interpreter, which spends ~0.4 s importing
aiohttp (its connector builds an SSL context at import), PyYAML, calamine and
bulksend before doing anything; the suite makes about a thousand such runs. This
process imports all of that once, then forks a child per run. The child is the
real CLI in its own process — its own cwd, environment, standard streams, exit
code, signal handling and ``atexit`` — exactly as ``python -m bulksend`` would
run it, only already imported.

Protocol (one per test process, over an AF_UNIX SOCK_SEQPACKET socket given as
argv[1]): the test sends one JSON message ``{"args", "cwd", "env", "timeout"}``
with three file descriptors (stdin, stdout, stderr) attached; this server forks,
waits for the child (killing it at the timeout) and answers
``{"code": int, "timed_out": bool}``. It exits when the test process closes its
end. The server never runs a command itself and stays single-threaded, so a fork
copies nothing half-done.

A run whose environment changes what is read at start-up (``PYTHON*``, locale
variables, ``BULKSEND_*`` read at import) is not sent here: conftest.run_cli
starts a real interpreter for it.
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
    import bulksend.cli

    for info in pkgutil.walk_packages(bulksend.__path__, "bulksend."):
        if info.name in ("bulksend.frames", "bulksend.__main__"):
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
        from bulksend.cli import main

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


def _wait(pid: int, timeout: float) -> tuple[int, bool]:
    """The child's exit code (negative: killed by that signal) and whether it timed out."""
    pidfd = os.pidfd_open(pid)
    try:
        ready, _, _ = select.select([pidfd], [], [], timeout)
        timed_out = not ready
        if timed_out:
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status), timed_out
    finally:
        os.close(pidfd)


def serve(channel: socket.socket) -> None:
    """Answer run requests until the test process closes the channel."""
    while True:
        message, fds, _, _ = socket.recv_fds(channel, 1 << 20, 3)
        if not message:
            return
        request = json.loads(message)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            channel.close()
            _run_child(request, fds)
        for fd in fds:
            os.close(fd)
        code, timed_out = _wait(pid, float(request["timeout"]))
        channel.send(json.dumps({"code": code, "timed_out": timed_out}).encode())


def main() -> None:
    channel = socket.socket(fileno=int(sys.argv[1]))
    _preload()
    channel.send(b"ready")
    serve(channel)


if __name__ == "__main__":
    main()
