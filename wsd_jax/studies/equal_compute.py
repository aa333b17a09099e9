"""WSD vs WSD-S vs cyclic cosine at equal compute (Wen et al., 2410.05192).

For budgets ``B_1 < ... < B_n`` with decays ``d_i = round(f * B_i)`` (linear
to ``final_value``; the lengths ``schedules.wsd_s`` derives):

- WSD: one main run, warmup then constant, trained to the last fork
  ``B_n - d_n``; budget ``i``'s model is the decay branch ``budget{B_i}``
  forked at ``B_i - d_i`` and ending at ``B_i``;
- WSD-S: one ``schedules.wsd_s`` run; budget ``i``'s model is its decayed
  state at ``E_i = B_i + sum_{j<i} d_j``;
- cyclic cosine: one run, a cosine to ``final_value`` ending at every ``E_i``
  and a linear re-warm after each.

Every method has trained ``E_i`` steps in all when budget ``i``'s model
exists, so the comparison is at equal compute. Runs, one per method and
seed::

    ROOT/wsd/seed{S}/                     WSD main run
    ROOT/wsd/seed{S}/branches/budget{B}/  its decay branch ending at B
    ROOT/wsd_s/seed{S}/
    ROOT/cyclic_cosine/seed{S}/

This module plans the runs (specs), reads the eval loss of each budget's model
through ``runs.Run`` into a table, and draws the comparison from arrays; the
river-valley and the GPT WSD-S studies both use it.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import ml_collections
import numpy as np

from wsd_jax import plots, runs, schedules
from wsd_jax.plots import plt
from wsd_jax.runs import rundir
from wsd_jax.studies import common
from wsd_jax.train.config import with_schedule

METHODS = ("wsd", "wsd_s", "cyclic_cosine")
LABELS = {m: plots.METHOD_LABELS[m] for m in METHODS}


@dataclasses.dataclass(frozen=True)
class Plan:
  """The budgets, decays and schedules of the comparison."""
  peak_value: float
  budgets: tuple[int, ...]
  decay_fraction: float
  final_value: float
  warmup_steps: int
  rewarm_steps: int

  @classmethod
  def at_peak(cls, peak: float, budgets, decay_fraction: float,
              final_fraction: float, warmup_fraction: float,
              rewarm_fraction: float) -> "Plan":
    """The plan at ``peak``, warmup and re-warm given as fractions of the
    first budget and the final LR as a fraction of the peak."""
    budgets = tuple(int(b) for b in budgets)
    return cls(float(peak), budgets, decay_fraction,
               final_fraction * float(peak),
               round(warmup_fraction * budgets[0]),
               round(rewarm_fraction * budgets[0]))

  def wsd_s(self) -> schedules.Schedule:
    return schedules.wsd_s(self.peak_value, self.budgets,
                           decay_fraction=self.decay_fraction,
                           warmup_steps=self.warmup_steps,
                           final_value=self.final_value)

  @property
  def decays(self) -> tuple[int, ...]:
    return tuple(int(d) for d in self.wsd_s().decay_steps)

  @property
  def ends(self) -> tuple[int, ...]:
    """``E_i``: where WSD-S's and cyclic cosine's decay ``i`` ends."""
    return tuple(int(e) for e in self.wsd_s().checkpoint_steps)

  @property
  def forks(self) -> tuple[int, ...]:
    """``B_i - d_i``: where WSD's decay branch ``i`` leaves the main run."""
    return tuple(b - d for b, d in zip(self.budgets, self.decays))

  def main(self) -> schedules.Schedule:
    """The WSD main run's schedule: constant after warmup through ``B_n``
    (trained only to the last fork, so every branch decays from the peak)."""
    return schedules.wsd(self.peak_value, self.budgets[-1], decay_steps=0,
                         warmup_steps=self.warmup_steps)

  def cyclic_cosine(self) -> schedules.Schedule:
    return schedules.cyclic_cosine(self.peak_value, self.ends,
                                   warmup_steps=self.warmup_steps,
                                   rewarm_steps=self.rewarm_steps,
                                   final_value=self.final_value)

  def model_steps(self, method: str) -> tuple[int, ...]:
    """The step of each budget's model of ``method``."""
    return self.budgets if method == "wsd" else self.ends

  def check_eval_every(self, eval_every: int) -> None:
    """Every step the table or a branch reads must be an evaluation step."""
    steps = sorted(set(self.budgets + self.ends + self.forks))
    if missed := [s for s in steps if s % int(eval_every)]:
      raise ValueError(f"eval_every={eval_every} does not divide the budget, "
                       f"checkpoint and fork steps {missed}")


def run_dir(root: str, method: str, seed: int) -> str:
  return rundir.join(root, method, f"seed{seed}")


