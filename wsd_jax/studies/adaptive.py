"""The adaptive-methods study (``python -m experiments.adaptive_study``):
each adaptive LR method against tuned schedules, with computed verdicts.

Per workload (the bigram corpus; the byte-level MLP LM on the stdlib
docstring corpus), every swept method trains at every peak (initial) LR of
a log grid and every seed, as ordinary run directories (runs of one method
train as one vmapped program, ``train.train_specs``)::

    DIR/WORKLOAD/METHOD/lr{PEAK}_seed{S}/   linear, wsd, cosine, constant,
                                            adam_hd, schedule_free
    DIR/WORKLOAD/refined/seed{S}/           the l1-refined schedule of seed
                                            S's tuned linear run
    DIR/WORKLOAD/autolrs/seed{S}/           AutoLRS (when it is installed)

All Adam-type, one optimizer setting per workload (b1, b2; no weight
decay, so that Adam-HD, which has none, compares with plain Adam). Each
method is judged at ITS OWN best peak: the grid point with the lowest
seed-mean final eval loss. Comparisons are paired over seeds (a seed fixes
the data order and the initialisation, the same for every method): the
per-seed differences, their mean and a two-sided 95% Student-t interval.
A claim is a one-sided statement ``mean(d) < margin`` about such paired
differences; its verdict (:func:`verdict`) is *reproduced* when the whole
interval is below the margin, *refuted* when it is wholly above, else
*inconclusive* — a rule that fails on numbers that violate the claim.

Claims: (a) Defazio et al. (2310.07831), refining a linear-decay run's
schedule matches or beats it; (b) Baydin et al. (1703.04782), Adam-HD is
much less sensitive to the initial LR than Adam; (c) Jin et al.
(2105.10762), AutoLRS reaches the tuned baseline's loss in fewer steps,
exploration counted; (d) Defazio et al. (2405.15682), schedule-free AdamW
matches a tuned schedule without one; (e) FedHyper-G (2310.03156) beats
FedAvg from a good and a poor client LR (``adaptive.fedhyper``).
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import os
import time
from typing import Sequence

import ml_collections
import numpy as np

from configs import bigram as bigram_config
from configs import text as text_config
from wsd_jax import plots, runs, schedules
from wsd_jax.adaptive import fedhyper, refine_run
from wsd_jax.data import corpus
from wsd_jax.runs import rundir
from wsd_jax.studies import common
from wsd_jax.studies.verdicts import combine, paired, verdict
from wsd_jax.train.config import with_schedule

TAG = "adaptive"
SCHEDULED = ("linear", "wsd", "cosine")   # the tuned baselines
SWEPT = ("linear", "wsd", "constant", "adam_hd", "schedule_free")
LABELS = {"linear": "linear decay", "wsd": "WSD (20% linear)",
          "cosine": "cosine", "constant": "Adam, constant LR",
          "adam_hd": "Adam-HD", "schedule_free": "schedule-free AdamW",
          "refined": "refined (l1) of linear", "autolrs": "AutoLRS"}
COLORS = {m: plots.color(m) for m in LABELS}
MATCH_MARGIN = 0.001  # "matches": at most 0.1% (relative) worse
MUCH_LESS = 0.5       # "much less sensitive": spread at most half
UNSCHEDULED = ("constant", "adam_hd")  # no warmup: the initial LR is the LR


@dataclasses.dataclass(frozen=True)
class Workload:
  """One workload of the study: its trainer config and its sweep."""
  name: str
  steps: int
  peaks: tuple[float, ...]        # the log grid of constant and Adam-HD
  hypergrad_lrs: tuple[float, ...]  # Adam-HD's betas (the best is kept)
  first_scheduled: int = 0        # the other methods' grid: peaks[first:]
  warmup_fraction: float = 0.05
  decay_fraction: float = 0.2     # WSD's
  regime: str = ""                # the report's regime note
  methods: tuple[str, ...] = SWEPT  # those swept (linear, constant, adam_hd
                                    # and schedule_free at least)

  def peaks_of(self, method: str) -> tuple[float, ...]:
    """The grid ``method`` is swept over."""
    return self.peaks if method in UNSCHEDULED else self.peaks[
        self.first_scheduled:]

  def betas(self, method: str) -> tuple[float | None, ...]:
    return self.hypergrad_lrs if method == "adam_hd" else (None,)

  @property
  def warmup(self) -> int:
    return round(self.warmup_fraction * self.steps)

  def base(self) -> ml_collections.ConfigDict:
    """The trainer config every run of the workload starts from."""
    if self.name == "bigram":
      c = bigram_config.get_config()
    else:
      c = text_config.get_config()
      c.model.update(embed_dim=32, hidden_dim=64, num_layers=1, context=4)
      c.data.update(seq_len=32, batch_size=16, eval_batches=8)
    c.optimizer.update(name="adamw", b1=0.9, b2=0.95, weight_decay=0.0)
    every = max(self.steps // 10, 1)
    c.train.update(steps=self.steps, log_every=every, eval_every=every,
                   checkpoint_every=self.steps, keep_every=0, keep_last=1,
                   progress=False, plots=False, async_checkpoint=False,
                   skip_nonfinite=True)
    return c


@dataclasses.dataclass(frozen=True)
class Plan:
  workloads: tuple[Workload, ...]
  seeds: tuple[int, ...]
  fed_rounds: int
  fed_client_lrs: tuple[tuple[str, float], ...] = (("good", 4.0),
                                                   ("poor", 0.5))
  autolrs: bool = True


BIGRAM_REGIME = (
    "Toy illustration: a zero-initialised bigram table (convex) on a "
    "synthetic corpus whose optimal loss is known; Adam on it is not an LM "
    "pretraining regime.")
TEXT_REGIME = (
    "Small non-convex model (byte-level MLP LM, context 4) on real English "
    "text, short runs; closer to LM training than the bigram but far from "
    "the papers' scales.")


def plan(quick: bool = False) -> Plan:
  """The full study, or (``quick``) a smoke form for CI: bigram only, 2
  seeds, 3 peaks over 2 decades, 60 steps, no AutoLRS, 30 federation
  rounds.

  Full: 3 seeds; constant and Adam-HD over 7 peaks (3 decades, half-decade
  steps), Adam-HD at 3 (bigram) or 2 (text) hypergradient LRs (the one with
  the lowest mean loss over the grid is kept); the others over the top 5
  (2 decades). Sized for about 25 min on 2 shared CPU cores."""
  if quick:
    return Plan((Workload("bigram", 60, (3e-3, 3e-2, 3e-1), (1e-4,),
                          regime=BIGRAM_REGIME,
                          methods=("linear", "constant", "adam_hd",
                                   "schedule_free")),),
                seeds=(0, 1), fed_rounds=30, autolrs=False)
  grid = lambda lo: tuple(float(f"{lo * 10 ** (k / 2):.3g}") for k in range(7))
  return Plan((Workload("bigram", 300, grid(1e-3), (1e-5, 1e-4, 1e-3), 2,
                        regime=BIGRAM_REGIME),
               Workload("text", 200, grid(3.16e-4), (1e-5, 1e-4), 2,
                        regime=TEXT_REGIME)),
              seeds=(0, 1, 2), fed_rounds=100)

# AutoLRS scaled to runs of a few hundred steps (the paper: k 10, tau' 100,
# tau 1000, tau_max 8000): k 5 trials per stage, tau = steps / 4, tau' =
# tau / 10 (the paper's ratio), tau_max = steps / 2; LR bounds: the grid.
AUTOLRS_K = 5


# ---------------------------------------------------------------- the runs

def run_dir(root: str, wl: Workload, method: str, peak: float | None,
            seed: int, beta: float | None = None) -> str:
  leaf = "" if peak is None else f"lr{peak:g}_"
  leaf += "" if beta is None else f"hg{beta:g}_"
  return rundir.join(root, wl.name, method, f"{leaf}seed{seed}")


def method_config(wl: Workload, base: ml_collections.ConfigDict, method: str,
                  peak: float, beta: float | None = None
                  ) -> ml_collections.ConfigDict:
  """The config of ``method`` at peak (initial) LR ``peak`` (Adam-HD:
  hypergradient LR ``beta``)."""
  t, w = wl.steps, wl.warmup
  sched = {
      "linear": lambda: schedules.linear(peak, t, warmup_steps=w),
      "wsd": lambda: schedules.wsd(peak, t, round(wl.decay_fraction * t),
                                   warmup_steps=w),
      "cosine": lambda: schedules.cosine(peak, t, warmup_steps=w),
      "constant": lambda: schedules.constant(peak),
      "adam_hd": lambda: schedules.constant(1.0),
      "schedule_free": lambda: schedules.wsd(peak, t, 0, warmup_steps=w),
  }[method]()
  c = with_schedule(base, sched, t)
  if method == "adam_hd":
    c.optimizer.update(name="adam_hd", learning_rate=float(peak),
                       hypergrad_lr=float(beta), weight_decay=None)
  elif method == "schedule_free":
    c.optimizer.update(name="contrib.schedule_free_adamw")
  return c


def sweep_specs(wl: Workload, base: ml_collections.ConfigDict, root: str,
                seeds: Sequence[int]) -> list[runs.RunSpec]:
  specs = []
  for m in wl.methods:
    for b in wl.betas(m):
      for p in wl.peaks_of(m):
        for s in seeds:
          c = method_config(wl, base, m, p, b)
          c.seed = int(s)
          specs.append(runs.RunSpec(c, run_dir(root, wl, m, p, s, b)))
  return specs


def final_losses(wl: Workload, root: str, method: str, seeds: Sequence[int],
                 beta: float | None = None) -> np.ndarray:
  """``[peaks, seeds]`` final eval loss (NaN where a run has none)."""
  return np.array([[runs.Run(run_dir(root, wl, method, p, s, beta)).final_eval
                    or np.nan for s in seeds] for p in wl.peaks_of(method)],
                  np.float64)


def best_index(losses_PxS: np.ndarray) -> int:
  """The grid point with the lowest seed-mean loss (non-finite: worst)."""
  mean = np.where(np.isfinite(losses_PxS), losses_PxS, np.inf).mean(axis=1)
  return int(np.argmin(mean))


def autolrs_module():
  """``wsd_jax.adaptive.autolrs`` or None while it is not installed."""
  try:
    return importlib.import_module("wsd_jax.adaptive.autolrs")
  except ImportError:
    return None


def train_workload(wl: Workload, root: str, plan_: Plan) -> None:
  """Trains (resumes) every run of ``wl``: the sweeps, then the refined
  runs of the tuned linear runs, then AutoLRS (if installed)."""
  base = wl.base()
  if wl.name == "text":
    base.data.paths = corpus.stdlib_corpus(
        rundir.join(root, "stdlib_docstrings.txt"))
  seeds = plan_.seeds
  specs = sweep_specs(wl, base, root, seeds)
  common.train_stage(TAG, f"{wl.name}: {len(wl.methods)} methods, "
                     f"{len(specs)} runs", specs)
  peak = wl.peaks_of("linear")[best_index(final_losses(wl, root, "linear",
                                                       seeds))]
  common.train_stage(TAG, f"{wl.name}: refined schedules of the tuned "
                     "linear runs", [runs.RunSpec(
                         refine_run.refine_config(
                             run_dir(root, wl, "linear", peak, s), norm="l1",
                             peak_value=peak),
                         run_dir(root, wl, "refined", None, s))
                                     for s in seeds])
  if plan_.autolrs and (autolrs := autolrs_module()) is not None:
    for s in seeds:
      d = run_dir(root, wl, "autolrs", None, s)
      if not common.finished(d, wl.steps):
        c = ml_collections.ConfigDict(base.to_dict())
        c.seed = int(s)
        start = time.perf_counter()
        tau = max(wl.steps // 4, 1)
        autolrs.train(c, d, k=AUTOLRS_K, tau=tau, tau_max=2 * tau,
                      lr_bounds=(min(wl.peaks), max(wl.peaks)))
        print(f"[{TAG}] {wl.name}: AutoLRS seed {s} in "
              f"{time.perf_counter() - start:.1f} s", flush=True)


# ------------------------------------------------------------- claims

def claim_match(name: str, text: str, method: Sequence[float],
                reference: Sequence[float], ref_label: str) -> dict:
  """(a), (d): ``method`` matches or beats ``reference`` (final losses per
  seed): ``d = method - reference < MATCH_MARGIN * mean(reference)``."""
  diff = paired(method, reference)
  margin = MATCH_MARGIN * float(np.mean(reference))
  return {"claim": name, "text": text, "measure":
          f"final eval loss minus {ref_label}'s, per seed",
          "margin": margin, **diff, "verdict": verdict(diff["ci"], margin)}


def spread(losses_PxS: np.ndarray, worst: float) -> np.ndarray:
  """Per seed, the std of the final loss over the LR grid (a non-finite
  loss, a diverged run, counts as ``worst``)."""
  v = np.where(np.isfinite(losses_PxS), losses_PxS, worst)
  return v.std(axis=0)


def band_decades(peaks: Sequence[float], losses_PxS: np.ndarray,
                 within: float = 0.02) -> np.ndarray:
  """Per seed, the width in decades of the grid points whose loss is within
  ``within`` (relative) of that seed's best (the LR band that works)."""
  logp = np.log10(np.asarray(peaks))
  ok = losses_PxS <= (1 + within) * np.nanmin(losses_PxS, axis=0)
  return np.array([np.ptp(logp[ok[:, s]]) if ok[:, s].any() else 0.0
                   for s in range(losses_PxS.shape[1])])


