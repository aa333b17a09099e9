"""A toy in the right regime (issue 15, item 2): ``python -m
experiments.zipf_regime``.

The river-valley toy (``studies.river_valley``) is a convex bigram table
trained with SGD whose deterministic rows are learned by step ~500, so its
"river" runs out early. Here the corpus is a Zipfian bigram language
(``data.zipf_bigram``: 1,024 tokens, Zipf-like frequencies, rows of graded
entropy) and the model an LM-shaped, non-convex context-1 MLP (embedding 32,
gelu 64, untied output) trained with AdamW (b1 0.9, b2 0.95, weight decay
0.1, clip 1): rare tokens keep being learned through the whole run.

Every loss is EXACT: a context-1 model's expected next-token cross-entropy
is ``sum_x pi[x] CE(P[x], softmax(f(x)))`` (``zipf_bigram.
population_loss``), computed from the checkpointed parameters; "excess" is
that minus the language's optimal loss. No sampling noise enters a verdict.

Two questions, each answered by code from the run directories::

    DIR/peak{LR}/wsd/seed{S}/                    WSD main run (constant LR)
    DIR/peak{LR}/wsd/seed{S}/branches/budget{B}/ its decay to budget B
    DIR/peak{LR}/wsd/seed{S}/branches/hill{s}/   a decay from stable step s
    DIR/peak{LR}/wsd_s/seed{S}/                  WSD-S (one run)
    DIR/peak{LR}/cyclic_cosine/seed{S}/          cyclic cosine (one run)

1. The regime (:func:`regime`), at WSD's selected peak on the evaluation
   seeds: a decay of the same length from several stable checkpoints. The
   *stable slope* is the least-squares slope of the stable excess against
   the step, the *river slope* that of the decayed excess against the step
   the decay starts from; the *hill share* at a checkpoint is the part of
   its excess its decay removes. The river has *not run out* when the decayed
   loss still improves over the last third of the stable phase: the claim
   ``mean(decayed(last) - decayed(2/3)) < 0`` over seeds (``verdicts``).
2. Wen et al.'s order WSD-S <= WSD <= cyclic cosine at equal compute
   (``studies.equal_compute``), each method at its own best peak per budget,
   chosen on selection seeds that are not the evaluation seeds. "a <= b" is
   the claim ``mean(a - b) < MARGIN`` on paired differences over the
   evaluation seeds (95% Student-t), per budget; the order holds at a budget
   when both parts do (``verdicts.combine``).
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from configs import zipf_bigram as zipf_config
from wsd_jax import plots, reports, runs, train
from wsd_jax.data import zipf_bigram
from wsd_jax.plots import plt
from wsd_jax.runs import rundir
from wsd_jax.studies import common
from wsd_jax.studies import equal_compute as ec
from wsd_jax.studies.verdicts import LEVEL, combine, paired, verdict
from wsd_jax.train.config import with_schedule

TAG = "zipf_regime"
MARGIN = 1e-3           # nats: "a <= b" is mean(a - b) < MARGIN
METHODS = ec.METHODS    # ("wsd", "wsd_s", "cyclic_cosine")
TOY = "toy illustration"


@dataclasses.dataclass(frozen=True)
class Plan:
  """Budgets, peaks, seeds and the regime check's decays."""
  budgets: tuple[int, ...]
  peaks: tuple[float, ...]
  selection_seeds: tuple[int, ...]
  eval_seeds: tuple[int, ...]
  hill_points: int = 6          # decays from this many stable checkpoints
  decay_fraction: float = 0.1   # WSD / WSD-S decay: 10% of the budget
  final_fraction: float = 0.1   # decays end at 0.1 x peak
  warmup_fraction: float = 0.05  # of the first budget
  rewarm_fraction: float = 0.16  # cyclic cosine re-warm, x first budget
  vocab_size: int = 1024
  batch_size: int = 8
  seq_len: int = 16
  eval_batches: int = 8         # sampled eval (curves only; verdicts exact)
  eval_every: int = 20

  def __post_init__(self):
    b = self.budgets
    if len(b) < 2 or any(int(x) != x or x < 1 for x in b) or list(b) != sorted(
        set(b)):
      raise ValueError(f"budgets must be >= 2 increasing positive integers, "
                       f"got {b}")
    if len(self.peaks) < 2 or not all(
        math.isfinite(x) and x > 0 for x in self.peaks) or list(
            self.peaks) != sorted(set(self.peaks)):
      raise ValueError(f"peaks must be >= 2 increasing positive LRs, got "
                       f"{self.peaks}")
    if not self.selection_seeds or len(self.eval_seeds) < 2:
      raise ValueError(f"need >= 1 selection seed and >= 2 evaluation seeds, "
                       f"got {self.selection_seeds} and {self.eval_seeds}")
    if set(self.selection_seeds) & set(self.eval_seeds):
      raise ValueError(f"selection seeds {self.selection_seeds} and "
                       f"evaluation seeds {self.eval_seeds} must be disjoint")
    if self.hill_points < 3:
      raise ValueError(f"hill_points must be >= 3, got {self.hill_points}")
    if not 0 < self.decay_fraction < 1:
      raise ValueError(f"decay_fraction must be in (0, 1), got "
                       f"{self.decay_fraction}")
    if self.stable_end % self.hill_points:
      raise ValueError(f"hill_points={self.hill_points} must divide the last "
                       f"stable step {self.stable_end}")

  @property
  def seeds(self) -> tuple[int, ...]:
    return tuple(self.selection_seeds) + tuple(self.eval_seeds)

  @property
  def warmup(self) -> int:
    return round(self.warmup_fraction * self.budgets[0])

  def equal_compute(self, peak: float) -> ec.Plan:
    return ec.Plan.at_peak(peak, self.budgets, self.decay_fraction,
                           self.final_fraction, self.warmup_fraction,
                           self.rewarm_fraction)

  @property
  def stable_end(self) -> int:
    """The WSD main run's last step (the last budget's fork)."""
    return self.equal_compute(1.0).forks[-1]

  @property
  def hill_steps(self) -> tuple[int, ...]:
    every = self.stable_end // self.hill_points
    return tuple(range(every, self.stable_end + 1, every))

  @property
  def hill_decay(self) -> int:
    """Every regime-check decay is as long as the last budget's."""
    return self.equal_compute(1.0).decays[-1]



