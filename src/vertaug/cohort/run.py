"""Run a cohort: every (case, sample) of a manifest as one Dask task, results written as Parquet as tasks finish.

Layout of the output folder ``OUT``::

    OUT/cohort.json            the run settings (samples, seed, task, inputs, vertaug version); a re-run must match
    OUT/parts/<key>.parquet    one file per finished task, key = <case_id>__s<sample:05d>; written by the client
                               to a temporary name and renamed (atomic on POSIX), so a file is either whole or absent
    OUT/results.parquet        all parts in one table, rewritten at the end of every run

Resuming: a task whose part file exists is not submitted again (whether it succeeded or was recorded as failed; pass
``retry_failed=True`` to run recorded failures again). A task that never returned (its worker died more often than
Dask's ``allowed-failures``, or the run was interrupted) writes nothing and is submitted again by the next run.
Because only the client writes, and it writes each future's result once under the task's own name, a worker killed
mid-task costs a recomputation but never a lost or duplicated row.

The per-task function (``task_fn``) is the hook where ``compare()`` plugs in::

    task_fn(case: Case, sample: dict) -> list[dict] | dict

``sample`` holds ``sample`` (index) and the uncertain inputs of :mod:`vertaug.cohort.sampling`. Each returned dict is
one row and must hold ``procedure`` (e.g. ``"VP"``/``"KP"``; the default task returns one ``"pre"`` row) and scalar
metrics named as the Outcome summary (``injected_ml``, ``leaked_ml``, ``leaked_ml_B``..., ``leak_fraction``,
``height_anterior_mm``...). The runner adds the keys, the sampled inputs, ``status``, ``error_type``, ``error``,
``elapsed_s`` (wall), ``cpu_s`` (CPU time of the worker process), ``worker_pid``, ``host``, ``seed`` and
``vertaug_version``. An :class:`InputError` (or any other
exception) raised by ``task_fn`` becomes one row with ``status='failed'``, ``procedure=None`` and its message; the
other tasks go on. ``task_fn`` must be picklable (a module-level function) to travel to the workers.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import traceback
import uuid
import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import FileFormatError, InputError, ParameterError, check_range
from .manifest import Case, read_manifest
from .sampling import INPUT_NAMES, UNCERTAIN_INPUTS, case_samples

__all__ = [
    "CONFIG_FILE",
    "PARTS_DIR",
    "RESULTS_FILE",
    "CohortRun",
    "Task",
    "case_vertebra",
    "default_task",
    "execute_task",
    "finished_keys",
    "load_results",
    "local_cluster",
    "make_tasks",
    "resolve_task",
    "run_cohort",
]

RESULTS_FILE = "results.parquet"
PARTS_DIR = "parts"
CONFIG_FILE = "cohort.json"
#: Most samples per case: each sample is one model run (seconds to minutes), so 1e5 is already weeks of CPU; the
#: samples' table is built up front (a 1e9 request would allocate ~45 GiB before any work).
MAX_SAMPLES = 100_000
#: Seconds to wait for a Dask scheduler given by address before giving up with a one-line error.
SCHEDULER_TIMEOUT_S = 10.0
#: Suffix given to a part file that cannot be read (its task is run again; the file is kept for inspection).
CORRUPT_SUFFIX = ".corrupt"
#: Columns kept as integers; every other number is written as float64 so part files share one schema.
INT_COLUMNS = frozenset({"sample", "seed", "worker_pid", "genant_grade"})
#: Models kept per worker process, so the samples of one case build its model once.
MODEL_CACHE_SIZE = 4

TaskFn = Callable[[Case, dict], "list[dict] | dict"]


@dataclass(frozen=True)
class Task:
    """One (case, sample) unit of work."""

    case: Case
    sample: dict
    seed: int

    @property
    def key(self) -> str:
        return task_key(self.case.case_id, self.sample["sample"])


def task_key(case_id: str, sample: int) -> str:
    return f"{case_id}__s{int(sample):05d}"


@dataclass(frozen=True)
class CohortRun:
    """What one call of :func:`run_cohort` did. Counts are tasks (a task writes one or more rows)."""

    out_dir: Path
    n_tasks: int
    n_skipped: int
    n_written: int
    n_failed: int
    n_lost: int
    elapsed_s: float
    results_path: Path | None
    scheduler: str

    @property
    def tasks_per_min(self) -> float:
        return 60.0 * self.n_written / self.elapsed_s if self.elapsed_s > 0 else float("nan")


# --------------------------------------------------------------------------------------------------- default task

_MODEL_CACHE: OrderedDict = OrderedDict()


def _case_cache_key(case: Case) -> str:
    return json.dumps([case.case_id, case.level, case.ct, case.seg, case.body, case.numbering, case.phantom,
                       case.spacing_mm], sort_keys=True, default=str)


def case_vertebra(case: Case):
    """The pre-treatment :class:`~vertaug.model.vertebra.Vertebra` of a case (cached per worker process).

    Phantom cases: ``vertebra_from_phantom(make_phantom(**case.phantom))``; CT cases: ``load_ct``, ``load_labels``
    (checked on the CT grid) and ``vertebra_from_ct`` (which measures the level with ``measure_volumes``).
    """
    key = _case_cache_key(case)
    if key in _MODEL_CACHE:
        _MODEL_CACHE.move_to_end(key)
        return _MODEL_CACHE[key]
    from ..model.vertebra import vertebra_from_ct, vertebra_from_phantom

    if case.is_phantom:
        from ..anatomy.phantom import make_phantom

        v = vertebra_from_phantom(make_phantom(**case.phantom), spacing_mm=case.spacing_mm)
    else:
        from ..anatomy.io import load_ct, load_labels

        ct = load_ct(case.ct)
        seg = load_labels(case.seg, reference=ct, what="segmentation")
        body = load_labels(case.body, reference=ct, what="vertebrae_body map") if case.body else None
        v = vertebra_from_ct(ct, seg, case.level, body=body, numbering=case.numbering,
                             spacing_mm=case.spacing_mm or 1.0)
    _MODEL_CACHE[key] = v
    while len(_MODEL_CACHE) > MODEL_CACHE_SIZE:
        _MODEL_CACHE.popitem(last=False)
    return v


def _mean(x: np.ndarray) -> float:
    return float(np.mean(x, dtype=np.float64)) if x.size else float("nan")


def default_task(case: Case, sample: dict) -> list[dict]:
    """The task run until ``compare()`` exists: the pre-treatment model of the case under the sampled inputs.

    One row, ``procedure='pre'``: morphometry of the level (heights, wedge angle, Genant grade and type), the model's
    body volume, and the trabecular material fields recomputed with the sampled BMD calibration slope
    (``BMD = slope * HU``) and scaled by the sampled permeability factor (``k = scale * k(BV/TV)``).
    """
    from ..model.labels import DEFECT, TRABECULAR, VEINS
    from ..model.materials import Calibration, material_maps

    v = case_vertebra(case)
    m = v.morphometry
    cal = Calibration(0.0, float(sample["bmd_slope_mg_cm3_per_hu"]), source="cohort sample")
    mats = material_maps(v.hu, v.labels, calibration=cal, modulus_law=v.materials.modulus_law,
                         voxel_size_m=v.spacing_m[0], vein_lumen=v.materials.vein_lumen)
    trab = v.labels == TRABECULAR
    k = mats.permeability_m2[trab].astype(np.float64) * float(sample["permeability_scale"])
    exits = np.isin(v.labels, (*VEINS, DEFECT))
    row = {
        "procedure": "pre",
        "height_anterior_mm": m.height_anterior_mm if m else float("nan"),
        "height_middle_mm": m.height_middle_mm if m else float("nan"),
        "height_posterior_mm": m.height_posterior_mm if m else float("nan"),
        "wedge_angle_deg": m.wedge_angle_deg if m else float("nan"),
        "genant_grade": m.genant_grade if m else None,
        "genant_type": m.genant_type if m else None,
        "body_volume_ml": v.body_volume_ml,
        "trabecular_volume_ml": float(trab.sum()) * v.voxel_volume_m3 * 1e6,
        "exit_volume_ml": float(exits.sum()) * v.voxel_volume_m3 * 1e6,
        "hu_trabecular_mean": _mean(v.hu[trab]),
        "bmd_trabecular_mg_cm3_mean": _mean(mats.bmd_mg_cm3[trab]),
        "bvtv_trabecular_mean": _mean(mats.bvtv[trab]),
        "permeability_trabecular_m2_mean": _mean(k),
        "permeability_trabecular_m2_geomean": float(np.exp(np.mean(np.log(k)))) if k.size else float("nan"),
        "modulus_trabecular_pa_mean": _mean(mats.E_pa[trab]),
        "yield_trabecular_pa_mean": _mean(mats.yield_pa[trab]),
    }
    return [row]


def resolve_task(spec: str | None) -> TaskFn:
    """``'package.module:function'`` -> that function (``None`` or ``'default'``: :func:`default_task`)."""
    if spec in (None, "", "default"):
        return default_task
    import importlib

    module, sep, name = spec.partition(":")
    try:
        if not sep:
            raise ValueError(spec)
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        raise ParameterError(f"Task {spec!r} cannot be imported.",
                             "give it as 'package.module:function', importable on the client and every worker.") from None
    if not callable(fn):
        raise ParameterError(f"Task {spec!r} is not a function.", "give a function task_fn(case, sample) -> rows.")
    return fn


# ------------------------------------------------------------------------------------------------ task execution


def _scalar(key: str, value):
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        return int(value) if key in INT_COLUMNS else float(value)
    raise TypeError(f"task_fn returned {key}={value!r} ({type(value).__name__}); rows must hold scalars "
                    "(number, str, bool or None).")


def _failure(exc: BaseException) -> dict:
    msg = str(exc)
    if not isinstance(exc, InputError):
        tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
        msg = f"{msg}\n{''.join(tb[-3:])}"[:4000]
    return {"procedure": None, "status": "failed", "error_type": type(exc).__name__, "error": msg}


def execute_task(task_fn: TaskFn, task: Task) -> list[dict]:
    """Run ``task_fn`` on one task and return its rows with keys, inputs and bookkeeping (runs on the worker)."""
    t0, c0 = time.perf_counter(), time.process_time()
    base = {"case_id": task.case.case_id, "sample": int(task.sample["sample"]), "level": task.case.level}
    base.update({n: task.sample[n] for n in INPUT_NAMES})
    try:
        out = task_fn(task.case, dict(task.sample))
        rows = [out] if isinstance(out, dict) else list(out)
        if not rows:
            raise TypeError("task_fn returned no rows; return a list with one dict per procedure.")
        clean = []
        for r in rows:
            if not isinstance(r, dict) or not isinstance(r.get("procedure"), str):
                raise TypeError("task_fn must return dicts that each hold a 'procedure' name (str).")
            clash = set(r) & (set(base) | {"status", "error", "error_type"})
            if clash:
                raise TypeError(f"task_fn rows must not set {sorted(clash)}: the runner fills them in.")
            clean.append({"status": "ok", "error_type": None, "error": None,
                          **{k: _scalar(k, v) for k, v in r.items()}})
    except Exception as exc:  # noqa: BLE001 - a failed case is recorded, the cohort goes on
        clean = [_failure(exc)]
    info = {"elapsed_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0, "worker_pid": os.getpid(),
            "host": socket.gethostname(), "seed": int(task.seed),
            "vertaug_version": __version__}
    return [{**base, **r, **info} for r in clean]


# --------------------------------------------------------------------------------------------- output and resume


def _parts_dir(out_dir: Path) -> Path:
    return Path(out_dir) / PARTS_DIR


def _readable_part(path: Path) -> bool:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pq.read_metadata(path)
    except (OSError, pa.ArrowException):
        return False
    return True


def quarantine_corrupt_parts(out_dir: str | Path) -> list[Path]:
    """Rename part files that are not readable Parquet to ``*.parquet.corrupt`` (their tasks run again); the list."""
    parts = _parts_dir(Path(out_dir))
    moved = []
    for p in sorted(parts.glob("*.parquet")) if parts.is_dir() else []:
        if not _readable_part(p):
            target = p.with_name(p.name + CORRUPT_SUFFIX)
            os.replace(p, target)
            moved.append(target)
    return moved


def finished_keys(out_dir: str | Path, include_failed: bool = True) -> set[str]:
    """Keys of the tasks that have a part file in ``out_dir`` (optionally only the successful ones)."""
    parts = _parts_dir(Path(out_dir))
    if not parts.is_dir():
        return set()
    keys = {p.name[: -len(".parquet")] for p in parts.glob("*.parquet")}
    if include_failed:
        return keys
    import pyarrow.parquet as pq

    ok = set()
    for k in keys:
        status = pq.read_table(parts / f"{k}.parquet", columns=["status"]).column("status").to_pylist()
        if all(s == "ok" for s in status):
            ok.add(k)
    return ok


def _write_part(out_dir: Path, key: str, rows: list[dict]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    parts = _parts_dir(out_dir)
    final = parts / f"{key}.parquet"
    tmp = parts / f".{key}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    pq.write_table(pa.Table.from_pylist(rows), tmp)
    os.replace(tmp, final)  # atomic: readers see the whole file or none
    return final


def load_results(out_dir: str | Path):
    """All rows written so far (the part files), as one ``pyarrow.Table`` sorted by case, sample, procedure."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    parts = [p for p in sorted(_parts_dir(Path(out_dir)).glob("*.parquet")) if _readable_part(p)]
    if not parts:
        raise InputError(f"No cohort results in '{out_dir}'.", "run `vertaug cohort MANIFEST --out DIR` first.")
    table = pa.concat_tables([pq.read_table(p) for p in parts], promote_options="permissive")
    order = sorted(range(table.num_rows), key=lambda i: (
        table.column("case_id")[i].as_py(), table.column("sample")[i].as_py(),
        table.column("procedure")[i].as_py() or ""))
    return table.take(order)