def claim_sensitivity(peaks: Sequence[float], adam_PxS: np.ndarray,
                      hd_PxS: np.ndarray, worst: float) -> dict:
  """(b): ``d = log(spread(Adam-HD) / spread(Adam)) < log(MUCH_LESS)``,
  spread = std of the final loss over the LR grid, per seed."""
  a, h = spread(adam_PxS, worst), spread(hd_PxS, worst)
  diff = paired(np.log(h), np.log(a))
  return {"claim": "b", "text": "Adam-HD makes the final loss much less "
          "sensitive to the initial LR than Adam (Baydin et al.)",
          "measure": "log(std over the LR grid of Adam-HD's final loss / "
          "Adam's), per seed", "margin": math.log(MUCH_LESS), **diff,
          "spread_adam": a.tolist(), "spread_adam_hd": h.tolist(),
          "band_decades_adam": band_decades(peaks, adam_PxS).tolist(),
          "band_decades_adam_hd": band_decades(peaks, hd_PxS).tolist(),
          "decades": float(np.ptp(np.log10(peaks))),
          "verdict": verdict(diff["ci"], math.log(MUCH_LESS))}


def steps_to(steps: np.ndarray, losses: np.ndarray, target: float
             ) -> tuple[float, bool]:
  """The first step whose loss is ``<= target``, or (not reached) the last
  step: a lower bound."""
  hit = np.flatnonzero(losses <= target)
  return (float(steps[hit[0]]), True) if hit.size else (
      float(steps[-1]) if steps.size else math.nan, False)


