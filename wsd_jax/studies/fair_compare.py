"""A fair equal-compute comparison of WSD, WSD-S and cyclic cosine
(``python -m experiments.fair_compare``): every method at its own tuned peak
LR, evaluated on fresh seeds.

Why: the river-valley study (``studies.river_valley``) compared the methods
at ONE untuned peak (SGD at 120 for all); at 30 the paper's order held
everywhere, at 120 nowhere. Here, on the same bigram toy (data, model and SGD
of ``configs/river_valley.py``):

- methods at equal compute at every budget: WSD with decay fractions 10% and
  20% x decay shapes linear and 1-sqrt (four variants, all decay branches of
  ONE constant main run per peak and seed), WSD-S (10% linear decays, the
  paper's) and cyclic cosine (``studies.equal_compute`` builds the
  schedules);
- a sweep of peak LRs; per method AND per budget the peak with the lowest
  mean eval loss over the *selection* seeds is chosen (non-finite = worst);
  the comparison is then read on separate *evaluation* seeds at the chosen
  peaks, so the noise that picked a peak does not also flatter it (no
  winner's curse);
- paired differences over evaluation seeds (same seed = same data order;
  the table starts at zero) with 95% Student-t intervals
  (``studies.verdicts``), and verdicts on the paper's order
  WSD-S <= WSD <= cyclic cosine per budget.

Equal compute: budget ``i``'s model of every method exists after ``E_i``
steps in all (WSD-S's checkpoint steps: ``B_i + sum_{j<i} d_j`` with its 10%
decays). WSD with decay fraction ``f`` spends its main run plus its earlier
branches, so its budget-``i`` model has ``B^f_i = E_i - sum_{j<i} d^f_j``
steps with ``d^f_i = f B^f_i`` rounded to the plan's step quantum
(:func:`wsd_lengths`; for f = 10% exactly the plan's budgets).

Runs (every peak and seed of one shape train as one vmapped program)::

    DIR/peak{p}/wsd/seed{S}/                             WSD main run
    DIR/peak{p}/wsd/seed{S}/branches/{variant}_budget{B}/ its decay branches
    DIR/peak{p}/wsd_s/seed{S}/
    DIR/peak{p}/cyclic_cosine/seed{S}/

The rule, fixed before the first full run: a claim ``a <= b`` is the
one-sided ``mean(a - b) < MARGIN`` (``verdicts.verdict``) with MARGIN =
0.001 nats: an exact tie (WSD-S and WSD-10%-linear are one schedule up to
the first budget) counts as ``<=``, a method worse by a resolved 0.001 nats
or more refutes it.
"""

from __future__ import annotations

import calendar
import dataclasses
import math
import os
import platform
import time
from typing import Sequence

import ml_collections
import numpy as np

from wsd_jax import plots, reports, runs
from wsd_jax.plots import plt
from wsd_jax.runs import rundir
from wsd_jax.schedules.shapes import DECAY_SHAPES
from wsd_jax.studies import common
from wsd_jax.studies import equal_compute as ec
from wsd_jax.studies.verdicts import LEVEL, combine, paired, verdict
from wsd_jax.train import base_config
from wsd_jax.train.config import with_schedule

TAG = "fair_compare"
MARGIN = 1e-3          # nats; "a <= b" is mean(a - b) < MARGIN
PAPER_ORDER = "WSD-S <= WSD <= cyclic cosine"
REGIME = ("Toy illustration: convex zero-initialised bigram table with SGD "
          "(vocabulary 128 in 4 entropy groups, batch 8 x 32 tokens), the "
          "river-valley study's toy; not an LM pretraining regime.")


def variant_name(fraction: float, shape: str) -> str:
  return f"wsd_{round(100 * fraction)}_{shape}"


