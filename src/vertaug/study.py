"""The study chain: one level, both procedures, each followed by its exotherm and its voxel-FE state.

This is the ONE place that chains the physics (``vertaug compare``/``demo``, the cohort tasks and the validation cases
all call it)::

    Vertebra (pre-treatment model)
      +-- mechanics of the untreated level ------------------------------------------> Study.pre_mechanics
      +-- run_procedure(model, Vertebroplasty)  : outcome -> exotherm -> FE state ---> Study.vp (ProcedureRun)
      +-- run_procedure(model, Kyphoplasty)     : outcome -> exotherm -> FE state ---> Study.kp (ProcedureRun)

A procedure is any frozen plan that :func:`procedure_runner` knows (a new procedure plugs in there). Every result is a
frozen dataclass with its metrics as fields (units in the names); ``to_dict()`` gives JSON. A physics stage that cannot
run on this model for a reason of the input (an :class:`~vertaug.errors.InputError`, e.g. no load path for the FE) is
recorded as a note and the chain goes on; any other failure raises.

``workers=2`` runs the kyphoplasty chain in a second process (:func:`worker_pool`) while this one runs the vertebroplasty chain and
the untreated FE state: the same results (each chain is deterministic and independent), in about the time of the
longer chain on a machine with two free cores. On a caller's pool of two or more workers (the report's, which queues
its parameter samples behind the study) both chains and the untreated FE state go to the pool, and this process only
draws the caller's figures meanwhile: it has the report's figures to draw after the chains, so the pool's workers
carry the physics to the end and this process the drawing, instead of the workers idling while it draws alone.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import InputError, check_range

__all__ = ["ProcedureRun", "Study", "fe_state", "one_blas_thread", "pid_alive", "procedure_runner", "run_procedure", "run_procedure_kept",
           "run_study", "seeded_global_rng", "stage_timer", "start_worker_server", "worker_pool"]

#: Seed of numpy's global random state while a chain runs: pyamg draws the start vectors of its spectral-radius
#: estimates from it (pyamg.util.linalg.approximate_spectral_radius), which moved results in the 10th digit between
#: two runs. Seeding it around each chain makes the same inputs give the same bytes, whatever ran before.
GLOBAL_RNG_SEED = 0


@contextmanager
def stage_timer(timings_s: dict[str, float], name: str) -> Iterator[None]:
    """``with stage_timer(timings, "model"): ...`` stores the block's wall time (s) in ``timings[name]``."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        timings_s[name] = time.perf_counter() - t0


@contextmanager
def seeded_global_rng(seed: int = GLOBAL_RNG_SEED) -> Iterator[None]:
    """numpy's global random state seeded for the block, the caller's state restored after it."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """BLAS (OpenBLAS, MKL, BLIS) on one thread for the block, the caller's setting restored after it.

    The chain's solvers are memory-bound stencil and vector passes; a second BLAS thread only waits for a core. Measured
    on the 2-core machine with the other core busy: scipy's saxpy on 3e4 float32 entries 0.56 ms with OpenBLAS's two
    threads against 6 us on one, and a one-process demo profile 256 s instead of 156 s CPU. The command line and the
    cohort workers already start with OPENBLAS_NUM_THREADS=1; this gives the same to a caller of the Python API.
    Entering costs ~0.6 ms (threadpoolctl looks the libraries up), so it wraps whole chain stages, not solver calls.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


@dataclass(frozen=True, eq=False)
class ProcedureRun:
    """One procedure on one model: the plan, what it did (Outcome), its exotherm and its FE state (None if not run)."""

    name: str  # "VP" or "KP"
    plan: Any
    outcome: Any  # procedures.outcome.Outcome
    exotherm: Any = None  # procedures.exotherm.ExothermSummary
    mechanics: Any = None  # procedures.stiffness.MechanicsState
    timings_s: dict[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)