def claim_autolrs(baseline: Sequence[tuple[np.ndarray, np.ndarray]],
                  autolrs: Sequence[tuple[np.ndarray, np.ndarray]]) -> dict:
  """(c): per seed, the target is the tuned baseline's final eval loss;
  ``d = log(AutoLRS compute steps to it / baseline steps to it) < 0``. A
  seed where AutoLRS never reaches it refutes the claim."""
  def to_targets(slack: float):
    out = {"baseline_steps": [], "autolrs_compute_steps": [], "reached": []}
    for (bs, bl), (as_, al) in zip(baseline, autolrs):
      target = bl[-1] * (1 + slack)
      out["baseline_steps"].append(steps_to(bs, bl, target)[0])
      n, ok = steps_to(as_, al, target)
      out["autolrs_compute_steps"].append(n)
      out["reached"].append(ok)
    return out
  exact = to_targets(0.0)
  base_steps, auto_steps, reached = (exact[k] for k in exact)
  diff = paired(np.log(auto_steps), np.log(base_steps))
  return {"claim": "c", "text": "AutoLRS reaches the tuned baseline's loss "
          "in fewer steps, exploration counted (Jin et al.)",
          "measure": "log(AutoLRS compute steps / baseline steps) to the "
          "baseline's final eval loss, per seed", "margin": 0.0, **diff,
          "baseline_steps": base_steps, "autolrs_compute_steps": auto_steps,
          "reached": reached, "verdict": verdict(diff["ci"], 0.0)
          if all(reached) else "refuted",
          # not the verdict: the same with the target MATCH_MARGIN higher
          "within_match_margin": to_targets(MATCH_MARGIN)}


