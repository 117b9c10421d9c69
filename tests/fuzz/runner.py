"""The fuzzing loop: targets, mutants, state rebuilds, outcomes, crash sites, worker processes and the report.

Input number ``index`` of a run with ``seed`` is a pure function of the two (and of the corpus): its block
(``index // BLOCK``) picks the target message by a weighted draw, and ``random.Random`` seeded from
(seed, index) makes the mutant.  Worker ``w`` of ``P`` takes blocks ``w, w + P, w + 2P ...``.

Within a block the receiver engine is rebuilt (replayed, see ``scenarios``) before its first input and
again after every input that changed its state or raised, so every mutant meets the engine in the state in
which the original message met it (the fingerprint after each rebuild is compared with the one recorded).
After an input that changed state, the invariants of ``checks`` are tested, including a run of the clock
far past every timeout.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import multiprocessing
import os
import random
import signal
import sys
import time
import traceback
import warnings
from typing import Dict, List, Optional, Tuple

from pyike.ike.events import SendDatagram
from pyike.ike.impair import Impair

from . import checks
from .mutators import Library, mutate
from .scenarios import Target, build_corpus
from .snapshot import clone

BLOCK = 100  # inputs per target draw: the engine is rebuilt at least this often
ENGINE_DIR = os.sep + "pyike" + os.sep
OUTCOMES = ("dropped", "answered", "state changed", "crash")

# Set in the parent before the workers fork, so that they share one corpus.
_CORPUS: List[Target] = []
IMPAIR: List[
    str
] = []  # impairments (ike/impair.py) put into every rebuilt engine: the self-test plants a bug
_LIBRARY: Optional[Library] = None
_WEIGHTS: List[float] = []


@dataclasses.dataclass
class Finding:
    """One distinct crash site or invariant violation: how often, and the first input that showed it."""

    key: str
    count: int
    seed: int
    index: int
    target: str
    label: str
    role: str
    how: str
    data: List[str]  # hex of each datagram
    detail: str  # traceback or the violation text
    where: Dict[str, int] = dataclasses.field(default_factory=dict)  # message kind (role) -> inputs

    def merge(self, other: Finding) -> None:
        """Count both; keep the reproducer with the lowest (seed, index)."""
        total = self.count + other.count
        where = dict(self.where)
        for kind, n in other.where.items():
            where[kind] = where.get(kind, 0) + n
        if (other.seed, other.index) < (self.seed, self.index):
            self.__dict__.update(dataclasses.asdict(other))
        self.count, self.where = total, where


@dataclasses.dataclass
class Stats:
    inputs: int = 0
    seconds: float = 0.0
    rebuilds: int = 0  # replays of a target's history (snapshots)
    rebuild_seconds: float = 0.0
    clones: int = 0  # copies of a snapshot
    clone_seconds: float = 0.0
    cpu_seconds: float = 0.0
    by_kind: Dict[Tuple[str, str], Dict[str, int]] = dataclasses.field(default_factory=dict)
    crashes: Dict[str, Finding] = dataclasses.field(default_factory=dict)
    violations: Dict[str, Finding] = dataclasses.field(default_factory=dict)
    harness: List[str] = dataclasses.field(default_factory=list)  # replay mismatches and the like
    per_process: List[Tuple[int, float]] = dataclasses.field(default_factory=list)  # (inputs, seconds)

    def count(self, target: Target, outcome: str) -> None:
        row = self.by_kind.setdefault((target.label, target.role), dict.fromkeys(OUTCOMES, 0))
        row[outcome] += 1

    def add(self, table: Dict[str, Finding], finding: Finding) -> None:
        if finding.key in table:
            table[finding.key].merge(finding)
        else:
            table[finding.key] = finding

    def merge(self, other: Stats) -> None:
        self.inputs += other.inputs
        self.rebuilds += other.rebuilds
        self.rebuild_seconds += other.rebuild_seconds
        self.clones += other.clones
        self.clone_seconds += other.clone_seconds
        self.cpu_seconds += other.cpu_seconds
        self.per_process += other.per_process
        for key, row in other.by_kind.items():
            mine = self.by_kind.setdefault(key, dict.fromkeys(OUTCOMES, 0))
            for outcome, n in row.items():
                mine[outcome] += n
        for finding in other.crashes.values():
            self.add(self.crashes, finding)
        for finding in other.violations.values():
            self.add(self.violations, finding)
        self.harness += [h for h in other.harness if h not in self.harness]


# --- the corpus and the schedule ------------------------------------------------------------------------


_PREPARED: List[Optional[tuple]] = []


def prepare(names=None) -> None:
    """Record the scenarios once (in the parent: workers inherit them)."""
    global _CORPUS, _LIBRARY, _WEIGHTS
    key = tuple(sorted(names)) if names else None
    if _CORPUS and _PREPARED == [key]:
        return
    _PREPARED[:] = [key]
    _CORPUS = build_corpus(names)
    _LIBRARY = Library(_CORPUS)
    _WEIGHTS = [_weight(t) for t in _CORPUS]


def _weight(target: Target) -> float:
    readable = target.payloads is not None and (target.sealer is not None or not target.encrypted)
    weight = 1.0 + (2.0 if readable else 0.0)
    types = {p.ptype for p in target.payloads or []}
    if 39 in types:  # AUTH: identities, authentication
        weight += 2.0
    if 37 in types:  # CERT: certificate parsing and path validation
        weight += 6.0
    return weight


def target_of(seed: int, index: int) -> Target:
    block = index // BLOCK
    return random.Random(seed * 7919 + block).choices(_CORPUS, weights=_WEIGHTS)[0]


def mutant_of(seed: int, index: int, target: Target) -> Tuple[List[bytes], str]:
    return mutate(random.Random(seed * 1000003 + index), target, _LIBRARY)


# --- one input ------------------------------------------------------------------------------------------


class Bench:
    """The receiver engine of one target: replayed once (the snapshot), then a fresh clone of the snapshot
    for every input after one that changed the state or raised (see snapshot.py)."""

    def __init__(self, target: Target, stats: Stats) -> None:
        self.target, self.stats = target, stats
        self.engine = None
        self.snapshot = None
        self.logs = checks.WATCH  # filled only inside checks.watching_logs()

    def _replay(self) -> None:
        started = time.perf_counter()
        engine, drawn = self.target.scenario.rebuild(self.target)
        engine.impair = Impair(IMPAIR)
        self.stats.rebuilds += 1
        self.stats.rebuild_seconds += time.perf_counter() - started
        self.pristine = checks.fingerprint(engine, drawn)
        # The count of random draws is left out here: ECDSA signatures vary in length, so the number of
        # fragments, and of IVs drawn for them, can differ between the recording and a replay.
        if self.pristine[:-1] != self.target.fingerprint[:-1]:
            self._problem(
                "replay of %s (%s) did not reach the recorded state" % (self.target.name, self.target.label)
            )
        self.snapshot = (engine, drawn)
        self.message_ids = checks.message_ids(engine)

    def _problem(self, note: str) -> None:
        if note not in self.stats.harness:
            self.stats.harness.append(note)

    def ready(self) -> None:
        if self.engine is not None:
            return
        if self.snapshot is None:
            self._replay()
        started = time.perf_counter()
        self.engine, self.drawn = clone(self.snapshot, {})
        self.stats.clones += 1
        self.stats.clone_seconds += time.perf_counter() - started
        if checks.fingerprint(self.engine, self.drawn) != self.pristine:
            self._problem("a clone of %s differs from the snapshot" % self.target.name)
            self.engine, self.drawn = self.target.scenario.rebuild(self.target)
        self.logs.take()  # what the replay logged is not the input's doing
        self.logs.take_caught()

    def _check_snapshot(self) -> None:
        if checks.fingerprint(*self.snapshot) != self.pristine:
            self._problem("an input changed the snapshot of %s through its clone" % self.target.name)
            self.snapshot = None

    def run(self, datagrams: List[bytes]):
        """Deliver; returns (outcome, crash or None, [(kind, text) of each violation])."""
        self.ready()
        engine, target = self.engine, self.target
        try:
            for data in datagrams:
                engine.receive(data, target.local, target.remote, target.now)
        except Exception as exc:
            self.engine = None
            self._check_snapshot()
            return "crash", ("receive", exc), self._invariants(engine) + self.logs.take()
        caught = self.logs.take_caught()
        if caught:  # the engine survived it, but it is a bug all the same
            self.engine = None
            self._check_snapshot()
            engine.pop_events()
            return "crash", ("receive", caught[0]), self._invariants(engine) + self.logs.take()
        sent = any(isinstance(e, SendDatagram) for e in engine.pop_events())
        if checks.fingerprint(engine, self.drawn) == self.pristine:
            return ("answered" if sent else "dropped"), None, self.logs.take()
        self.engine = None  # changed: a fresh clone for the next input
        self._check_snapshot()
        try:
            problems = self._invariants(engine, raise_tick=True)
        except _TickFailed as failed:
            return "state changed", ("tick", failed.exc), failed.problems + self.logs.take()
        return "state changed", None, problems + self.logs.take()

    def _invariants(self, engine, raise_tick: bool = False):
        """The invariants after an input that changed the state (or raised: what did it leave behind?)."""
        problems = checks.state_invariants(engine, self.message_ids)
        try:
            problems += checks.after_horizon(engine, self.target.now)
        except Exception as exc:
            if raise_tick:
                raise _TickFailed(exc, problems) from exc
            problems.append(("tick_raised_after_a_crash", crash_site(exc)))
        return problems


class _TickFailed(Exception):
    def __init__(self, exc, problems):
        super().__init__(str(exc))
        self.exc, self.problems = exc, problems


def crash_site(exc: BaseException) -> str:
    """Exception type and the innermost frame inside the engine package."""
    frames = traceback.extract_tb(exc.__traceback__)
    inner = [f for f in frames if ENGINE_DIR in f.filename]
    frame = inner[-1] if inner else (frames[-1] if frames else None)
    where = "?"
    if frame is not None:
        path = (
            frame.filename.split(ENGINE_DIR, 1)[-1]
            if ENGINE_DIR in frame.filename
            else os.path.basename(frame.filename)
        )
        where = "pyike/%s:%d in %s" % (path, frame.lineno, frame.name)
    return "%s.%s at %s" % (type(exc).__module__, type(exc).__qualname__, where)


def record(stats: Stats, target: Target, seed: int, index: int, how: str, datagrams: List[bytes], outcome: str,
           crash, problems) -> Tuple[Optional[Finding], List[Finding]]:  # fmt: skip
    stats.inputs += 1
    stats.count(target, outcome)
    data = [d.hex() for d in datagrams]
    where = {"%s (%s receives)" % (target.label, target.role): 1}
    crash_finding = None
    if crash is not None:
        when, exc = crash
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        key = ("Engine.tick after the input: " if when == "tick" else "") + crash_site(exc)
        crash_finding = Finding(
            key, 1, seed, index, target.name, target.label, target.role, how, data, tb, where
        )
        stats.add(stats.crashes, crash_finding)
    findings = []
    for code, text in problems:
        finding = Finding(
            code, 1, seed, index, target.name, target.label, target.role, how, data, text, dict(where)
        )
        stats.add(stats.violations, finding)
        findings.append(finding)
    return crash_finding, findings


def one_input(
    bench: Bench, seed: int, index: int, stats: Stats
) -> Tuple[str, Optional[Finding], List[Finding]]:
    target = bench.target
    try:
        datagrams, how = mutant_of(seed, index, target)
    except Exception:
        bench._problem(
            "the mutator failed on input %d:%d (%s): %s" % (seed, index, target.name, traceback.format_exc())
        )
        return "dropped", None, []
    outcome, crash, problems = bench.run(datagrams)
    crash_finding, findings = record(stats, target, seed, index, how, datagrams, outcome, crash, problems)
    return outcome, crash_finding, findings


# --- workers --------------------------------------------------------------------------------------------


class InputTimeout(Exception):
    """One input kept the engine busy for more than HANG_SECONDS: reported like an exception, as a hang."""


HANG_SECONDS = 30.0


def _alarm(signum, frame):
    raise InputTimeout("one input took more than %.0f s" % HANG_SECONDS)


@contextlib.contextmanager
def _fuzzing():
    """Engine logs watched, cryptography's warnings about the odd certificates of the mutants silenced."""
    with warnings.catch_warnings(), checks.watching_logs():
        warnings.simplefilter("ignore")
        yield


