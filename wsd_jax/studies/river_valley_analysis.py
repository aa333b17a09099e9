"""The river-valley study's numbers: tables and claims from its run directories.

Every loss is the held-out loss logged by the trainer, read through
``runs.Run``. Its excess is taken above the *oracle*: the true bigram model
evaluated on the same eval tokens (the model with the table ``log P``), so the finite eval set's own sampling noise cancels in every
excess. The claims are pure functions of the tables, so that they can be
checked on tables whose verdict is known.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from wsd_jax import data as data_lib
from wsd_jax import runs, train
from wsd_jax.studies import equal_compute as ec
from wsd_jax.studies import river_valley as rv
from wsd_jax.studies.common import fmt, mean_std
from wsd_jax.train import evaluation


class Oracle:
  """The bigram language of the study: optimum per group on the eval set."""

  def __init__(self, plan: rv.Plan):
    self.setup = train.setup(plan.base())
    # Compiled once (train.evaluate jits on every call).
    self._eval_fn = jax.jit(evaluation.make_eval_fn(
        self.setup.graphdef, self.setup.token_groups))
    self.spec = data_lib.bigram.spec_of(plan.config.run.data)
    self.table = jnp.asarray(np.log(self.spec.transition), jnp.float32)
    self.losses = self.evaluate(jax.tree.map(lambda _: self.table,
                                             self.setup.state.params))
    g = self.spec.num_groups
    self.groups = list(range(g))
    self.share = np.bincount(self.spec.group_of_token, self.spec.stationary, g)
    self.support = [int(k) for k in self.spec.support_sizes]

  def evaluate(self, params) -> dict:
    """The eval row (``eval_loss``, ``eval_loss_group{g}``) of ``params``."""
    return evaluation.eval_row(*evaluation.accumulate(
        self._eval_fn, params, self.setup.eval_ds, self.setup.mesh))

  def excess(self, row: dict, key: str = "eval_loss") -> float:
    return row[key] - self.losses[key]

  def group_excess(self, row: dict) -> np.ndarray:
    return np.array([self.excess(row, f"eval_loss_group{g}")
                     for g in self.groups])

  def initial_group_excess(self) -> np.ndarray:
    """Excess of the zero table (uniform predictions, loss log V)."""
    uniform = np.log(self.spec.vocab_size)
    return np.array([uniform - self.losses[f"eval_loss_group{g}"]
                     for g in self.groups])


class Runs:
  """The study's runs, each read once (``runs.Run``)."""

  def __init__(self, plan: rv.Plan, workdir: str):
    self.plan, self.workdir, self._runs = plan, workdir, {}

  def get(self, path: str) -> runs.Run:
    if path not in self._runs:
      self._runs[path] = runs.Run(path)
    return self._runs[path]

  def main(self, seed: int) -> runs.Run:
    return self.get(rv.main_dir(self.workdir, seed))

  def wsd(self, seed: int, i: int) -> runs.Run:
    """The WSD model of budget ``i`` (its decay branch)."""
    return self.get(ec.model_dir(self.plan.equal_compute, self.workdir, "wsd",
                                 seed, i))

  def hill(self, seed: int, step: int) -> runs.Run:
    return self.get(rv.hill_dir(self.workdir, seed, step))

  def cosine(self, seed: int, budget: int) -> runs.Run:
    return self.get(rv.cosine_dir(self.workdir, seed, budget))

  @staticmethod
  def row(run: runs.Run, step: int) -> dict:
    """The eval losses of ``run`` at ``step`` (overall and per group)."""
    rows = [m for m in run.metrics if m["step"] == step and "eval_loss" in m]
    if not rows:
      run.eval_at(step)  # raises, naming the run and its eval steps
    return {k: v for k, v in rows[-1].items() if k.startswith("eval_loss")}


def table(name: str, columns: list[str], rows: list[list], **raw) -> dict:
  """A table: formatted ``rows`` under ``columns``, and its raw numbers."""
  return {"name": name, "columns": columns, "rows": rows, **raw}