def claim_federation(fed: dict) -> dict:
  """(e): per client LR, ``d = FedHyper-G - FedAvg`` final loss ``< 0``."""
  parts = {}
  for label, rows in fed.items():
    diff = paired(rows["fedhyper_g"], rows["fedavg"])
    parts[label] = {**diff, "verdict": verdict(diff["ci"], 0.0),
                    "client_lr": rows["client_lr"]}
  return {"claim": "e", "text": "FedHyper-G reaches a lower loss than FedAvg "
          "from a good and from a poor client LR (Pan et al.)",
          "measure": "final global loss (exact expected cross-entropy) of "
          "FedHyper-G minus FedAvg's, per seed", "margin": 0.0,
          "parts": parts, "verdict": combine([p["verdict"]
                                              for p in parts.values()])}


# ------------------------------------------------------------ federation

def federation(seeds: Sequence[int], rounds: int,
               client_lrs: Sequence[tuple[str, float]]) -> dict:
  """FedAvg and FedHyper-G per client LR and seed (the seed draws the
  clients' languages and the sampling; the two methods share both)."""
  out = {}
  for label, lr in client_lrs:
    rows = {"client_lr": lr, "fedavg": [], "fedhyper_g": [], "curves": {}}
    for s in seeds:
      fed = fedhyper.make_federation(seed=int(s))
      for m in ("fedavg", "fedhyper_g"):
        r = fedhyper.simulate(fed, method=m, client_lr=lr, rounds=rounds,
                              seed=int(s))
        rows[m].append(float(r["loss"][-1]))
        if s == seeds[0]:
          rows["curves"][m] = np.asarray(r["loss"]).tolist()
    out[label] = rows
  return out


