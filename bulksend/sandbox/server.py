"""Running the sandbox: ``Sandbox`` (start, stop, inspect and control from any thread),
``running_sandbox`` (on its own loop in a thread, for tests) and ``serve`` (the CLI's).

Everything runs on one event loop. ``Sandbox.snapshot()`` (and the ``created`` and
``stats`` properties built on it) may be called from another thread: the copy is
then made on the sandbox's loop, so readers never see a half-updated counter.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple, TypeVar

from aiohttp import web

from bulksend.sandbox.admin import Admin
from bulksend.sandbox.backend import Backend
from bulksend.sandbox.config import SandboxConfig, config_problems
from bulksend.sandbox.gate import Gate
from bulksend.sandbox.handlers import Api
from bulksend.sandbox.routes import application

__all__ = ["Sandbox", "SandboxSnapshot", "running_sandbox", "serve"]

_T = TypeVar("_T")


class SandboxSnapshot(NamedTuple):
    """A consistent copy of what the sandbox did, safe to read from any thread."""

    created: list[dict[str, Any]]
    stats: dict[str, Any]


class Sandbox:
    """The Collect API stand-in. Start it inside a running loop, or use running_sandbox().

    Raises ValueError naming every problem of ``config`` (config_problems).
    ``clock`` (seconds, monotonic) drives the rate limit; tests pass a fake one.
    """

    def __init__(
        self,
        config: SandboxConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        config = dataclasses.replace(config) if config is not None else SandboxConfig()
        problems = config_problems(config)
        if problems:
            raise ValueError("invalid sandbox config: " + "; ".join(problems))
        config.script = list(config.script)  # consumed as POSTs arrive: our own copy
        self._backend = Backend(config, clock)
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None

    # -- thread-safe inspection and control ------------------------------------------

    def _on_loop(self, fn: Callable[[], _T]) -> _T:
        """Run fn on the sandbox's loop when called from another thread; wait for it."""
        loop = self._loop
        if loop is None or not loop.is_running() or threading.get_ident() == self._loop_thread:
            return fn()
        future: concurrent.futures.Future[_T] = concurrent.futures.Future()

        def call() -> None:
            try:
                future.set_result(fn())
            except BaseException as exc:  # handed to the waiting thread
                future.set_exception(exc)

        loop.call_soon_threadsafe(call)
        return future.result(timeout=10)

    def snapshot(self) -> SandboxSnapshot:
        """Copies of the created requests and the stats, taken atomically; any thread."""
        backend = self._backend
        return self._on_loop(lambda: SandboxSnapshot(backend.created_copy(), backend.stats_copy()))

    @property
    def created(self) -> list[dict[str, Any]]:
        """Every request created through the API, however it was answered; a copy.

        Seeded and preloaded requests are not in it. Each record: ``_id``,
        ``campaignId``, ``contactId``, ``email`` (as stored), ``endpoint``
        ("/request" or "/requests"), ``createdAt``, ``contactInput``, ``received``
        (the parsed body) and ``fate`` (a SCRIPT_FATES name; "ok": answered 200
        normally). Two records for one contact and campaign are a duplicate.
        """
        return self._on_loop(self._backend.created_copy)

    @property
    def stats(self) -> dict[str, Any]:
        """Call counts by endpoint and outcome, and the peak concurrency; a copy.

        ``post_request`` / ``post_requests``: outcome -> count, every outcome
        present ("200", "400", ..., "dropped", "ambiguous", "slow",
        "created-504", "refused-200", "quota-429", ...); each POST counts once,
        under its HTTP status when answered normally, else under its fate.
        ``get``: status -> count, ``gets`` their total, ``other``: status -> count
        for other /v1 calls. ``max_in_flight`` counts /v1 calls inside the server
        at once (latency and slow delays included): with no latency a handler
        never yields, so it stays near 1 whatever the client's concurrency. Set
        ``latency`` to measure a client's concurrency.
        """
        return self._on_loop(self._backend.stats_copy)

    @property
    def faults(self) -> dict[str, Any]:
        """The current fault settings."""
        return self._on_loop(self._backend.faults_json)

    def set_faults(self, **changes: Any) -> None:
        """Change fault settings (any SandboxConfig field but api_key and seed); any thread.

        Raises ValueError naming every problem (nothing is changed then). ``script``
        replaces what remains of the script; ``preload`` adds its records now and
        replaces the preload that reset() rebuilds.
        """
        self._on_loop(lambda: self._backend.apply_faults(changes))

    def set_request_status(self, request_id: str, status: str) -> None:
        """Move one request to ``status`` (as a person would in the Collect app:
        cancel, archive, complete it); any thread. Raises KeyError for an unknown id."""
        self._on_loop(lambda: self._backend.store.set_status(request_id, status))

    @property
    def patches(self) -> list[dict[str, Any]]:
        """Every PATCH /request the sandbox applied, in order; a copy. Each record:
        ``requestId``, ``received`` (the body as sent), ``before`` and ``after``
        (the status, list spelling), ``messages`` (those the change triggered:
        "completion", "reopen") and ``at``. A refused PATCH is not in it."""
        return self._on_loop(self._backend.patches_copy)

    def reset(self) -> None:
        """Back to the seeded world plus the current preload (fault settings, and what
        remains of the script, kept); any thread."""
        self._on_loop(self._backend.reset)

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on host:port (0: any free port); return the base URL ending in /v1."""
        if self._runner is not None:
            raise RuntimeError("the sandbox is already running")
        backend = self._backend
        gate = Gate(backend, backend.config.api_key)
        app = application(Api(backend.store), Admin(backend), gate.middleware())
        # No access log: the benchmark measures the client against this server (§ brief).
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port, backlog=1024)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        bound_port = runner.addresses[0][1]
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{bound_port}/v1"
        backend.faults.refill(backend.config)
        return self.url

    @property
    def admin_url(self) -> str:
        """Base URL of the inspection endpoints (/_sandbox), which need no auth."""
        return self.url.removesuffix("/v1") + "/_sandbox"

    async def stop(self) -> None:
        """Close the listener and every connection; calls in progress are cancelled."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        self._loop = None
        self._loop_thread = None


