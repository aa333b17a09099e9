"""WSD vs WSD-S vs cyclic cosine at equal compute, GPT on stdlib text.

The protocol of ``studies.equal_compute`` (Wen et al., arXiv 2410.05192) with
the config of ``configs/wsd_s.py``: budgets B, 2B, 4B, decays of 10% of each
budget, linear to 0.1 x peak, cyclic cosine to 0.1 x peak at each of WSD-S's
checkpoints with a re-warm. Writes into WORKDIR ``wsd_s.md`` (eval loss at
each budget's checkpoint per method), ``wsd_s.json`` and ``wsd_s.png``.
"""

from __future__ import annotations

import sys
import time

import ml_collections

from wsd_jax import reports
from wsd_jax.data import corpus
from wsd_jax.runs import rundir
from wsd_jax.studies import common
from wsd_jax.studies import equal_compute as ec

TAG = "wsd_s"
METHODS = ec.METHODS


def plan(s: ml_collections.ConfigDict) -> ec.Plan:
  """The comparison a ``configs/wsd_s.py`` study section describes."""
  peak = float(s.peak_value)
  budgets = tuple(int(b) for b in s.budgets)
  return ec.Plan(peak, budgets, float(s.decay_fraction),
                 float(s.final_fraction) * peak, int(s.warmup_steps),
                 round(float(s.rewarm_fraction) * budgets[0]))


def train_all(config: ml_collections.ConfigDict, workdir: str) -> ec.Plan:
  """Trains (resumes) every run; finished runs are reused."""
  p, base = plan(config.study), config.train_config
  seeds = [int(base.seed)]
  common.train_stage(TAG, "WSD main run",
                     ec.main_specs(p, base, workdir, seeds))
  common.train_stage(TAG, "WSD decay branches",
                     ec.branch_specs(p, workdir, seeds))
  common.train_stage(TAG, "WSD-S and cyclic cosine",
                     ec.cyclic_specs(p, base, workdir, seeds))
  return p


def rows(table: list[dict]) -> list[dict]:
  """``equal_compute.table`` rows (one seed) as flat rows: per method its
  eval loss and the step of its checkpoint, and the compute spent."""
  return [{"budget": r["budget"], "wsd_compute": r["compute"],
           **{k: v for m in METHODS for k, v in (
               (m, r["losses"][m][0]), (f"{m}_step", r["steps"][m]))}}
          for r in table]


def markdown(flat: list[dict]) -> str:
  """The table: each method's eval loss (its checkpoint step) per budget."""
  return reports.markdown_table(
      ["budget", "WSD (step)", "WSD-S (step)", "cyclic cosine (step)", "best"],
      [[r["budget"], *(f"{r[m]:.4f} ({r[m + '_step']})" for m in METHODS),
        min(METHODS, key=lambda m: r[m])] for r in flat])


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains (resumes) every run and writes the table and figure."""
  start = time.perf_counter()
  info = corpus.use_stdlib_corpus(config, workdir)
  p = train_all(config, workdir)
  seed = int(config.train_config.seed)
  table = ec.table(p, workdir, [seed])
  flat = rows(table)
  t = config.train_config
  info.update(model=str(t.model.to_dict()),
              batch=f"{t.data.batch_size} x {t.data.seq_len} bytes",
              wall_s=round(time.perf_counter() - start, 1),
              argv=" ".join(sys.argv))
  stem = rundir.join(workdir, "wsd_s")
  rundir.write_text(stem + ".md", markdown(flat))
  colors = ec.figure(ec.curves(p, workdir, seed), table, stem + ".png",
                     "WSD vs WSD-S vs cyclic cosine (stars: budget "
                     "checkpoints)")
  result = {"rows": flat, "study": config.study.to_dict(), "info": info,
            "figure_colors": colors}
  rundir.write_json(stem + ".json", result)
  return result
