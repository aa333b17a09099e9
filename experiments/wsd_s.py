r"""WSD vs WSD-S vs cyclic cosine at equal compute, GPT on stdlib text.

  python -m experiments.wsd_s --config=configs/wsd_s.py:size=nano \
      --workdir=/tmp/wsd_s [--quick]

For budgets B_1 < B_2 < B_3 (decays d_i = 10% of B_i, to 0.1 x peak):
- WSD: one constant main run to B_3 - d_3 with a decay branch per budget
  (``branching.branch``), checkpoints at B_i;
- WSD-S: ``schedules.wsd_s``, one run, checkpoints at E_i = B_i + sum_{j<i} d_j;
- cyclic cosine: cosine to 0.1 x peak ending at each E_i, linear re-warm.
All three spend B_3 + d_1 + d_2 steps in total. Writes wsd_s.{md,json,png}
(eval loss at each budget's checkpoint per method) into WORKDIR.
"""

from __future__ import annotations

import json
import os
import sys
import time

import ml_collections
from absl import app, flags

from configs import wsd_s as wsd_s_config
from experiments import cli
from wsd_jax import schedules
from wsd_jax.data import corpus
from wsd_jax.runs import branching, rundir
from wsd_jax.train import train_and_evaluate, train_population
from wsd_jax.train.config import with_schedule as run_config

FLAGS = flags.FLAGS
METHODS = ("wsd", "wsd_s", "cyclic_cosine")


def plan(s: ml_collections.ConfigDict) -> dict:
  """The schedules and checkpoint steps of the three methods."""
  peak, w = float(s.peak_value), int(s.warmup_steps)
  final = float(s.final_fraction) * peak
  budgets = tuple(int(b) for b in s.budgets)
  decays = [round(float(s.decay_fraction) * b) for b in budgets]
  wsd_s = schedules.wsd_s(peak_value=peak, budgets=budgets,
                          decay_fraction=float(s.decay_fraction),
                          warmup_steps=w, final_value=final)
  ends = tuple(int(e) for e in wsd_s.checkpoint_steps)
  cyclic = schedules.cyclic_cosine(
      peak_value=peak, cycle_ends=ends, warmup_steps=w, final_value=final,
      rewarm_steps=round(float(s.rewarm_fraction) * budgets[0]))
  main_steps = budgets[-1] - decays[-1]
  # Constant after warmup through B_3 (trained only to B_3 - d_3), so the
  # last fork starts its decay from the peak.
  main = schedules.wsd(peak_value=peak, total_steps=budgets[-1], decay_steps=0,
                       warmup_steps=w)
  return {"budgets": budgets, "decays": decays, "final_value": final,
          "main": main, "main_steps": main_steps, "wsd_s": wsd_s,
          "cyclic_cosine": cyclic, "ends": ends,
          "forks": [b - d for b, d in zip(budgets, decays)]}


def eval_at(workdir: str, step: int) -> float:
  rows = [r for r in rundir.read_metrics(workdir)
          if r["step"] == step and "eval_loss" in r]
  if not rows:
    raise ValueError(f"{workdir} has no eval_loss at step {step}; make "
                     "eval_every divide every checkpoint step")
  return float(rows[-1]["eval_loss"])