def _work(args) -> Stats:
    previous = signal.signal(signal.SIGALRM, _alarm)
    try:
        with _fuzzing():
            return _work_quietly(*args)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _work_quietly(seed, count, worker, processes, time_limit, progress) -> Stats:
    stats = Stats()
    started = time.perf_counter()
    cpu = time.process_time()
    deadline = started + time_limit if time_limit else None
    last_note = started
    block = worker
    stop = False
    while not stop and block * BLOCK < count:
        target = target_of(seed, block * BLOCK)
        bench = Bench(target, stats)
        for index in range(block * BLOCK, min(count, (block + 1) * BLOCK)):
            signal.setitimer(signal.ITIMER_REAL, HANG_SECONDS)  # a hang is a finding, not the end of the run
            one_input(bench, seed, index, stats)
            signal.setitimer(signal.ITIMER_REAL, 0)
            now = time.perf_counter()
            if deadline is not None and now > deadline:
                stop = True
                break
            if progress and now - last_note > progress:
                last_note = now
                print("fuzz[%d]: %d inputs, %.0f/s, %d crash sites, %d invariant violations"
                      % (worker, stats.inputs, stats.inputs / (now - started), len(stats.crashes),
                         len(stats.violations)), file=sys.stderr, flush=True)  # fmt: skip
        block += processes
    stats.seconds = time.perf_counter() - started
    stats.cpu_seconds = time.process_time() - cpu
    stats.per_process.append((stats.inputs, stats.seconds))
    return stats