def _consolidate(out_dir: Path) -> Path | None:
    import pyarrow.parquet as pq

    try:
        table = load_results(out_dir)
    except InputError:
        return None
    final = out_dir / RESULTS_FILE
    tmp = out_dir / f".{RESULTS_FILE}.{uuid.uuid4().hex[:8]}.tmp"
    pq.write_table(table, tmp)
    os.replace(tmp, final)
    return final


def _task_name(task_fn: TaskFn) -> str:
    import functools

    if isinstance(task_fn, functools.partial):
        return f"{_task_name(task_fn.func)}(*{task_fn.args!r}, **{task_fn.keywords!r})"
    return f"{getattr(task_fn, '__module__', '?')}.{getattr(task_fn, '__qualname__', repr(task_fn))}"


def _check_config(out_dir: Path, config: dict) -> None:
    path = out_dir / CONFIG_FILE
    if path.exists():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            old = exc
        if not isinstance(old, dict):
            why = old if isinstance(old, Exception) else "not a JSON object"
            raise FileFormatError(
                f"'{path}' is not a readable cohort settings file ({why}), so it is unknown whether the parts in "
                "this folder match this run.",
                f"if the parts were written with --samples {config['samples']} --seed {config['seed']}, delete "
                f"'{path}' and re-run (it is rewritten); otherwise give a new --out folder.")
        for k in ("samples", "seed", "task"):
            if old.get(k) != config[k]:
                raise ParameterError(
                    f"The output folder '{out_dir}' holds a cohort run with {k}={old.get(k)!r}, not {config[k]!r}; "
                    "resuming it with other settings would mix incompatible samples.",
                    f"re-run with the same {k}, or give a new --out folder.")
    else:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(config, indent=2))
        os.replace(tmp, path)