@contextlib.contextmanager
def running_sandbox(config: SandboxConfig | None = None) -> Iterator[Sandbox]:
    """Run a sandbox on its own loop in a daemon thread on 127.0.0.1, any free port.

    Yields the started sandbox (``url`` set) and stops it on exit. For synchronous
    tests and for tests that run the CLI as a subprocess. ``snapshot()``,
    ``created``, ``stats``, ``set_faults()`` and ``reset()`` are safe to call from
    the caller's thread.
    """
    sandbox = Sandbox(config)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            try:
                loop.run_until_complete(sandbox.start())
            except BaseException as exc:  # handed to the caller's thread
                failure.append(exc)
                return
            finally:
                ready.set()
            loop.run_forever()
        finally:
            _close_loop(loop)

    thread = threading.Thread(target=run, name="bulksend-sandbox", daemon=True)
    thread.start()
    if not ready.wait(timeout=10):
        raise RuntimeError("the sandbox did not start within 10 s")
    if failure:
        thread.join(timeout=10)
        raise failure[0]
    try:
        yield sandbox
    finally:
        stopping = asyncio.run_coroutine_threadsafe(sandbox.stop(), loop)
        try:
            stopping.result(timeout=10)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)


def _close_loop(loop: asyncio.AbstractEventLoop) -> None:
    pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()


def serve(config: SandboxConfig, host: str, port: int, on_ready: Callable[[str], None]) -> None:
    """Run a sandbox until Ctrl-C or SIGTERM, calling on_ready(url) once it listens.

    Blocking; returns normally on either signal. ``bulksend sandbox`` calls this.
    """

    async def main() -> None:
        sandbox = Sandbox(config)
        url = await sandbox.start(host, port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        installed: list[signal.Signals] = []
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(signum, stop.set)
            except (NotImplementedError, RuntimeError, ValueError):
                continue  # not the main thread, or a platform without it: Ctrl-C still ends it
            installed.append(signum)
        try:
            on_ready(url)
            await stop.wait()
        finally:
            for signum in installed:
                loop.remove_signal_handler(signum)
            await sandbox.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