def baseline(stats: Stats) -> None:
    """Every original message, unmutated, on its rebuilt engine (index -1: not counted as a fuzz input)."""
    for target in _CORPUS:
        bench = Bench(target, stats)
        outcome, crash, problems = bench.run(target.datagrams)
        record(
            stats,
            target,
            0,
            -1,
            "the original message, unmutated",
            target.datagrams,
            outcome,
            crash,
            problems,
        )


def fuzz(seed: int, count: int, processes: int = 1, time_limit: float = 0.0, progress: float = 0.0,
         scenarios=None) -> Stats:  # fmt: skip
    prepare(scenarios)
    total = Stats()
    first = Stats()
    with _fuzzing():
        baseline(first)  # its replays are not part of the run's figures, its findings are
    for table in ("crashes", "violations"):
        for finding in getattr(first, table).values():
            total.add(getattr(total, table), finding)
    total.harness += first.harness
    started = time.perf_counter()
    jobs = [(seed, count, w, processes, time_limit, progress) for w in range(processes)]
    if processes == 1:
        results = [_work(jobs[0])]
    else:
        with multiprocessing.get_context("fork").Pool(processes) as pool:
            results = pool.map(_work, jobs)
    for result in results:
        total.merge(result)
    total.seconds = time.perf_counter() - started
    return total