@dataclasses.dataclass(frozen=True)
class Plan:
  """Peaks x seeds (selection, then evaluation) x methods x budgets."""
  peaks: tuple[float, ...]
  budgets: tuple[int, ...]
  selection_seeds: tuple[int, ...]
  eval_seeds: tuple[int, ...]
  fixed_peaks: tuple[float, ...] = (120.0, 30.0)  # the sensitivity table
  fractions: tuple[float, ...] = (0.1, 0.2)       # WSD decay fractions
  shapes: tuple[str, ...] = ("linear", "1-sqrt")  # WSD decay shapes
  wsd_s_fraction: float = 0.1
  final_fraction: float = 0.1       # decays end at 0.1 x peak
  warmup_fraction: float = 0.05     # x the first budget
  rewarm_fraction: float = 0.16     # cyclic cosine re-warm, x first budget
  eval_batches: int = 32
  quick: bool = False

  def __post_init__(self):
    peaks = np.asarray(self.peaks, np.float64)
    if len(peaks) < 2 or not np.all(np.isfinite(peaks)) or np.any(
        peaks <= 0) or np.any(np.diff(peaks) <= 0):
      raise ValueError(f"peaks={self.peaks}: need >= 2 finite positive peak "
                       "LRs in increasing order")
    if missing := [x for x in self.fixed_peaks if x not in self.peaks]:
      raise ValueError(f"fixed_peaks {missing} are not in peaks={self.peaks}:"
                       " the sensitivity table reads them from the sweep")
    b = list(self.budgets)
    if not b or any(int(x) != x or x < 1 for x in b) or b != sorted(set(b)):
      raise ValueError(f"budgets={self.budgets}: need increasing positive "
                       "integers")
    seeds = list(self.selection_seeds) + list(self.eval_seeds)
    if len(set(seeds)) != len(seeds) or not self.selection_seeds:
      raise ValueError(
          f"selection_seeds={self.selection_seeds} and eval_seeds="
          f"{self.eval_seeds} must be non-empty and share no seed (fresh "
          "evaluation seeds avoid the winner's curse)")
    if len(self.eval_seeds) < 2:
      raise ValueError(f"eval_seeds={self.eval_seeds}: a paired interval "
                       "needs >= 2 evaluation seeds")
    for f in (*self.fractions, self.wsd_s_fraction):
      if not 0 < f < 1:
        raise ValueError(f"decay fraction {f} is not in (0, 1)")
    if bad := [s for s in self.shapes if s not in DECAY_SHAPES]:
      raise ValueError(f"decay shapes {bad} unknown; known: {DECAY_SHAPES}")
    for f in self.fractions:
      steps, decays = self.wsd_lengths(f)
      if min(s - d for s, d in zip(steps, decays)) <= self.warmup:
        raise ValueError(f"decay fraction {f}: a WSD decay would start "
                         f"inside the {self.warmup}-step warmup "
                         f"(budgets {self.budgets})")

  @property
  def seeds(self) -> tuple[int, ...]:
    """Selection seeds first, then evaluation seeds (the seed axis)."""
    return tuple(self.selection_seeds) + tuple(self.eval_seeds)

  @property
  def warmup(self) -> int:
    return round(self.warmup_fraction * self.budgets[0])

  def ec(self, peak: float) -> ec.Plan:
    """WSD-S's and cyclic cosine's plan at ``peak``."""
    return ec.Plan.at_peak(peak, self.budgets, self.wsd_s_fraction,
                           self.final_fraction, self.warmup_fraction,
                           self.rewarm_fraction)

  @property
  def ends(self) -> tuple[int, ...]:
    """``E_i``: the compute every method has spent at budget ``i``."""
    return self.ec(self.peaks[0]).ends

  @property
  def quantum(self) -> int:
    """The step grid every decay, fork and evaluation lies on."""
    return math.gcd(*self.ends, *self.ec(self.peaks[0]).decays)

  def wsd_lengths(self, fraction: float) -> tuple[tuple[int, ...],
                                                   tuple[int, ...]]:
    return wsd_lengths(self.ends, fraction, self.quantum)

  @property
  def variants(self) -> tuple[tuple[str, float, str], ...]:
    """``(name, fraction, shape)`` of every WSD variant."""
    return tuple((variant_name(f, s), f, s) for f in self.fractions
                 for s in self.shapes)

  @property
  def paper_wsd(self) -> str:
    """The WSD variant of the paper's comparison (WSD-S's own decay)."""
    return variant_name(self.wsd_s_fraction, "linear")

  @property
  def methods(self) -> tuple[str, ...]:
    return (*(v[0] for v in self.variants), "wsd_s", "cyclic_cosine")

  def forks(self, fraction: float) -> tuple[int, ...]:
    steps, decays = self.wsd_lengths(fraction)
    return tuple(s - d for s, d in zip(steps, decays))

  @property
  def main_steps(self) -> int:
    """The WSD main run's length: its last fork."""
    return max(max(self.forks(f)) for f in self.fractions)

  def base(self) -> ml_collections.ConfigDict:
    """The run config of every run: :func:`toy_config`."""
    c = toy_config()
    c.data.eval_batches = int(self.eval_batches)
    c.train.update(eval_every=self.quantum, log_every=self.quantum)
    return c