def log_grid(lo: float, n: int, per_decade: int) -> tuple[float, ...]:
  return tuple(float(f"{lo * 10 ** (k / per_decade):.3g}") for k in range(n))


def plan(quick: bool = False) -> Plan:
  """Full: budgets 200, 400, 800 steps of 128 tokens; 6 peaks over 1.67
  decades (1e-3 to 4.6e-2; a short single-seed probe put the constant-LR
  optimum near 3e-3 to 1e-2 at 1,200 steps); 2 selection + 5 evaluation
  seeds; regime decays from 8 stable checkpoints (every 90 steps, which
  holds WSD's forks 180 and 360, so the main runs save only there). Quick
  (CI): V = 128, budgets 20/40, 2 peaks, 1 + 2 seeds."""
  if quick:
    return Plan(budgets=(20, 40), peaks=(1e-2, 3e-2), selection_seeds=(100,),
                eval_seeds=(0, 1), hill_points=4, vocab_size=128,
                eval_batches=2, eval_every=2)
  return Plan(budgets=(200, 400, 800), peaks=log_grid(1e-3, 6, 3),
              selection_seeds=(100, 101), eval_seeds=(0, 1, 2, 3, 4),
              hill_points=8)


def base_config(p: Plan) -> ml_collections.ConfigDict:
  """The trainer config every run starts from (``configs/zipf_bigram``)."""
  c = zipf_config.get_config()
  c.data.update(vocab_size=p.vocab_size, batch_size=p.batch_size,
                seq_len=p.seq_len, eval_batches=p.eval_batches)
  c.train.update(eval_every=p.eval_every, log_every=p.eval_every,
                 progress=False, plots=False, async_checkpoint=False,
                 keep_last=1, keep_every=0)
  return c


