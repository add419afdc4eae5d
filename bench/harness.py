"""The bench's machinery, shared by bench.py and round5.py: child processes (own
process group, killed at exit, every wait with a deadline), the sandbox (or another
server speaking its /_sandbox admin calls) in its own process, generated inputs,
and figures printed beside their targets. See bench/README.md, "How it measures".
"""

from __future__ import annotations

import contextlib
import csv
import http.client
import json
import os
import re
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
KEY = "bench-key"
CAMPAIGN = "xvr69EYLKXvTkfYuk"  # bulksend.sandbox.DEMO_CAMPAIGN_ID
MAPPING = f"campaignId: {{value: {CAMPAIGN}}}\ncontact: {{email: Email, firstName: First Name}}\n"
MB = 1024 * 1024

# ---------------------------------------------------------------------------
# Children: started in their own process group, always killed on exit
# ---------------------------------------------------------------------------

_children: dict[int, subprocess.Popen[Any]] = {}
_children_lock = threading.Lock()



def child_environment() -> dict[str, str]:
    """The environment every timed child gets: this one without
    PYTHONDONTWRITEBYTECODE. A user's installed bulksend runs from compiled
    modules; with that variable set (as on these machines) an editable install
    compiles every module on every run, about 90 ms that no user pays. The
    first run writes the bytecode; the figures take medians or later runs."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env

def _kill_group(proc: subprocess.Popen[Any], grace: float = 3.0) -> None:
    """SIGTERM the child's process group, SIGKILL it after ``grace`` seconds."""
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired, ChildProcessError):
        proc.wait(timeout=5)


def kill_all_children() -> None:
    with _children_lock:
        procs = list(_children.values())
        _children.clear()
    for proc in procs:
        _kill_group(proc)


def spawn(cmd: list[str], **kw: Any) -> subprocess.Popen[Any]:
    proc = subprocess.Popen(cmd, start_new_session=True, **kw)
    with _children_lock:
        _children[proc.pid] = proc
    return proc


def forget(proc: subprocess.Popen[Any]) -> None:
    with _children_lock:
        _children.pop(proc.pid, None)


def on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


@dataclass
class Done:
    rc: int | None  # None: killed on timeout
    wall: float  # seconds, spawn to exit
    maxrss_mb: float  # peak resident set of the child (and its waited-for children)
    cpu: float  # user + sys seconds of the child
    out: str
    err: str
    timed_out: bool = False


def run_child(cmd: list[str], *, timeout: float, env: dict[str, str] | None = None,
              cwd: Path | None = None, on_start: Any = None) -> Done:
    """Run ``cmd`` to its end (killed at ``timeout``), with its own rusage via wait4."""
    with tempfile.TemporaryFile() as fo, tempfile.TemporaryFile() as fe:
        started = time.perf_counter()
        proc = spawn(cmd, stdout=fo, stderr=fe, stdin=subprocess.DEVNULL,
                     env=child_environment() if env is None else env, cwd=cwd)
        result: list[Any] = []

        def reap() -> None:
            with contextlib.suppress(ChildProcessError):
                result.append(os.wait4(proc.pid, 0))
            result.append(time.perf_counter())

        reaper = threading.Thread(target=reap, daemon=True)
        reaper.start()
        if on_start is not None:
            on_start(proc, started)
        reaper.join(timeout)
        timed_out = reaper.is_alive()
        if timed_out:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            reaper.join(10)
        forget(proc)
        rc: int | None = None
        maxrss = cpu = 0.0
        ended = time.perf_counter()
        if result and isinstance(result[0], tuple):
            _, status, ru = result[0]
            rc = None if timed_out else os.waitstatus_to_exitcode(status)
            proc.returncode = rc if rc is not None else -9
            maxrss = ru.ru_maxrss / 1024  # KiB on Linux
            cpu = ru.ru_utime + ru.ru_stime
            ended = result[-1]
        fo.seek(0)
        fe.seek(0)
        return Done(rc, ended - started, maxrss, cpu,
                    fo.read().decode("utf-8", "replace"), fe.read().decode("utf-8", "replace"),
                    timed_out)


# ---------------------------------------------------------------------------
# The sandbox, in its own process
# ---------------------------------------------------------------------------


