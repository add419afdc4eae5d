"""Round five (issue 29): every cell against its floor, whole command as a user times it.

    python bench/bench.py --only round5                      # cells 1-8, ~5 minutes here
    python bench/bench.py --only round5 --round5-cells 1,2,5 --round5-reps 3

Cells 1-6 run `bulksend send` against `bulksend sandbox` at a limit L (calls/s,
token bucket of B) and time the whole command (spawn to exit). Each is read
against its floor, not the ideal:

    ideal = (calls - B) / L          calls = rows, or ceil(rows / 50) with --batch
    floor = ideal + 1 s     the limit is unknown, the 429 says Retry-After in whole
                            seconds (one storm, one pause: the least it costs to learn)
          = ideal + 0.25 s  the limit is unknown, the 429 carries no Retry-After
                            (as the Collect docs describe it: the pause is the client's)
          = ideal           the user gave the limit (--rate L)

Cell 7: no limit, bulksend's whole command against bench/bare_loop.py's whole
command (same rows, same bodies), alternating pair by pair, against a server that
answers as fast as a bare loop can send (bench/fast_server.py). Cell 8: xargs -P8 +
curl --retry against cell 2's server, best of two runs, as a side-by-side baseline.
See bench/README.md, "Round five (issue 29): floors".
"""

from __future__ import annotations

import argparse
import math
import re
import shlex
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import HERE, KEY, Done, Figure, Sandbox, fmt, median, run_child, write_contacts

if TYPE_CHECKING:
    from bench import Bench

LIMIT = 50.0  # the server's limit in cells 1-5 and 8, calls per second
ROWS = 1000
BATCH_SIZE = 50  # bulksend.sending.sender.BATCH_SIZE: contacts per POST /requests (README: --batch)
PAUSE_LINE = "429: pausing"  # bulksend's log line for each pause (collect/rategate.py)
FLOOR_ADD = {"seconds": 1.0, "none": 0.25, "given": 0.0}  # what the floor adds to the ideal, s
ALL_CELLS = "1,2,3,4,5,6,7,8"


@dataclass(frozen=True)
class Cell:
    """One limited cell: the sandbox's options, bulksend's, and how its floor is read."""

    key: str
    label: str
    burst: int
    send: tuple[str, ...]  # bulksend send options
    floor_kind: str  # a key of FLOOR_ADD
    factor: float  # target: wall <= factor x floor
    server: tuple[str, ...] = ()  # more sandbox options
    limit: float = LIMIT
    rows: int = ROWS
    per_call: int = 1  # rows per call (BATCH_SIZE with --batch)

    @property
    def calls(self) -> int:
        return math.ceil(self.rows / self.per_call)

    @property
    def ideal(self) -> float:
        return (self.calls - self.burst) / self.limit

    @property
    def floor(self) -> float:
        return self.ideal + FLOOR_ADD[self.floor_kind]


CELLS = (
    Cell("1", "limit 50/s burst 5, --rate 250", 5, ("--rate", "250"), "seconds", 1.10),
    Cell("2", "limit 50/s burst 5, --rate none", 5, ("--rate", "none"), "seconds", 1.10),
    Cell("3", "limit 50/s burst 5, 429 without Retry-After, --rate none", 5, ("--rate", "none"),
         "none", 1.10, server=("--retry-after-format", "none")),
    Cell("4", "limit 50/s burst 5, 80 ms latency, --rate none", 5, ("--rate", "none"), "seconds", 1.10,
         server=("--latency", "0.08")),
    Cell("5", "limit 50/s burst 1, --rate 50 (the limit given)", 1, ("--rate", "50"), "given", 1.10),
    Cell("6", "batch endpoint: 5 calls/s burst 1, --batch --rate none", 1, ("--batch", "--rate", "none"),
         "seconds", 1.15, limit=5.0, rows=5000, per_call=BATCH_SIZE),
)


@dataclass
class Run:
    """What one run of a limited cell left: whole-command wall time and the server's counts."""

    wall: float
    n429: int  # every 429 the server answered (POSTs and look-ups)
    pauses: int  # bulksend's pause lines
    created: int
    calls: int  # POST /request(s) calls answered 2xx
    gets: int  # look-ups (preflight, the pre-send check)
    problem: str  # "" when it exited 0 and created every row
    stopped: bool = False  # cell 8: stopped at --round5-curl-cap (its wall is a lower bound)


