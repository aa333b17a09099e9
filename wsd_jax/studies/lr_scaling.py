"""The LR-scaling study (``python -m experiments.lr_scaling``): does the
optimal peak LR follow a power law in tokens, ``eta_opt = a * T**b``, with
an exponent ``b`` that does not depend on the batch size?

Shen et al. (arXiv 2408.13359, the Power scheduler) fit, for the WSD
schedule, ``eta_opt ~ beta * a * T**b`` (``beta`` the batch size, ``T``
the tokens seen) and build the Power schedule ``min(eta_max, a * n**b)`` on
it; PAPERS.md gives ``b ~ -0.51`` (third-party defaults under muP, marked
*check*). Here a grid of cells (token budget ``T`` x batch size ``B``),
each ONE population (``config.population``: peak LR x seed, trained as one
vmapped program by ``train.train_specs``)::

    DIR/T{T}_B{B}/population.json
    DIR/T{T}_B{B}/members/m{i}_peak_value={lr}_seed={s}/   run directories

Every run is AdamW with WSD (5% warmup, 20% linear decay to 0: the
schedule whose optimum the paper fits) for ``T / (B * seq_len)`` steps; its
final eval loss is on one fixed held-out set shared by every run.

Per cell, ``eta_opt`` is the argmin of the seed-mean final loss over the
log-LR grid, refined by the vertex of the parabola through it and its two
neighbours in ``log10(lr)`` (:func:`optimum`); per batch size, ``log10
eta_opt = log10 a + b log10 T`` is a least-squares line
(:func:`fit_power_law`). Uncertainty: a paired bootstrap over seeds (one
resample of the seeds for every cell at once) gives percentile intervals of
each ``b`` and of every difference ``b_B - b_B'``.

The rule, fixed before the first run: the claim "b does not depend on B" is
*reproduced* when the interval of every difference lies inside
``(-MARGIN, MARGIN)``, *refuted* when one lies wholly outside it, else
*inconclusive* (``verdicts.verdict`` on ``d < MARGIN`` and on ``-d <
MARGIN``, combined over pairs); a cell whose optimum is at the grid's edge
makes it inconclusive (its ``eta_opt`` is only a bound).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import platform
import time
from typing import Sequence

import ml_collections
import numpy as np

from configs import bigram as bigram_config
from configs import text as text_config
from wsd_jax import plots, reports, runs
from wsd_jax.data import corpus
from wsd_jax.plots import plt
from wsd_jax.runs import rundir
from wsd_jax.studies import common
from wsd_jax.studies.verdicts import LEVEL, combine, paired, verdict
from wsd_jax.train import population

TAG = "lr_scaling"
MARGIN = 0.2          # |b_B - b_B'| below this: "the same exponent"
PAPER_B = -0.51       # PAPERS.md (third-party defaults under muP; check)
BOOTSTRAP = 2000
WARMUP, DECAY = 0.05, 0.2
GRID_NOTE = (
    "The full form's LR grid was placed before its first run from three "
    "single-seed probe cells (T = 2^16 at B = 32, 2^17 and 2^19 at B = 8; "
    "optima near 0.05, 0.02 and 0.013, loss cliff above 0.1); nothing in the "
    "grid was changed after it ran.")
CHANGES = (
    "Changed after the first full run (the verdict rule and the data are "
    "not): the descriptive batch-size slope was first the slope of log a vs "
    "log B, a extrapolated to T = 1, which the small differences of b "
    "dominate; it is now the slope of log eta_opt vs log B at fixed T.")


@dataclasses.dataclass(frozen=True)
class Plan:
  """The grid: token budgets x batch sizes (sequences) cells, each a
  population over ``lrs`` x ``seeds``."""
  workload: str                 # "text" (byte-level MLP LM) or "bigram"
  tokens: tuple[int, ...]
  batches: tuple[int, ...]
  lrs: tuple[float, ...]
  seeds: tuple[int, ...]
  seq_len: int = 32
  eval_rows: int = 512          # fixed eval set: rows of seq_len tokens

  def steps(self, tokens: int, batch: int) -> int:
    return tokens // (batch * self.seq_len)


def log_grid(lo: float, n: int, per_decade: int = 4) -> tuple[float, ...]:
  return tuple(float(f"{lo * 10 ** (k / per_decade):.3g}") for k in range(n))


def plan(quick: bool = False) -> Plan:
  """Full: 4 token budgets over 1.2 decades (2^16 to 2^19, x2 steps), 3
  batch sizes (8, 16, 32 sequences), 12 peak LRs over 1.83 decades (sixth-
  decade steps, 0.004 to 0.27: probes put the optima at 0.01 to 0.06 and
  the loss cliff above 0.1), 3 seeds; 64 to 2,048 steps a run, about 12
  min on 2 CPU cores. Quick (CI): 2 x 2 cells, 4 LRs, 2 seeds, 16 to 64
  steps."""
  if quick:
    return Plan("text", tokens=(8192, 16384), batches=(8, 16),
                lrs=log_grid(1e-2, 4, 2), seeds=(0, 1), eval_rows=64)
  return Plan("text", tokens=tuple(2 ** k for k in range(16, 20)),
              batches=(8, 16, 32), lrs=log_grid(4e-3, 12, 6),
              seeds=(0, 1, 2))


REGIME = {
    "text": "Toy illustration: a byte-level MLP LM (context 4, embedding "
            "32, one hidden layer of 64) on the stdlib docstring corpus, "
            "runs of 10^4.8 to 10^5.7 tokens (under one epoch); the paper's "
            "are billions of tokens on transformers under muP.",
    "bigram": "Toy illustration: a zero-initialised bigram table (convex) "
              "on a synthetic corpus; not an LM pretraining regime.",
}


def base_config(p: Plan, root: str) -> ml_collections.ConfigDict:
  """The trainer config of every run (before its cell's batch and steps)."""
  if p.workload == "bigram":
    c = bigram_config.get_config()
  else:
    c = text_config.get_config()
    c.model.update(embed_dim=32, hidden_dim=64, num_layers=1, context=4)
    c.data.paths = corpus.stdlib_corpus(
        rundir.join(root, "stdlib_docstrings.txt"))
  rows = min(p.eval_rows, 64)
  c.data.update(seq_len=p.seq_len, eval_batch_size=rows,
                eval_batches=max(p.eval_rows // rows, 1))
  c.optimizer.update(name="adamw", b1=0.9, b2=0.95, weight_decay=0.0)
  c.schedule.update(name="wsd", warmup_fraction=WARMUP, decay_fraction=DECAY)
  return c


def cell_dir(root: str, tokens: int, batch: int) -> str:
  return rundir.join(root, f"T{tokens}_B{batch}")


def cell_config(p: Plan, base: ml_collections.ConfigDict, tokens: int,
                batch: int) -> ml_collections.ConfigDict:
  """The cell's population config: ``peak_value`` x ``seed``."""
  c = ml_collections.ConfigDict(base.to_dict())
  steps = p.steps(tokens, batch)
  c.data.batch_size = int(batch)
  c.train.update(steps=steps, log_every=max(steps // 4, 1), eval_every=steps,
                 checkpoint_every=steps, keep_every=0, keep_last=1,
                 progress=False, plots=False, async_checkpoint=False,
                 skip_nonfinite=True)
  c.population.grid = (f"peak_value={','.join(f'{x:g}' for x in p.lrs)};"
                       f"seed={','.join(str(s) for s in p.seeds)}")
  return c


def train(p: Plan, root: str) -> None:
  """Trains (resumes) every cell; each cell is one vmapped program."""
  base = base_config(p, root)
  specs = []
  for t, b in itertools.product(p.tokens, p.batches):
    configs, dirs = population.expand(cell_config(p, base, t, b),
                                      cell_dir(root, t, b))
    specs += [runs.RunSpec(c, d) for c, d in zip(configs, dirs)]
  common.train_stage(TAG, f"{len(p.tokens)}x{len(p.batches)} cells, "
                     f"{len(specs)} runs", specs)


def cell_losses(p: Plan, root: str, tokens: int, batch: int) -> np.ndarray:
  """``[lrs, seeds]`` final eval losses of a cell, read from its members'
  run directories (NaN where a run has none)."""
  d = cell_dir(root, tokens, batch)
  listing = rundir.read_json(rundir.join(d, rundir.POPULATION))["members"]
  out = np.full((len(p.lrs), len(p.seeds)), np.nan)
  for m in listing:
    i = p.lrs.index(float(m["values"]["peak_value"]))
    j = p.seeds.index(int(m["values"]["seed"]))
    loss = runs.Run(rundir.join(d, m["workdir"])).final_eval
    out[i, j] = np.nan if loss is None else loss
  return out


# ---------------------------------------------------------------- analysis

def optimum(lrs: Sequence[float], mean_loss: Sequence[float]
            ) -> tuple[float, bool]:
  """``(eta_opt, interior)``: the grid argmin of ``mean_loss`` (non-finite
  counts as worst), moved to the vertex of the parabola through it and its
  neighbours in ``log10(lr)`` when it is interior and that parabola is
  convex (the vertex clipped to the neighbours)."""
  x = np.log10(np.asarray(lrs, np.float64))
  y = np.where(np.isfinite(mean_loss), np.asarray(mean_loss, np.float64),
               np.inf)
  i = int(np.argmin(y))
  if not 0 < i < len(x) - 1:
    return float(10 ** x[i]), False
  (x0, x1, x2), (y0, y1, y2) = x[i - 1:i + 2], y[i - 1:i + 2]
  if not np.all(np.isfinite([y0, y2])):
    return float(10 ** x1), True
  c = np.polyfit([x0, x1, x2], [y0, y1, y2], 2)
  if c[0] <= 0:
    return float(10 ** x1), True
  return float(10 ** np.clip(-c[1] / (2 * c[0]), x0, x2)), True


def fit_power_law(tokens: Sequence[float], eta: Sequence[float]
                  ) -> tuple[float, float]:
  """``(a, b)`` of the least-squares line ``log10 eta = log10 a + b log10
  T``."""
  b, log_a = np.polyfit(np.log10(tokens), np.log10(eta), 1)
  return float(10 ** log_a), float(b)


def optima(p: Plan, losses_BxTxLxS: np.ndarray, seeds_idx=None
           ) -> tuple[np.ndarray, np.ndarray]:
  """``eta_opt[B, T]`` and ``interior[B, T]`` of the seed-mean curves
  (over the seeds ``seeds_idx``, default all)."""
  v = losses_BxTxLxS if seeds_idx is None else losses_BxTxLxS[..., seeds_idx]
  mean = np.where(np.isfinite(v), v, np.inf).mean(axis=-1)
  eta = np.empty(mean.shape[:2])
  inside = np.empty(mean.shape[:2], bool)
  for bi, ti in np.ndindex(*eta.shape):
    eta[bi, ti], inside[bi, ti] = optimum(p.lrs, mean[bi, ti])
  return eta, inside


def exponents(p: Plan, eta_BxT: np.ndarray) -> np.ndarray:
  return np.array([fit_power_law(p.tokens, e)[1] for e in eta_BxT])


def bootstrap(p: Plan, losses: np.ndarray, n: int = BOOTSTRAP,
              seed: int = 0) -> np.ndarray:
  """``[n, B]`` exponents, each from one resample of the seeds (with
  replacement) shared by every cell: a paired bootstrap."""
  rng = np.random.default_rng(seed)
  s = losses.shape[-1]
  return np.array([exponents(p, optima(p, losses, rng.integers(0, s, s))[0])
                   for _ in range(n)])


def percentile_ci(samples: np.ndarray, level: float = LEVEL) -> list[float]:
  lo, hi = np.percentile(samples, [50 * (1 - level), 50 * (1 + level)])
  return [float(lo), float(hi)]


def within(ci: Sequence[float], margin: float) -> str:
  """The claim ``|d| < margin`` on an interval of ``d``: both one-sided
  claims ``d < margin`` and ``-d < margin`` (``verdicts.verdict``)."""
  lo, hi = ci
  return combine([verdict([lo, hi], margin), verdict([-hi, -lo], margin)])


def analyse(p: Plan, losses: np.ndarray, margin: float = MARGIN,
            n_boot: int = BOOTSTRAP) -> dict:
  """Optima, fits, bootstrap intervals and verdicts from ``losses[B, T,
  LR, S]`` (final eval losses)."""
  eta, inside = optima(p, losses)
  fits = [fit_power_law(p.tokens, e) for e in eta]
  boot = bootstrap(p, losses, n_boot)
  b = np.array([f[1] for f in fits])
  # Per seed: each seed's own optima and fits (for the paired t-interval).
  per_seed = np.array([exponents(p, optima(p, losses, [j])[0])
                       for j in range(losses.shape[-1])])     # [S, B]
  pairs = []
  for i, k in itertools.combinations(range(len(p.batches)), 2):
    ci = percentile_ci(boot[:, i] - boot[:, k])
    t = paired(per_seed[:, i], per_seed[:, k])
    pairs.append({"batches": [p.batches[i], p.batches[k]],
                  "diff": float(b[i] - b[k]), "ci": ci,
                  "verdict": within(ci, margin),
                  "per_seed_t": {"per_seed": t["per_seed"], "mean": t["mean"],
                                 "ci": t["ci"],
                                 "verdict": within(t["ci"], margin)}})
  edge = not bool(inside.all())
  v = combine([q["verdict"] for q in pairs])
  if edge and v != "refuted":
    v = "inconclusive"
  pooled = boot.mean(axis=1)
  pooled_ci = percentile_ci(pooled)
  # The batch-size factor (descriptive): slope of log10 eta_opt vs log10 B
  # at each T, averaged over T (the paper: eta_opt proportional to B).
  b_slope = float(np.mean(np.polyfit(np.log10(p.batches), np.log10(eta),
                                     1)[0]))
  return {
      "eta_opt": eta.tolist(), "interior": inside.tolist(),
      "all_interior": not edge,
      "fits": [{"batch": bb, "a": f[0], "b": f[1],
                "b_ci": percentile_ci(boot[:, i]),
                "b_per_seed": per_seed[:, i].tolist()}
               for i, (bb, f) in enumerate(zip(p.batches, fits))],
      "pairs": pairs, "margin": margin, "verdict": v,
      "bootstrap": {"n": n_boot, "level": LEVEL,
                    "kind": "paired over seeds, percentile"},
      "pooled_b": float(b.mean()), "pooled_b_ci": pooled_ci,
      "paper_b": PAPER_B,
      "near_paper": within([pooled_ci[0] - PAPER_B, pooled_ci[1] - PAPER_B],
                           margin),
      "eta_vs_batch_slope": b_slope,
      "distinct_resamples": math.comb(2 * losses.shape[-1] - 1,
                                      losses.shape[-1])}


# ---------------------------------------------------------------- report

def loss_figure(p: Plan, losses: np.ndarray, eta: np.ndarray, path: str
                ) -> str:
  """Seed-mean final loss vs peak LR, one panel per batch size, one line
  per token budget, a star at each cell's eta_opt (interpolated)."""
  fig, axes = plt.subplots(1, len(p.batches), figsize=(4.2 * len(p.batches),
                                                       3.8), squeeze=False)
  colors = plots.palette(len(p.tokens))
  for bi, (ax, batch) in enumerate(zip(axes[0], p.batches)):
    for ti, t in enumerate(p.tokens):
      v = losses[bi, ti]
      mean = np.nanmean(v, axis=-1)
      std = np.nanstd(v, axis=-1, ddof=1) if v.shape[-1] > 1 else None
      ax.errorbar(p.lrs, mean, yerr=std, fmt="-o", ms=3, capsize=2, lw=1.1,
                  color=colors[ti], label=f"T = {t:,}")
      ax.plot(eta[bi, ti], np.interp(np.log10(eta[bi, ti]),
                                     np.log10(p.lrs), mean), "*", ms=12,
              color=colors[ti])
    ax.set_xscale("log")
    ax.set(xlabel="peak LR", title=f"batch {batch} x {p.seq_len} tokens")
    ax.grid(alpha=0.3)
  axes[0][0].set_ylabel("final eval loss (mean ± std over seeds)")
  axes[0][-1].legend(fontsize=7)
  return plots.save(fig, path)


def eta_figure(p: Plan, res: dict, path: str) -> str:
  """eta_opt vs T per batch size (log-log) with the fitted power laws."""
  fig, ax = plt.subplots(figsize=(6.5, 4.2))
  colors = plots.palette(len(p.batches))
  t = np.asarray(p.tokens, np.float64)
  for bi, f in enumerate(res["fits"]):
    ax.plot(t, res["eta_opt"][bi], "o", color=colors[bi])
    ax.plot(t, f["a"] * t ** f["b"], "-", color=colors[bi],
            label=f"B = {f['batch']}: b = {f['b']:+.2f} "
                  f"[{f['b_ci'][0]:+.2f}, {f['b_ci'][1]:+.2f}]")
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set(xlabel="tokens T", ylabel="optimal peak LR",
         title="eta_opt = a T^b per batch size")
  ax.grid(alpha=0.3, which="both")
  ax.legend(fontsize=8)
  return plots.save(fig, path)


def markdown(r: dict) -> str:
  """The report: the rule, the verdicts, the tables and the figures."""
  p, a = r["plan"], r["analysis"]
  lrs = p["lrs"]
  fmt_ci = lambda ci: f"[{ci[0]:+.3f}, {ci[1]:+.3f}]"
  lines = [
      "# The optimal LR as a power law in tokens (Power scheduler claim)\n",
      "Claim (Shen et al., arXiv 2408.13359): under WSD the optimal peak LR "
      "follows `eta_opt = a * T^b` in the tokens T, with one exponent b for "
      "every batch size (the batch size multiplies `a`).\n",
      f"Regime: {r['regime']}\n",
      f"Setup: AdamW (b1 0.9, b2 0.95, no weight decay, clip 1), WSD with "
      f"{WARMUP:.0%} warmup and a {DECAY:.0%} linear decay to 0 (the "
      "schedule whose optimum the paper fits), sequences of "
      f"{p['seq_len']} tokens. Cells: tokens {p['tokens']} x batch sizes "
      f"{p['batches']} (sequences); each cell is one population over peak "
      f"LRs {lrs} x seeds {p['seeds']}. Final eval loss on one fixed held-out "
      f"set of {p['eval_rows'] * p['seq_len']:,} tokens.\n",
      "Rule (fixed before the first run): per cell, eta_opt is the argmin of "
      "the seed-mean loss, refined by the vertex of a parabola in log10 LR "
      "through it and its neighbours; per batch size, a least-squares line "
      "in log-log gives b. A paired bootstrap over seeds "
      f"({a['bootstrap']['n']} resamples, each shared by all cells) gives "
      f"{LEVEL:.0%} percentile intervals. \"b does not depend on B\" is "
      f"**reproduced** if every pairwise difference's interval lies inside "
      f"(-{a['margin']}, {a['margin']}), **refuted** if one lies wholly "
      "outside, else **inconclusive**; an optimum at the grid edge makes it "
      "inconclusive.\n",
      f"{GRID_NOTE}\n" if not r["quick"] else "",
      f"Command: `python -m experiments.lr_scaling --workdir=DIR"
      f"{' --quick' if r['quick'] else ''}`. Wall time {r['wall_s']:.0f} s "
      f"on {r['machine']}.\n",
      "## Verdict\n",
      f"- b independent of batch size (margin {a['margin']}): "
      f"**{a['verdict']}**",
      f"- every optimum interior to the LR grid: {a['all_interior']}",
      f"- pooled b = {a['pooled_b']:+.3f} {fmt_ci(a['pooled_b_ci'])} vs the "
      f"paper's {a['paper_b']} (PAPERS.md, check); \"b is within "
      f"±{a['margin']} of the paper's\" (same rule): **{a['near_paper']}** "
      "(a toy illustration, not a test at the paper's scale)",
      f"- slope of log eta_opt vs log B at fixed T (mean over T): "
      f"{a['eta_vs_batch_slope']:+.2f} (the paper: eta_opt proportional to "
      "B, slope 1; descriptive)",
      f"- with {len(p['seeds'])} seeds the bootstrap has "
      f"{a['distinct_resamples']} distinct resamples, so its intervals are "
      "coarse; the paired t-interval over per-seed fits (sensitivity, "
      f"below) says: {', '.join(q['per_seed_t']['verdict'] for q in a['pairs'])}"
      "\n",
      f"{CHANGES}\n" if not r["quick"] else "",
      "## Fits per batch size\n",
      reports.markdown_table(
          ["batch", "a", "b", f"b {LEVEL:.0%} bootstrap CI", "b per seed"],
          [[f["batch"], f"{f['a']:.4g}", f"{f['b']:+.3f}", fmt_ci(f["b_ci"]),
            ", ".join(f"{x:+.3f}" for x in f["b_per_seed"])]
           for f in a["fits"]]),
      "## Differences of b between batch sizes\n",
      reports.markdown_table(
          ["B vs B'", "b_B - b_B'", "bootstrap CI", "verdict",
           "paired t over per-seed fits (sensitivity)"],
          [[f"{q['batches'][0]} vs {q['batches'][1]}", f"{q['diff']:+.3f}",
            fmt_ci(q["ci"]), q["verdict"],
            f"{q['per_seed_t']['mean']:+.3f} {fmt_ci(q['per_seed_t']['ci'])}"
            f" {q['per_seed_t']['verdict']}"] for q in a["pairs"]]),
      "## Optimal LR per cell\n",
      reports.markdown_table(
          ["batch", *[f"T={t:,}" for t in p["tokens"]]],
          [[bb, *[f"{e:.3g}" + ("" if ok else " (edge)")
                  for e, ok in zip(es, ins)]]
           for bb, es, ins in zip(p["batches"], a["eta_opt"],
                                  a["interior"])]),
      "## Final eval loss (seed mean) per cell and peak LR\n",
      reports.markdown_table(
          ["batch", "tokens", "steps", *[f"{x:g}" for x in lrs]],
          [[bb, t, t // (bb * p["seq_len"]),
            *[f"{np.nanmean(v):.4f}" for v in r["losses"][bi][ti]]]
           for bi, bb in enumerate(p["batches"])
           for ti, t in enumerate(p["tokens"])]),
      f"![loss vs LR]({r['figures']['loss']})\n",
      f"![eta_opt vs tokens]({r['figures']['eta']})\n"]
  return "\n".join(lines)


def machine() -> str:
  return f"{platform.machine()} CPU, {os.cpu_count()} cores (shared)"


def run(workdir: str, quick: bool = False, plan_: Plan | None = None) -> dict:
  """Trains (resumes) every cell, analyses them, writes ``report.md``,
  ``results.json`` and ``lr_scaling_{loss,eta}.png``; returns the
  results."""
  start = time.perf_counter()
  p = plan_ or plan(quick)
  train(p, workdir)
  losses = np.array([[cell_losses(p, workdir, t, b) for t in p.tokens]
                     for b in p.batches])                 # [B, T, LR, S]
  res = analyse(p, losses)
  eta = np.asarray(res["eta_opt"])
  figs = {"loss": loss_figure(p, losses, eta,
                              rundir.join(workdir, "lr_scaling_loss.png")),
          "eta": eta_figure(p, res, rundir.join(workdir,
                                                "lr_scaling_eta.png"))}
  results = {"plan": dataclasses.asdict(p), "quick": quick,
             "regime": REGIME[p.workload], "losses": np.where(
                 np.isfinite(losses), losses, None).tolist(),
             "analysis": res,
             "figures": {k: os.path.basename(v) for k, v in figs.items()},
             "wall_s": time.perf_counter() - start, "machine": machine()}
  rundir.write_json(rundir.join(workdir, "results.json"), results)
  rundir.write_text(rundir.join(workdir, "report.md"), markdown(results))
  return results