class Sandbox:
    """A server in its own process: `bulksend sandbox`, or ``server`` (another command).

    ``server`` is run as ``[*server, "--port", "0", "--api-key", KEY, *extra]``; like the
    sandbox it must print ``listening on http://127.0.0.1:PORT/v1`` on stdout (flushed)
    and answer GET /_sandbox/stats (``created``, ``post_request``) and POST
    /_sandbox/reset (bench/fast_server.py does). ``rate_limit`` is the sandbox's only.
    """

    def __init__(self, bulksend: list[str], *, rate_limit: float | None = None, burst: int = 1,
                 log: Path, extra: tuple[str, ...] = (), server: list[str] | None = None) -> None:
        if server is not None:
            if rate_limit is not None:
                raise ValueError("a rate limit is the sandbox's option, not another server's")
            cmd = [*server, "--port", "0", "--api-key", KEY, *extra]
        else:
            cmd = [*bulksend, "sandbox", "--host", "127.0.0.1", "--port", "0", "--api-key", KEY, *extra]
        if rate_limit is not None:
            cmd += ["--rate-limit", f"{rate_limit:g}", "--burst", str(burst)]
        self.cmd = cmd
        self.log = log
        env = dict(child_environment(), PYTHONUNBUFFERED="1")
        self._logf = open(log, "wb")  # noqa: SIM115
        self.proc = spawn(cmd, stdout=self._logf, stderr=subprocess.STDOUT,
                          stdin=subprocess.DEVNULL, env=env)
        self.url = self._wait_url(timeout=20)
        m = re.match(r"http://127\.0\.0\.1:(\d+)/v1$", self.url)
        if not m:
            raise RuntimeError(f"sandbox URL is not loopback: {self.url}")
        self.port = int(m.group(1))
        self._conn: http.client.HTTPConnection | None = None

    def _wait_url(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log.read_text(encoding="utf-8", errors="replace")
            m = re.search(r"listening on (http://\S+/v1)", text)
            if m:
                return m.group(1)
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited ({self.proc.returncode}): {text.strip()[-500:]}")
            time.sleep(0.05)
        raise RuntimeError(f"server did not start within {timeout:g}s: {' '.join(self.cmd)}")

    def _request(self, method: str, path: str) -> Any:
        for attempt in range(2):  # one reconnect if the kept-alive connection was closed
            if self._conn is None:
                self._conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            try:
                self._conn.request(method, path, body=b"" if method == "POST" else None)
                resp = self._conn.getresponse()
                data = resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"sandbox {method} {path}: HTTP {resp.status}")
                return json.loads(data)
            except (OSError, http.client.HTTPException):
                self._conn.close()
                self._conn = None
                if attempt:
                    raise
        return None

    def stats(self) -> dict[str, Any]:
        return self._request("GET", "/_sandbox/stats")

    def reset(self) -> None:
        self._request("POST", "/_sandbox/reset")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        _kill_group(self.proc)
        forget(self.proc)
        self._logf.close()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def posts_total(stats: dict[str, Any], kind: str = "post_request") -> int:
    return sum(int(v) for v in stats.get(kind, {}).values())


# ---------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------


def write_contacts(path: Path, n: int, tag: str, *, payloads: Path | None = None,
                   extra: list[tuple[str, str]] = ()) -> None:  # type: ignore[assignment]
    """N rows (Email, First Name, Last Name, Company), distinct emails per tag."""
    pf = open(payloads, "w", encoding="utf-8") if payloads else None  # noqa: SIM115
    try:
        with open(path, "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(["Email", "First Name", "Last Name", "Company"])
            for i in range(n):
                email = f"{tag}-{i}@example.com"
                first = f"First{i}"
                w.writerow([email, first, f"Last{i}", f"Company {i % 997}"])
                if pf is not None:
                    pf.write(json.dumps({"campaignId": CAMPAIGN,
                                         "contact": {"email": email, "firstName": first}}) + "\n")
            for email, first in extra:
                w.writerow([email, first, "Extra", "Extra Co"])
    finally:
        if pf is not None:
            pf.close()


# ---------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


@dataclass
class Figure:
    name: str
    target: str  # e.g. ">= 0.8"
    unit: str = ""
    values: list[float] = field(default_factory=list)
    note: str = ""
    unavailable: str = ""  # set: "not available (...)"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def value(self) -> float | None:
        return median(self.values)

    def verdict(self) -> str:
        if self.unavailable:
            return "n/a"
        v = self.value
        if v is None:
            return "no data"
        m = re.fullmatch(r"(<=|>=)\s*([0-9.]+)", self.target)
        if not m:
            return ""
        limit = float(m.group(2))
        ok = v <= limit + 1e-12 if m.group(1) == "<=" else v >= limit - 1e-12
        return "ok" if ok else "MISSED"


def fmt(v: float | None, digits: int = 3) -> str:
    if v is None:
        return "-"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.{digits}f}"
