"""The adaptive-methods study (``python -m experiments.adaptive_study``):
the adaptive LR methods against WSD on the bigram corpus, and FedHyper-G
against FedAvg in the simulated federation, with verdicts.

Runs (one bigram config, equal steps): ``wsd`` (AdamW, the config's WSD);
``adam_hd`` (Adam-HD, pure HD: ``constant(1.0)`` schedule, initial LR the
WSD peak); ``adam_hd_wsd`` (Adam-HD under the WSD schedule as a multiplier);
``refined`` (Adam under the l1-refined schedule of ``wsd``'s norms, same
peak); ``schedule_free`` (schedule-free AdamW, warmup then constant). Each
verdict compares final ``eval_loss`` with ``wsd``'s: "better" / "worse" when
the gap exceeds ``tolerance`` (relative), else "tie". Reads runs through
``runs.Run``; writes ``report.md`` and ``results.json``.
"""

from __future__ import annotations

import ml_collections
import numpy as np

from configs import bigram
from wsd_jax import reports, runs
from wsd_jax.adaptive import fedhyper, refine_run
from wsd_jax.runs import rundir


def bigram_config(steps: int) -> ml_collections.ConfigDict:
  c = bigram.get_config()
  c.train.update(steps=steps, log_every=max(steps // 20, 1),
                 eval_every=max(steps // 5, 1), checkpoint_every=steps,
                 keep_every=0, progress=False, plots=False)
  return c


def variants(base: ml_collections.ConfigDict, hypergrad_lr: float
             ) -> dict[str, ml_collections.ConfigDict]:
  """The configs of every run but ``refined`` (which needs ``wsd``'s)."""
  peak = float(base.schedule.peak_value)
  def with_(schedule=None, **optimizer):
    c = ml_collections.ConfigDict(base.to_dict())
    if schedule:
      c.schedule = ml_collections.ConfigDict(schedule)
    c.optimizer.update(optimizer)
    return c
  hd = dict(name="adam_hd", learning_rate=peak, hypergrad_lr=hypergrad_lr,
            weight_decay=None)
  warm = int(round(float(base.schedule.warmup_fraction) * base.train.steps))
  return {
      "wsd": with_(),
      "adam_hd": with_({"name": "constant", "value": 1.0}, **hd),
      "adam_hd_wsd": with_(None, **dict(hd, learning_rate=1.0)),
      "schedule_free": with_(
          {"name": "wsd", "peak_value": peak, "total_steps": base.train.steps,
           "warmup_steps": warm, "decay_steps": 0},
          name="contrib.schedule_free_adamw"),
  }


def run_study(workdir: str, quick: bool = False, tolerance: float = 0.002
              ) -> dict:
  """Trains (or resumes) every run, runs the federation, writes the report.

  Returns:
    ``{"runs": {name: final eval_loss}, "verdicts": [...], "federation":
    {...}}`` (also ``results.json``).
  """
  from wsd_jax import train  # the trainer imports wsd_jax.adaptive
  steps = 150 if quick else 800
  base = bigram_config(steps)
  configs = variants(base, hypergrad_lr=1e-6 if quick else 1e-7)
  dirs = {k: rundir.join(workdir, "runs", k) for k in
          list(configs) + ["refined"]}
  for name, config in configs.items():
    train.train_and_evaluate(config, dirs[name])
  refined = refine_run.refine_config(
      dirs["wsd"], norm="l1", peak_value=float(base.schedule.peak_value))
  refined.optimizer.update(name="adam")
  train.train_and_evaluate(refined, dirs["refined"])
  finals = {k: runs.Run(d).final_eval for k, d in dirs.items()}
  optimal = runs.Run(dirs["wsd"]).data_info.get("optimal_loss")

  def verdict(name):
    gap = (finals[name] - finals["wsd"]) / finals["wsd"]
    word = ("tie" if abs(gap) <= tolerance else
            "better" if gap < 0 else "worse")
    return {"run": name, "eval_loss": finals[name], "vs_wsd": gap,
            "verdict": word}
  verdicts = [verdict(k) for k in ("refined", "adam_hd", "adam_hd_wsd",
                                   "schedule_free")]

  fed = fedhyper.make_federation()
  rounds = 30 if quick else 100
  federation = {}
  for label, lr in (("good", 4.0), ("poor", 0.5)):
    for method in ("fedavg", "fedhyper_g"):
      out = fedhyper.simulate(fed, method=method, client_lr=lr, rounds=rounds)
      federation[f"{method}_{label}"] = {
          "client_lr": lr, "final_loss": float(out["loss"][-1]),
          "final_server_lr": float(out["server_lr"][-1])}
  for label in ("good", "poor"):
    a = federation[f"fedavg_{label}"]["final_loss"]
    h = federation[f"fedhyper_g_{label}"]["final_loss"]
    verdicts.append({"run": f"fedhyper_g ({label} client LR)",
                     "eval_loss": h, "vs_fedavg": (h - a) / a,
                     "verdict": "better" if h < a * (1 - tolerance) else
                     "worse" if h > a * (1 + tolerance) else "tie"})
  results = {"steps": steps, "optimal_loss": optimal, "runs": finals,
             "verdicts": verdicts, "federation": federation,
             "fedhyper_clip": list(fedhyper.CODE_CLIP)}
  rundir.write_json(rundir.join(workdir, "results.json"), results)
  rundir.write_text(rundir.join(workdir, "report.md"), markdown(results))
  return results


def markdown(results: dict) -> str:
  """The report: runs, verdicts and the federation."""
  rows = [[k, v, (v - results["runs"]["wsd"]) / results["runs"]["wsd"]]
          for k, v in results["runs"].items()]
  fed = [[k, v["client_lr"], v["final_loss"], v["final_server_lr"]]
         for k, v in results["federation"].items()]
  lines = [
      f"# Adaptive LR methods on the bigram corpus ({results['steps']} "
      f"steps; optimal loss {results['optimal_loss']})\n",
      reports.markdown_table(["run", "final eval_loss", "vs wsd"], rows),
      "## Verdicts\n",
      "".join(f"- {v['run']}: **{v['verdict']}**"
              f" ({100 * v.get('vs_wsd', v.get('vs_fedavg', 0.0)):+.2f}% vs "
              f"{'wsd' if 'vs_wsd' in v else 'FedAvg'})\n"
              for v in results["verdicts"]),
      f"\n## Federation (FedHyper-G clip {results['fedhyper_clip']}, the "
      "authors' code's)\n",
      reports.markdown_table(["method", "client LR", "final loss",
                              "final server LR"], fed),
  ]
  return "\n".join(lines)
