"""Time one of the README's two commands in a fresh clone of HEAD, as a newcomer would run it, and record it.

    .venv/bin/python scripts/fresh_clone.py 1 [--dir DIR]   # install + the small reproduction
    .venv/bin/python scripts/fresh_clone.py 2 [--dir DIR]   # install + the test command

The command is read from the README's "Two commands" block (never retyped here). The result is appended to
``tables/command_timings.csv`` (wall time, exit code, git sha, CPU model, kernel build, the highest 1-minute load
seen while it ran, so a timing taken on a shared machine says so), each row naming its run folder in
``runs/_timings/`` (the command, the clone's commit, env.json and the command's log); the README's timing lines are generated from it
by ``scripts/update_readme.py``. After command 1 the clone's finished runs are compared, run by run, with the
committed runs of the same id (``bench.stability.compare_runs``) into ``tables/stability-small.md``;

    .venv/bin/python scripts/fresh_clone.py compare --dir D   # the same, for a command 1 still running in D

A clone directory that exists is refused (it may hold someone's work); pass another ``--dir``.
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import provenance, stability  # noqa: E402
from models.io import atomic_write_json, atomic_write_text  # noqa: E402

TIMINGS = ROOT / "tables" / "command_timings.csv"
TIMING_RUNS = ROOT / "runs" / "_timings"  # one folder per timing: config.json, env.json, metrics.json, log.txt
FIELDS = ("run_id", "command_no", "command", "git_sha", "started_utc", "wall_s", "rc", "max_load_1min", "cpu_count",
          "cpu_model", "kernel_build", "tests")


def readme_commands() -> dict[str, str]:
    """'1' / '2' -> the command line under '# 1.' / '# 2.' in the README's first bash block."""
    block = re.search(r"## Two commands.*?```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    if block is None:
        raise SystemExit("README.md has no '## Two commands' bash block")
    found = dict(re.findall(r"^# ([12])\..*\n(.+)$", block.group(1), re.M))
    if set(found) != {"1", "2"}:
        raise SystemExit("README.md's 'Two commands' block must hold '# 1.' and '# 2.' each followed by a command")
    return found


class LoadWatch:
    """The highest 1-minute load average seen, sampled every 30 s in a background thread."""

    def __init__(self) -> None:
        self.max = os.getloadavg()[0]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(30):
            self.max = max(self.max, os.getloadavg()[0])

    def __enter__(self) -> LoadWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()


def _timing_run(row: dict[str, str], sha: str, log: Path, clone: Path) -> str:
    """The run folder of one timing (``runs/_timings/<run_id>``): the command and the clone's commit, the machine,
    the measured numbers and the command's log, so the CSV row points at what produced it. Returns the run id."""
    rid = f"command{row['command_no']}__timing__{row['started_utc'].replace('-', '').replace(':', '')}"
    run_dir = TIMING_RUNS / rid
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run_dir / "config.json", {"command_no": row["command_no"], "command": row["command"],
                                                 "git_sha": sha})
    env = provenance.environment("cpu", "float32", "small" if row["command_no"] == "1" else "smoke")
    atomic_write_json(run_dir / "env.json", {**env, "git_sha": sha, "git_dirty": False})  # the clone's, not ours
    atomic_write_json(run_dir / "metrics.json", {k: row[k] for k in ("wall_s", "rc", "max_load_1min", "tests")})
    atomic_write_text(run_dir / "log.txt", stored_log(log.read_text(), clone))
    return rid


PIP_LOCATION_WARNING = re.compile(r"^WARNING: Location '[^']*' is ignored: it is neither a file nor a directory\.$")


def stored_log(text: str, clone: Path) -> str:
    """The command's log as committed: without pip's warnings about this machine's package index locations (counted
    in the first line) and with the clone's path as ``<clone>``, so a tracked file names no machine's folders."""
    lines = text.splitlines()
    kept = [x.replace(str(clone), "<clone>") for x in lines if not PIP_LOCATION_WARNING.match(x)]
    return (f"[{len(lines) - len(kept)} lines of pip's 'WARNING: Location ... is ignored' about this machine's "
            f"package index left out]\n" + "\n".join(kept) + "\n")


def _append_timing(row: dict[str, str]) -> None:
    rows = list(csv.DictReader(TIMINGS.open())) if TIMINGS.exists() else []
    buf = io.StringIO()
    writer = csv.DictWriter(buf, FIELDS, restval="", extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows + [row])
    atomic_write_text(TIMINGS, buf.getvalue())


def _committed_small() -> int:
    """How many committed run folders are small-scale runs (``runs/*__small__*`` with a metrics.json)."""
    return sum(1 for m in (ROOT / "runs").glob("*__small__*/metrics.json"))


