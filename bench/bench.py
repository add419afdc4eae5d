#!/usr/bin/env python3
"""bulksend benchmark (issue 5, item 4): one command, every figure as a ratio
measured in the same run, printed beside its target.

    python bench/bench.py            # full run, ~15 minutes on 2 cores
    python bench/bench.py --quick    # fewer repetitions, smaller N, ~2 minutes
    python bench/bench.py --only noload,help --reps 3
    python bench/bench.py --only round5   # issue 29: each cell ÷ its floor, ~5 minutes

The sandbox (`bulksend sandbox`) always runs in its own process, so server and
client never share a GIL; bulksend and the bare aiohttp loop run as child
processes too. Everything is on 127.0.0.1. Every child is started in its own
process group and killed when the script ends, whatever the reason (error,
Ctrl-C, SIGTERM). Every wait has a deadline. See bench/README.md.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import csv
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import round5
from harness import (
    HERE,
    KEY,
    MAPPING,
    MB,
    REPO,
    Done,
    Figure,
    Sandbox,
    child_environment,
    fmt,
    kill_all_children,
    median,
    on_sigterm,
    posts_total,
    run_child,
    write_contacts,
)

ALL_FIGURES = "noload,limited,rate,batch,memory,resume,help,round5,grid"


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.bulksend = args.bulksend_cmd
        self.tmp = Path(tempfile.mkdtemp(prefix="bulksend-bench-"))
        self.figures: list[Figure] = []
        self.runs = 0
        self.env = dict(child_environment(), COLLECT_API_KEY=KEY)
        self.env.pop("COLLECT_API_URL", None)
        (self.tmp / "mapping.yaml").write_text(MAPPING, encoding="utf-8")
        self.mapping = self.tmp / "mapping.yaml"

    def say(self, text: str) -> None:
        print(text, flush=True)

    def add(self, fig: Figure) -> Figure:
        self.figures.append(fig)
        return fig

    def fresh(self, stem: str) -> Path:
        self.runs += 1
        d = self.tmp / f"run{self.runs:03d}-{stem}"
        d.mkdir()
        return d

    def send(self, sandbox: Sandbox | None, contacts: Path, *options: str, timeout: float,
             results: Path | None = None, on_start: Any = None) -> tuple[Done, dict[str, Any], Path]:
        """One `bulksend send`; returns the child's figures and its --summary-json."""
        d = self.fresh(contacts.stem)
        results = results or d / "results.csv"
        summary = d / "summary.json"
        cmd = [*self.bulksend, "send", str(contacts), "-m", str(self.mapping), "-o", str(results),
               "--no-progress", "--summary-json", str(summary), *options]
        if sandbox is not None:
            cmd += ["--api-url", sandbox.url]
        done = run_child(cmd, timeout=timeout, env=self.env, cwd=d, on_start=on_start)
        try:
            data = json.loads(summary.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        return done, data, results

    @staticmethod
    def problem(done: Done, summary: dict[str, Any]) -> str:
        if done.timed_out:
            return "timed out"
        if done.rc != 0:
            tail = (done.err.strip() or done.out.strip()).splitlines()[-3:]
            return f"exit {done.rc}: {' | '.join(tail)}"
        return ""

    # -- 1. no limit: bulksend vs a bare aiohttp loop ------------------------
    def fig_noload(self) -> None:
        a = self.args
        n, c = a.n, a.concurrency
        self.say(f"\n[1] no limit: {n} rows, concurrency {c}, {a.reps} repetitions "
                 "(bulksend --rate none vs bare aiohttp loop, same sandbox, reset between runs)")
        fig = self.add(Figure("no limit: bulksend rows/s ÷ bare loop rows/s", ">= 0.8"))
        wall_fig = self.add(Figure("  same, bulksend timed by wall clock of the whole command",
                                   "(info)"))
        cpu_fig = self.add(Figure("  client CPU per row: bulksend ÷ bare loop", "(info)"))
        tuned_fig = self.add(Figure("  same as the first, the bare loop given bulksend's malloc setting",
                                    "(info)"))
        contacts = self.tmp / "noload.csv"
        payloads = self.tmp / "noload.jsonl"
        write_contacts(contacts, n, "noload", payloads=payloads)
        raw_b, raw_l, raw_bw, raw_t = [], [], [], []
        cpu_b, cpu_l = [], []
        timeout = max(60.0, n / 100)
        # bulksend.sending.sender.tune_malloc() keeps asyncio's 256 KiB read buffer off
        # mmap; glibc reads the same two settings from these variables.
        tuned_env = {**child_environment(), "MALLOC_MMAP_THRESHOLD_": str(1 << 20),
                     "MALLOC_TRIM_THRESHOLD_": str(2 << 20)}
        with Sandbox(self.bulksend, log=self.tmp / "sandbox-noload.log") as sb:
            for rep in range(a.reps):
                order = ["bare", "bulksend", "tuned"] if rep % 2 == 0 else ["tuned", "bulksend", "bare"]
                got: dict[str, Any] = {}
                for who in order:
                    sb.reset()
                    if who in ("bare", "tuned"):
                        d = self.fresh(who)
                        done = run_child(
                            [sys.executable, str(HERE / "bare_loop.py"), "--url", sb.url, "--key", KEY,
                             "--payloads", str(payloads), "--concurrency", str(c),
                             "--out", str(d / "bare.json")],
                            timeout=timeout, cwd=d, env=tuned_env if who == "tuned" else None)
                        try:
                            res = json.loads((d / "bare.json").read_text())
                        except (OSError, ValueError):
                            res = {}
                        created = sb.stats()["created"]
                        if done.rc != 0 or created != n or not res.get("elapsed_seconds"):
                            raise RuntimeError(f"bare loop failed: rc={done.rc} created={created} "
                                               f"{res} {done.err[-300:]}")
                        got[who] = (n / res["elapsed_seconds"], done.cpu)
                    else:
                        done, summary, _ = self.send(sb, contacts, "--rate", "none",
                                                  "--concurrency", str(c), timeout=timeout)
                        created = sb.stats()["created"]
                        bad = self.problem(done, summary)
                        if bad or created != n or not summary.get("elapsed_seconds"):
                            raise RuntimeError(f"bulksend failed: {bad} created={created}/{n}")
                        got["bulksend"] = (n / summary["elapsed_seconds"], done.cpu, n / done.wall)
                b_rps, b_cpu, b_wall_rps = got["bulksend"]
                l_rps, l_cpu = got["bare"]
                t_rps = got["tuned"][0]
                raw_t.append(t_rps)
                tuned_fig.values.append(b_rps / t_rps)
                raw_b.append(b_rps)
                raw_l.append(l_rps)
                raw_bw.append(b_wall_rps)
                cpu_b.append(b_cpu / n * 1e6)
                cpu_l.append(l_cpu / n * 1e6)
                fig.values.append(b_rps / l_rps)
                wall_fig.values.append(b_wall_rps / l_rps)
                cpu_fig.values.append(b_cpu / l_cpu if l_cpu else float("nan"))
                self.say(f"  rep {rep + 1}: bulksend {b_rps:.0f} rows/s (wall {b_wall_rps:.0f}), "
                         f"bare {l_rps:.0f} rows/s -> {b_rps / l_rps:.3f} (tuned bare {t_rps:.0f}); "
                         f"client CPU {b_cpu:.2f}s vs {l_cpu:.2f}s")
        fig.note = (f"N={n}, C={c}; bulksend median {fmt(median(raw_b))} rows/s "
                    f"(summary elapsed_seconds), bare median {fmt(median(raw_l))} rows/s")
        fig.extra = {"bulksend_rows_per_s": raw_b, "bare_rows_per_s": raw_l,
                     "bulksend_wall_rows_per_s": raw_bw, "tuned_bare_rows_per_s": raw_t}
        tuned_fig.note = (f"MALLOC_MMAP_THRESHOLD_=1MiB MALLOC_TRIM_THRESHOLD_=2MiB for the bare loop: "
                          f"median {fmt(median(raw_t))} rows/s")
        wall_fig.note = "spawn to exit: interpreter start, imports, count pass, final CSV rewrite"
        cpu_fig.note = (f"user+sys CPU of the client process: bulksend median {fmt(median(cpu_b))} µs/row "
                        f"(whole command), bare loop {fmt(median(cpu_l))} µs/row")

    # -- 2/3. the sandbox limits to R/s ------------------------------------
    def fig_limited(self, rate_option: str, label: str, target: str, key: str) -> None:
        a = self.args
        r, n, c = a.rate_limit, a.limited_n, a.concurrency
        burst = a.burst or max(1, int(r // 10))
        ideal = n / r
        self.say(f"\n[{key}] sandbox --rate-limit {r:g} --burst {burst}; bulksend --rate {rate_option} "
                 f"-c {c}; {n} rows (ideal {ideal:.1f}s), {a.limited_reps} repetitions")
        fig = self.add(Figure(f"{label}: elapsed ÷ (N/R)", target))
        f429 = self.add(Figure(f"{label}: 429 answers ÷ N", "<= 0.05"))
        contacts = self.tmp / f"limited-{key}.csv"
        write_contacts(contacts, n, f"limited-{key}")
        failed: list[str] = []
        with Sandbox(self.bulksend, rate_limit=r, burst=burst,
                     log=self.tmp / f"sandbox-limited-{key}.log") as sb:
            for rep in range(a.limited_reps):
                sb.reset()
                done, summary, _ = self.send(sb, contacts, "--rate", rate_option, "--concurrency", str(c),
                                          timeout=ideal * 3 + 60)
                st = sb.stats()
                bad = self.problem(done, summary)
                created = st["created"]
                n429 = int(st["post_request"].get("429", 0))
                if bad or created != n:
                    self.say(f"  rep {rep + 1}: FAILED: {bad} created={created}/{n}")
                    failed.append(f"rep {rep + 1}: {bad or f'created {created} of {n}'}")
                    continue
                el = summary["elapsed_seconds"]
                fig.values.append(el / ideal)
                f429.values.append(n429 / n)
                fig.extra.setdefault("elapsed", []).append(el)
                self.say(f"  rep {rep + 1}: elapsed {el:.2f}s (wall {done.wall:.2f}s) -> {el / ideal:.3f}; "
                         f"429s {n429} -> {n429 / n:.4f}; created {created}/{n}; POSTs {posts_total(st)}")
        fig.note = (f"R={r:g}/s burst {burst}, N={n}, C={c}, --rate {rate_option}; elapsed "
                    f"{fig.extra.get('elapsed')} s; sandbox created == N in every counted rep"
                    + (f"; FAILED {'; '.join(failed)}" if failed else ""))
        f429.note = "from /_sandbox/stats post_request[429]"

    # -- 4. --batch -----------------------------------------------------------
    def fig_batch(self) -> None:
        a = self.args
        r, n = a.batch_rate, a.batch_n
        ideal = n / r
        fig = self.add(Figure(f"--batch under a per-call limit of {r:g}/s: elapsed ÷ (N/R)", "<= 0.05"))
        self.say(f"\n[4] --batch: probe first (120 rows, no limit), then {n} rows under "
                 f"--rate-limit {r:g} --burst 1, bulksend --batch --rate {r:g}")
        probe_n = 120
        contacts = self.tmp / "batch-probe.csv"
        write_contacts(contacts, probe_n, "batch-probe")
        with Sandbox(self.bulksend, log=self.tmp / "sandbox-batch-probe.log") as sb:
            done, summary, _ = self.send(sb, contacts, "--batch", "--rate", "none", timeout=60)
            st = sb.stats()
        bad = self.problem(done, summary)
        singles, batches = posts_total(st, "post_request"), posts_total(st, "post_requests")
        if "no such option" in done.err.lower():
            fig.unavailable = "not available: send has no --batch option"
        elif bad:
            fig.unavailable = f"not available: --batch run failed ({bad})"
        elif batches == 0:
            fig.unavailable = (f"not available: --batch is accepted but sent {singles} POST /request "
                               f"and 0 POST /requests for {probe_n} rows (one by one)")
        elif st["created"] != probe_n:
            fig.unavailable = f"not available: --batch created {st['created']} of {probe_n}"
        if fig.unavailable:
            self.say(f"  {fig.unavailable}")
            return
        self.say(f"  probe: {batches} POST /requests + {singles} POST /request for {probe_n} rows: available")
        contacts = self.tmp / "batch.csv"
        write_contacts(contacts, n, "batch")
        with Sandbox(self.bulksend, rate_limit=r, burst=1, log=self.tmp / "sandbox-batch.log") as sb:
            for rep in range(a.limited_reps):
                sb.reset()
                # Bounded: a run slower than a quarter of the one-by-one time has failed anyway.
                done, summary, _ = self.send(sb, contacts, "--batch", "--rate", f"{r:g}",
                                          timeout=max(60.0, ideal / 4))
                st = sb.stats()
                bad = self.problem(done, summary)
                if bad or st["created"] != n:
                    self.say(f"  rep {rep + 1}: FAILED: {bad} created={st['created']}/{n}")
                    fig.note += f" rep {rep + 1} failed ({bad or 'created != N'});"
                    continue
                el = summary["elapsed_seconds"]
                fig.values.append(el / ideal)
                self.say(f"  rep {rep + 1}: elapsed {el:.2f}s -> {el / ideal:.4f}; calls "
                         f"{posts_total(st, 'post_requests')} batch + {posts_total(st)} single; "
                         f"429s {st['post_requests'].get('429', 0) + st['post_request'].get('429', 0)}")
        fig.note = f"R={r:g} calls/s burst 1, N={n}" + (f";{fig.note}" if fig.note else "")

    # -- 5. memory: --dry-run over 100k and 1M rows --------------------------
    def fig_memory(self) -> None:
        a = self.args
        sizes = a.rss_sizes
        self.say(f"\n[5] peak RSS of `send --dry-run` for {', '.join(f'{s:,}' for s in sizes)} rows, "
                 f"{a.rss_reps} repetitions (wait4 ru_maxrss of the bulksend process)")
        peaks: dict[int, list[float]] = {}
        self.dry_outputs: dict[int, Path] = {}
        for size in sizes:
            contacts = self.tmp / f"mem-{size}.csv"
            t0 = time.perf_counter()
            write_contacts(contacts, size, f"mem{size}")
            mb = contacts.stat().st_size / MB
            self.say(f"  generated {contacts.name}: {mb:.1f} MB in {time.perf_counter() - t0:.1f}s")
            fig = self.add(Figure(f"peak RSS, send --dry-run, {size:,} rows", "<= 200", unit="MB"))
            for rep in range(a.rss_reps):
                done, summary, out = self.send(None, contacts, "--dry-run", timeout=max(120.0, size / 1000))
                bad = self.problem(done, summary)
                if bad:
                    self.say(f"  {size:,} rep {rep + 1}: FAILED: {bad}")
                    fig.note += f" rep {rep + 1} failed ({bad});"
                    continue
                fig.values.append(done.maxrss_mb)
                rps = size / done.wall
                fig.extra.setdefault("wall_seconds", []).append(round(done.wall, 2))
                self.say(f"  {size:,} rep {rep + 1}: peak RSS {done.maxrss_mb:.1f} MB, wall "
                         f"{done.wall:.1f}s ({rps:,.0f} rows/s), elapsed_seconds "
                         f"{summary.get('elapsed_seconds')}")
                self.dry_outputs[size] = out
            walls = fig.extra.get("wall_seconds", [])
            fig.note = (f"CSV {mb:.0f} MB; dry-run wall median {fmt(median(walls))}s "
                        f"({fmt(size / median(walls)) if walls else '-'} rows/s)" + fig.note)
            if fig.values:
                peaks[size] = fig.values
        if len(sizes) >= 2 and sizes[0] in peaks and sizes[-1] in peaks:
            growth = self.add(Figure(f"peak RSS {sizes[-1]:,} rows ÷ peak RSS {sizes[0]:,} rows", "<= 1.3"))
            growth.values = [median(peaks[sizes[-1]]) / median(peaks[sizes[0]])]  # type: ignore[operator]
            growth.note = "ratio of the medians"

    # -- 6. resume: time to the first POST over a journal of N sent rows -----
    def fig_resume(self) -> None:
        a = self.args
        sizes = [s for s in a.resume_sizes if s in getattr(self, "dry_outputs", {})]
        if not sizes:
            self.say("\n[6] resume: skipped (needs the dry-run outputs of [5] at the same sizes)")
            return
        self.say(f"\n[6] resume: journal holds N sent rows, the file has 1 new row at its end; "
                 f"time from spawn to the sandbox's first POST; {a.resume_reps} repetitions")
        for size in sizes:
            dry = self.dry_outputs[size]
            contacts = self.tmp / f"mem-{size}.csv"
            d = self.fresh(f"resume-{size}")
            results = d / "results.csv"
            # A results CSV saying every row was sent: built from the dry run's own keys.
            t0 = time.perf_counter()
            fabricate_sent_results(dry, results)
            fig_seed = self.add(Figure(f"resume {size:,}: first rerun, journal rebuilt from the CSV, "
                                       "0 POSTs expected", "(info)", unit="s"))
            # "Starts sending within seconds" (issue 5), read as: at most 3 s.
            fig = self.add(Figure(f"resume {size:,} sent rows + 1 new: spawn to first POST", "<= 3",
                                  unit="s"))
            with Sandbox(self.bulksend, log=self.tmp / f"sandbox-resume-{size}.log") as sb:
                done, summary, _ = self.send(sb, contacts, "--rate", "none", results=results,
                                          timeout=max(120.0, size / 1000))
                st = sb.stats()
                bad = self.problem(done, summary)
                self.say(f"  {size:,}: seeded run: wall {done.wall:.1f}s, POSTs {posts_total(st)}, "
                         f"peak RSS {done.maxrss_mb:.0f} MB, counts {summary.get('counts')} {bad}")
                if bad or posts_total(st) != 0:
                    fig_seed.note = f"failed: {bad or 'it POSTed'}"
                    continue
                fig_seed.values.append(done.wall)
                fig_seed.note = f"fabricated CSV in {time.perf_counter() - t0 - done.wall:.1f}s"
                for rep in range(a.resume_reps):
                    sb.reset()
                    plus = self.tmp / f"resume-{size}-plus{rep}.csv"
                    shutil.copyfile(contacts, plus)
                    with open(plus, "a", encoding="utf-8", newline="") as f:
                        f.write(f"new{rep}-{size}@example.com,New{rep},Extra,Extra Co\n")
                    first: list[float] = []

                    def watch(proc: subprocess.Popen[Any], started: float,
                              first: list[float] = first, limit: float = max(120.0, size / 1000)) -> None:
                        def poll() -> None:
                            deadline = time.monotonic() + limit
                            while time.monotonic() < deadline and proc.poll() is None:
                                if posts_total(sb.stats()) >= 1:
                                    first.append(time.perf_counter() - started)
                                    return
                                time.sleep(0.01)
                            if posts_total(sb.stats()) >= 1:
                                first.append(time.perf_counter() - started)

                        threading.Thread(target=poll, daemon=True).start()

                    done, summary, _ = self.send(sb, plus, "--rate", "none", results=results,
                                              timeout=max(120.0, size / 1000), on_start=watch)
                    time.sleep(0.05)
                    st = sb.stats()
                    bad = self.problem(done, summary)
                    if bad or posts_total(st) != 1 or not first:
                        self.say(f"  {size:,} rep {rep + 1}: FAILED: {bad} POSTs {posts_total(st)}")
                        continue
                    fig.values.append(first[0])
                    fig.extra.setdefault("wall", []).append(round(done.wall, 2))
                    self.say(f"  {size:,} rep {rep + 1}: first POST after {first[0]:.2f}s, whole "
                             f"command {done.wall:.2f}s, peak RSS {done.maxrss_mb:.0f} MB")
                fig.note = f"whole command wall {fig.extra.get('wall')} s"

    # -- 7. --help -------------------------------------------------------------
    def fig_help(self) -> None:
        a = self.args
        self.say(f"\n[7] `bulksend --help` wall time, {a.help_reps} runs after 1 warm-up")
        fig = self.add(Figure("bulksend --help wall time", "<= 0.3", unit="s"))
        floor = self.add(Figure("  for scale: python -c pass", "(info)", unit="s"))
        run_child([*self.bulksend, "--help"], timeout=30)
        for _ in range(a.help_reps):
            done = run_child([*self.bulksend, "--help"], timeout=30)
            if done.rc == 0:
                fig.values.append(done.wall)
            done = run_child([sys.executable, "-c", "pass"], timeout=30)
            floor.values.append(done.wall)
        self.say(f"  --help: {', '.join(f'{v:.3f}' for v in fig.values)}")
        self.say(f"  python -c pass: {', '.join(f'{v:.3f}' for v in floor.values)}")
        fig.note = " ".join(self.bulksend) + " --help"

    # -- 8. the grid: whole-command time ÷ ideal (issue 18) -------------------
    def grid_cells(self) -> list[tuple[float | None, int, str, int, float]]:
        """(server limit or None, burst, --rate, rows, ideal seconds) for each cell."""
        a = self.args
        cells: list[tuple[float | None, int, str, int, float]] = []
        for limit in a.grid_limits:
            bursts = sorted({1 if b == "1" else max(1, int(limit // 10)) for b in a.grid_bursts})
            for burst in bursts:
                for rate in a.grid_rates:
                    option = {"R": f"{limit:g}", "5R": f"{5 * limit:g}", "none": "none"}[rate]
                    for rows in a.grid_rows:
                        cells.append((limit, burst, option, rows, rows / limit))
        if a.grid_503:
            for rows in a.grid_rows:
                cells.append((None, 1, "50", rows, rows / 50.0))
        return cells

    def fig_grid(self) -> None:
        a = self.args
        cells = self.grid_cells()
        total = sum(c[4] for c in cells) * a.grid_reps
        self.say(f"\n[grid] {len(cells)} cells x {a.grid_reps}, ideal sum {total:.0f}s; "
                 f"-c {a.grid_concurrency}; whole command (spawn to exit) ÷ rows/min(limit, --rate)")
        kinds = {"5R": ("--rate 5R", "<= 1.10"), "R": ("--rate R", "<= 1.03"),
                 "none": ("--rate none", "<= 1.15"),
                 "503": (f"{a.grid_503_rate:.0%} 503s" + (f", {a.grid_fail_rate:.0%} 500/503"
                                                          if a.grid_fail_rate else ""), "<= 1.20")}
        worst: dict[str, list[tuple[float, str]]] = {k: [] for k in kinds}
        refused: list[tuple[float, str]] = []
        for limit, burst, option, rows, ideal in cells:
            kind = "503" if limit is None else (
                "none" if option == "none" else "R" if float(option) == limit else "5R")
            label = (f"no limit, {kinds['503'][0]}, --rate {option}" if limit is None
                     else f"limit {limit:g}/s burst {burst}, --rate {option}") + f", {rows} rows"
            extra = ("--unavailable-rate", f"{a.grid_503_rate:g}", "--fail-rate", f"{a.grid_fail_rate:g}",
                     "--seed", "7") if limit is None else ()
            contacts = self.tmp / f"grid-{rows}.csv"
            if not contacts.exists():
                write_contacts(contacts, rows, f"grid{rows}")
            with Sandbox(self.bulksend, rate_limit=limit, burst=burst, extra=extra,
                         log=self.tmp / "sandbox-grid.log") as sb:
                for _ in range(a.grid_reps):
                    sb.reset()
                    done, summary, _ = self.send(sb, contacts, "--rate", option, "--concurrency",
                                                 str(a.grid_concurrency), timeout=ideal * 3 + 60)
                    st = sb.stats()
                    bad = self.problem(done, summary)
                    n429 = int(st["post_request"].get("429", 0))
                    ratio = done.wall / ideal
                    el = summary.get("elapsed_seconds")
                    pauses = done.err.count("429: pausing")
                    text = (f"{label}: {ratio:.3f} (whole {done.wall:.2f}s, sending "
                            f"{el if el is None else round(el, 2)}s, ideal {ideal:.1f}s; 429s {n429}, "
                            f"pause lines {pauses}; created {st['created']}/{rows})")
                    if bad or st["created"] != rows:
                        text += f" FAILED: {bad}"
                        ratio = math.inf
                    self.say("  " + text)
                    worst[kind].append((ratio, text))
                    refused.append((n429 / rows, label))
        for kind, (name, target) in kinds.items():
            if not worst[kind]:
                continue
            ratio, text = max(worst[kind])
            fig = self.add(Figure(f"grid, worst cell, {name}: whole command ÷ ideal", target))
            fig.values.append(ratio)
            fig.note = f"{len(worst[kind])} cells; worst: {text}"
            fig.extra["cells"] = [t for _, t in sorted(worst[kind], reverse=True)]
        if refused:
            share, label = max(refused)
            fig = self.add(Figure("grid, worst 429 answers ÷ rows", "<= 0.05"))
            fig.values.append(share)
            fig.note = label


def fabricate_sent_results(dry: Path, out: Path) -> None:
    """Turn a dry run's results (status ready, payload column) into a results CSV
    whose every row is `sent`, as a real run would have left it."""
    with open(dry, encoding="utf-8-sig", newline="") as f, \
            open(out, "w", encoding="utf-8-sig", newline="") as g:
        r = csv.reader(f)
        w = csv.writer(g, lineterminator="\r\n")
        header = next(r)
        drop = header.index("payload") if "payload" in header else -1
        st = header.index("status")
        cols = {name: header.index(name) for name in ("request_id", "portal_url", "contact_id",
                                                       "http_status", "attempts", "sent_at")}
        w.writerow([h for i, h in enumerate(header) if i != drop])
        for n, cells in enumerate(r):
            cells[st] = "sent"
            cells[cols["request_id"]] = f"req{n:012d}"
            cells[cols["portal_url"]] = f"https://app.usecollect.com/portal/x/req{n:012d}"
            cells[cols["contact_id"]] = f"con{n:012d}"
            cells[cols["http_status"]] = "200"
            cells[cols["attempts"]] = "1"
            cells[cols["sent_at"]] = "2026-01-01T00:00:00Z"
            w.writerow([c for i, c in enumerate(cells) if i != drop])


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------


def machine() -> list[str]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    try:
        import aiohttp

        aio = aiohttp.__version__
    except ImportError:
        aio = "?"
    commit = subprocess.run(["git", "-C", str(REPO), "log", "-1", "--format=%h %s"],
                            capture_output=True, text=True, timeout=10).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "bulksend"],
                           capture_output=True, text=True, timeout=10).stdout.strip()
    return [
        f"machine: nproc {usable} (cpu_count {os.cpu_count()}), CPU {model or platform.processor() or '?'}",
        f"python {platform.python_version()} ({sys.executable}), aiohttp {aio}, {platform.platform()}",
        f"bulksend: {commit}" + ("  (+ uncommitted changes in bulksend/)" if dirty else ""),
        f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
    ]


def report(bench: Bench, started: float) -> str:
    rows = []
    for f in bench.figures:
        raw = ", ".join(fmt(v) for v in f.values)
        value = f.unavailable or (fmt(f.value) + (f" {f.unit}" if f.unit else ""))
        rows.append((f.name, value, f.target, f.verdict(), raw, f.note))
    lines = ["", "=" * 100, "RESULTS (median of the repetitions; raw values in brackets)", "=" * 100]
    width = max(len(r[0]) for r in rows) if rows else 10
    for name, value, target, verdict, raw, note in rows:
        lines.append(f"{name:<{width}}  {value:>12}  target {target:<8} {verdict:<7} [{raw}]")
        if note:
            lines.append(f"{'':<{width}}    {note}")
    lines.append(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
                 f"bench took {time.perf_counter() - started:.0f}s")
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    """The options, with each default that depends on --quick filled in."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repetitions, smaller N (~2 minutes)")
    ap.add_argument("--only", help=f"comma list of figures: {ALL_FIGURES}")
    ap.add_argument("--reps", type=int, help="repetitions of the no-limit figure (full 5, quick 3)")
    ap.add_argument("--n", type=int, help="rows for the no-limit figure (full 20000, quick 4000)")
    ap.add_argument("--concurrency", "-c", type=int, default=16, help="for bulksend and the bare loop")
    ap.add_argument("--rate-limit", type=float, default=100.0, help="sandbox limit R, requests/s")
    ap.add_argument("--burst", type=int, help="sandbox bucket size (default max(1, R/10))")
    ap.add_argument("--limited-n", type=int,
                    help="rows for the limited figures (full 6000 = 60 s at R=100, quick 1000). The gate "
                         "spends a fixed few seconds finding the limit, so the ratio depends on N/R")
    ap.add_argument("--limited-reps", type=int, help="repetitions of the limited figures (full 3, quick 2)")
    ap.add_argument("--batch-rate", type=float, default=10.0, help="per-call limit for --batch")
    ap.add_argument("--batch-n", type=int, help="rows for --batch (full 2000, quick 1000)")
    ap.add_argument("--rss-sizes", help="comma list of row counts (full 100000,1000000; quick 10000,100000)")
    ap.add_argument("--rss-reps", type=int, help="repetitions per size (full 2, quick 1)")
    ap.add_argument("--resume-sizes", help="sizes for the resume figure (subset of --rss-sizes; "
                    "full 100000,1000000, quick 100000; 'none' to skip)")
    ap.add_argument("--resume-reps", type=int, help="repetitions (full 3, quick 2)")
    ap.add_argument("--help-reps", type=int, help="runs of bulksend --help (full 11, quick 5)")
    ap.add_argument("--grid-rows", help="grid: comma list of row counts (full 500,1000,5000; quick 500,1000)")
    ap.add_argument("--grid-limits", help="grid: server limits, requests/s "
                    "(full 5,20,50,200; quick 20,50,200; none: only the no-limit 503 cells)")
    ap.add_argument("--grid-bursts", default="1,R/10", help="grid: server bursts, 1 and/or R/10")
    ap.add_argument("--grid-rates", default="R,5R,none", help="grid: bulksend --rate, of R, 5R, none")
    ap.add_argument("--grid-no-503", dest="grid_503", action="store_false",
                    help="grid: leave out the no-limit cells with 503 answers at --rate 50")
    ap.add_argument("--grid-503-rate", type=float, default=0.05,
                    help="grid: the sandbox's --unavailable-rate (503 alone) in those cells "
                         "(issue 18's case: 5 %% of answers 503)")
    ap.add_argument("--grid-fail-rate", type=float, default=0.0,
                    help="grid: and its --fail-rate (half 500, half 503; a 500 may have created "
                         "the request, so each is looked up before any resend)")
    ap.add_argument("--grid-reps", type=int, default=1, help="grid: repetitions of each cell")
    ap.add_argument("--grid-concurrency", type=int, default=8, help="grid: bulksend -c (its default)")
    ap.add_argument("--bulksend", help="command that runs bulksend (default: the bulksend script "
                    "next to this python, else python -m bulksend)")
    ap.add_argument("--json", metavar="FILE", help="also write every figure as JSON")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (inputs, results, logs)")
    round5.add_options(ap)
    a = ap.parse_args()
    q = a.quick
    a.reps = a.reps or (3 if q else 5)
    a.n = a.n or (4000 if q else 20000)
    a.limited_n = a.limited_n or (1000 if q else 6000)
    a.limited_reps = a.limited_reps or (2 if q else 3)
    a.batch_n = a.batch_n or (1000 if q else 2000)
    a.rss_sizes = [int(s) for s in (a.rss_sizes or ("10000,100000" if q else "100000,1000000")).split(",")]
    a.rss_reps = a.rss_reps or (1 if q else 2)
    rs = a.resume_sizes or ("100000" if q else "100000,1000000")
    a.resume_sizes = [] if rs == "none" else [int(s) for s in rs.split(",")]
    a.resume_reps = a.resume_reps or (2 if q else 3)
    a.help_reps = a.help_reps or (5 if q else 11)
    a.grid_rows = [int(x) for x in (a.grid_rows or ("500,1000" if q else "500,1000,5000")).split(",")]
    limits = a.grid_limits or ("20,50,200" if q else "5,20,50,200")  # "none": only the 503 cells
    a.grid_limits = [] if limits == "none" else [float(x) for x in limits.split(",")]
    a.grid_bursts = a.grid_bursts.split(",")
    a.grid_rates = a.grid_rates.split(",")
    if a.bulksend:
        a.bulksend_cmd = a.bulksend.split()
    else:
        script = Path(sys.executable).parent / "bulksend"
        a.bulksend_cmd = [str(script)] if script.exists() else [sys.executable, "-m", "bulksend"]
    return a


def main() -> int:
    a = parse_args()
    only = set((a.only or ALL_FIGURES).split(","))
    unknown = sorted(only - set(ALL_FIGURES.split(",")))
    if unknown:
        raise SystemExit(f"--only: unknown figure(s) {', '.join(unknown)} (known: {ALL_FIGURES})")

    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored
    atexit.register(kill_all_children)
    started = time.perf_counter()
    bench = Bench(a)
    print("\n".join(machine()))
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"bulksend command: {' '.join(a.bulksend_cmd)}; temp dir {bench.tmp}")
    failures = 0
    steps = [
        ("noload", bench.fig_noload),
        ("limited", lambda: bench.fig_limited(f"{5 * a.rate_limit:g}", f"sandbox {a.rate_limit:g}/s, "
                                              f"--rate {5 * a.rate_limit:g}", "<= 1.10", "2")),
        ("rate", lambda: bench.fig_limited(f"{a.rate_limit:g}", f"sandbox {a.rate_limit:g}/s, "
                                           f"--rate {a.rate_limit:g}", "<= 1.03", "3")),
        ("batch", bench.fig_batch),
        ("memory", bench.fig_memory),
        ("resume", bench.fig_resume),
        ("help", bench.fig_help),
        ("round5", lambda: round5.run(bench)),
        ("grid", bench.fig_grid),
    ]
    try:
        for name, step in steps:
            if name not in only:
                continue
            try:
                step()
            except (RuntimeError, OSError, ValueError, KeyError) as exc:
                failures += 1
                print(f"  {name}: ERROR: {exc}", flush=True)
                bench.add(Figure(f"{name}", "", unavailable=f"error: {str(exc)[:80]}"))
    except KeyboardInterrupt:
        print("\ninterrupted: stopping every child process; figures so far:", flush=True)
        failures = 130
    finally:
        kill_all_children()
        text = report(bench, started)
        print(text, flush=True)
        if a.json:
            Path(a.json).write_text(json.dumps(
                {"machine": machine(), "argv": sys.argv,
                 "figures": [{"name": f.name, "median": f.value, "values": f.values, "target": f.target,
                              "verdict": f.verdict(), "unavailable": f.unavailable, "note": f.note,
                              "extra": f.extra} for f in bench.figures]}, indent=2) + "\n")
        if a.keep:
            print(f"kept {bench.tmp}")
        else:
            shutil.rmtree(bench.tmp, ignore_errors=True)
    return 130 if failures == 130 else (1 if failures else 0)


if __name__ == "__main__":
    sys.exit(main())