def peak_dir(root: str, peak: float) -> str:
  return rundir.join(root, f"peak{peak:g}")


def hill_branch(step: int) -> str:
  return f"hill{step}"


def hill_dir(root: str, peak: float, seed: int, step: int) -> str:
  return rundir.branch_dir(ec.run_dir(peak_dir(root, peak), "wsd", seed),
                           hill_branch(step))


def cyclic_specs(e: ec.Plan, base: ml_collections.ConfigDict, root: str,
                 seeds: Sequence[int], upto: int) -> list[runs.RunSpec]:
  """``ec.cyclic_specs`` trained only to ``E_upto``, keeping the
  checkpoints at ``E_0 .. E_upto`` (the exact losses are read from them).
  Training in one stage per budget saves only there (a save costs ~0.25 s
  on the shared CPU; ``with_schedule``'s gcd would save every 20 steps);
  the schedule is the whole run's, so the updates are those of one run."""
  e.check_eval_every(base.train.eval_every)
  out = []
  for m, sched in (("wsd_s", e.wsd_s()), ("cyclic_cosine", e.cyclic_cosine())):
    for s in seeds:
      c = with_schedule(base, sched, e.ends[upto], keep_steps=e.ends[:upto + 1],
                        checkpoint_every=e.ends[upto])
      c.seed = int(s)
      out.append(runs.RunSpec(c, ec.run_dir(root, m, s)))
  return out


def train_comparison(p: Plan, root: str) -> int:
  """Trains (resumes) every method at every peak and seed; runs of one
  shape train as one vmapped program. Returns the number of runs trained."""
  base = base_config(p)
  plans = {x: p.equal_compute(x) for x in p.peaks}
  n = f"{len(p.peaks)} peaks x {len(p.seeds)} seeds"
  trained = common.train_stage(TAG, f"WSD main runs ({n})", [
      s for x, e in plans.items() for s in ec.main_specs(
          e, base, peak_dir(root, x), p.seeds, extra_keep=p.hill_steps)])
  trained += common.train_stage(TAG, "WSD decay branches", [
      s for x, e in plans.items()
      for s in ec.branch_specs(e, peak_dir(root, x), p.seeds)])
  for i in range(len(p.budgets)):
    trained += common.train_stage(
        TAG, f"WSD-S and cyclic cosine to budget {i + 1}", [
        s for x, e in plans.items()
        for s in cyclic_specs(e, base, peak_dir(root, x), p.seeds, i)
        if not _past(s)])
  return trained


def _past(spec: runs.RunSpec) -> bool:
  """Whether the run already has a checkpoint at or after the stage's end
  (``common.finished`` asks for one exactly there: a later stage's run)."""
  return rundir.is_run(spec.workdir) and max(
      runs.Run(spec.workdir).checkpoint_steps(), default=-1) >= int(
          spec.config.train.steps)


def train_hills(p: Plan, root: str, peak: float) -> int:
  """The regime check's decays (``hill_decay`` steps, linear to 0.1 x
  peak) from every hill step of WSD's main runs at ``peak``, eval seeds."""
  d = ec.run_dir
  return common.train_stage(TAG, f"regime-check decays at peak {peak:g}", [
      common.branch_spec(d(peak_dir(root, peak), "wsd", s), step,
                         p.hill_decay, "linear", p.final_fraction * peak,
                         hill_branch(step))
      for s in p.eval_seeds for step in p.hill_steps])


# ------------------------------------------------------------ exact losses

