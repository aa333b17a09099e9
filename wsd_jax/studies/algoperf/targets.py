"""Target setting as AlgoPerf does it, scaled down (run once per workload,
never in CI; the result is committed in ``targets.json`` next to this file).

AdamW with linear warmup and a cosine to 0 over ``0.75 * step_hint``;
``num_trials`` quasirandom points over LR, warmup fraction, weight decay,
``1 - beta1`` and ``beta2``; the best point (lowest best validation metric)
rerun with ``num_seeds`` seeds; target = median over seeds of each seed's
best validation metric. Runs live under ``DIR/WORKLOAD/{search,seeds}/``.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import platform
import sys
import time
from typing import Any

import numpy as np

from wsd_jax import runs, schedules
from wsd_jax.runs import rundir
from wsd_jax.studies import common
from wsd_jax.studies.algoperf import search
from wsd_jax.studies.algoperf.workloads import Workload
from wsd_jax.train.config import with_schedule

SPACE = {
    "learning_rate": {"min": 1e-3, "max": 3e-1, "scaling": "log"},
    "warmup_fraction": {"min": 0.02, "max": 0.1, "scaling": "linear"},
    "weight_decay": {"min": 1e-4, "max": 0.3, "scaling": "log"},
    "one_minus_beta1": {"min": 0.02, "max": 0.3, "scaling": "log"},
    "beta2": {"min": 0.9, "max": 0.999, "scaling": "linear"},
}
SEARCH_SEED = 20306  # arXiv 2306.07179
PACKAGES = ("jax", "jaxlib", "flax", "optax", "numpy", "scipy", "grain",
            "orbax-checkpoint", "scikit-learn")
TARGETS_FILE = __file__.rsplit("/", 1)[0] + "/targets.json"


def config(w: Workload, point: dict[str, Any], seed: int, base=None):
  """The trainer config of one target-setting run: AdamW + warmup + cosine
  over ``w.horizon``, trained for ``w.horizon`` steps."""
  h = w.horizon
  sched = schedules.cosine(point["learning_rate"], h, warmup_steps=round(
      point["warmup_fraction"] * h))
  c = with_schedule(base if base is not None else w.config(h), sched, h)
  c.optimizer.update(name="adamw", b1=1.0 - point["one_minus_beta1"],
                     b2=point["beta2"], weight_decay=point["weight_decay"])
  c.seed = int(seed)
  return c


def best_metric(w: Workload, run_dir: str) -> float:
  """The best validation metric a run reached at any evaluation."""
  from wsd_jax.studies.algoperf import benchmark
  return float(np.nanmin(benchmark.measurements(w, run_dir)[w.metric]))


def versions() -> dict[str, str]:
  out = {"python": platform.python_version()}
  for p in PACKAGES:
    try:
      out[p] = importlib.metadata.version(p)
    except importlib.metadata.PackageNotFoundError:
      pass
  return out


def set_target(w: Workload, root: str, num_trials: int = 64,
               num_seeds: int = 10, base=None, corpus_info=None) -> dict:
  """Runs the search and the reruns of ``w`` under ``root`` and returns its
  ``targets.json`` entry (target, metadata and provenance)."""
  start = time.perf_counter()
  base = base if base is not None else w.config(w.horizon)
  pts = search.points(SPACE, num_trials, SEARCH_SEED)
  d = rundir.join(root, w.name)
  trial_specs = [runs.RunSpec(config(w, p, i, base),
                              rundir.join(d, "search", f"trial_{i}"))
                 for i, p in enumerate(pts)]
  common.train_stage("targets", f"{w.name}: {num_trials} trials", trial_specs)
  log = [{"trial": i, **p, "best": best_metric(w, s.workdir)}
         for i, (p, s) in enumerate(zip(pts, trial_specs))]
  finite = [r for r in log if np.isfinite(r["best"])]
  best = min(finite, key=lambda r: r["best"])
  point = {k: best[k] for k in SPACE}
  seed_specs = [runs.RunSpec(config(w, point, 100 + j, base),
                             rundir.join(d, "seeds", f"seed_{j}"))
                for j in range(num_seeds)]
  common.train_stage("targets", f"{w.name}: {num_seeds} seeds", seed_specs)
  per_seed = [best_metric(w, s.workdir) for s in seed_specs]
  entry = {
      "metric": w.metric, "target": float(np.median(per_seed)),
      "step_hint": w.step_hint, "max_steps": w.max_steps,
      "eval_every": w.eval_every,
      "provenance": {
          "method": ("AdamW, linear warmup + cosine to 0 over 0.75 x "
                     f"step_hint ({w.horizon} steps); {num_trials} scrambled "
                     f"Halton points (seed {SEARCH_SEED}); best rerun with "
                     f"{num_seeds} seeds; target = median of the seeds' best "
                     "validation metric"),
          "search_space": SPACE, "best_point": point,
          "seed_bests": per_seed, "search_log": log,
          "data": corpus_info or {}, "versions": versions(),
          "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
              timespec="seconds"),
          "command": " ".join(sys.argv),
          "wall_s": round(time.perf_counter() - start, 1)}}
  data_info = runs.Run(seed_specs[0].workdir).data_info
  if "optimal_loss" in data_info:
    entry["optimal_loss"] = data_info["optimal_loss"]
  return entry


def load(path: str = TARGETS_FILE) -> dict:
  """The committed targets (``{}`` if there are none yet)."""
  return rundir.read_json(path) if rundir.exists(path) else {}


def update(path: str, name: str, entry: dict) -> None:
  """Writes ``entry`` as ``name``'s target in ``path``, keeping the rest."""
  out = load(path)
  out[name] = entry
  rundir.write_json(path, dict(sorted(out.items())))