def make_tasks(cases: list[Case], samples: int, seed: int) -> list[Task]:
    """All (case, sample) tasks, with each case's Latin hypercube samples (see sampling.case_samples)."""
    return [Task(c, s, int(seed)) for c in cases for s in case_samples(c.case_id, samples, seed, c.fixed)]


# ------------------------------------------------------------------------------------------------------ the run


def _progress(enabled: bool, total: int, console=None):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn("cohort"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
                    TimeElapsedColumn(), TimeRemainingColumn(), disable=not enabled, console=console,
                    transient=False)


def local_cluster(n_workers: int | None = None, keep_malloc_trim: bool = False):
    """``(client, cluster)``: a loopback ``LocalCluster`` of single-threaded worker processes (default: one per core
    this process may use).

    Workers get one BLAS thread each (Dask's default). Dask also sets ``MALLOC_TRIM_THRESHOLD_=65536`` in the workers'
    environment (and, to do so, in this process's); setting it disables glibc's dynamic mmap threshold, so every
    numpy temporary above 128 KiB is mmapped and page-faulted afresh: a loop of 160 x 160 dense solves took 2-3x the
    CPU time here (docs/cohort.md). Unless ``keep_malloc_trim``, it is removed from the workers' environment and from
    this process's (where only an earlier Dask cluster would have put it).

    The worker processes die with this process, even by SIGKILL (:class:`vertaug.cohort.worker.DieWithClient`).
    """
    import dask
    from distributed import Client, LocalCluster

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    n = int(n_workers or cores or 1)
    env = {}
    if not keep_malloc_trim:
        os.environ.pop("MALLOC_TRIM_THRESHOLD_", None)
        env = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}
    with dask.config.set(env):
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address=None, silence_logs=logging.ERROR)
    client = Client(cluster)
    from .worker import DieWithClient

    client.register_plugin(DieWithClient(os.getpid()))
    return client, cluster


