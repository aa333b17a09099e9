r"""Validates the loss-curve laws on real text: fit on two runs, predict others.

  python -m experiments.law_study --config=configs/law_study.py \
      --workdir=/tmp/law_study [--quick]

Trains (or resumes) in WORKDIR/runs: ``constant`` (the main run), ``cosine``,
``wsd20_linear`` and ``wsd_s`` as one population of equal length; decay
branches ``wsd10_linear``, ``wsd10_1-sqrt``, ``wsd20_1-sqrt`` forked from the
end of ``constant`` and ``mid_branch`` forked from its middle. Fits each law on
``study.fit`` and writes law_study.{md,json,png} and report.md into WORKDIR.
"""

from __future__ import annotations

import os
import sys
import time

import ml_collections
from absl import app, flags

from configs import law_study as law_study_config
from experiments import cli
from wsd_jax import schedules
from wsd_jax.data import corpus
from wsd_jax.laws import study as study_lib
from wsd_jax.runs import branching, rundir
from wsd_jax.train import train_population
from wsd_jax.train.config import with_schedule

FLAGS = flags.FLAGS


def full_length_runs(s: ml_collections.ConfigDict) -> dict[str, schedules.Schedule]:
  """The population: schedules of ``s.total_steps`` steps."""
  t, w, peak = int(s.total_steps), int(s.warmup_steps), float(s.peak_value)
  budgets = tuple(round(b * t) for b in s.wsd_s_budgets)
  return {
      "constant": schedules.wsd(peak_value=peak, total_steps=t, decay_steps=0,
                                warmup_steps=w),
      "cosine": schedules.cosine(peak_value=peak, total_steps=t, warmup_steps=w),
      f"wsd{round(100 * s.wsd_fraction)}_linear": schedules.wsd(
          peak_value=peak, total_steps=t, warmup_steps=w,
          decay_steps=round(s.wsd_fraction * t)),
      "wsd_s": schedules.wsd_s(peak_value=peak, budgets=budgets,
                               warmup_steps=w),
  }


def branch_plan(s: ml_collections.ConfigDict) -> dict[str, tuple[int, int, str]]:
  """Branch name -> (fork step, decay steps, shape), all from ``constant``.

  A decay that a full-length run already trains (``wsd20_linear``) is skipped.
  """
  t = int(s.total_steps)
  plan = {}
  for frac in s.branch_fractions:
    for shape in s.branch_shapes:
      name = f"wsd{round(100 * frac)}_{shape}"
      if name not in full_length_runs(s):
        plan[name] = (t - round(frac * t), round(frac * t), shape)
  fork, frac = s.mid_branch
  plan["mid_branch"] = (round(fork * t), round(frac * t), "linear")
  return plan


def train_runs(config: ml_collections.ConfigDict, workdir: str) -> dict[str, str]:
  """Trains (resumes) every run of the study; returns name -> run dir."""
  s, base = config.study, config.train_config
  runs = full_length_runs(s)
  plan = branch_plan(s)
  dirs = {n: os.path.join(workdir, "runs", n) for n in runs}
  configs = [with_schedule(base, sched, s.total_steps,
                        keep_steps=[f for f, _, _ in plan.values()]
                        if n == "constant" else ()) for n, sched in runs.items()]
  for c in configs:
    c.train.eval_every = int(s.eval_every)
  train_population(configs, list(dirs.values()))
  for name, (fork, decay, shape) in plan.items():
    branching.branch(dirs["constant"], fork, decay, shape, name=name)
    dirs[name] = rundir.branch_dir(dirs["constant"], name)
  return dirs


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains (resumes) the study's runs, fits, scores and writes the report."""
  start = time.perf_counter()
  info = corpus.use_stdlib_corpus(config, workdir)
  dirs = train_runs(config, workdir)
  s, t = config.study, config.train_config
  info.update(model=str(t.model.to_dict()),
              batch=f"{t.data.batch_size} x {t.data.seq_len} bytes",
              total_steps=int(s.total_steps), eval_every=int(s.eval_every),
              eval_batches=int(t.data.eval_batches),
              train_wall_s=round(time.perf_counter() - start, 1),
              argv=" ".join(sys.argv))
  result = study_lib.run_study(dirs, list(s.fit), list(s.laws), workdir, info,
                               min_step=int(s.min_step),
                               warmup_steps=int(s.warmup_steps),
                               min_r2=float(s.min_r2))
  result["total_wall_s"] = round(time.perf_counter() - start, 1)
  return result


@cli.friendly_errors
def main(argv):
  del argv
  config = cli.study_config(law_study_config)
  result = run(config, FLAGS.workdir)
  print(open(os.path.join(FLAGS.workdir, "law_study.md")).read())
  for law, row in result["summary"].items():
    print(f"{law}: held-out mean {row['mean_rel_err']:.3%}, worst "
          f"{row['max_rel_err']:.3%}, min R^2 {row['min_r2']:.5f}")
  print(f"wall: train {result['info']['train_wall_s']:.0f} s, "
        f"total {result['total_wall_s']:.0f} s")


if __name__ == "__main__":
  cli.define_study_flags("configs/law_study.py")
  app.run(main)