class Exact:
  """Exact excess loss of a checkpoint: one setup, one compiled forward."""

  def __init__(self, p: Plan):
    c = base_config(p)
    self.setup = train.setup(c)
    self.spec = zipf_bigram.spec_of(c.data)
    tokens = jnp.arange(self.spec.vocab_size, dtype=jnp.int32)[:, None]
    graphdef = self.setup.graphdef
    self._logits = jax.jit(lambda params: nnx.merge(graphdef, params)(
        tokens)[:, 0])

  def excess(self, workdir: str, step: int) -> float:
    ckpt = runs.Checkpointer(rundir.checkpoint_dir(workdir), read_only=True)
    if step not in ckpt.steps():
      raise ValueError(f"no checkpoint at step {step} in {workdir}; "
                       f"available: {ckpt.steps()}")
    state = ckpt.restore(step, self.setup.state, None)
    logits = np.asarray(self._logits(state.params))
    return zipf_bigram.population_loss(self.spec, logits) - \
        self.spec.optimal_loss


def comparison_losses(p: Plan, root: str, ex: Exact) -> np.ndarray:
  """``[method, budget, peak, seed]`` exact excess of each budget's model."""
  out = np.full((len(METHODS), len(p.budgets), len(p.peaks), len(p.seeds)),
                np.nan)
  for k, x in enumerate(p.peaks):
    e = p.equal_compute(x)
    for m, method in enumerate(METHODS):
      for i in range(len(p.budgets)):
        for j, s in enumerate(p.seeds):
          out[m, i, k, j] = ex.excess(
              ec.model_dir(e, peak_dir(root, x), method, s, i),
              e.model_steps(method)[i])
  return out


def hill_losses(p: Plan, root: str, peak: float, ex: Exact
                ) -> tuple[np.ndarray, np.ndarray]:
  """``(stable, decayed)``, each ``[eval seed, hill step]`` exact excess."""
  main = lambda s: ec.run_dir(peak_dir(root, peak), "wsd", s)
  stable = np.array([[ex.excess(main(s), h) for h in p.hill_steps]
                     for s in p.eval_seeds])
  decayed = np.array([[ex.excess(hill_dir(root, peak, s, h), h + p.hill_decay)
                       for h in p.hill_steps] for s in p.eval_seeds])
  return stable, decayed


# ---------------------------------------------------------------- analysis

def select(losses_BxPxS: np.ndarray, seeds_idx: Sequence[int]
           ) -> np.ndarray:
  """``[budget]`` index of the peak with the lowest mean loss over the
  seeds ``seeds_idx`` (a non-finite loss counts as worst)."""
  v = np.asarray(losses_BxPxS, np.float64)[..., list(seeds_idx)]
  return np.argmin(np.where(np.isfinite(v), v, np.inf).mean(axis=-1),
                   axis=-1)


def order(losses_MxBxPxS: np.ndarray, n_select: int,
          margin: float = MARGIN) -> dict:
  """Wen et al.'s order at each budget, each method at the peak its first
  ``n_select`` seeds (selection) pick; judged on the others (evaluation).

  Returns per budget ``best`` (peak index per method), the two paired
  comparisons ``wsd_s <= wsd`` and ``wsd <= cyclic_cosine`` (paired
  differences, mean, CI, verdict) and the combined ``verdict``; and the
  ``verdict`` over all budgets."""
  v = np.asarray(losses_MxBxPxS, np.float64)
  n = v.shape[-1]
  if not 0 < n_select < n - 1:
    raise ValueError(f"n_select={n_select} must leave >= 2 of {n} seeds "
                     "for evaluation")
  sel, ev = range(n_select), range(n_select, n)
  best = np.stack([select(v[m], sel) for m in range(len(METHODS))])  # [M, B]
  rows = []
  for i in range(v.shape[1]):
    at = {mt: v[m, i, best[m, i]][list(ev)] for m, mt in enumerate(METHODS)}
    parts = {}
    for a, b in (("wsd_s", "wsd"), ("wsd", "cyclic_cosine")):
      t = paired(at[a], at[b])
      parts[f"{a} <= {b}"] = dict(t, verdict=verdict(t["ci"], margin))
    rows.append({"budget_index": i,
                 "best": {mt: int(best[m, i]) for m, mt in enumerate(METHODS)},
                 "eval": {mt: at[mt].tolist() for mt in METHODS},
                 "parts": parts,
                 "verdict": combine([q["verdict"] for q in parts.values()])})
  return {"budgets": rows, "margin": margin,
          "verdict": combine([r["verdict"] for r in rows])}