def toy_config() -> ml_collections.ConfigDict:
  """The SGD bigram toy the review judged (vocabulary 128 in 4 entropy
  groups, batch 8 x 32, plain SGD, no clipping): defined here once;
  ``configs/river_valley.py``'s ``run`` is built from it."""
  run = base_config()
  run.model.name = "bigram"
  run.data.update(name="bigram", vocab_size=128, num_groups=4, seq_len=32,
                  batch_size=8, eval_batches=32)
  run.optimizer.update(name="sgd", b1=None, b2=None, weight_decay=None)
  run.train.update(grad_clip=0.0, progress=False, plots=False, keep_last=1)
  return run


def wsd_lengths(ends: Sequence[int], fraction: float, quantum: int
                ) -> tuple[tuple[int, ...], tuple[int, ...]]:
  """WSD's model steps ``B_i`` and decays ``d_i`` at equal compute: the main
  run to the fork ``B_i - d_i`` plus every branch so far, ``B_i + sum_{j<i}
  d_j``, equals ``ends[i]``; ``d_i = fraction * B_i`` rounded to a multiple
  of ``quantum`` (at least one)."""
  steps: list[int] = []
  decays: list[int] = []
  for e in ends:
    b = int(e) - sum(decays)
    steps.append(b)
    decays.append(quantum * max(1, round(fraction * b / quantum)))
  return tuple(steps), tuple(decays)


def plan(quick: bool = False) -> Plan:
  """Full: 8 peaks (x2 steps, 3.75 to 480: 2.1 decades around the old 120
  and the reviewer's 30), budgets 400/800/1600, 3 selection + 5 evaluation
  seeds; 64 members per program. Quick (CI): peaks 30 and 120, budgets
  40/80, 1 + 2 seeds, a smaller eval set."""
  if quick:
    return Plan(peaks=(30.0, 120.0), budgets=(40, 80),
                selection_seeds=(100,), eval_seeds=(1000, 1001),
                eval_batches=4, quick=True)
  return Plan(peaks=tuple(3.75 * 2 ** k for k in range(8)),
              budgets=(400, 800, 1600), selection_seeds=(100, 101, 102),
              eval_seeds=(1000, 1001, 1002, 1003, 1004))


# ---------------------------------------------------------------- runs

def peak_root(workdir: str, peak: float) -> str:
  return rundir.join(workdir, f"peak{peak:g}")


def main_dir(workdir: str, peak: float, seed: int) -> str:
  return ec.run_dir(peak_root(workdir, peak), "wsd", seed)


def branch_name(variant: str, budget: int) -> str:
  return f"{variant}_budget{budget}"


def model(p: Plan, workdir: str, method: str, peak: float, seed: int,
          i: int) -> tuple[str, int]:
  """``(run directory, step)`` of budget ``i``'s model of ``method``."""
  for name, f, _ in p.variants:
    if method == name:
      d = rundir.branch_dir(main_dir(workdir, peak, seed),
                            branch_name(name, p.budgets[i]))
      return d, p.wsd_lengths(f)[0][i]
  if method not in ("wsd_s", "cyclic_cosine"):
    raise ValueError(f"unknown method {method!r}; known: {p.methods}")
  return ec.run_dir(peak_root(workdir, peak), method, seed), p.ends[i]


def main_specs(p: Plan, workdir: str) -> list[runs.RunSpec]:
  """The WSD main runs (constant after warmup), keeping every fork."""
  base = p.base()
  keep = sorted({k for f in p.fractions for k in p.forks(f)})
  out = []
  for peak in p.peaks:
    for s in p.seeds:
      c = with_schedule(base, p.ec(peak).main(), p.main_steps,
                        keep_steps=keep)
      c.seed = int(s)
      out.append(runs.RunSpec(c, main_dir(workdir, peak, s)))
  return out


def branch_specs(p: Plan, workdir: str, variant: str | None = None,
                 budget: int | None = None) -> list[runs.RunSpec | None]:
  """The WSD variants' decay branches (None: finished); only ``variant``'s
  and ``budget``'s when given."""
  out = []
  for name, f, shape in p.variants:
    if variant not in (None, name):
      continue
    forks, decays = p.forks(f), p.wsd_lengths(f)[1]
    for peak in p.peaks:
      for s in p.seeds:
        for b, fork, d in zip(p.budgets, forks, decays):
          if budget in (None, b):
            out.append(common.branch_spec(
                main_dir(workdir, peak, s), fork, d, shape,
                p.final_fraction * peak, branch_name(name, b)))
  return out