class Study:
    """Both procedures on the same pre-treatment model, with the untreated FE state."""

    pre: Any  # model.vertebra.Vertebra
    vp: ProcedureRun
    kp: ProcedureRun
    pre_mechanics: Any = None  # procedures.stiffness.MechanicsState
    trajectories: dict = field(default_factory=dict)  # approach -> planned cannula paths
    timings_s: dict[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def runs(self) -> dict[str, ProcedureRun]:
        return {"VP": self.vp, "KP": self.kp}

    def mechanics_states(self) -> dict[str, Any]:
        """{"pre-treatment": MechanicsState, "VP": ..., "KP": ...} for the states that were solved."""
        states = {"pre-treatment": self.pre_mechanics, "VP": self.vp.mechanics, "KP": self.kp.mechanics}
        return {k: v for k, v in states.items() if v is not None}


def procedure_runner(plan) -> tuple[str, Callable]:
    """(short name, ``run(model, plan, trajectories=...) -> Outcome``) of a plan: where a new procedure plugs in."""
    from .procedures.kyphoplasty import Kyphoplasty, run_kyphoplasty
    from .procedures.vertebroplasty import Vertebroplasty, run_vertebroplasty

    if isinstance(plan, Vertebroplasty):
        return "VP", run_vertebroplasty
    if isinstance(plan, Kyphoplasty):
        return "KP", run_kyphoplasty
    raise TypeError(f"no procedure runs a plan of type {type(plan).__name__}")


def fe_state(model, cement_fraction, what: str, notes: list[str]):
    """FE state of a model and its cement (``cement_fraction`` per voxel, None: untreated), or None and a note
    appended to ``notes`` when the input gives the FE no load path (the chain's FE stage, callable on its own)."""
    from .procedures.stiffness import state_mechanics

    try:
        return state_mechanics(model, cement_fraction)
    except InputError as exc:
        notes.append(f"mechanics not computed for {what}: {exc}")
        return None


def run_procedure(model, plan, trajectories=None, thermal: bool = True, mechanics: bool = True,
                  progress: Callable[[str], None] | None = None) -> ProcedureRun:
    """Run ``plan`` on ``model``, then (``thermal``) its exotherm and (``mechanics``) the FE state of the result.

    Module-level and free of console objects so that it runs in a worker process (``progress``: a callable taking a
    stage description, or None).
    """
    name, run = procedure_runner(plan)
    say = progress or (lambda _msg: None)
    timings: dict[str, float] = {}
    notes: list[str] = []
    with seeded_global_rng(), one_blas_thread():
        say(f"{name}: {type(plan).__name__.lower()}")
        with stage_timer(timings, type(plan).__name__.lower()):
            outcome = run(model, plan, trajectories=trajectories)
        exotherm = state = None
        if thermal:
            from .procedures.exotherm import exotherm_after

            say(f"{name}: cement exotherm and thermal damage")
            with stage_timer(timings, f"exotherm_{name}"):
                exotherm = exotherm_after(outcome)
            notes.extend(f"{name} exotherm: {n}" for n in exotherm.notes)
        if mechanics:
            say(f"{name}: voxel FE stiffness and strength")
            with stage_timer(timings, f"mechanics_{name}"):
                state = fe_state(outcome.model_after, outcome.cement_fraction, name, notes)
    return ProcedureRun(name, plan, outcome, exotherm, state, timings, tuple(notes))


def run_procedure_kept(kept: dict, *args, **kwargs) -> ProcedureRun:
    """:func:`run_procedure` in another process, with the model's own heights measured in this one (``kept``:
    model.heights.kept_heights) kept there first: the worker does not measure the untreated model again."""
    from .model.heights import keep_heights

    keep_heights(kept)
    return run_procedure(*args, **kwargs)


def pre_treatment_mechanics(model, timings_s: dict | None = None, notes: list[str] | None = None):
    """The FE state of the untreated model (None and a note when the FE cannot run on it)."""
    timings_s = {} if timings_s is None else timings_s
    with seeded_global_rng(), one_blas_thread(), stage_timer(timings_s, "mechanics_pre-treatment"):
        return fe_state(model, None, "pre-treatment", [] if notes is None else notes)


def pre_treatment_job(model) -> tuple[Any, dict[str, float], list[str]]:
    """:func:`pre_treatment_mechanics` in a worker process: (state, its timings, its notes)."""
    timings: dict[str, float] = {}
    notes: list[str] = []
    return pre_treatment_mechanics(model, timings, notes), timings, notes


def _pool_processes(pool) -> int:
    """How many worker processes ``pool`` (a multiprocessing pool of :func:`worker_pool`) has."""
    return int(getattr(pool, "_processes", 1))


#: Modules the worker processes need (the procedure chains, the report's sample chains): imported once in the fork
#: server, which forks each worker with them loaded (spawn imported them in every worker: ~0.9 s CPU each).
WORKER_MODULES = ("vertaug.study", "vertaug.procedures.exotherm", "vertaug.procedures.kyphoplasty",
                  "vertaug.procedures.stiffness", "vertaug.procedures.vertebroplasty", "vertaug.report.sampling",
                  "vertaug.report.compare")


def _worker_context():
    """The start method of the worker processes: a fork server with :data:`WORKER_MODULES` preloaded where the
    platform has one (Linux, macOS), else spawn. Either starts its workers from a fresh interpreter, not from a copy
    of this process's threads and state."""
    import multiprocessing

    if "forkserver" not in multiprocessing.get_all_start_methods():  # pragma: no cover - Windows
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(list(WORKER_MODULES))
    return ctx


def start_worker_server() -> None:
    """Start the fork server of :func:`worker_pool` now, so that it imports :data:`WORKER_MODULES` while this process
    works on (the demo's virtual fracture, the report's morphometry and model) and the pool's workers start at once
    later; nothing where workers are spawned."""
    if _worker_context().get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()


@contextmanager
def worker_pool(processes: int):
    """A pool of ``processes`` worker processes (None when ``processes`` < 1; :func:`_worker_context`), started at
    once so that its workers are ready while this process works; terminated on the way out, whatever happens. One
    pool can carry the KP chain of :func:`run_study` and the report's parameter samples
    (report.sampling.submit_samples)."""
    if processes < 1:
        yield None
        return
    pool = _worker_context().Pool(processes, initializer=_die_with_parent, initargs=(os.getpid(),))
    try:
        for _ in range(processes):
            pool.apply_async(_warm_up)
        yield pool
    finally:
        pool.terminate()
        pool.join()


@contextmanager
def _second_process(workers: int, pool=None):
    """``pool`` when given; else a one-process pool when ``workers >= 2`` (else None)."""
    if pool is not None:
        yield pool
        return
    with worker_pool(1 if workers >= 2 else 0) as own:
        yield own


def _die_with_parent(parent_pid: int) -> None:
    """Linux: the kernel sends SIGKILL to this process when its parent dies, even by SIGKILL (prctl
    PR_SET_PDEATHSIG); elsewhere nothing. ``parent_pid``: the process that started the pool; a worker forked by the
    fork server is the server's child, and the server exits when that process is gone (its pipe closes), so the
    rule reaches the worker through it. A process ``parent_pid`` already gone (the race before prctl) ends this
    process at once."""
    import ctypes
    import signal
    import sys

    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
        except OSError:  # pragma: no cover - no glibc
            return
        if os.getppid() != parent_pid and not pid_alive(parent_pid):
            os._exit(1)


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (it may belong to another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _warm_up() -> None:
    """Import the physics of the procedure chains (runs first in the second process)."""
    from .procedures import exotherm, kyphoplasty, stiffness, vertebroplasty  # noqa: F401


def plan_study_trajectories(model, vp, kp, timings_s: dict | None = None) -> dict:
    """{approach: cannula paths} for the approaches of both plans (planned once, shared)."""
    from .model.trajectory import plan_trajectories

    timings_s = {} if timings_s is None else timings_s
    out = {}
    for approach in dict.fromkeys((vp.approach, kp.approach)):
        with stage_timer(timings_s, f"trajectory_{approach}"):
            out[approach] = plan_trajectories(model, approach=approach)
    return out


def _queue_chains(pool, model, vp, kp, tr: dict, thermal: bool, mechanics: bool, queued: Callable | None) -> dict:
    """Queue the study's work on ``pool``: the KP chain and, on a pool of two or more workers, the VP chain and the
    untreated FE state too (this process then draws the caller's ``during`` work and waits: it has the report's
    figures to draw after the chains, while the workers go on with ``queued`` work); then ``queued(pool)``.
    Returns {"KP"/"VP"/"pre": AsyncResult} of what was queued."""
    from .model.heights import kept_heights

    kept = kept_heights(model)
    jobs = {"KP": pool.apply_async(run_procedure_kept, (kept, model, kp, tr[kp.approach], thermal, mechanics))}
    if _pool_processes(pool) >= 2:
        jobs["VP"] = pool.apply_async(run_procedure_kept, (kept, model, vp, tr[vp.approach], thermal, mechanics))
        if mechanics:
            jobs["pre"] = pool.apply_async(pre_treatment_job, (model,))
    if queued is not None:
        queued(pool)
    return jobs


def run_study(model, vp=None, kp=None, thermal: bool = True, mechanics: bool = True, workers: int = 1,
              trajectories: dict | None = None, progress: Callable[[str], None] | None = None,
              during: Callable[[], None] | None = None, pool=None, queued: Callable | None = None) -> Study:
    """Both procedures on ``model`` (a pre-treatment Vertebra), with exotherms and FE states.

    ``workers``: 1 (serial) or 2 (the KP chain in a second process). ``during``: work of the caller's (figures, say)
    run in this process while the chains run in the pool's processes (serial: between the two chains). ``trajectories``:
    {approach: paths} planned beforehand, else planned here. ``pool``: a :func:`worker_pool` of the caller's that runs
    the KP chain (whatever ``workers`` says) and, when it has two or more workers, the VP chain and the untreated FE
    state as well (:func:`_queue_chains`); ``queued(pool)`` is called once the study's work is queued on it, to queue
    more work behind it (the report's parameter samples). Same results wherever a chain runs.
    """
    from .procedures.kyphoplasty import Kyphoplasty
    from .procedures.vertebroplasty import Vertebroplasty

    workers = int(check_range("workers", workers, 1, 2, "", "1 (serial) or 2 (VP and KP chains side by side)."))
    vp, kp = vp or Vertebroplasty(), kp or Kyphoplasty()
    timings: dict[str, float] = {}
    notes: list[str] = []
    t0 = time.perf_counter()
    tr = trajectories if trajectories is not None else plan_study_trajectories(model, vp, kp, timings)
    with _second_process(workers, pool) as pool:
        jobs = _queue_chains(pool, model, vp, kp, tr, thermal, mechanics, queued) if pool is not None else {}
        vp_run = None if "VP" in jobs else run_procedure(model, vp, tr[vp.approach], thermal, mechanics, progress)
        pre_state = pre_treatment_mechanics(model, timings, notes) if mechanics and "pre" not in jobs else None
        if during is not None:
            during()
        if jobs and progress:
            progress(f"{' and '.join(sorted(set(jobs) - {'pre'}))} chain(s) in worker processes: fill, exotherm, FE")
        if "pre" in jobs:
            pre_state, pre_timings, pre_notes = jobs["pre"].get()
            timings.update(pre_timings)
            notes.extend(pre_notes)
        if "VP" in jobs:
            vp_run = jobs["VP"].get()
        kp_run = jobs["KP"].get() if "KP" in jobs else run_procedure(model, kp, tr[kp.approach], thermal, mechanics,
                                                                     progress)
    for run in (vp_run, kp_run):
        timings.update(run.timings_s)
        notes.extend(run.notes)
    timings["study_wall"] = time.perf_counter() - t0
    return Study(model, vp_run, kp_run, pre_state, tr, timings, tuple(notes))