def slope(steps: Sequence[float], values: Sequence[float]) -> float:
  """Least-squares slope of ``values`` against ``steps``."""
  return float(np.polyfit(np.asarray(steps, np.float64),
                          np.asarray(values, np.float64), 1)[0])


def regime(steps: Sequence[int], stable_SxH: np.ndarray,
           decayed_SxH: np.ndarray) -> dict:
  """The regime check from the excess before (``stable``) and after
  (``decayed``) a decay from each stable step ``steps``, per seed.

  ``stable_slope`` / ``river_slope``: least-squares slopes (nats / 1k
  steps) of the seed-mean stable and decayed excess against the step;
  ``hill_share[h]``: ``(stable - decayed) / stable`` (seed mean);
  ``last_third``: the paired change of the decayed excess from the first
  hill step at or after 2/3 of the run to the last one (negative: the
  river still flows), with the verdict on ``change < 0``."""
  steps_ = [int(x) for x in steps]
  steps = np.asarray(steps, np.float64)
  st, dc = np.asarray(stable_SxH, np.float64), np.asarray(decayed_SxH,
                                                          np.float64)
  if st.shape != dc.shape or st.shape[1] != steps.size or steps.size < 3:
    raise ValueError(f"stable {st.shape} and decayed {dc.shape} must be "
                     f"[seeds, {steps.size} >= 3 hill steps]")
  if not np.all(np.diff(steps) > 0):
    raise ValueError(f"hill steps must increase, got {list(steps_)}")
  two_thirds = int(np.argmax(steps >= steps[-1] * 2 / 3))
  change = paired(dc[:, -1], dc[:, two_thirds])
  share = (st - dc) / st
  per_seed_river = [slope(steps, d) * 1e3 for d in dc]
  per_seed_stable = [slope(steps, s) * 1e3 for s in st]
  river_ci = paired(per_seed_river, np.zeros(len(per_seed_river)))
  return {
      "steps": steps.astype(int).tolist(),
      "stable": st.mean(axis=0).tolist(), "decayed": dc.mean(axis=0).tolist(),
      "stable_slope": slope(steps, st.mean(axis=0)) * 1e3,
      "river_slope": slope(steps, dc.mean(axis=0)) * 1e3,
      "stable_slope_per_seed": per_seed_stable,
      "river_slope_per_seed": per_seed_river,
      "river_slope_ci": river_ci["ci"],
      "hill_share": share.mean(axis=0).tolist(),
      "hill_share_per_seed": share.tolist(),
      "last_third": {"from_step": int(steps[two_thirds]),
                     "to_step": int(steps[-1]), **change,
                     "verdict": verdict(change["ci"], 0.0)},
  }


# ---------------------------------------------------------------- report