def cyclic_specs(p: Plan, workdir: str) -> list[runs.RunSpec]:
  """WSD-S and cyclic cosine, one run each per peak and seed."""
  base = p.base()
  out = []
  for peak in p.peaks:
    e = p.ec(peak)
    for m, sched in (("wsd_s", e.wsd_s()), ("cyclic_cosine",
                                             e.cyclic_cosine())):
      for s in p.seeds:
        c = with_schedule(base, sched, p.ends[-1],
                          checkpoint_every=p.ends[-1])
        c.seed = int(s)
        out.append(runs.RunSpec(c, ec.run_dir(peak_root(workdir, peak), m,
                                              s)))
  return out


def train(p: Plan, workdir: str) -> None:
  """Trains (resumes) every run; finished runs are skipped."""
  n = f"{len(p.peaks)} peaks x {len(p.seeds)} seeds"
  common.train_stage(TAG, f"WSD main runs ({n})", main_specs(p, workdir))
  # One call per variant and budget (one vmapped program each): every run
  # of a call holds a data iterator with its prefetch threads from the start
  # of the call, so 768 branches at once meant ~12,000 threads.
  for name, _, _ in p.variants:
    for b in p.budgets:
      common.train_stage(TAG, f"WSD decay branches {name} budget {b} ({n})",
                         branch_specs(p, workdir, name, b))
  common.train_stage(TAG, f"WSD-S and cyclic cosine ({n})",
                     cyclic_specs(p, workdir))


def read_losses(p: Plan, workdir: str) -> dict[str, np.ndarray]:
  """Per method, ``[peaks, seeds, budgets]`` eval losses of the budget
  models (NaN where a run has none)."""
  out = {}
  for m in p.methods:
    a = np.full((len(p.peaks), len(p.seeds), len(p.budgets)), np.nan)
    for k, peak in enumerate(p.peaks):
      for j, s in enumerate(p.seeds):
        for i in range(len(p.budgets)):
          d, step = model(p, workdir, m, peak, s, i)
          loss = runs.Run(d).eval_at(step)
          a[k, j, i] = np.nan if loss is None else loss
    out[m] = a
  return out


# ---------------------------------------------------------------- analysis