def budget_branch(budget: int) -> str:
  return f"budget{budget}"


def model_dir(plan: Plan, root: str, method: str, seed: int, i: int) -> str:
  """The run holding budget ``i``'s model of ``method``."""
  d = run_dir(root, method, seed)
  return (rundir.branch_dir(d, budget_branch(plan.budgets[i]))
          if method == "wsd" else d)


def _config(base: ml_collections.ConfigDict, schedule: schedules.Schedule,
            steps: int, seed: int, keep_steps: Sequence[int] = ()
            ) -> ml_collections.ConfigDict:
  train = {} if keep_steps else {"checkpoint_every": int(steps)}
  c = with_schedule(base, schedule, steps, keep_steps=keep_steps, **train)
  c.seed = int(seed)
  return c


def main_specs(plan: Plan, base: ml_collections.ConfigDict, root: str,
               seeds: Sequence[int], extra_keep: Sequence[int] = ()
               ) -> list[runs.RunSpec]:
  """The WSD main runs, keeping the checkpoints at the forks (and at
  ``extra_keep``, steps other branches of the study fork from)."""
  plan.check_eval_every(base.train.eval_every)
  keep = sorted(set(plan.forks[:-1]) | set(int(k) for k in extra_keep))
  return [runs.RunSpec(_config(base, plan.main(), plan.forks[-1], s, keep),
                       run_dir(root, "wsd", s)) for s in seeds]


def branch_specs(plan: Plan, root: str, seeds: Sequence[int]
                 ) -> list[runs.RunSpec | None]:
  """WSD's decay branches (the main runs must have reached their forks);
  None for a finished one."""
  return [common.branch_spec(run_dir(root, "wsd", s), f, d, "linear",
                             plan.final_value, budget_branch(b))
          for s in seeds
          for b, d, f in zip(plan.budgets, plan.decays, plan.forks)]


def cyclic_specs(plan: Plan, base: ml_collections.ConfigDict, root: str,
                 seeds: Sequence[int]) -> list[runs.RunSpec]:
  """The WSD-S and cyclic cosine runs (one each per seed)."""
  plan.check_eval_every(base.train.eval_every)
  return [runs.RunSpec(_config(base, sched, plan.ends[-1], s),
                       run_dir(root, m, s))
          for m, sched in (("wsd_s", plan.wsd_s()),
                           ("cyclic_cosine", plan.cyclic_cosine()))
          for s in seeds]


def table(plan: Plan, root: str, seeds: Sequence[int]) -> list[dict]:
  """One row per budget: ``budget``, ``compute`` (steps trained in all when
  the model exists, the same for every method), ``steps`` and ``losses``
  (eval loss per seed) of each method's model."""
  rows = []
  for i, (budget, compute) in enumerate(zip(plan.budgets, plan.ends)):
    steps = {m: plan.model_steps(m)[i] for m in METHODS}
    rows.append({"budget": budget, "compute": compute, "steps": steps,
                 "losses": {m: [runs.Run(model_dir(plan, root, m, s, i))
                                .eval_at(steps[m]) for s in seeds]
                            for m in METHODS}})
  return rows


def means(row: dict) -> dict[str, float]:
  """Seed-mean eval loss per method of a ``table`` row."""
  return {m: float(np.mean(v)) for m, v in row["losses"].items()}


def eval_curve(run: runs.Run, parent: runs.Run) -> tuple[np.ndarray,
                                                          np.ndarray]:
  """``run``'s eval curve; a branch's starts at ``parent``'s point at the
  fork, so that it visibly leaves its parent."""
  steps, losses = run.eval_curve()
  if run.fork_step:
    steps = np.r_[run.fork_step, steps]
    losses = np.r_[parent.eval_at(run.fork_step), losses]
  return steps, losses


@jax.jit
def _lrs(schedule: schedules.Schedule, steps: jax.Array) -> jax.Array:
  # The schedule is an argument: one compilation per kind of schedule.
  return schedule(steps)


def curves(plan: Plan, root: str, seed: int) -> dict[str, list[tuple]]:
  """Per method, ``(steps, eval losses, t, lr(t))`` arrays of each of its
  runs (WSD: the main run, then each branch from its fork on, starting at
  the main run's point there); ``lr(t)`` is the LR of the update at step
  ``t``, from the run's effective schedule."""
  t_all = np.arange(plan.ends[-1] + 1)
  out = {}
  for m in METHODS:
    main = runs.Run(run_dir(root, m, seed))
    out[m] = []
    members = [main] + ([runs.Run(model_dir(plan, root, m, seed, i))
                         for i in range(len(plan.budgets))]
                        if m == "wsd" else [])
    for run in members:
      first = run.fork_step or 0
      t = t_all[first:run.last_step]
      out[m].append((*eval_curve(run, main), t,
                     np.asarray(_lrs(run.schedule, t_all))[t]))
  return out