def add_options(ap: argparse.ArgumentParser) -> None:
    """Round five's options on bench.py's parser."""
    ap.add_argument("--round5-cells", type=cells_wanted, default=ALL_CELLS.split(","),
                    help=f"round5: which cells (default {ALL_CELLS})")
    ap.add_argument("--round5-reps", type=int, default=1,
                    help="round5: repetitions of each cell 1-6 (median and raw values printed)")
    ap.add_argument("--round5-rows", type=int, default=ROWS,
                    help=f"round5: rows of cells 1-5 and 8 (default {ROWS}; the batch cell 5 times as many)")
    ap.add_argument("--round5-pairs", type=int, default=3,
                    help="round5 cell 7: bulksend / bare loop pairs against the fast server")
    ap.add_argument("--round5-sandbox-pairs", type=int, default=1,
                    help="round5 cell 7: pairs against the sandbox too, for comparison (0: none)")
    ap.add_argument("--round5-n", type=int, default=20000, help="round5 cell 7: rows")
    ap.add_argument("--round5-bare-c", type=int, default=8,
                    help="round5 cell 7: the bare loop's concurrency (bulksend runs at its default, 8)")
    ap.add_argument("--round5-server", help="round5 cell 7: the fast server's command "
                    "(default: this python + bench/fast_server.py; 'sandbox' for bulksend sandbox)")
    ap.add_argument("--round5-curl-runs", type=int, default=2, help="round5 cell 8: xargs + curl runs")
    ap.add_argument("--round5-curl-cap", type=float, default=0.0, metavar="F",
                    help="round5 cell 8: stop a curl run at F x bulksend's cell-2 time and count it as "
                         "F (a lower bound; created is then not checked). Default 0: run to the end "
                         "(~2 minutes a run against the sandbox)")


def cells_wanted(text: str) -> list[str]:
    """--round5-cells: a comma list of cell numbers."""
    wanted = [c.strip() for c in text.split(",") if c.strip()]
    unknown = sorted(set(wanted) - set(ALL_CELLS.split(",")))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown cell(s) {', '.join(unknown)} (known: {ALL_CELLS})")
    return wanted


def inputs(bench: Bench, rows: int) -> tuple[Path, Path]:
    """The contacts CSV of ``rows`` rows and its payload lines (the bodies bulksend sends)."""
    contacts, payloads = bench.tmp / f"r5-{rows}.csv", bench.tmp / f"r5-{rows}.jsonl"
    if not contacts.exists():
        write_contacts(contacts, rows, f"r5-{rows}", payloads=payloads)
    return contacts, payloads


def count_429(stats: dict[str, Any]) -> int:
    return sum(int(stats.get(kind, {}).get("429", 0)) for kind in ("post_request", "post_requests", "get",
                                                                      "other"))


def count_2xx(stats: dict[str, Any]) -> int:
    return sum(int(n) for kind in ("post_request", "post_requests")
               for status, n in stats.get(kind, {}).items() if status.startswith("2"))


def measure(sb: Sandbox, done: Done, problem: str, rows: int) -> Run:
    st = sb.stats()
    created = int(st["created"])
    if not problem and created != rows:
        problem = f"created {created} of {rows}"
    return Run(done.wall, count_429(st), done.err.count(PAUSE_LINE), created, count_2xx(st),
               int(st.get("gets", 0)), problem)


