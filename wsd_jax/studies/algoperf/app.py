"""What ``experiments/algoperf.py`` and ``experiments/algoperf_targets.py``
run: the benchmark end to end, and target setting."""

from __future__ import annotations

import platform
import sys
import time
from typing import Sequence

import ml_collections

from wsd_jax.data import corpus
from wsd_jax.runs import rundir
from wsd_jax.studies.algoperf import (adaptive, anytime, benchmark, layout,
                                      report, targets)
from wsd_jax.studies.algoperf import submissions as subs_lib
from wsd_jax.studies.algoperf import workloads as workloads_lib

DEFAULT_WORKLOADS = ("bigram", "digits", "mlp_text", "gpt_nano")
DEFAULT_SUBMISSIONS = ("cosine", "constant", "wsd_linear", "wsd_1sqrt",
                       "wsd_s", "rex", "uba", "power", "schedule_free",
                       "adam_hd",
                       "refined_oracle", "refined_on_the_clock", "autolrs")
QUALIFICATION = ("bigram", "digits", "mlp_text")


def device() -> str:
  """The device the seconds come from, in words."""
  d = layout.device()
  return (f"{d['device_count']} x {d['device_kind']} ({d['platform']}), "
          f"{platform.machine()} host")


def base_config(w: workloads_lib.Workload, workdir: str,
                steps: int | None = None
                ) -> tuple[ml_collections.ConfigDict, dict]:
  """``w``'s trainer config with its corpus (written into ``workdir``) and
  the corpus's description (bytes, hash); ``{}`` for generated data."""
  c = w.config(steps)
  if not w.corpus:
    return c, {}
  holder = ml_collections.ConfigDict({"train_config": c,
                                      "corpus_max_bytes": w.corpus_max_bytes})
  info = corpus.use_stdlib_corpus(holder, workdir)
  return holder.train_config, info


def set_targets(workdir: str, names: Sequence[str], num_trials: int = 64,
                num_seeds: int = 10, out: str | None = None) -> dict:
  """Sets and records the target of each workload (see ``targets``)."""
  result = {}
  for name in names:
    w = workloads_lib.get(name)
    base, info = base_config(w, workdir, w.horizon)
    entry = targets.set_target(w, workdir, num_trials, num_seeds, base, info)
    entry["provenance"]["device"] = device()
    targets.update(out or targets.TARGETS_FILE, name, entry)
    result[name] = entry
  return result


def run(workdir: str, *, quick: bool = False,
        workloads: Sequence[str] | None = None,
        submissions: Sequence[str] | None = None, studies: int | None = None,
        trials: int | None = None, targets_file: str | None = None,
        rerun_best: bool | None = None) -> dict:
  """Trains (resumes) every (submission, study, workload) and writes the
  scores, time to targets, figures and report into ``workdir``.

  ``quick``: ``bigram_quick``, 3 submissions, 1 study x 2 trials.
  ``rerun_best`` (default: not ``quick``): each study's best trial is
  trained again alone for its seconds. The default submissions leave out
  AutoLRS when ``wsd_jax.adaptive.autolrs`` is missing; named, it refuses.
  """
  start = time.perf_counter()
  rerun_best = (not quick) if rerun_best is None else bool(rerun_best)
  names = list(workloads or (("bigram_quick",) if quick else
                             DEFAULT_WORKLOADS))
  subs = list(submissions or (subs_lib.QUICK if quick else [
      s for s in DEFAULT_SUBMISSIONS if adaptive.available(subs_lib.get(s))]))
  studies = int(studies or (1 if quick else 3))
  trials = int(trials or (2 if quick else 5))
  ws = [workloads_lib.get(n) for n in names]
  all_targets = targets.load(targets_file or targets.TARGETS_FILE)
  if missing := [n for n in names if n not in all_targets]:
    raise ValueError(f"no committed target for {', '.join(missing)}: run "
                     "python -m experiments.algoperf_targets --workloads="
                     + ",".join(missing))
  for s in subs:
    if not adaptive.available(subs_lib.get(s)):
      adaptive.autolrs_module()  # raises "AutoLRS not available: ..."
  rundir.write_json(rundir.join(workdir, "targets.json"), {
      w.name: {k: v for k, v in all_targets[w.name].items()
               if k != "provenance"} | {"step_hint": w.step_hint,
                                         "max_steps": w.max_steps,
                                         "eval_every": w.eval_every}
      for w in ws})
  corpus_info, bases = {}, {}
  for w in ws:
    base, info = base_config(w, workdir)
    bases[w.name] = base
    corpus_info.update({w.name: info} if info else {})
    for s in subs:
      for k in range(studies):
        benchmark.run_study(subs_lib.get(s), w, workdir, k, trials, base,
                            all_targets[w.name]["target"], rerun_best)
  rows = benchmark.time_to_targets(workdir, subs, ws, all_targets, studies,
                                   trials)
  table = benchmark.score_table(rows)
  any_rows = (anytime.tables(workdir, ws, studies, bases)
              if anytime.SOURCE in subs else [])
  info = {"device": device(), **layout.device(), "workloads": names,
          "submissions": subs, "studies": studies, "trials": trials,
          "rerun_best": rerun_best, "corpus": corpus_info,
          "argv": " ".join(sys.argv),
          "wall_s": round(time.perf_counter() - start, 1),
          "cost": benchmark.cost(workdir, subs, ws, studies)}
  report.write_all(workdir, ws, subs, all_targets, rows, table, info,
                   any_rows)
  return {"rows": rows, "scores": table, "info": info}