def figure(curves: dict[str, list[tuple]], rows: Sequence[dict], path: str,
           title: str = "") -> dict[str, dict[str, list[str]]]:
  """Eval loss (stars: each budget's model) and LR of every method's runs,
  and the eval loss at each budget (mean ± std over seeds).

  Args:
    curves: ``curves()`` of one seed.
    rows: ``table()``.
    path: the PNG to write.
    title: the loss panel's title.

  Returns:
    Per panel, the colours drawn for each method (one per method, the same
    in every panel: ``plots.color``).
  """
  fig, (ax, lx, bx) = plt.subplots(1, 3, figsize=(15, 4))
  drawn: dict[str, dict[str, list[str]]] = {"loss": {}, "lr": {},
                                            "budgets": {}}

  def note(panel, method, artist):
    colors = drawn[panel].setdefault(method, [])
    if artist.get_color() not in colors:
      colors.append(artist.get_color())

  for m, segments in curves.items():
    for j, (steps, losses, t, lrs) in enumerate(segments):
      label = LABELS[m] if j == 0 else None
      note("loss", m, ax.plot(steps, losses, lw=1.2, color=plots.color(m),
                              label=label)[0])
      note("lr", m, lx.plot(t, lrs, lw=1.2, color=plots.color(m),
                            label=label)[0])
    first_seed = [(r["steps"][m], r["losses"][m][0]) for r in rows]
    note("loss", m, ax.plot(*zip(*first_seed), "*", ms=10,
                            color=plots.color(m))[0])
  table_losses = [v for r in rows for m in r["losses"] for v in r["losses"][m]]
  lo, hi = min(table_losses), max(table_losses)
  pad = max(hi - lo, 1e-3)
  ax.set_ylim(lo - 0.3 * pad, hi + 2 * pad)
  ax.set(xlabel="step", ylabel="eval loss",
         title=title or "eval loss (stars: each budget's model)")
  lx.set(xlabel="step", ylabel="learning rate", title="learning rate")
  for j, m in enumerate(METHODS):
    vals = np.array([r["losses"][m] for r in rows])
    x = np.arange(len(rows)) + (j - 1) * 0.25
    bars = bx.errorbar(x, vals.mean(axis=1), yerr=vals.std(axis=1, ddof=1)
                       if vals.shape[1] > 1 else None, fmt="o", capsize=3,
                       label=LABELS[m], color=plots.color(m))
    note("budgets", m, bars.lines[0])
  bx.set_xticks(range(len(rows)), [f"{r['budget']}\n({r['compute']} steps)"
                                   for r in rows])
  bx.set(xlabel="budget (total compute)",
         ylabel="eval loss (mean ± std over seeds)",
         title="each budget's model")
  for a in (ax, lx, bx):
    a.grid(alpha=0.3)
    a.legend(fontsize=8)
  plots.save(fig, path)
  return drawn


def ordering_claim(rows: Sequence[dict], tol: float = 1e-6) -> dict:
  """The paper's claim WSD-S <= WSD <= cyclic cosine, judged on ``table``
  rows: reproduced iff the seed-mean eval loss is so ordered (to ``tol``) at
  every budget."""
  per_budget, holds_mean, holds_seeds = [], True, True
  for row in rows:
    per, m = row["losses"], means(row)
    ok = (m["wsd_s"] <= m["wsd"] + tol and
          m["wsd"] <= m["cyclic_cosine"] + tol)
    seeds_ok = all(a <= b + tol and b <= c + tol for a, b, c in zip(
        per["wsd_s"], per["wsd"], per["cyclic_cosine"]))
    holds_mean &= ok
    holds_seeds &= seeds_ok
    per_budget.append({
        "budget": row["budget"], "wsd": m["wsd"], "wsd_s": m["wsd_s"],
        "cyclic": m["cyclic_cosine"],  # the key earlier reports used
        "ordered_in_mean": ok,
        "ordered_in_every_seed": seeds_ok,
        "wsd_minus_wsd_s": common.mean_std(np.subtract(per["wsd"],
                                                       per["wsd_s"])),
        "cyclic_minus_wsd": common.mean_std(np.subtract(per["cyclic_cosine"],
                                                        per["wsd"]))})
  return {"claim": "WSD-S <= WSD <= cyclic cosine at equal compute",
          "criterion": ("the seed-mean final eval loss is ordered so at "
                        "every budget"),
          "reproduced": bool(holds_mean),
          "numbers": {"every_seed_ordered": bool(holds_seeds),
                      "budgets": per_budget}}

