"""The river-valley study (Wen et al., arXiv 2410.05192): its runs.

Every run is an ordinary run directory under ``DIR``::

    DIR/wsd/seed{S}/                 main branch: WSD to the largest budget
    DIR/wsd/seed{S}/branches/budget{B}   decay branch ending at budget B
    DIR/wsd/seed{S}/branches/hill{s}     short decay branch from stable step s
    DIR/cosine/seed{S}_b{B}/         cosine to budget B
    DIR/wsd_s/seed{S}/               WSD-S over all budgets (one run)
    DIR/cyclic/seed{S}/              cyclic cosine over the WSD-S points

Runs that share a shape (seeds, decay branches of one length) are trained
together with ``train_population``; a finished run is not trained again, so
rerunning the command only redoes the analysis.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time

import ml_collections

from wsd_jax import schedules
from wsd_jax.runs import branching, rundir
from wsd_jax.train import RunSpec, train_specs
from wsd_jax.train.config import with_schedule


@dataclasses.dataclass(frozen=True)
class Plan:
  """The steps and schedules the study's config implies."""
  config: ml_collections.ConfigDict

  @property
  def peak(self) -> float:
    return float(self.config.peak_value)

  @property
  def final(self) -> float:
    return self.config.final_fraction * self.peak

  @property
  def budgets(self) -> tuple[int, ...]:
    return tuple(int(b) for b in self.config.budgets)

  @property
  def decays(self) -> tuple[int, ...]:
    return tuple(round(self.config.decay_fraction * b) for b in self.budgets)

  @property
  def warmup(self) -> int:
    return round(self.config.warmup_fraction * self.budgets[0])

  @property
  def stable_end(self) -> int:
    """The last stable step of the main branch (its own decay starts here)."""
    return self.budgets[-1] - self.decays[-1]

  @property
  def hill_steps(self) -> tuple[int, ...]:
    every = int(self.config.hill_every)
    return tuple(range(every, self.stable_end + 1, every))

  def main_schedule(self) -> schedules.Schedule:
    return schedules.wsd(self.peak, self.budgets[-1], self.decays[-1],
                         warmup_steps=self.warmup, final_value=self.final)

  def cosine(self, budget: int) -> schedules.Schedule:
    return schedules.cosine(self.peak, budget, warmup_steps=self.warmup,
                            final_value=self.final)

  def wsd_s(self) -> schedules.Schedule:
    return schedules.wsd_s(self.peak, self.budgets,
                           decay_fraction=float(self.config.decay_fraction),
                           warmup_steps=self.warmup, final_value=self.final)

  def cyclic(self) -> schedules.Schedule:
    rewarm = round(self.config.rewarm_fraction * self.budgets[0])
    return schedules.cyclic_cosine(
        self.peak, self.wsd_s().checkpoint_steps, warmup_steps=self.warmup,
        rewarm_steps=rewarm, final_value=self.final)

  @property
  def eval_every(self) -> int:
    """Evaluates every budget point, fork point and branch end."""
    return math.gcd(*self.budgets, *self.decays, int(self.config.hill_every),
                    int(self.config.hill_decay_steps))


def main_dir(workdir: str, seed: int) -> str:
  return os.path.join(workdir, "wsd", f"seed{seed}")


def cosine_dir(workdir: str, seed: int, budget: int) -> str:
  return os.path.join(workdir, "cosine", f"seed{seed}_b{budget}")


def wsd_s_dir(workdir: str, seed: int) -> str:
  return os.path.join(workdir, "wsd_s", f"seed{seed}")


def cyclic_dir(workdir: str, seed: int) -> str:
  return os.path.join(workdir, "cyclic", f"seed{seed}")


def budget_branch(budget: int) -> str:
  return f"budget{budget}"


def hill_branch(step: int) -> str:
  return f"hill{step}"


def run_config(plan: Plan, seed: int, schedule: schedules.Schedule,
               steps: int, **train) -> ml_collections.ConfigDict:
  """The study's base run config with a seed, a schedule and a length."""
  c = with_schedule(plan.config.run, schedule, steps, **dict(
      dict(eval_every=plan.eval_every, log_every=plan.eval_every,
           checkpoint_every=int(steps)), **train))
  c.seed = int(seed)
  return c


def _branch(plan: Plan, main: str, from_step: int, decay_steps: int,
            name: str) -> RunSpec:
  """A linear decay branch of ``main`` to the study's final LR."""
  return branching.branch_spec(
      main, from_step, decay_steps, "linear", plan.final, name,
      train_overrides={"checkpoint_every": from_step + decay_steps})


def _finished(member: RunSpec) -> bool:
  rows = rundir.read_metrics(member.workdir) if rundir.is_run(
      member.workdir) else []
  return bool(rows) and rows[-1]["step"] >= int(member.config.train.steps)


def train(label: str, members: list[RunSpec]) -> None:
  """Trains the unfinished members as one population, printing progress."""
  todo = [m for m in members if not _finished(m)]
  if not todo:
    print(f"[river_valley] {label}: {len(members)} run(s) already done",
          flush=True)
    return
  start = time.perf_counter()
  train_specs(todo)
  steps = sum(int(m.config.train.steps) - (m.start.step if m.start else 0)
              for m in todo)
  print(f"[river_valley] {label}: {len(todo)} run(s), {steps} steps in "
        f"{time.perf_counter() - start:.1f} s", flush=True)


def run_all(config: ml_collections.ConfigDict, workdir: str) -> Plan:
  """Trains every run of the study (resuming finished ones for free)."""
  plan = Plan(config)
  seeds = [int(s) for s in config.seeds]
  forks = [b - d for b, d in zip(plan.budgets, plan.decays)]
  keep = sorted(set(forks[:-1]) | set(plan.hill_steps))
  train("WSD main branches", [
      RunSpec(run_config(plan, s, plan.main_schedule(), plan.budgets[-1],
                        checkpoint_every=math.gcd(*keep), keep_steps=keep,
                        keep_every=0), main_dir(workdir, s))
      for s in seeds])
  for budget, decay, fork in list(zip(plan.budgets, plan.decays, forks))[:-1]:
    train(f"WSD decay branches to {budget}", [
        _branch(plan, main_dir(workdir, s), fork, decay,
                budget_branch(budget)) for s in seeds])
  train(f"hill branches ({config.hill_decay_steps}-step decays from "
        f"{len(plan.hill_steps)} stable checkpoints)", [
            _branch(plan, main_dir(workdir, s), step,
                    int(config.hill_decay_steps), hill_branch(step))
            for s in seeds for step in plan.hill_steps])
  for budget in plan.budgets:
    train(f"cosine to {budget}", [
        RunSpec(run_config(plan, s, plan.cosine(budget), budget),
               cosine_dir(workdir, s, budget)) for s in seeds])
  total = plan.wsd_s().checkpoint_steps[-1]
  train("WSD-S", [RunSpec(run_config(plan, s, plan.wsd_s(), total),
                         wsd_s_dir(workdir, s)) for s in seeds])
  train("cyclic cosine", [RunSpec(run_config(plan, s, plan.cyclic(), total),
                                 cyclic_dir(workdir, s)) for s in seeds])
  return plan