def figure(p: Plan, root: str, losses: np.ndarray, res: dict, path: str
           ) -> str:
  """Three panels: eval-loss curves of each method at its selected peak
  (last budget, first evaluation seed), exact excess vs peak at the last
  budget (mean ± std over evaluation seeds), and the regime check."""
  fig, (ax, bx, cx) = plt.subplots(1, 3, figsize=(16, 4.2))
  last = res["order"]["budgets"][-1]["best"]
  seed = p.eval_seeds[0]
  opt = optimal_loss(p)
  for m in METHODS:
    x = p.peaks[last[m]]
    e = p.equal_compute(x)
    main = runs.Run(ec.run_dir(peak_dir(root, x), m, seed))
    members = [main] + ([runs.Run(ec.model_dir(e, peak_dir(root, x), m, seed,
                                               i))
                         for i in range(len(p.budgets))] if m == "wsd" else [])
    for j, r in enumerate(members):
      steps, vals = ec.eval_curve(r, main)
      ax.plot(steps, vals - opt, lw=1.1, color=plots.color(m),
              label=f"{ec.LABELS[m]} (peak {x:g})" if j == 0 else None)
  ax.set(xlabel="step", ylabel="sampled eval loss - optimal loss",
         title=f"curves at each method's peak (seed {seed})")
  ev = slice(len(p.selection_seeds), None)
  for m, mt in enumerate(METHODS):
    v = losses[m, -1][:, ev]
    bx.errorbar(p.peaks, v.mean(axis=1), yerr=v.std(axis=1, ddof=1),
                fmt="-o", ms=3, capsize=2, color=plots.color(mt),
                label=ec.LABELS[mt])
  bx.set_xscale("log")
  bx.set_yscale("log")
  bx.set(xlabel="peak LR", ylabel="exact excess loss (nats)",
         title=f"budget {p.budgets[-1]} (evaluation seeds)")
  g = res["regime"]
  cx.plot(g["steps"], g["stable"], "-o", ms=3, color=plots.color("wsd"),
          label="stable (constant LR)")
  cx.plot(g["steps"], g["decayed"], "-s", ms=3, color="k",
          label=f"after a {p.hill_decay}-step decay")
  cx.set(xlabel="stable step the decay starts from",
         ylabel="exact excess loss (nats)",
         title=f"regime check, WSD peak {res['regime_peak']:g}")
  for a in (ax, bx, cx):
    a.grid(alpha=0.3, which="both")
    a.legend(fontsize=8)
  return plots.save(fig, path)


def optimal_loss(p: Plan) -> float:
  return zipf_bigram.spec_of(base_config(p).data).optimal_loss


def analyse(p: Plan, losses: np.ndarray, stable: np.ndarray,
            decayed: np.ndarray, regime_peak: float) -> dict:
  """Everything the report says, from the exact-loss arrays."""
  o = order(losses, len(p.selection_seeds))
  for r, b in zip(o["budgets"], p.budgets):
    r["budget"] = b
    r["best_peak"] = {m: p.peaks[k] for m, k in r["best"].items()}
    r["at_grid_edge"] = [m for m, k in r["best"].items()
                         if k in (0, len(p.peaks) - 1)]
  return {"order": o, "regime": regime(p.hill_steps, stable, decayed),
          "regime_peak": regime_peak}


def spec_facts(p: Plan) -> dict:
  spec = zipf_bigram.spec_of(base_config(p).data)
  return {"vocab_size": spec.vocab_size, "base_exponent": spec.exponent,
          "stationary_exponent": zipf_bigram.zipf_fit(spec.stationary),
          "optimal_loss": spec.optimal_loss,
          "optimal_loss_by_group": spec.optimal_loss_by_group.tolist(),
          "rarest_token_probability": float(spec.stationary.min()),
          "tokens_per_step": p.batch_size * p.seq_len}