def select(losses_PxSxB: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Per budget, the index of the peak with the lowest mean loss over the
  seeds given (non-finite counts as worst), and whether it is interior to
  the peak grid."""
  v = np.where(np.isfinite(losses_PxSxB), losses_PxSxB, np.inf)
  idx = np.argmin(v.mean(axis=1), axis=0)
  return idx, (idx > 0) & (idx < v.shape[0] - 1)


def order_verdict(losses_SxB: dict[str, np.ndarray], wsd: str,
                  margin: float = MARGIN) -> list[dict]:
  """Per budget, the paper's order WSD-S <= ``wsd`` <= cyclic cosine on
  paired seed differences: the two one-sided claims and their
  combination."""
  out = []
  for i in range(losses_SxB[wsd].shape[1]):
    parts = {}
    for key, a, b in (("wsd_s_minus_wsd", "wsd_s", wsd),
                      ("wsd_minus_cyclic", wsd, "cyclic_cosine")):
      t = paired(losses_SxB[a][:, i], losses_SxB[b][:, i])
      parts[key] = dict(t, verdict=verdict(t["ci"], margin))
    out.append({"wsd": wsd, **parts,
                "verdict": combine([q["verdict"] for q in parts.values()])})
  return out


def comparisons(p: Plan, losses_SxB: dict[str, np.ndarray],
                margin: float = MARGIN) -> list[dict]:
  """The paired differences ``a - b`` of the report (each with the claim
  ``a <= b`` judged at ``margin``), per budget."""
  pairs = []
  for name, _, _ in p.variants:
    pairs.append(("wsd_s", name))
  for name, _, _ in p.variants:
    pairs.append((name, "cyclic_cosine"))
  for f in p.fractions:
    for s in p.shapes[1:]:
      pairs.append((variant_name(f, s), variant_name(f, p.shapes[0])))
  for s in p.shapes:
    for f in p.fractions[1:]:
      pairs.append((variant_name(f, s), variant_name(p.fractions[0], s)))
  out = []
  for a, b in pairs:
    rows = []
    for i in range(len(p.budgets)):
      t = paired(losses_SxB[a][:, i], losses_SxB[b][:, i])
      rows.append(dict(t, verdict=verdict(t["ci"], margin)))
    out.append({"a": a, "b": b, "budgets": rows})
  return out


def analyse(p: Plan, losses: dict[str, np.ndarray], margin: float = MARGIN
            ) -> dict:
  """Peak selection on the selection seeds, then everything else on the
  evaluation seeds at the chosen peaks; and the same comparison at each
  fixed peak (sensitivity)."""
  ns = len(p.selection_seeds)
  chosen, tuned = {}, {}
  for m in p.methods:
    sel = losses[m][:, :ns]
    idx, inside = select(sel)
    mean_sel = np.where(np.isfinite(sel), sel, np.inf).mean(axis=1)
    chosen[m] = [{"budget": b, "index": int(k), "peak": p.peaks[k],
                  "interior": bool(ok),
                  "selection_mean": float(mean_sel[k, i])}
                 for i, (b, k, ok) in enumerate(zip(p.budgets, idx, inside))]
    tuned[m] = np.stack([losses[m][k, ns:, i] for i, k in enumerate(idx)],
                        axis=1)                           # [eval seeds, B]
  orders = {v[0]: order_verdict(tuned, v[0], margin) for v in p.variants}
  paper = orders[p.paper_wsd]
  sens = {}
  for peak in p.fixed_peaks:
    k = p.peaks.index(peak)
    at = {m: losses[m][k, ns:, :] for m in p.methods}
    o = order_verdict(at, p.paper_wsd, margin)
    sens[f"{peak:g}"] = {
        "peak": peak,
        "means": {m: at[m].mean(axis=0).tolist() for m in p.methods},
        "order": o,
        "verdict": combine([r["verdict"] for r in o])}
  return {
      "margin": margin, "level": LEVEL, "claim": PAPER_ORDER,
      "chosen": chosen,
      "all_interior": all(c["interior"] for m in chosen for c in chosen[m]),
      "tuned": {m: {"losses": v.tolist(), "mean": v.mean(axis=0).tolist(),
                    "std": v.std(axis=0, ddof=1).tolist()}
                for m, v in tuned.items()},
      "order": paper,
      "order_by_budget": [r["verdict"] for r in paper],
      "verdict": combine([r["verdict"] for r in paper]),
      "order_every_variant": {
          v: {"by_budget": [r["verdict"] for r in o],
              "verdict": combine([r["verdict"] for r in o])}
          for v, o in orders.items()},
      "comparisons": comparisons(p, tuned, margin),
      "sensitivity": sens,
      "lr_area_ratio": lr_area_ratio(p)}


def lr_area_ratio(p: Plan) -> list[float]:
  """Cyclic cosine's LR area over WSD-S's, up to each ``E_i`` (at one peak:
  the ratio does not depend on it)."""
  e = p.ec(1.0)
  t = np.arange(p.ends[-1])
  cyc = np.cumsum(np.asarray(ec._lrs(e.cyclic_cosine(), t)))
  wsds = np.cumsum(np.asarray(ec._lrs(e.wsd_s(), t)))
  return [float(cyc[x - 1] / wsds[x - 1]) for x in p.ends]


# ---------------------------------------------------------------- report

LABELS = {"wsd_s": "WSD-S", "cyclic_cosine": "cyclic cosine"}


def label(m: str) -> str:
  if m in LABELS:
    return LABELS[m]
  _, pct, shape = m.split("_", 2)
  return f"WSD {pct}% {shape}"


def peak_figure(p: Plan, losses: dict[str, np.ndarray], res: dict, path: str
                ) -> str:
  """Final eval loss vs peak LR: one row per method, one panel per budget;
  mean ± std over the selection seeds, a star at the chosen peak, dotted
  lines at the fixed peaks."""
  ns = len(p.selection_seeds)
  nm, nb = len(p.methods), len(p.budgets)
  fig, axes = plt.subplots(nm, nb, figsize=(3.6 * nb, 2.3 * nm),
                           squeeze=False, sharex=True)
  colors = dict(zip(p.methods, plots.palette(nm)))
  for r, m in enumerate(p.methods):
    for i, ax in enumerate(axes[r]):
      v = losses[m][:, :ns, i]
      mean = np.nanmean(v, axis=1)
      std = np.nanstd(v, axis=1, ddof=1) if ns > 1 else None
      ax.errorbar(p.peaks, mean, yerr=std, fmt="-o", ms=3, capsize=2,
                  lw=1.1, color=colors[m])
      c = res["chosen"][m][i]
      ax.plot(c["peak"], c["selection_mean"], "*", ms=13, color="k",
              zorder=5)
      for x in p.fixed_peaks:
        ax.axvline(x, ls=":", lw=0.8, color="grey")
      ax.set_xscale("log")
      ax.grid(alpha=0.3)
      if r == 0:
        ax.set_title(f"budget {p.budgets[i]} ({p.ends[i]} steps in all)",
                     fontsize=9)
      if i == 0:
        ax.set_ylabel(label(m), fontsize=9)
      if r == nm - 1:
        ax.set_xlabel("peak LR")
  fig.suptitle("final eval loss vs peak LR (mean ± std over selection seeds;"
               " star: chosen peak; dotted: fixed peaks)", fontsize=10)
  fig.tight_layout()
  return plots.save(fig, path)


def tuned_figure(p: Plan, res: dict, path: str) -> str:
  """Each method at its chosen peak: mean ± 95% t-interval over the
  evaluation seeds, per budget, relative to WSD-S's mean."""
  fig, axes = plt.subplots(1, len(p.budgets), figsize=(4 * len(p.budgets),
                                                       3.6), squeeze=False)
  colors = dict(zip(p.methods, plots.palette(len(p.methods))))
  for i, ax in enumerate(axes[0]):
    ref = np.asarray(res["tuned"]["wsd_s"]["losses"])[:, i]
    for j, m in enumerate(p.methods):
      t = paired(np.asarray(res["tuned"][m]["losses"])[:, i], ref)
      lo, hi = t["ci"]
      ax.errorbar([j], [t["mean"]], yerr=[[t["mean"] - lo], [hi - t["mean"]]]
                  if np.isfinite(lo) else None, fmt="o", capsize=3,
                  color=colors[m])
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xticks(range(len(p.methods)), [label(m) for m in p.methods],
                  rotation=45, ha="right", fontsize=8)
    ax.set_title(f"budget {p.budgets[i]}", fontsize=9)
    ax.grid(alpha=0.3)
  axes[0][0].set_ylabel("eval loss - WSD-S (paired, 95% CI)")
  fig.tight_layout()
  return plots.save(fig, path)


def machine() -> str:
  cpu = platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      cpu = next(l.split(":", 1)[1].strip() for l in f
                 if l.startswith("model name"))
  except (OSError, StopIteration):
    pass
  return f"{cpu}, {os.cpu_count()} cores (shared)"


def _ci(t: dict, digits: int = 4) -> str:
  lo, hi = t["ci"]
  return f"{t['mean']:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]"


def markdown(r: dict) -> str:
  """The report, from ``results.json``'s content."""
  p, a = r["plan"], r["analysis"]
  methods, budgets = r["methods"], p["budgets"]
  ns, ne = len(p["selection_seeds"]), len(p["eval_seeds"])
  mg = a["margin"]
  lines = [
      "# A fair equal-compute comparison: WSD vs WSD-S vs cyclic cosine\n",
      f"Claim (Wen et al., arXiv 2410.05192): at equal compute, "
      f"{PAPER_ORDER}. The river-valley study judged it at one untuned "
      "peak LR (120) for every method; here every method is at its own "
      "tuned peak.\n",
      f"**Regime: {r['regime']}**\n",
      f"Command: `python -m experiments.fair_compare --workdir=DIR"
      f"{' --quick' if r['quick'] else ''}` on {r['machine']}. Measured "
      f"cost of the {len(r['sessions'])} session(s) that built this "
      f"directory: {r['elapsed_s']:.0f} s elapsed from the first start to "
      f"the last end ({r['total_wall_s']:.0f} s wall summed over sessions, "
      f"some of which ran side by side), {r['total_cpu_s'] / 60:.1f} "
      f"CPU-minutes (the last session: "
      f"{r['wall_s']:.0f} s wall, {r['train_s']:.0f} s of it training):\n",
      reports.markdown_table(
          ["session", "started (UTC)", "wall s", "CPU s",
           "load average at start", "at end"],
          [[x["what"], x["started_utc"], f"{x['wall_s']:.0f}",
            f"{x['cpu_s']:.0f}", x["load_start"], x["load_end"]]
           for x in r["sessions"]]),
      "## Setup\n",
      f"- data, model, optimizer: the SGD bigram toy of the river-valley "
      "study as its review judged it (`configs/river_valley.py`'s `run`: "
      "synthetic bigram corpus, vocabulary 128 in 4 entropy groups, "
      "zero-initialised logit table, plain SGD, no clipping); eval set "
      f"{p['eval_batches']} batches of 8 x 32 tokens, the same for every "
      "run",
      f"- budgets {budgets}; every method's budget-i model exists after "
      f"E = {r['ends']} steps in all (WSD-S's checkpoints); warmup "
      f"{r['warmup']} steps; decays end at {p['final_fraction']} x peak",
      f"- WSD-S: {p['wsd_s_fraction']:.0%} linear decays (the paper's); "
      f"cyclic cosine: cosine to {p['final_fraction']} x peak at each E_i, "
      f"re-warm {round(p['rewarm_fraction'] * budgets[0])} steps; its LR area"
      f" is {', '.join(f'{x:.2f}' for x in a['lr_area_ratio'])} x WSD-S's "
      "up to each E_i",
      "- WSD: four variants (decay fraction x shape), all decay branches of "
      "one constant main run per peak and seed; at equal compute their "
      "model steps and decays are " + "; ".join(
          f"{label(v)}: steps {r['wsd_lengths'][v][0]}, decays "
          f"{r['wsd_lengths'][v][1]}" for v in r["wsd_lengths"]),
      f"- peak sweep: {p['peaks']} (x2 steps, "
      f"{math.log10(p['peaks'][-1] / p['peaks'][0]):.1f} decades); every "
      "peak x seed trains as one vmapped population per run shape",
      f"- peak selection rule (fixed before the first run): per method and "
      f"per budget, the peak with the lowest mean eval loss over the "
      f"{ns} selection seeds {p['selection_seeds']}; the comparison is read "
      f"on {ne} separate evaluation seeds {p['eval_seeds']} at the chosen "
      "peaks, so the noise that picked a peak does not also flatter it "
      "(winner's curse). None of these seeds is one the earlier study or "
      "its review used. Same seed = same data order (every run starts from "
      "the zero table), so differences are paired over evaluation seeds.",
      f"- verdict rule (fixed before the first run): a claim `a <= b` is "
      f"the one-sided `mean(a - b) < {mg}` nats on the paired "
      f"{a['level']:.0%} Student-t interval: reproduced if the interval is "
      f"wholly below {mg}, refuted if wholly at or above it, else "
      "inconclusive (`studies.verdicts`); the order is the combination of "
      "WSD-S <= WSD and WSD <= cyclic cosine, with WSD the paper's variant "
      f"({label(r['paper_wsd'])}); over budgets, refuted if any budget "
      "refutes it, reproduced if all reproduce it.",
      f"- every chosen peak interior to the sweep: {a['all_interior']}\n",
      "## Verdicts (tuned peaks, evaluation seeds)\n",
      f"- {PAPER_ORDER} (WSD = {label(r['paper_wsd'])}), per budget: " +
      ", ".join(f"{b}: **{v}**" for b, v in zip(budgets,
                                                a["order_by_budget"])) +
      f"; over budgets: **{a['verdict']}**",
      "- the same order with each WSD variant: " + "; ".join(
          f"{label(v)}: {', '.join(o['by_budget'])} -> {o['verdict']}"
          for v, o in a["order_every_variant"].items()) + "\n",
      "## Tuned table\n",
      f"Each method at its chosen peak (per budget): eval loss mean ± std "
      f"over the {ne} evaluation seeds; in brackets the chosen peak and the "
      "selection seeds' mean there (the selection seeds' optimism is the "
      "gap).\n",
      reports.markdown_table(
          ["method", *[f"budget {b} (E={e})" for b, e in
                       zip(budgets, r["ends"])]],
          [[label(m), *[
              f"{a['tuned'][m]['mean'][i]:.4f} ± {a['tuned'][m]['std'][i]:.4f}"
              f" (peak {c['peak']:g}{'' if c['interior'] else ', edge'}; "
              f"sel. {c['selection_mean']:.4f})"
              for i, c in enumerate(a["chosen"][m])]] for m in methods]),
      f"## Paired differences at the tuned peaks (mean [{a['level']:.0%} "
      f"CI], evaluation seeds; verdict of `a <= b` at margin {mg})\n",
      reports.markdown_table(
          ["a - b", *[f"budget {b}" for b in budgets]],
          [[f"{label(c['a'])} - {label(c['b'])}",
            *[f"{_ci(t)} {t['verdict']}" for t in c["budgets"]]]
           for c in a["comparisons"]]),
      "## Sensitivity: every method at one fixed peak (untuned)\n",
      "The earlier study's single-peak comparison, read from the same sweep "
      f"(evaluation seeds; WSD = {label(r['paper_wsd'])}). Mean eval loss; "
      "the order's verdict per budget.\n",
      reports.markdown_table(
          ["peak", "budget", *[label(m) for m in methods],
           "WSD-S - WSD", "WSD - cyclic", "order verdict"],
          [[f"{s['peak']:g}", b, *[f"{s['means'][m][i]:.4f}" for m in methods],
            _ci(s["order"][i]["wsd_s_minus_wsd"]),
            _ci(s["order"][i]["wsd_minus_cyclic"]), s["order"][i]["verdict"]]
           for s in a["sensitivity"].values()
           for i, b in enumerate(budgets)]),
      "Over budgets: " + "; ".join(
          f"peak {s['peak']:g}: **{s['verdict']}**"
          for s in a["sensitivity"].values()) + "\n",
      "## Figures\n",
      f"![loss vs peak]({r['figures']['peaks']})\n",
      f"![tuned differences]({r['figures']['tuned']})\n"]
  return "\n".join(lines)


SESSIONS = "sessions.json"


def record_session(workdir: str, what: str, started: float, cpu_start: float,
                   load_start: Sequence[float]) -> list[dict]:
  """Appends this process's session (wall and CPU seconds since
  ``started`` / ``cpu_start``, load averages, machine) to
  ``DIR/sessions.json``; returns every session recorded so far. A resumed
  study's cost is the sum over its sessions."""
  path = rundir.join(workdir, SESSIONS)
  sessions = rundir.read_json(path) if rundir.exists(path) else []
  sessions.append({
      "what": what,
      "started_utc": time.strftime("%Y-%m-%d %H:%M:%S",
                                   time.gmtime(started)),
      "wall_s": time.time() - started,
      "cpu_s": time.process_time() - cpu_start,
      "load_start": [round(x, 2) for x in load_start],
      "load_end": [round(x, 2) for x in os.getloadavg()],
      "machine": machine()})
  rundir.write_json(path, sessions)
  return sessions


def elapsed(sessions: Sequence[dict]) -> float:
  """Seconds from the first session's start to the last one's end."""
  starts = [calendar.timegm(time.strptime(x["started_utc"],
                                          "%Y-%m-%d %H:%M:%S"))
            for x in sessions]
  return max(t + x["wall_s"] for t, x in zip(starts, sessions)) - min(starts)


def run(workdir: str, quick: bool = False, plan_: Plan | None = None) -> dict:
  """Trains (resumes) the sweep, analyses it and writes ``report.md``,
  ``results.json`` and ``fair_compare_{peaks,tuned}.png``; returns the
  results."""
  started, cpu_start = time.time(), time.process_time()
  load_start = os.getloadavg()
  p = plan_ or plan(quick)
  train(p, workdir)
  train_s = time.time() - started
  losses = read_losses(p, workdir)
  res = analyse(p, losses)
  figs = {"peaks": peak_figure(p, losses, res, rundir.join(
              workdir, "fair_compare_peaks.png")),
          "tuned": tuned_figure(p, res, rundir.join(
              workdir, "fair_compare_tuned.png"))}
  sessions = record_session(workdir, "experiments.fair_compare (train what "
                            "is missing, then analyse)", started, cpu_start,
                            load_start)
  results = {
      "plan": dataclasses.asdict(p), "quick": p.quick, "regime": REGIME,
      "methods": list(p.methods), "paper_wsd": p.paper_wsd,
      "ends": list(p.ends), "warmup": p.warmup,
      "wsd_lengths": {v: [list(x) for x in p.wsd_lengths(f)]
                      for v, f, _ in p.variants},
      "losses": {m: np.where(np.isfinite(v), v, None).tolist()
                 for m, v in losses.items()},
      "analysis": res,
      "figures": {k: os.path.basename(v) for k, v in figs.items()},
      "train_s": train_s, "wall_s": sessions[-1]["wall_s"],
      "machine": machine(), "sessions": sessions,
      "total_wall_s": sum(x["wall_s"] for x in sessions),
      "total_cpu_s": sum(x["cpu_s"] for x in sessions),
      "elapsed_s": elapsed(sessions)}
  rundir.write_json(rundir.join(workdir, "results.json"), results)
  rundir.write_text(rundir.join(workdir, "report.md"), markdown(results))
  return results