def wsd_vs_cosine(r: Runs) -> dict:
  """Section 1: final loss of WSD (branch decays) and cosine per budget."""
  rows = []
  for i, b in enumerate(r.plan.budgets):
    w = [r.wsd(s, i).eval_at(b) for s in r.plan.seeds]
    c = [r.cosine(s, b).eval_at(b) for s in r.plan.seeds]
    rows.append([b, fmt(*mean_std(w)), fmt(*mean_std(c)),
                 fmt(*mean_std(np.subtract(w, c))), {"wsd": w, "cosine": c}])
  return table("wsd_vs_cosine", ["budget", "WSD", "cosine", "WSD - cosine",
                                 "per seed"], rows)


def group_excess_along(run: runs.Run, oracle: Oracle, steps) -> np.ndarray:
  """[steps, groups] excess along one run at ``steps``."""
  return np.stack([oracle.group_excess(Runs.row(run, s)) for s in steps])


def groups(r: Runs, oracle: Oracle) -> dict:
  """Section 2: which groups the stable phase and the decay learn."""
  plan, last = r.plan, len(r.plan.budgets) - 1
  initial = oracle.initial_group_excess()
  at = np.stack([np.concatenate([
      group_excess_along(r.main(s), oracle, [plan.stable_end]),
      group_excess_along(r.wsd(s, last), oracle, [plan.budgets[-1]])])
                 for s in plan.seeds]).mean(axis=0)  # [2, G]
  stable_drop = (initial - at[0]) * oracle.share
  decay_drop = (at[0] - at[1]) * oracle.share
  stable_share = stable_drop / stable_drop.sum()
  decay_share = decay_drop / decay_drop.sum()
  rows = [[g, oracle.support[g], f"{oracle.share[g]:.3f}",
           fmt(oracle.losses[f"eval_loss_group{g}"]), fmt(initial[g]),
           fmt(at[0, g]), fmt(at[1, g]), f"{stable_share[g]:.3f}",
           f"{decay_share[g]:.3f}"] for g in oracle.groups]
  return table("groups", [
      "group", "next-token support", "token share", "optimum (eval set)",
      "excess at step 0", f"excess at end of stable ({plan.stable_end})",
      f"excess after decay ({plan.budgets[-1]})", "share of stable-phase gain",
      "share of decay gain"], rows, stable_share=stable_share.tolist(),
      decay_share=decay_share.tolist(), excess=at.tolist())


def river_hill(r: Runs, oracle: Oracle) -> dict:
  """Section 3: excess = hill (removed by a short decay) + river (the rest).

  ``per_seed[k]`` is ``[hill step][seed]`` of stable excess, river and hill;
  ``series[k]`` their ``(mean, std)`` per hill step.
  """
  d = int(r.plan.config.hill_decay_steps)
  per_seed = {"stable": [], "river": [], "hill": []}
  rows = []
  for step in r.plan.hill_steps:
    stable = [oracle.excess(r.row(r.main(s), step)) for s in r.plan.seeds]
    river = [oracle.excess(r.row(r.hill(s, step), step + d))
             for s in r.plan.seeds]
    hill = np.subtract(stable, river).tolist()
    for key, v in (("stable", stable), ("river", river), ("hill", hill)):
      per_seed[key].append(v)
    rows.append([step, fmt(*mean_std(stable)), fmt(*mean_std(river)),
                 fmt(*mean_std(hill))])
  series = {k: [list(mean_std(v)) for v in vs] for k, vs in per_seed.items()}
  return table("river_hill", ["stable step", "excess (stable)",
                              "river (excess after decay)",
                              "hill (decay drop)"], rows,
               series=series, per_seed=per_seed)