class Round5:
    """Runs the cells asked for and adds one figure per cell to ``bench``."""

    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self.args = bench.args
        self.rows: list[list[str]] = []  # the closing table
        self.walls: dict[str, list[float]] = {}  # cell key -> wall times of its clean runs

    def run(self) -> None:
        a = self.args
        wanted: list[str] = a.round5_cells
        self.bench.say(f"\n[round5] issue 29: cells {','.join(wanted)}; whole command (spawn to exit) "
                       f"÷ floor; {a.round5_reps} repetition(s) of cells 1-6")
        steps: list[tuple[str, Callable[[], None]]] = [(c.key, partial(self.limited, c))
                                                       for c in self.cells()]
        steps += [("7", self.no_limit), ("8", self.curl)]
        try:
            for key, step in steps:
                if key not in wanted:
                    continue
                try:
                    step()
                except (RuntimeError, OSError, ValueError, KeyError) as exc:  # the next cell still runs
                    self.bench.say(f"  r5 cell {key}: ERROR: {exc}")
                    self.bench.add(Figure(f"r5 [{key}]", "", unavailable=f"error: {str(exc)[:80]}"))
                    self.rows.append([key, f"ERROR: {str(exc)[:80]}", *["-"] * 8])
        finally:
            self.table()

    def cells(self) -> list[Cell]:
        """CELLS at --round5-rows (the batch cell at 5 times as many)."""
        rows = self.args.round5_rows
        if rows == ROWS:
            return list(CELLS)
        return [replace(c, rows=rows * c.rows // ROWS) for c in CELLS]

    # -- cells 1-6 -------------------------------------------------------------
    def limited(self, cell: Cell) -> None:
        bench, reps = self.bench, self.args.round5_reps
        target = cell.factor * cell.floor
        bench.say(f"\n[r5 {cell.key}] {cell.label}, {cell.rows} rows ({cell.calls} calls): ideal "
                  f"{cell.ideal:.2f}s, floor {cell.floor:.2f}s, target <= {cell.factor:.2f} x floor "
                  f"= {target:.2f}s")
        fig = bench.add(Figure(f"r5 [{cell.key}] {cell.label}: whole command ÷ floor",
                               f"<= {cell.factor:.2f}"))
        contacts, _ = inputs(bench, cell.rows)
        runs: list[Run] = []
        with Sandbox(bench.bulksend, rate_limit=cell.limit, burst=cell.burst, extra=cell.server,
                     log=bench.tmp / f"sandbox-r5-{cell.key}.log") as sb:
            for rep in range(reps):
                sb.reset()
                done, summary, _ = bench.send(sb, contacts, *cell.send, timeout=cell.floor * 4 + 60)
                run = measure(sb, done, bench.problem(done, summary), cell.rows)
                runs.append(run)
                fig.values.append(math.inf if run.problem else run.wall / cell.floor)
                bench.say(f"  rep {rep + 1}: {run.wall:.2f}s -> ÷ floor {run.wall / cell.floor:.3f}; "
                          f"429s {run.n429}, pause lines {run.pauses}, calls {run.calls}, look-ups "
                          f"{run.gets}, created {run.created}/{cell.rows}"
                          + (f"; FAILED: {run.problem}" if run.problem else ""))
        clean = [r.wall for r in runs if not r.problem]
        self.walls[cell.key] = clean
        failed = [r.problem for r in runs if r.problem]
        fig.note = (f"wall {', '.join(f'{r.wall:.2f}' for r in runs)} s; ideal {cell.ideal:.2f}s, floor "
                    f"{cell.floor:.2f}s; 429s {[r.n429 for r in runs]}, "
                    f"pause lines {[r.pauses for r in runs]}"
                    + (f"; FAILED: {'; '.join(failed)}" if failed else ""))
        fig.extra = {"wall": [r.wall for r in runs], "ideal": cell.ideal, "floor": cell.floor,
                     "n429": [r.n429 for r in runs], "pauses": [r.pauses for r in runs],
                     "calls": [r.calls for r in runs], "lookups": [r.gets for r in runs]}
        self.rows.append([cell.key, f"{cell.label}, {cell.rows:,} rows", _walls(runs),
                          f"{cell.ideal:.2f}", f"{cell.floor:.2f}",
                          fmt(fig.value), fig.target, fig.verdict(), "/".join(str(r.n429) for r in runs),
                          "/".join(str(r.pauses) for r in runs)])

    # -- cell 7 ---------------------------------------------------------------
    def server_command(self) -> tuple[list[str] | None, str]:
        """(the fast server's command, or None for the sandbox; a note for the figure)."""
        given = self.args.round5_server
        if given == "sandbox":
            return None, "the sandbox (--round5-server sandbox)"
        if given:
            return shlex.split(given), given
        script = HERE / "fast_server.py"
        if not script.exists():
            return None, "the sandbox: bench/fast_server.py is missing"
        return [sys.executable, str(script)], "bench/fast_server.py"

    def no_limit(self) -> None:
        a = self.args
        server, where = self.server_command()
        self.pairs(server, where, a.round5_pairs, "7")
        if server is not None and a.round5_sandbox_pairs > 0:
            self.pairs(None, "the sandbox, for comparison", a.round5_sandbox_pairs, "7s")

    def pairs(self, server: list[str] | None, where: str, pairs: int, key: str) -> None:
        bench, a = self.bench, self.args
        n = a.round5_n
        bench.say(f"\n[r5 {key}] no limit, {n} rows: bare_loop.py -c {a.round5_bare_c} whole command ÷ "
                  f"bulksend send --rate none whole command, {pairs} pair(s), against {where}")
        fig = bench.add(Figure(f"r5 [{key}] no limit, {n} rows, against {where}: bare loop wall ÷ bulksend "
                               "wall", ">= 0.85" if key == "7" else "(info)"))
        contacts, payloads = inputs(bench, n)
        walls: dict[str, list[float]] = {"bare": [], "bulksend": []}
        with Sandbox(bench.bulksend, server=server, log=bench.tmp / f"server-r5-{key}.log") as sb:
            for i in range(pairs):
                got: dict[str, float] = {}
                for who in ("bare", "bulksend") if i % 2 == 0 else ("bulksend", "bare"):
                    sb.reset()
                    got[who] = self.one_no_limit(sb, who, contacts, payloads, n)
                    walls[who].append(got[who])
                fig.values.append(got["bare"] / got["bulksend"])
                bench.say(f"  pair {i + 1}: bare {got['bare']:.2f}s, bulksend {got['bulksend']:.2f}s -> "
                          f"{fig.values[-1]:.3f}")
        fig.note = (f"wall bare {', '.join(f'{w:.2f}' for w in walls['bare'])} s; bulksend "
                    f"{', '.join(f'{w:.2f}' for w in walls['bulksend'])} s")
        fig.extra = walls
        self.rows.append([key, f"no limit, {n} rows, bare loop ÷ bulksend ({where})",
                          f"bulksend {_list(walls['bulksend'])}; bare {_list(walls['bare'])}", "-", "-",
                          fmt(fig.value), fig.target, fig.verdict(), "-", "-"])

    def one_no_limit(self, sb: Sandbox, who: str, contacts: Path, payloads: Path, n: int) -> float:
        """One whole command, bare loop or bulksend, checked: every row created once."""
        bench = self.bench
        timeout = max(60.0, n / 100)
        if who == "bare":
            d = bench.fresh("r5-bare")
            done = run_child([sys.executable, str(HERE / "bare_loop.py"), "--url", sb.url, "--key", KEY,
                              "--payloads", str(payloads), "--concurrency", str(self.args.round5_bare_c),
                              "--out", str(d / "bare.json")], timeout=timeout, cwd=d)
            problem = "timed out" if done.timed_out else (
                f"exit {done.rc}: {done.err.strip()[-200:]}" if done.rc else "")
        else:
            done, summary, _ = bench.send(sb, contacts, "--rate", "none", timeout=timeout)
            problem = bench.problem(done, summary)
        created = int(sb.stats()["created"])
        if problem or created != n:
            raise RuntimeError(f"r5 no limit, {who}: {problem or f'created {created} of {n}'}")
        return done.wall

    # -- cell 8 ---------------------------------------------------------------
    def curl(self) -> None:
        bench, a = self.bench, self.args
        cell = self.cells()[1]
        contacts, payloads = inputs(bench, cell.rows)
        bench.say(f"\n[r5 8] xargs -P8 + curl --retry 10 against cell 2's server ({cell.label}), "
                  f"{cell.rows} rows, {a.round5_curl_runs} run(s), best taken")
        fig = bench.add(Figure("r5 [8] xargs -P8 + curl, best run ÷ bulksend cell 2 (speed-up)", ">= 1.5"))
        runs: list[Run] = []
        with Sandbox(bench.bulksend, rate_limit=cell.limit, burst=cell.burst,
                     log=bench.tmp / "sandbox-r5-8.log") as sb:
            if not self.walls.get("2"):
                sb.reset()
                done, summary, _ = bench.send(sb, contacts, *cell.send, timeout=cell.floor * 4 + 60)
                run = measure(sb, done, bench.problem(done, summary), cell.rows)
                bench.say(f"  bulksend (cell 2 was not run): {run.wall:.2f}s, 429s {run.n429}"
                          + (f"; FAILED: {run.problem}" if run.problem else ""))
                self.walls["2"] = [] if run.problem else [run.wall]
            bulk = median(self.walls["2"])
            cap = a.round5_curl_cap * bulk if a.round5_curl_cap > 0 and bulk else None
            for i in range(a.round5_curl_runs):
                sb.reset()
                runs.append(self.one_curl(sb, payloads, cell.rows, cap))
                r = runs[-1]
                bench.say(f"  curl run {i + 1}: {r.wall:.2f}s, 429s {r.n429}, created "
                          f"{r.created}/{cell.rows}, POSTs answered 2xx {r.calls}"
                          + (f"; stopped at the cap ({a.round5_curl_cap:g} x bulksend)" if r.stopped else "")
                          + (f"; {r.problem}" if r.problem else ""))
        best = min((r.wall for r in runs if not r.problem), default=None)
        if bulk is not None and best is not None:
            fig.values.append(best / bulk)
            if all(r.stopped for r in runs if not r.problem):
                fig.note = "a lower bound: every run was stopped at the cap; "
        fig.note += (f"curl wall {', '.join(f'{r.wall:.2f}' for r in runs)} s (429s "
                    f"{[r.n429 for r in runs]}, created {[r.created for r in runs]}); bulksend cell 2 "
                    f"{fmt(bulk)} s" + "".join(f"; {r.problem}" for r in runs if r.problem))
        fig.extra = {"curl_wall": [r.wall for r in runs], "n429": [r.n429 for r in runs],
                     "created": [r.created for r in runs], "bulksend_wall": self.walls["2"]}
        self.rows.append(["8", "xargs -P8 + curl --retry 10 (cell 2's server), best of "
                          f"{len(runs)} ÷ bulksend",
                          f"curl {', '.join(f'{r.wall:.2f}' for r in runs)}; bulksend {fmt(bulk)}",
                          "-", "-", fmt(fig.value), fig.target, fig.verdict(),
                          "/".join(str(r.n429) for r in runs), "-"])

    def one_curl(self, sb: Sandbox, payloads: Path, rows: int, cap: float | None) -> Run:
        """One xargs -P8 run: a curl per row, each body one payload line (what bulksend sends);
        stopped at ``cap`` seconds if given, else at a 300 s deadline (a failure)."""
        d = self.bench.fresh("r5-curl")
        # Bodies go to stdout (a regular file here): with -o /dev/null, curl 7.88 cannot
        # truncate the output before a retry and gives up (exit 23) instead of retrying.
        cmd = ["xargs", "-a", str(payloads), "-d", "\n", "-P", "8", "-I", "{}",
               "curl", "-s", "--retry", "10", "-u", f":{KEY}", "-H", "Content-Type: application/json",
               "-w", "\n%{http_code}\n", "-d", "{}", f"{sb.url}/request"]
        done = run_child(cmd, timeout=cap or 300.0, cwd=d)
        statuses = Counter(line for line in done.out.splitlines() if re.fullmatch(r"\d{3}", line))
        if done.timed_out and cap:
            st = sb.stats()
            return Run(done.wall, count_429(st), 0, int(st["created"]), count_2xx(st), 0, "", stopped=True)
        problem = "timed out" if done.timed_out else (f"xargs exit {done.rc}" if done.rc else "")
        run = measure(sb, done, problem, rows)
        others = {s: n for s, n in statuses.items() if s != "200"}
        if others:  # curl gave up on some rows (its last answer was not a 200)
            run.problem = (run.problem + "; " if run.problem else "") + f"final statuses {dict(statuses)}"
        return run

    # -- the closing table ------------------------------------------------------
    def table(self) -> None:
        if not self.rows:
            return
        head = ["cell", "what", "wall s", "ideal", "floor", "÷ floor", "target", "", "429s", "pauses"]
        lines = ["", "round five (issue 29), markdown:", "", "| " + " | ".join(head) + " |",
                 "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        self.bench.say("\n".join(lines))


def _walls(runs: list[Run]) -> str:
    text = _list([r.wall for r in runs])
    bad = sum(1 for r in runs if r.problem)
    return text + (f" ({bad} failed)" if bad else "")


def _list(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"median {median(values):.2f} ({', '.join(f'{v:.2f}' for v in values)})"


def run(bench: Bench) -> None:
    """Round five's cells (``bench.args.round5_*``), their figures and the closing table."""
    Round5(bench).run()


