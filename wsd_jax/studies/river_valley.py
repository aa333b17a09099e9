"""The river-valley study (Wen et al., arXiv 2410.05192): its plan and runs.

Every run is an ordinary run directory under ``DIR``::

    DIR/wsd/seed{S}/                      WSD main run (constant after warmup)
    DIR/wsd/seed{S}/branches/budget{B}/   decay branch ending at budget B
    DIR/wsd/seed{S}/branches/hill{s}_d{d}/  d-step decay branch from stable step s
    DIR/cosine/seed{S}_b{B}/              cosine to budget B
    DIR/wsd_s/seed{S}/                    WSD-S over all budgets (one run)
    DIR/cyclic_cosine/seed{S}/            cyclic cosine over the WSD-S points

The WSD, WSD-S and cyclic cosine runs are ``studies.equal_compute``'s. Runs
of equal shape (seeds, branches of one length) train as one vmapped program
(``train.train_specs``); a finished run is not trained again, so rerunning the
command only redoes the analysis.
"""

from __future__ import annotations

import dataclasses
import math

import ml_collections

from wsd_jax import runs, schedules
from wsd_jax.runs import rundir
from wsd_jax.studies import common
from wsd_jax.studies import equal_compute as ec
from wsd_jax.train.config import with_schedule

TAG = "river_valley"


@dataclasses.dataclass(frozen=True)
class Plan:
  """The steps and schedules the study's config implies."""
  config: ml_collections.ConfigDict

  def __post_init__(self):
    n = self.config.get("valley_points")
    # The cross-section reads the loss at alpha = 0, 0.5 and 1 on
    # linspace(-0.25, 1.25, n): that grid has them when 6 divides n - 1.
    if n is not None and (int(n) < 7 or (int(n) - 1) % 6):
      raise ValueError(f"valley_points={n}: the grid over [-0.25, 1.25] must "
                       "hold 0, 0.5 and 1, so valley_points must be 7, 13, "
                       "19, ...")

  @property
  def peak(self) -> float:
    return float(self.config.peak_value)

  @property
  def final(self) -> float:
    return self.config.final_fraction * self.peak

  @property
  def warmup(self) -> int:
    return round(self.config.warmup_fraction * self.config.budgets[0])

  @property
  def equal_compute(self) -> ec.Plan:
    budgets = tuple(int(b) for b in self.config.budgets)
    return ec.Plan(self.peak, budgets, float(self.config.decay_fraction),
                   self.final, self.warmup,
                   round(self.config.rewarm_fraction * budgets[0]))

  @property
  def budgets(self) -> tuple[int, ...]:
    return self.equal_compute.budgets

  @property
  def decays(self) -> tuple[int, ...]:
    return self.equal_compute.decays

  @property
  def seeds(self) -> tuple[int, ...]:
    return tuple(int(s) for s in self.config.seeds)

  @property
  def hill_decays(self) -> tuple[int, ...]:
    """The lengths of the short decays from every hill step, ascending."""
    return tuple(sorted(int(d) for d in self.config.hill_decays))

  @property
  def levels(self) -> int:
    """The number of entropy levels (groups) of the study's language."""
    return int(self.config.entropy_levels)

  @property
  def stable_end(self) -> int:
    """The last stable step: the main run's end, the last budget's fork."""
    return self.equal_compute.forks[-1]

  @property
  def hill_steps(self) -> tuple[int, ...]:
    every = int(self.config.hill_every)
    return tuple(range(every, self.stable_end + 1, every))

  def cosine(self, budget: int) -> schedules.Schedule:
    return schedules.cosine(self.peak, budget, warmup_steps=self.warmup,
                            final_value=self.final)

  @property
  def eval_every(self) -> int:
    """Evaluates every budget point and fork point (a run is also evaluated
    at its last step, so every hill branch's end is)."""
    return math.gcd(*self.budgets, *self.decays, int(self.config.hill_every))

  def base(self) -> ml_collections.ConfigDict:
    """The run config every run of the study starts from."""
    c = ml_collections.ConfigDict(self.config.run.to_dict())
    c.train.update(eval_every=self.eval_every, log_every=self.eval_every)
    c.data.num_groups = self.levels
    c.data.spec_seed = int(self.config.spec_seed)
    return c


def main_dir(workdir: str, seed: int) -> str:
  return ec.run_dir(workdir, "wsd", seed)


def cosine_dir(workdir: str, seed: int, budget: int) -> str:
  return rundir.join(workdir, "cosine", f"seed{seed}_b{budget}")


def hill_branch(step: int, decay: int) -> str:
  return f"hill{step}_d{decay}"


def hill_dir(workdir: str, seed: int, step: int, decay: int) -> str:
  return rundir.branch_dir(main_dir(workdir, seed), hill_branch(step, decay))


def cosine_spec(plan: Plan, workdir: str, seed: int, budget: int
                ) -> runs.RunSpec:
  c = with_schedule(plan.base(), plan.cosine(budget), budget,
                    checkpoint_every=budget)
  c.seed = seed
  return runs.RunSpec(c, cosine_dir(workdir, seed, budget))


def hill_specs(plan: Plan, workdir: str) -> list[runs.RunSpec | None]:
  """A short linear decay of every length in ``hill_decays`` from every
  ``hill_every``-th stable checkpoint (None for a finished one)."""
  return [common.branch_spec(main_dir(workdir, s), step, d, "linear",
                             plan.final, hill_branch(step, d))
          for d in plan.hill_decays for s in plan.seeds
          for step in plan.hill_steps]


def run_all(config: ml_collections.ConfigDict, workdir: str) -> Plan:
  """Trains every run of the study (finished runs are reused)."""
  plan = Plan(config)
  p, base, seeds = plan.equal_compute, plan.base(), plan.seeds
  common.train_stage(TAG, "WSD main runs", ec.main_specs(
      p, base, workdir, seeds, extra_keep=plan.hill_steps))
  common.train_stage(
      TAG, f"WSD decay branches and hill branches ({list(plan.hill_decays)}"
      f"-step decays from {len(plan.hill_steps)} stable checkpoints)",
      ec.branch_specs(p, workdir, seeds) + hill_specs(plan, workdir))
  common.train_stage(TAG, "cosine runs", [
      cosine_spec(plan, workdir, s, b) for b in plan.budgets for s in seeds])
  common.train_stage(TAG, "WSD-S and cyclic cosine",
                     ec.cyclic_specs(p, base, workdir, seeds))
  return plan