def valley(r: Runs, oracle: Oracle) -> dict:
  """Section 4: loss along the line between consecutive checkpoints."""
  plan = r.plan
  alphas = np.linspace(-0.25, 1.25, int(plan.config.valley_points))
  seed = plan.seeds[0]
  d = int(plan.config.hill_decay_steps)
  steps = plan.hill_steps[-(int(plan.config.valley_pairs) + 1):]

  def params(kind, step):
    if kind == "stable":
      return train.load_state(r.main(seed).workdir, step)[1].params
    return train.load_state(r.hill(seed, step).workdir, step + d)[1].params

  rows, curves = [], []
  for kind in ("stable", "decayed"):
    for a, b in zip(steps, steps[1:]):
      pa, pb = params(kind, a), params(kind, b)
      losses = [oracle.excess(oracle.evaluate(jax.tree.map(
          lambda x, y, t=t: (1 - t) * x + t * y, pa, pb))) for t in alphas]
      at = dict(zip(np.round(alphas, 4), losses))
      dip = (at[0.0] + at[1.0]) / 2 - at[0.5]
      label = (f"{kind} {a}->{b}" if kind == "stable" else
               f"{kind} {a}+{d}->{b}+{d}")
      rows.append([label, fmt(at[0.0]), fmt(at[0.5]), fmt(at[1.0]), fmt(dip)])
      curves.append({"label": label, "kind": kind, "alphas": alphas.tolist(),
                     "excess": [float(x) for x in losses], "dip": float(dip)})
  return table("valley", ["pair", "excess at 0", "excess at 0.5",
                          "excess at 1", "midpoint dip"], rows, curves=curves)


def equal_compute(r: Runs) -> dict:
  """Section 5: WSD vs WSD-S vs cyclic cosine at each budget's point."""
  raw = ec.table(r.plan.equal_compute, r.workdir, r.plan.seeds)
  rows = [[row["budget"], row["compute"],
           *(fmt(*mean_std(row["losses"][m]))
             for m in ("wsd_s", "wsd", "cyclic_cosine"))] for row in raw]
  return table("equal_compute", [
      "budget", "compute (steps)", "WSD-S", "WSD", "cyclic cosine"], rows,
      budgets=raw)


# The claims: pure functions of the tables.

def river_claim(hill_steps: list[int], stable_end: int, series: dict) -> dict:
  """Claim 1, from ``river_hill``'s ``series`` (mean, std per hill step)."""
  half = [i for i, s in enumerate(hill_steps) if s >= stable_end / 2]
  first, last = half[0], half[-1]
  d_river = series["river"][first][0] - series["river"][last][0]
  d_stable = series["stable"][first][0] - series["stable"][last][0]
  hill = [series["hill"][i][0] for i in half]
  return {
      "claim": ("the stable phase makes progress that only shows after the "
                "decay"),
      "criterion": ("over the second half of the stable phase the river "
                    "(excess after a short decay) falls by more than the "
                    "stable-phase excess does, and the hill stays > 0"),
      "reproduced": bool(d_river > max(d_stable, 0) and min(hill) > 0),
      "numbers": {"from_step": hill_steps[first], "to_step": hill_steps[last],
                  "river_drop": d_river, "stable_drop": d_stable,
                  "min_hill": min(hill), "mean_hill": float(np.mean(hill))}}


def uncertain_claim(decay_share: list[float]) -> dict:
  """Claim 2, from ``groups``' share of the decay gain per group (groups in
  order of growing next-token entropy)."""
  shares = np.asarray(decay_share, np.float64)
  upper = np.arange(len(shares)) >= len(shares) / 2
  return {
      "claim": "the decay mostly helps uncertain tokens",
      "criterion": ("the more uncertain half of the entropy groups gets more "
                    "than half of the main branch's decay gain "
                    "(token-weighted, mean over seeds)"),
      "reproduced": bool(shares[upper].sum() > 0.5),
      "numbers": {"decay_gain_share_by_group": np.round(shares, 3).tolist(),
                  "uncertain_half_share": round(float(shares[upper].sum()),
                                                3)}}


def claims(plan: rv.Plan, tables: dict) -> list[dict]:
  """The paper's three claims, each with a criterion fixed before the runs."""
  return [river_claim(list(plan.hill_steps), plan.stable_end,
                      tables["river_hill"]["series"]),
          uncertain_claim(tables["groups"]["decay_share"]),
          ec.ordering_claim(tables["equal_compute"]["budgets"])]


def verdict(claim: dict) -> str:
  return "reproduced" if claim["reproduced"] else "NOT reproduced"

