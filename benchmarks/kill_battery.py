"""SIGKILL battery: kill `hybrid run` / `hybrid resume` at random moments, resume, compare.

The promise under test (README, "A run killed at any moment ..."): a run killed with
SIGKILL at any moment -- during start-up, mid-generation, while a generation is being
committed, or during a `hybrid resume` of an earlier kill -- and then resumed until it
finishes, ends with ``stats.jsonl`` and ``best/genome.json`` byte-identical to the
same run left alone.

What it does:

1. writes a small search config into a temp folder (circles, 120 samples, population
   8, ``--generations`` generations of 20 steps, a checkpoint every generation);
2. runs it once uninterrupted: the reference (its wall time ``D`` sets the kill
   window);
3. until ``--kills`` SIGKILLs have landed: starts a fresh try with ``hybrid run``;
   kills it after a random delay; for some tries kills the following ``hybrid
   resume`` too (several kills per try, including kills during resume); then runs
   ``hybrid resume`` until it exits 0 and compares the two files with the
   reference. A ``run`` killed before its run folder existed is started again with
   ``hybrid run`` (what a user would do); any other non-zero exit that was not our
   kill is a failure, reported with its last stderr line.

Kill moments are drawn from three kinds, so that the rare windows get hits:

* ``early``: uniform in [0, 0.5) s -- interpreter and torch start-up, config and
  data loading, creation of the run folder;
* ``uniform``: uniform in [0, 1.05 D) -- anywhere in the run (a kill that comes after
  the process has exited is a *miss* and does not count);
* ``commit``: the moment ``stats.jsonl`` grows by a line (polled every ~1 ms), i.e.
  in the middle of a generation's commit, between the stats line and the
  checkpoint.

Only the standard library is used (the searches are subprocesses), so the battery
measures the installed `hybrid` exactly as a user runs it. Every process it starts
is in its own session and killed by its own process-group id.

Usage::

    PYTHONPATH=$PWD python benchmarks/kill_battery.py [--kills 30] [--seed 0]
        [--generations 12] [--keep]

Prints one table (kills by phase and kind, misses, resumes, byte-identical tries,
failures with reasons, load average, wall) and exits 1 if any try failed.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

CONFIG = """
[run]
name = "kb"
seed = {seed}
threads = 1

[task]
name = "circles"
n_samples = 120

[genome]
hidden = [3]

[training]
steps = 20
gate = "hard_concrete"
penalty = 0.001

[evolution]
population = 8
generations = {generations}
elitism = 1

[speciation]
target_species = 2

[mutation]
add_node = 0.3
widen = 0.3
add_edge = 0.3
prune_neurons = 0.2