# --- reproduction ---------------------------------------------------------------------------------------


def reproduce(seed: int, index: int, scenarios=None) -> Tuple[Stats, str]:
    """Input ``index`` of the run with ``seed`` (and the same ``scenarios``), alone on a rebuilt engine."""
    prepare(scenarios)
    stats = Stats()
    target = target_of(seed, index)
    bench = Bench(target, stats)
    with _fuzzing():
        outcome, _crash, _findings = one_input(bench, seed, index, stats)
    datagrams, how = mutant_of(seed, index, target)
    text = "input %d:%d -> %s (%s), mutant %s\n%s\noutcome: %s" % (
        seed,
        index,
        target.name,
        target.label,
        how,
        ",".join(d.hex() for d in datagrams),
        outcome,
    )
    return stats, text


def replay_hex(target_name: str, hex_datagrams: str, scenarios=None) -> Tuple[Stats, str]:
    prepare(scenarios or [target_name.split("/")[0]])
    stats = Stats()
    (target,) = [t for t in _CORPUS if t.name == target_name]
    bench = Bench(target, stats)
    datagrams = [bytes.fromhex(h) for h in hex_datagrams.split(",")]
    with _fuzzing():
        outcome, crash, problems = bench.run(datagrams)
    record(stats, target, 0, -1, "given as hex", datagrams, outcome, crash, problems)
    lines = ["%s (%s): %s" % (target.name, target.label, outcome)]
    if crash is not None:
        exc = crash[1]
        lines.append("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    lines += ["%s: %s" % problem for problem in problems]
    return stats, "\n".join(lines)


# --- the report -----------------------------------------------------------------------------------------


def report(stats: Stats, seed: int, show_data: bool = True, limit_tb: int = 4000, scenarios=None) -> str:
    only = "".join(" --scenario %s" % name for name in scenarios or ())
    out = []
    rate = ["%.0f" % (n / s) for n, s in stats.per_process if s > 0]
    out.append("fuzz: seed %d, %d inputs in %.1f s on %d process(es); inputs/s per process: %s"
               % (seed, stats.inputs, stats.seconds, len(stats.per_process), ", ".join(rate)))  # fmt: skip
    busy = max(1e-9, sum(s for _n, s in stats.per_process))
    if stats.cpu_seconds:
        out.append("CPU time of the workers: %.1f s (%.0f inputs per CPU second; the rest of the wall time went "
                   "to other processes on this machine)" % (stats.cpu_seconds, stats.inputs / stats.cpu_seconds))  # fmt: skip
    if stats.rebuilds:
        out.append("engine replays (snapshots, one per block of %d inputs): %d, %.2f ms each, %.0f%% of the time"
                   % (BLOCK, stats.rebuilds, 1000 * stats.rebuild_seconds / stats.rebuilds,
                      100 * stats.rebuild_seconds / busy))  # fmt: skip
    if stats.clones:
        out.append("engine clones (after each input that changed the state): %d, %.2f ms each, %.0f%% of the time"
                   % (stats.clones, 1000 * stats.clone_seconds / stats.clones, 100 * stats.clone_seconds / busy))  # fmt: skip
    totals = collections.Counter()
    for row in stats.by_kind.values():
        totals.update(row)
    out.append("outcomes: " + ", ".join("%s %d" % (o, totals[o]) for o in OUTCOMES))
    out.append("")
    heading = ("message kind", "role", "dropped", "answered", "changed", "crash", "total")
    out.append("%-78s %-9s %8s %8s %8s %8s %6s" % heading)
    for (label, role), row in sorted(stats.by_kind.items()):
        if not sum(row.values()):
            continue
        out.append("%-78s %-9s %8d %8d %8d %8d %6d" % (label[:78], role, row["dropped"], row["answered"],
                   row["state changed"], row["crash"], sum(row.values())))  # fmt: skip
    for title, table in (("crash sites (exceptions escaping Engine)", stats.crashes),
                         ("invariant violations", stats.violations)):  # fmt: skip
        out.append("")
        out.append("%s: %d distinct" % (title, len(table)))
        for finding in sorted(table.values(), key=lambda f: -f.count):
            out.append("- %s  [%d inputs]" % (finding.key, finding.count))
            kinds = sorted(finding.where.items(), key=lambda item: -item[1])
            out.append("  seen on: " + "; ".join("%s x%d" % item for item in kinds[:6])
                       + (" and %d more kinds" % (len(kinds) - 6) if len(kinds) > 6 else ""))  # fmt: skip
            out.append("  first: seed %d index %d -> %s (%s, %s receives), mutant %s"
                       % (finding.seed, finding.index, finding.target, finding.label, finding.role, finding.how))  # fmt: skip
            if finding.index >= 0:
                out.append("  reproduce: python -m fuzz --reproduce %d:%d%s  (or: python -m fuzz --target %s --hex INPUT)"
                           % (finding.seed, finding.index, only, finding.target))  # fmt: skip
            else:
                out.append("  reproduce: python -m fuzz --target %s --hex INPUT" % finding.target)
            if show_data:
                out.append("  INPUT (hex, datagrams separated by commas): " + ",".join(finding.data))
            detail = finding.detail if len(finding.detail) <= limit_tb else "..." + finding.detail[-limit_tb:]
            out.append("  " + detail.rstrip().replace("\n", "\n  "))
    if stats.harness:
        out.append("")
        out.append("harness problems (replay or baseline): %d" % len(stats.harness))
        out += ["- " + h for h in stats.harness]
    return "\n".join(out)


def failed(stats: Stats) -> bool:
    return bool(stats.crashes or stats.violations or stats.harness)
