r"""Scores a benchmark directory with AlgoPerf's own scoring code and compares
with its ``scores.csv``.

  python docs/algoperf_crosscheck.py --algoperf=PATH --workdir=DIR

PATH holds AlgoPerf's ``scoring/`` package (``performance_profile.py``,
``scoring_utils.py``, ``__init__.py``) from a checkout of
mlcommons/algorithmic-efficiency; needs ``pandas`` and ``tabulate``. The
benchmark's workloads are not in AlgoPerf's workload registry, so a stub
``algoperf.workloads.workloads`` module is installed and
``scoring_utils.get_workload_metrics_and_targets`` reads ``DIR/targets.json``;
``NUM_BASE_WORKLOADS`` / ``BASE_WORKLOADS`` are the workloads present (the
rule DESIGN.md states). Everything else is AlgoPerf's code: reading the
``eval_measurements.csv`` files (``get_experiment_df``), time to target,
the 4x cutoff, the profiles on 100 points of [1, 4] and the normalised
trapezoid score. Exits 1 if a score differs by more than 1e-9.
"""

import argparse
import csv
import json
import os
import sys
import tempfile
import types

import numpy as np


def algoperf_scores(algoperf: str, workdir: str) -> dict:
  """``{time_col: {submission: score}}`` computed by AlgoPerf's code."""
  with open(os.path.join(workdir, "targets.json")) as f:
    targets = json.load(f)
  names = sorted(targets)
  stub = types.ModuleType("algoperf.workloads.workloads")
  stub.WORKLOADS, stub.BASE_WORKLOADS = {}, names
  stub.get_base_workload_name = lambda w: w
  for mod in ("algoperf", "algoperf.workloads"):
    sys.modules.setdefault(mod, types.ModuleType(mod))
  sys.modules["algoperf.workloads.workloads"] = stub
  if not hasattr(np, "trapz"):  # removed in NumPy 2.4; same rule
    np.trapz = np.trapezoid
  sys.path.insert(0, algoperf)
  from scoring import performance_profile as pp  # pylint: disable=import-outside-toplevel
  from scoring import scoring_utils as su  # pylint: disable=import-outside-toplevel

  def metric_and_target(workload, split="validation"):
    del split
    t = targets[workload.rsplit("_", 1)[0]]
    return t["metric"], t["target"]
  su.get_workload_metrics_and_targets = metric_and_target
  pp.NUM_BASE_WORKLOADS, pp.BASE_WORKLOADS = len(names), names
  subs_dir = os.path.join(workdir, "submissions")
  results = {s: su.get_experiment_df(os.path.join(subs_dir, s))
             for s in sorted(os.listdir(subs_dir))}
  out = {}
  with tempfile.TemporaryDirectory() as tmp:
    for col in ("global_step", "score"):
      prof = pp.compute_performance_profiles(
          results, time_col=col, min_tau=1.0, max_tau=4.0, num_points=100,
          scale="linear", verbosity=0, output_dir=tmp)
      score = pp.compute_leaderboard_score(prof, normalize=True)
      out[col] = {s: float(v) for s, v in score["score"].items()}
  return out


def main() -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--algoperf", required=True)
  p.add_argument("--workdir", required=True)
  args = p.parse_args()
  theirs = algoperf_scores(args.algoperf, args.workdir)
  with open(os.path.join(args.workdir, "scores.csv")) as f:
    ours = {r["submission"]: r for r in csv.DictReader(f)}
  bad = 0
  print("submission     steps(ours)  steps(AlgoPerf)  seconds(ours)  "
        "seconds(AlgoPerf)")
  for s, r in ours.items():
    a, b = float(r["score_steps"]), theirs["global_step"][s]
    c, d = float(r["score_seconds"]), theirs["score"][s]
    bad += abs(a - b) > 1e-9 or abs(c - d) > 1e-9
    print(f"{s:<14} {a:11.6f}  {b:15.6f}  {c:13.6f}  {d:17.6f}")
  print("MISMATCH" if bad else "all scores agree (|diff| <= 1e-9)")
  return 1 if bad else 0


if __name__ == "__main__":
  sys.exit(main())