def train_all(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains (resumes) every run; returns the per-method run dirs."""
  p, base = plan(config.study), config.train_config
  dirs = {m: os.path.join(workdir, m) for m in METHODS}
  train_and_evaluate(run_config(base, p["main"], p["main_steps"],
                                keep_steps=p["forks"]), dirs["wsd"])
  train_population([run_config(base, p[m], p["ends"][-1], keep_steps=p["ends"])
                    for m in ("wsd_s", "cyclic_cosine")],
                   [dirs["wsd_s"], dirs["cyclic_cosine"]])
  for i, (fork, decay) in enumerate(zip(p["forks"], p["decays"])):
    branching.branch(dirs["wsd"], fork, decay, "linear", p["final_value"],
                     name=f"budget{i + 1}")
  return dirs


def table(config: ml_collections.ConfigDict, dirs: dict) -> list[dict]:
  """One row per budget: the checkpoint step and eval loss of each method."""
  p = plan(config.study)
  rows = []
  for i, budget in enumerate(p["budgets"]):
    wsd_dir = rundir.branch_dir(dirs["wsd"], f"budget{i + 1}")
    row = {"budget": budget,
           "wsd_step": budget, "wsd": eval_at(wsd_dir, budget),
           "wsd_s_step": p["ends"][i],
           "wsd_s": eval_at(dirs["wsd_s"], p["ends"][i]),
           "cyclic_cosine_step": p["ends"][i],
           "cyclic_cosine": eval_at(dirs["cyclic_cosine"], p["ends"][i])}
    # Steps trained so far to get this budget's model (all methods' total
    # at the last budget: B_3 + d_1 + d_2).
    row["wsd_compute"] = budget + sum(p["decays"][:i])
    rows.append(row)
  return rows


def markdown(rows: list[dict]) -> str:
  lines = ["| budget | WSD (step) | WSD-S (step) | cyclic cosine (step) | best |",
           "|---|---|---|---|---|"]
  for r in rows:
    best = min(METHODS, key=lambda m: r[m])
    cells = [f"{r[m]:.4f} ({r[m + '_step']})" for m in METHODS]
    lines.append(f"| {r['budget']} | " + " | ".join(cells) + f" | {best} |")
  return "\n".join(lines) + "\n"


def plot(config: ml_collections.ConfigDict, dirs: dict, rows: list[dict],
         path: str) -> None:
  """Eval loss (top) and LR (bottom) of each method; stars at checkpoints."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  p = plan(config.study)
  fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 7), sharex=True,
                                    gridspec_kw={"height_ratios": [2, 1]})
  runs = {"wsd": [dirs["wsd"]] + [rundir.branch_dir(dirs["wsd"], f"budget{i + 1}")
                                  for i in range(len(p["budgets"]))],
          "wsd_s": [dirs["wsd_s"]], "cyclic_cosine": [dirs["cyclic_cosine"]]}
  for k, (method, run_dirs) in enumerate(runs.items()):
    color = f"C{k}"
    for j, d in enumerate(run_dirs):
      m = [r for r in rundir.read_metrics(d) if "eval_loss" in r]
      top.plot([r["step"] for r in m], [r["eval_loss"] for r in m], "-",
               color=color, lw=1, label=method if j == 0 else None)
      bottom.plot([r["step"] for r in m], [r["lr"] for r in m], "-",
                  color=color, lw=1)
    top.plot([r[method + "_step"] for r in rows], [r[method] for r in rows],
             "*", color=color, ms=10)
  losses = [r[m] for r in rows for m in METHODS]
  top.set_ylim(min(losses) - 0.05, max(losses) + 0.4)
  top.set_ylabel("eval loss")
  top.set_title("WSD vs WSD-S vs cyclic cosine (stars: budget checkpoints)")
  top.legend()
  bottom.set_ylabel("lr")
  bottom.set_xlabel("step")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains (resumes) every run and writes the table and figure."""
  start = time.perf_counter()
  info = corpus.use_stdlib_corpus(config, workdir)
  dirs = train_all(config, workdir)
  rows = table(config, dirs)
  t = config.train_config
  info.update(model=str(t.model.to_dict()),
              batch=f"{t.data.batch_size} x {t.data.seq_len} bytes",
              wall_s=round(time.perf_counter() - start, 1),
              argv=" ".join(sys.argv))
  stem = os.path.join(workdir, "wsd_s")
  with open(stem + ".md", "w") as f:
    f.write(markdown(rows))
  result = {"rows": rows, "study": config.study.to_dict(), "info": info}
  with open(stem + ".json", "w") as f:
    json.dump(result, f, indent=2)
  plot(config, dirs, rows, stem + ".png")
  return result


@cli.friendly_errors
def main(argv):
  del argv
  config = cli.study_config(wsd_s_config)
  result = run(config, FLAGS.workdir)
  print(markdown(result["rows"]))
  print(f"wall: {result['info']['wall_s']:.0f} s")


if __name__ == "__main__":
  cli.define_study_flags("configs/wsd_s.py")
  app.run(main)