# ------------------------------------------------------------- analysis

def realised_lr(run: runs.Run) -> np.ndarray:
  """The LR each update used: ``per_step.jsonl``, else the logged ``lr``."""
  try:
    return run.per_step("lr")
  except ValueError:
    return run.column("lr")[1]


def analyse_workload(wl: Workload, root: str, seeds: Sequence[int]) -> dict:
  """Reads every run of ``wl``: the sweeps, best peaks (and Adam-HD's best
  hypergradient LR), per-seed losses at them and the claims (a)-(d)."""
  hd = {b: final_losses(wl, root, "adam_hd", seeds, b)
        for b in wl.hypergrad_lrs}
  beta = min(hd, key=lambda b: np.where(np.isfinite(hd[b]), hd[b],
                                        np.inf).mean())
  sweep = {m: hd[beta] if m == "adam_hd" else final_losses(wl, root, m, seeds)
           for m in wl.methods}
  worst = math.log(wl.base().data.get("vocab_size", 256))
  best = {m: wl.peaks_of(m)[best_index(v)] for m, v in sweep.items()}
  dirs = {m: [run_dir(root, wl, m, best[m], s, beta if m == "adam_hd" else
                      None) for s in seeds] for m in wl.methods}
  dirs["refined"] = [run_dir(root, wl, "refined", None, s) for s in seeds]
  auto = [run_dir(root, wl, "autolrs", None, s) for s in seeds]
  if all(rundir.is_run(d) for d in auto):
    dirs["autolrs"] = auto
  at_best = {m: [runs.Run(d).final_eval for d in ds] for m, ds in dirs.items()}
  baseline = min((m for m in SCHEDULED if m in sweep),
                 key=lambda m: np.mean(at_best[m]))
  claims = [
      claim_match("a", "Refining a tuned linear-decay run's schedule (l1 "
                  "norms, Adam) matches or beats it (Defazio et al.)",
                  at_best["refined"], at_best["linear"], "linear decay"),
      dict(claim_sensitivity(wl.peaks, sweep["constant"], sweep["adam_hd"],
                             worst), spread_ratio_by_hypergrad_lr={
          f"{b:g}": (spread(v, worst) / spread(sweep["constant"], worst)
                     ).tolist() for b, v in hd.items()}),
      claim_match("d", "Schedule-free AdamW without a schedule matches the "
                  f"best tuned schedule ({LABELS[baseline]}) (Defazio et al.)",
                  at_best["schedule_free"], at_best[baseline], baseline)]
  text_c = ("AutoLRS reaches the tuned baseline's loss in fewer steps, "
            "exploration counted (Jin et al.)")
  if "autolrs" in dirs:
    claims.insert(2, dict(claim_autolrs(
        [runs.Run(d).eval_curve() for d in dirs[baseline]],
        [_compute_curve(runs.Run(d)) for d in auto]), baseline=baseline))
  else:
    claims.insert(2, {"claim": "c", "text": text_c, "verdict": (
        "not run (AutoLRS missing)" if autolrs_module() is None else
        "not run (not in this form of the study)")})
  for c in claims:
    c["workload"] = wl.name
  return {"steps": wl.steps, "hypergrad_lr": beta, "regime": wl.regime,
          "optimal_loss": runs.Run(dirs["linear"][0]).data_info.get(
              "optimal_loss"),
          "sweep": {m: {"peaks": list(wl.peaks_of(m)), "losses": v.tolist()}
                    for m, v in sweep.items()},
          "adam_hd_by_hypergrad_lr": {f"{b:g}": v.tolist()
                                      for b, v in hd.items()},
          "best_peak": best,
          "best_at_grid_edge": {m: best[m] in (wl.peaks_of(m)[0],
                                               wl.peaks_of(m)[-1])
                                for m in best},
          "run_dirs": {m: [os.path.relpath(d, root) for d in ds]
                       for m, ds in dirs.items()},
          "at_best": at_best, "baseline": baseline, "claims": claims}


def _compute_curve(run: runs.Run) -> tuple[np.ndarray, np.ndarray]:
  """AutoLRS's eval loss against ``compute_steps`` (every optimizer step,
  exploration included) of the rows that evaluated."""
  rows = [r for r in run.metrics if isinstance(r.get("eval_loss"), float)
          and np.isfinite(r["eval_loss"])]
  return (np.array([r.get("compute_steps", r["step"]) for r in rows],
                   np.float64),
          np.array([r["eval_loss"] for r in rows], np.float64))