[checkpoint]
every = 1
"""

NAME = "kb"  # the run folder's name: it is written into best/genome.json, so all tries share it
COMPARED = ("stats.jsonl", "best/genome.json")
KINDS = ("early", "uniform", "commit")


@dataclass
class Outcome:
    """What one started process did: killed by us, or exited by itself."""

    killed: bool
    rc: int | None
    stderr: str
    seconds: float
    moment: str = ""  # where the kill landed: "no folder", "0 generations", "3 generations"...


@dataclass
class Tally:
    """Counts over the whole battery."""

    kills: dict[str, int] = field(default_factory=dict)  # "run/early", "resume/commit", ...
    moments: dict[str, int] = field(default_factory=dict)  # "no folder", "mid-run", ...
    misses: int = 0
    resumes: int = 0
    restarts: int = 0
    tries: int = 0
    identical: int = 0
    failures: list[str] = field(default_factory=list)

    def kill(self, phase: str, kind: str, moment: str) -> None:
        key = f"{phase}/{kind}"
        self.kills[key] = self.kills.get(key, 0) + 1
        self.moments[moment] = self.moments.get(moment, 0) + 1

    @property
    def n_kills(self) -> int:
        return sum(self.kills.values())


def _hybrid(*args: str) -> list[str]:
    return [sys.executable, "-m", "hybrid", *args]


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:160] if lines else "(no stderr)"


def _start(cmd: list[str], log: Path) -> tuple[subprocess.Popen[bytes], object]:
    err = open(log, "wb")  # closed by _finish
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True
    )
    return proc, err


def _finish(
    proc: subprocess.Popen[bytes], err: object, log: Path, killed: bool, t0: float
) -> Outcome:
    rc = proc.wait()
    err.close()  # type: ignore[attr-defined]
    return Outcome(killed, rc, log.read_text(errors="replace"), time.perf_counter() - t0)


def _stats_lines(run: Path) -> int:
    try:
        return (run / "stats.jsonl").read_bytes().count(b"\n")
    except OSError:
        return 0


def run_and_maybe_kill(
    cmd: list[str], run: Path, log: Path, kind: str | None, delay: float, skip_commits: int
) -> Outcome:
    """Start ``cmd``; unless ``kind`` is None, SIGKILL its process group at the drawn moment.

    ``uniform``/``early``: after ``delay`` seconds. ``commit``: as soon as ``stats.jsonl``
    has ``skip_commits + 1`` more lines than at the start (or after ``delay`` as a
    fallback, so a try never waits for ever).
    """
    t0 = time.perf_counter()
    proc, err = _start(cmd, log)
    if kind is None:
        return _finish(proc, err, log, False, t0)
    base = _stats_lines(run)
    deadline = t0 + delay
    while proc.poll() is None:
        now = time.perf_counter()
        if kind == "commit":
            if _stats_lines(run) > base + skip_commits or now >= deadline:
                break
            time.sleep(0.001)
        else:
            if now >= deadline:
                break
            time.sleep(min(0.005, max(0.0, deadline - now)))
    if proc.poll() is not None:
        return _finish(proc, err, log, False, t0)
    if not run.exists():
        moment = "no run folder yet"
    elif _stats_lines(run) == 0:
        moment = "folder, no generation recorded"
    else:
        moment = "after >= 1 generation recorded"
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the process's own group (start_new_session)
    except ProcessLookupError:
        pass
    out = _finish(proc, err, log, True, t0)
    out.moment = moment
    return out


def draw_kill(rng: random.Random, duration: float) -> tuple[str, float, int]:
    """Return (kind, delay in s, generations to let commit first) for one kill."""
    kind = rng.choices(KINDS, weights=(0.25, 0.5, 0.25))[0]
    if kind == "early":
        return kind, rng.uniform(0.0, 0.5), 0
    if kind == "uniform":
        return kind, rng.uniform(0.0, 1.05 * duration), 0
    return kind, 1.5 * duration, rng.randrange(0, 4)


def one_try(
    i: int,
    root: Path,
    config: Path,
    reference: dict[str, bytes],
    duration: float,
    rng: random.Random,
    tally: Tally,
    kills_left: int,
) -> None:
    """Kill one run one or more times, resume it to the end, and compare with the reference."""
    runs = root / f"try_{i:03d}"
    run = runs / NAME
    log = root / f"try_{i:03d}.stderr"
    planned = min(kills_left, rng.choice((1, 1, 2, 3)))  # several kills per try: also during resume
    phase = "run"
    landed = 0
    while landed < planned:
        cmd = (
            _hybrid("run", str(config), "--plain", "--runs-dir", str(runs))
            if phase == "run"
            else _hybrid("resume", str(run), "--plain")
        )
        kind, delay, skip = draw_kill(rng, duration)
        out = run_and_maybe_kill(cmd, run, log, kind, delay, skip)
        if phase == "resume":
            tally.resumes += 1
        if out.killed:
            tally.kill(phase, kind, out.moment)
            landed += 1
        elif out.rc == 0:
            tally.misses += 1  # finished before the kill: the run is complete
            break
        else:
            tally.failures.append(f"try {i}: `{phase}` exited {out.rc}: {_last_line(out.stderr)}")
            return
        if phase == "run" and not run.exists():
            tally.restarts += 1  # killed before the folder existed: the user runs it again
            continue
        phase = "resume"
    # Resume until done (a kill-free resume must succeed first time; allow a couple for safety).
    done = not out.killed  # the loop left either on a kill or on an exit 0
    for _ in range(3):
        if done:
            break
        if not run.exists():
            cmd = _hybrid("run", str(config), "--plain", "--runs-dir", str(runs))
            tally.restarts += 1
        else:
            cmd = _hybrid("resume", str(run), "--plain")
            tally.resumes += 1
        out = run_and_maybe_kill(cmd, run, log, None, 0.0, 0)
        if out.rc == 0:
            done = True
        else:
            tally.failures.append(
                f"try {i}: final resume exited {out.rc}: {_last_line(out.stderr)}"
            )
            return
    tally.tries += 1
    diffs = []
    for name in COMPARED:
        try:
            got = (run / name).read_bytes()
        except OSError as exc:
            diffs.append(f"{name} unreadable ({exc.strerror})")
            continue
        if got != reference[name]:
            diffs.append(f"{name} differs")
    if diffs:
        tally.failures.append(f"try {i}: " + ", ".join(diffs))
    else:
        tally.identical += 1
        shutil.rmtree(runs, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=30, help="SIGKILLs to land in all (default 30)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the kill schedule and the search")
    ap.add_argument("--generations", type=int, default=12, help="generations of the small search")
    ap.add_argument(
        "--keep", action="store_true", help="keep the temp folder (failed tries are kept anyway)"
    )
    args = ap.parse_args(argv)

    t_start = time.perf_counter()
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="hybrid-kill-"))
    config = root / "config.toml"
    config.write_text(CONFIG.format(seed=args.seed, generations=args.generations))

    ref_runs = root / "reference"
    out = run_and_maybe_kill(
        _hybrid("run", str(config), "--plain", "--runs-dir", str(ref_runs)),
        ref_runs / NAME,
        root / "reference.stderr",
        None,
        0.0,
        0,
    )
    if out.rc != 0:
        print(f"reference run failed (exit {out.rc}): {_last_line(out.stderr)}", file=sys.stderr)
        return 2
    duration = out.seconds
    reference = {name: (ref_runs / NAME / name).read_bytes() for name in COMPARED}

    tally = Tally()
    i = 0
    max_tries = 4 * args.kills + 10  # misses do not count; never loop for ever
    while tally.n_kills < args.kills and i < max_tries:
        one_try(i, root, config, reference, duration, rng, tally, args.kills - tally.n_kills)
        i += 1

    wall = time.perf_counter() - t_start
    load = os.getloadavg()
    phases = ", ".join(f"{k} {v}" for k, v in sorted(tally.kills.items()))
    rows = [
        (
            "search",
            f"circles, 120 samples, population 8, {args.generations} generations, seed {args.seed}",
        ),
        ("reference run", f"{duration:.1f} s"),
        ("kills landed", f"{tally.n_kills} ({phases})"),
        ("kills by moment", ", ".join(f"{k} {v}" for k, v in sorted(tally.moments.items()))),
        ("misses (exited before the kill)", str(tally.misses)),
        ("restarts (`run` again: no folder after the kill)", str(tally.restarts)),
        ("resumes", str(tally.resumes)),
        ("tries completed", str(tally.tries)),
        ("byte-identical (stats.jsonl + best/genome.json)", f"{tally.identical} of {tally.tries}"),
        ("failures", str(len(tally.failures))),
        ("load average (1, 5, 15 min)", " ".join(f"{x:.2f}" for x in load)),
        ("wall", f"{wall:.0f} s"),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    for f in tally.failures:
        print(f"  FAIL {f}")
    if tally.failures or args.keep:
        print(f"kept: {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if tally.failures else 0


if __name__ == "__main__":
    sys.exit(main())