def run_cohort(
    manifest: str | Path | list[Case],
    out_dir: str | Path,
    samples: int = 10,
    seed: int = 0,
    task_fn: TaskFn = default_task,
    scheduler: str | None = None,
    n_workers: int | None = None,
    client=None,
    retry_failed: bool = False,
    progress: bool = True,
    console=None,
) -> CohortRun:
    """Run every (case, sample) of ``manifest`` through ``task_fn`` and write the rows under ``out_dir``.

    Scheduler: an existing ``distributed.Client`` (``client=``), the address of a running Dask scheduler
    (``scheduler='tcp://host:8786'``), ``scheduler='serial'`` (in this process, no Dask; for debugging), or by
    default a ``LocalCluster`` of ``n_workers`` single-threaded worker processes (default: one per CPU core).
    Re-running with the same ``out_dir``, ``samples``, ``seed`` and ``task_fn`` runs only the missing tasks.
    """
    t0 = time.perf_counter()
    samples = int(check_range("samples", samples, 1, MAX_SAMPLES, "",
                              f"give --samples between 1 and {MAX_SAMPLES} (each sample is one model run)."))
    cases = manifest if isinstance(manifest, list) else read_manifest(manifest)
    if scheduler and scheduler != "serial" and client is None:
        _check_scheduler_address(scheduler)
    out_dir = Path(out_dir)
    _parts_dir(out_dir).mkdir(parents=True, exist_ok=True)
    config = {"samples": samples, "seed": int(seed), "task": _task_name(task_fn), "vertaug_version": __version__,
              "manifest": None if isinstance(manifest, list) else str(Path(manifest).resolve()),
              "inputs": {p.name: {"kind": p.kind, "low": p.low, "high": p.high, "options": list(p.options),
                                  "source": p.source} for p in UNCERTAIN_INPUTS}}
    _check_config(out_dir, config)
    tasks = make_tasks(cases, samples, seed)
    for bad in quarantine_corrupt_parts(out_dir):
        msg = f"note: unreadable part file renamed to {bad.name}; its task runs again."
        console.print(msg, markup=False) if console is not None else warnings.warn(msg, stacklevel=2)
    done = finished_keys(out_dir, include_failed=not retry_failed)
    todo = [t for t in tasks if t.key not in done]
    counts = {"written": 0, "failed": 0, "lost": 0}

    def record(key: str, rows: list[dict]) -> None:
        _write_part(out_dir, key, rows)
        counts["written"] += 1
        counts["failed"] += any(r["status"] == "failed" for r in rows)

    label = "serial"
    with _progress(progress, len(todo), console) as bar:
        job = bar.add_task("cohort", total=len(todo), status="")
        if todo and scheduler == "serial":
            for t in todo:
                record(t.key, execute_task(task_fn, t))
                bar.update(job, advance=1, status=f"failed {counts['failed']}")
        elif todo:
            label = _run_dask(todo, task_fn, record, counts, bar, job, scheduler, n_workers, client)
    results = _consolidate(out_dir)
    return CohortRun(out_dir, len(tasks), len(tasks) - len(todo), counts["written"], counts["failed"], counts["lost"],
                     time.perf_counter() - t0, results, label)