def markdown(r: dict) -> str:
  p, a = r["plan"], r["analysis"]
  g, o, f = a["regime"], a["order"], r["spec"]
  ci = lambda c: f"[{c[0]:+.4f}, {c[1]:+.4f}]"
  lt = g["last_third"]
  lines = [
      "# A toy in the right regime: Zipfian bigram, MLP LM, AdamW\n",
      f"**{TOY}** (issue 15, item 2). The river-valley toy (convex bigram "
      "table, SGD) learns its deterministic rows by step ~500, so its river "
      "runs out early. This toy: a Zipfian bigram language "
      f"(`data.zipf_bigram`, V = {f['vocab_size']}, base Zipf exponent "
      f"{f['base_exponent']}, measured exponent of the stationary law "
      f"{f['stationary_exponent']:.2f}, rarest token p = "
      f"{f['rarest_token_probability']:.1e}, optimal loss "
      f"{f['optimal_loss']:.4f} nats) and a context-1 MLP LM (embedding 32, "
      "gelu 64, untied output; non-convex) trained with AdamW (b1 0.9, b2 "
      f"0.95, weight decay 0.1, clip 1) on {f['tokens_per_step']} tokens a "
      "step. Every loss below is the EXACT population loss from the "
      "checkpointed parameters, `sum_x pi[x] CE(P[x], softmax(f(x)))`, "
      "minus the optimum (excess, nats): no sampling noise.\n",
      f"Command: `python -m experiments.zipf_regime --workdir=DIR"
      f"{' --quick' if r['quick'] else ''}`. Wall time {r['wall_s']:.0f} s "
      f"on {r['machine']}: "
      + "; ".join(f"{i['wall_s']:.0f} s, {i['runs_trained']} runs trained "
                  f"{'(analysis only) ' if i['runs_trained'] == 0 else ''}"
                  f"(1-min load average {i['load'][0]:.1f} at the start, "
                  f"{i['load'][1]:.1f} at the end)"
                  for i in r["invocations"]) + ".\n",
      "## 1. Regime check\n",
      f"WSD at its selected peak for the last budget ({a['regime_peak']:g}), "
      f"evaluation seeds {p['eval_seeds']}: a {r['hill_decay']}-step linear "
      "decay to 0.1 x peak from each stable checkpoint.\n",
      reports.markdown_table(
          ["stable step", "stable excess", "decayed excess", "hill share"],
          [[s, f"{x:.4f}", f"{y:.4f}", f"{h:.1%}"] for s, x, y, h in zip(
              g["steps"], g["stable"], g["decayed"], g["hill_share"])]),
      "",
      f"- stable-phase slope: {g['stable_slope']:+.4f} nats / 1k steps; "
      f"river slope (decayed excess vs decay start): "
      f"{g['river_slope']:+.4f} nats / 1k steps (per-seed 95% CI "
      f"{ci(g['river_slope_ci'])}); river / stable = "
      f"{g['river_slope'] / g['stable_slope']:.2f}",
      f"- hill share of the excess: {g['hill_share'][0]:.1%} at step "
      f"{g['steps'][0]}, {g['hill_share'][-1]:.1%} at step {g['steps'][-1]}",
      f"- the decayed loss still improves in the last third (step "
      f"{lt['from_step']} -> {lt['to_step']}): change {lt['mean']:+.4f} "
      f"{ci(lt['ci'])} nats (paired over {lt['n']} seeds); claim \"change "
      f"< 0\" (the river has not run out): **{lt['verdict']}**\n",
      "## 2. WSD-S <= WSD <= cyclic cosine at equal compute\n",
      f"Budgets {p['budgets']} (decays {r['decays']} steps, linear to 0.1 x "
      f"peak; WSD-S and cyclic cosine models at steps {r['ends']}, the "
      "compute WSD has spent on its main run and branches). Each method at "
      "its own best peak per budget from the grid "
      f"{p['peaks']}, chosen on selection seeds {p['selection_seeds']}; "
      f"judged on evaluation seeds {p['eval_seeds']}. \"a <= b\": mean(a - "
      f"b) < {o['margin']} nats, {LEVEL:.0%} paired Student-t CI wholly "
      "below: reproduced; wholly at or above: refuted; else inconclusive.\n",
      reports.markdown_table(
          ["budget", "best peak WSD / WSD-S / cyclic", "WSD-S - WSD",
           "verdict", "WSD - cyclic", "verdict", "order"],
          [[row["budget"], " / ".join(f"{row['best_peak'][m]:g}"
                                      for m in METHODS)
            + (" (edge: " + ", ".join(row["at_grid_edge"]) + ")"
               if row["at_grid_edge"] else ""),
            f"{row['parts']['wsd_s <= wsd']['mean']:+.4f} "
            f"{ci(row['parts']['wsd_s <= wsd']['ci'])}",
            row["parts"]["wsd_s <= wsd"]["verdict"],
            f"{row['parts']['wsd <= cyclic_cosine']['mean']:+.4f} "
            f"{ci(row['parts']['wsd <= cyclic_cosine']['ci'])}",
            row["parts"]["wsd <= cyclic_cosine"]["verdict"], row["verdict"]]
           for row in o["budgets"]]),
      "",
      f"Order over all budgets: **{o['verdict']}** ({TOY}). At the first "
      "budget WSD-S and WSD are the same schedule (one decay), so their "
      "difference there is zero by construction.\n",
      "### Exact excess per peak (mean over evaluation seeds)\n",
      reports.markdown_table(
          ["method", "budget", *[f"{x:g}" for x in p["peaks"]]],
          [[ec.LABELS[m], b, *[f"{np.mean(v[len(p['selection_seeds']):]):.4f}"
                               for v in r["losses"][mi][bi]]]
           for mi, m in enumerate(METHODS)
           for bi, b in enumerate(p["budgets"])]),
      "",
      f"![curves, loss vs peak, regime check]({r['figure']})\n"]
  return "\n".join(lines)