def _stability(clone: Path, note: str) -> Path:
    """Run by run, the clone's finished runs (``.cache/runs``, the README's ``--runs-dir``) against the committed
    runs of the same id in this checkout: the same config, so a difference is the rerun, not the design."""
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=clone, capture_output=True, text=True,
                         check=True).stdout.strip()
    result = stability.compare_runs(ROOT / "runs", clone / ".cache" / "runs")
    header = (f"### A rerun of the small scale in a fresh clone against the committed runs\n\n"
              f"Generated by `python scripts/fresh_clone.py` from a fresh clone of {sha[:12]} "
              f"({dt.datetime.now(dt.timezone.utc):%Y-%m-%d}; CPU {provenance.cpu_model()}, kernel build "
              f"{platform.version()}; {note}): the README's command 1, each finished run compared with the committed "
              f"run of the same id (same config) — {result['compared_runs']} runs compared, of the "
              f"{_committed_small()} small-scale runs committed now (a run whose config changed after that commit "
              f"has another id and is not compared). Metrics are "
              f"'<eval>.<metric>'; a verdict flip is reproduced <-> contradicted.")
    out = ROOT / "tables" / "stability-small.md"
    atomic_write_text(out, stability.markdown(result, header))
    summary = stability.summary(result, clone_sha=sha[:12], cpu=provenance.cpu_model(), note=note,
                                committed_small=_committed_small())
    atomic_write_json(out.with_suffix(".json"), summary)
    return out


def _progress(clone: Path) -> str:
    """Where a command 1 in ``clone`` is: finished (its log is that of a recorded timing, ``runs/_timings``: exit code
    and minutes from there) or still running (its last '[k/N] ... X min elapsed' line of ``--jobs``)."""
    log = clone.parent / f"{clone.name}-command1.log"
    text = log.read_text() if log.exists() else None
    for run in sorted(TIMING_RUNS.glob("command1__timing__*")) if text else ():
        if (run / "log.txt").exists() and (run / "log.txt").read_text() == stored_log(text, clone):
            m = json.loads((run / "metrics.json").read_text())
            return f"finished with exit code {m['rc']} in {int(m['wall_s']) / 60:.1f} min"
    lines = re.findall(r"\[(\d+)/(\d+)\] .*? ([\d.]+) min elapsed", log.read_text()) if log.exists() else []
    if not lines:
        return "compared while it was running; no progress line yet"
    k, n, minutes = lines[-1]
    return (f"compared while it was still running: {k} of the {n} runs of its parallel pass finished after "
            f"{float(minutes):.0f} min of `bench all`, the install not counted")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=("1", "2", "compare"),
                    help="1 / 2: time the README's command in a new clone; compare: compare the runs an earlier "
                         "(possibly unfinished) command 1 in --dir has finished with the committed ones")
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "dcae-fresh",
                    help="where to clone (default: dcae-fresh in the temporary directory); must not exist")
    ap.add_argument("--note", default="",
                    help="what the comparison should say besides the timing, e.g. which change of the code since the "
                         "committed runs moves their numbers")
    args = ap.parse_args()
    if args.command == "compare":
        if not (args.dir / ".cache" / "runs").is_dir():
            raise SystemExit(f"{args.dir}/.cache/runs does not exist: run command 1 there first")
        print(f"wrote {_stability(args.dir, '; '.join(filter(None, (_progress(args.dir), args.note)))).relative_to(ROOT)}")
        return
    if args.dir.exists():
        raise SystemExit(f"{args.dir} exists; pass another --dir (a fresh clone needs an empty place)")
    command = readme_commands()[args.command]
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.strip()
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(args.dir)], check=True)
    started = dt.datetime.now(dt.timezone.utc)
    log = args.dir.parent / f"{args.dir.name}-command{args.command}.log"
    print(f"command {args.command} in {args.dir} (log {log}): {command}", flush=True)
    t0 = time.perf_counter()
    with LoadWatch() as load, log.open("w") as out:
        rc = subprocess.run(["bash", "-c", command], cwd=args.dir, stdout=out, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - t0
    tail = log.read_text().strip().splitlines()
    tests = next((x for x in reversed(tail) if x.startswith("tests: ")), "") if args.command == "2" else ""
    row = {"command_no": args.command, "command": command, "git_sha": sha[:12],
           "started_utc": f"{started:%Y-%m-%dT%H:%M:%SZ}", "wall_s": f"{wall:.0f}", "rc": str(rc),
           "max_load_1min": f"{load.max:.2f}", "cpu_count": str(os.cpu_count()),
           "cpu_model": provenance.cpu_model(), "kernel_build": platform.version(),
           "tests": tests.removeprefix("tests: ")}
    _append_timing({**row, "run_id": _timing_run(row, sha, log, args.dir)})
    if args.command == "1" and (args.dir / ".cache" / "runs").is_dir():
        _stability(args.dir, "; ".join(filter(None, (f"finished with exit code {rc} in {wall / 60:.1f} min",
                                                      args.note))))
    print(f"command {args.command}: rc {rc}, {wall / 60:.1f} min, highest 1-min load {load.max:.2f}; recorded in "
          f"{TIMINGS.relative_to(ROOT)}", flush=True)
    sys.exit(rc)


if __name__ == "__main__":
    main()