def _check_scheduler_address(address: str) -> None:
    from distributed.comm import parse_address
    from distributed.comm.addressing import parse_host_port

    try:
        scheme, loc = parse_address(address)
        ok = scheme in ("tcp", "tls", "inproc", "ucx", "ws", "wss") and bool(loc)
        if scheme in ("tcp", "tls", "ws", "wss"):
            host, _ = parse_host_port(loc, default_port=8786)
            ok = ok and bool(host) and all(c.isalnum() or c in ".-_:" for c in host)
    except (ValueError, TypeError):
        ok = False
    if not ok:
        raise ParameterError(f"--scheduler {address!r} is not a Dask scheduler address.",
                             "give e.g. tcp://host:8786, 'serial', or leave it out for a local cluster.")


def _run_dask(todo, task_fn, record, counts, bar, job, scheduler, n_workers, client) -> str:
    from distributed import Client, as_completed

    own_client = own_cluster = None
    if client is None:
        if scheduler:
            try:
                own_client = client = Client(scheduler, timeout=SCHEDULER_TIMEOUT_S)
            except (OSError, TimeoutError) as exc:
                raise ParameterError(f"No Dask scheduler answered at {scheduler!r} within {SCHEDULER_TIMEOUT_S:g} s "
                                     f"({type(exc).__name__}).", "start it (dask scheduler) or check the address "
                                     "and port; leave --scheduler out for a local cluster.") from None
        else:
            own_client, own_cluster = local_cluster(n_workers)
            client = own_client
    run_id = uuid.uuid4().hex[:8]
    futures: dict = {}
    try:
        # soft case -> worker affinity, so a worker builds a case's model once (MODEL_CACHE_SIZE); loose, so a
        # task whose worker is gone, busy or absent runs elsewhere (and idle workers may steal it)
        addrs = sorted(client.scheduler_info()["workers"])
        home: dict[str, list[str] | None] = {}
        for t in todo:
            home.setdefault(t.case.case_id, [addrs[len(home) % len(addrs)]] if addrs else None)
        futures = {client.submit(execute_task, task_fn, t, key=f"vertaug-cohort-{run_id}-{t.key}", pure=False,
                                 workers=home[t.case.case_id], allow_other_workers=True): t
                   for t in todo}
        for fut in as_completed(futures):
            t = futures.pop(fut)
            if fut.status == "finished":
                record(t.key, fut.result())
            else:  # the task never returned (e.g. KilledWorker): nothing written, the next run retries it
                counts["lost"] += 1
            fut.release()
            bar.update(job, advance=1, status=f"failed {counts['failed']} lost {counts['lost']}")
        return str(client.scheduler.address) if scheduler else f"dask ({len(client.scheduler_info()['workers'])} workers)"
    finally:
        for fut in list(futures):  # left only when interrupted
            fut.cancel()
        if own_client is not None:
            own_client.close()
        if own_cluster is not None:
            own_cluster.close()