def previous_invocations(workdir: str) -> list[dict]:
  """The timings earlier invocations recorded in ``results.json`` (a rerun
  resumes and adds its own), or none."""
  path = rundir.join(workdir, "results.json")
  if not os.path.exists(path):
    return []
  old = rundir.read_json(path)
  if "invocations" not in old and "wall_s" in old:  # written before the list
    return [{"wall_s": old["wall_s"], "runs_trained": "all",
             "load": old["load"]}]
  return list(old.get("invocations", []))


def machine() -> str:
  return f"{platform.machine()} CPU, {os.cpu_count()} cores (shared)"


def run(workdir: str, quick: bool = False, plan_: Plan | None = None) -> dict:
  """Trains (resumes) everything, computes the exact losses, analyses,
  writes ``report.md``, ``results.json`` and ``zipf_regime.png``."""
  start, load0 = time.perf_counter(), os.getloadavg()[0]
  p = plan_ or plan(quick)
  trained = train_comparison(p, workdir)
  ex = Exact(p)
  losses = comparison_losses(p, workdir, ex)
  best = order(losses, len(p.selection_seeds))["budgets"][-1]["best"]["wsd"]
  regime_peak = p.peaks[best]
  trained += train_hills(p, workdir, regime_peak)
  stable, decayed = hill_losses(p, workdir, regime_peak, ex)
  res = analyse(p, losses, stable, decayed, regime_peak)
  fig = figure(p, workdir, losses, res, rundir.join(workdir,
                                                    "zipf_regime.png"))
  e = p.equal_compute(1.0)
  results = {"plan": dataclasses.asdict(p), "quick": quick,
             "spec": spec_facts(p), "decays": list(e.decays),
             "ends": list(e.ends), "hill_decay": p.hill_decay,
             "losses": losses.tolist(), "stable": stable.tolist(),
             "decayed": decayed.tolist(), "analysis": res,
             "figure": os.path.basename(fig),
             "machine": machine()}
  results["invocations"] = previous_invocations(workdir) + [{
      "wall_s": time.perf_counter() - start, "runs_trained": trained,
      "load": [load0, os.getloadavg()[0]]}]
  results["wall_s"] = sum(i["wall_s"] for i in results["invocations"])
  rundir.write_json(rundir.join(workdir, "results.json"), results)
  rundir.write_text(rundir.join(workdir, "report.md"), markdown(results))
  return results
