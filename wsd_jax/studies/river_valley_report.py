"""The river-valley study: figures, tables (Markdown + JSON) and report.md.

Figures take arrays (gathered from ``runs.Run`` by the ``*_series``
functions) and draw each method in its one colour (``plots.color``).
"""

from __future__ import annotations

import json
import time

import numpy as np

from wsd_jax import plots, reports
from wsd_jax.plots import plt
from wsd_jax.runs import rundir
from wsd_jax.studies import equal_compute as ec
from wsd_jax.studies import river_valley as rv
from wsd_jax.studies import river_valley_analysis as rva


def wsd_vs_cosine_series(r: rva.Runs) -> dict[str, list[tuple]]:
  """Seed 0's eval curves: WSD (main run, then each budget's branch) and the
  cosine run to each budget, as ``(label, steps, losses)``."""
  seed, plan = r.plan.seeds[0], r.plan
  wsd = [("WSD main run", *r.main(seed).eval_curve())]
  wsd += [(f"WSD decay to {b}", *ec.eval_curve(r.wsd(seed, i), r.main(seed)))
          for i, b in enumerate(plan.budgets)]
  return {"wsd": wsd, "cosine": [(f"cosine to {b}",
                                  *r.cosine(seed, b).eval_curve())
                                 for b in plan.budgets]}


def fig_wsd_vs_cosine(series: dict[str, list[tuple]], optimum: float,
                      path: str, title: str) -> dict[str, list[str]]:
  """WSD's and cosine's eval curves, one colour per method; returns the
  colours drawn per method."""
  fig, ax = plt.subplots(figsize=(7, 4.2))
  drawn = {}
  for method, lines in series.items():
    for j, (label, steps, losses) in enumerate(lines):
      if method == "wsd" and j:
        label = "WSD decays to each budget" if j == 1 else None
      line, = ax.plot(steps, losses, lw=1.3, color=plots.color(method),
                      ls="-" if method == "wsd" else ("-", "--", ":")[j % 3],
                      label=label)
      drawn.setdefault(method, set()).add(line.get_color())
  ax.axhline(optimum, color="k", ls="--", lw=1, label="optimum")
  ax.set(xlabel="step", ylabel="eval loss", title=title)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  plots.save(fig, path)
  return {m: sorted(c) for m, c in drawn.items()}


def groups_series(r: rva.Runs, oracle: rva.Oracle) -> dict:
  """Per-group excess along the main runs (mean over seeds) and after each
  hill branch's decay."""
  plan = r.plan
  steps, _ = r.main(plan.seeds[0]).eval_curve()
  steps = steps[steps > 0]
  excess = np.mean([rva.group_excess_along(r.main(s), oracle, steps)
                    for s in plan.seeds], axis=0)
  d = int(plan.config.hill_decay_steps)
  decayed = np.mean([[oracle.group_excess(r.row(r.hill(s, h), h + d))
                      for h in plan.hill_steps] for s in plan.seeds], axis=0)
  return {"steps": steps, "excess": excess,
          "decayed_steps": np.array(plan.hill_steps) + d, "decayed": decayed,
          "labels": [f"group {g} (support {k})"
                     for g, k in zip(oracle.groups, oracle.support)],
          "stable_end": plan.stable_end}


def fig_groups(s: dict, path: str) -> str:
  fig, ax = plt.subplots(figsize=(7, 4.2))
  for g, label in enumerate(s["labels"]):
    line, = ax.plot(s["steps"], np.maximum(s["excess"][:, g], 1e-4), lw=1.3,
                    label=label)
    ax.plot(s["decayed_steps"], np.maximum(s["decayed"][:, g], 1e-4), "o",
            color=line.get_color(), ms=4)
  ax.axvline(s["stable_end"], color="k", ls=":", lw=1)
  ax.set_yscale("log")
  ax.set_xlabel("step")
  ax.set_ylabel("excess eval loss above optimum")
  ax.set_title("by entropy group: main branch (lines), after a short decay "
               "(dots)", fontsize=9)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  return plots.save(fig, path)


def fig_river_hill(hill_steps, series: dict, num_seeds: int, path: str) -> str:
  steps = np.array(hill_steps)
  lines = [(f"{k} (mean of {num_seeds} seeds)", steps,
            np.array(series[k])[:, 0]) for k in ("stable", "river", "hill")]
  return plots.curves(lines, path, ylabel="excess eval loss",
                      title="excess = river + hill along the main branch",
                      hline=0.0, hline_label="optimum")


def fig_valley(curves: list[dict], path: str) -> str:
  fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=False)
  for ax, kind in zip(axes, ("stable", "decayed")):
    for c in curves:
      if c["kind"] == kind:
        ax.plot(c["alphas"], c["excess"], "o-", ms=3, lw=1.2, label=c["label"])
    ax.set_title(f"between consecutive {kind} checkpoints", fontsize=9)
    ax.set_xlabel("alpha (0 = first, 1 = second)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  axes[0].set_ylabel("excess eval loss")
  return plots.save(fig, path)


def markdown(t: dict) -> str:
  """A table without its raw per-seed column."""
  keep = [i for i, c in enumerate(t["columns"]) if c != "per seed"]
  return reports.markdown_table([t["columns"][i] for i in keep],
                                [[r[i] for i in keep] for r in t["rows"]]
                                ).rstrip("\n")


def write_table(out: str, t: dict) -> str:
  rundir.write_json(rundir.join(out, f"{t['name']}.json"), t)
  md = markdown(t)
  rundir.write_text(rundir.join(out, f"{t['name']}.md"), md + "\n")
  return md


def settings(plan: rv.Plan, oracle: rva.Oracle) -> str:
  d, p = plan.config.run.data, plan.equal_compute
  return "\n".join([
      f"- data: synthetic bigram corpus, vocabulary {d.vocab_size}, "
      f"{d.num_groups} entropy groups of first tokens (next-token support "
      f"{oracle.support}), batch {d.batch_size} x {d.seq_len} tokens, eval "
      f"{d.eval_batches} batches; optimum on the eval set "
      f"{oracle.losses['eval_loss']:.4f} nats",
      f"- model: bigram logit table (zeros at init); optimizer: "
      f"{plan.config.run.optimizer.name}, peak LR {plan.peak}, decays to "
      f"{plan.final:g} (linear for WSD / WSD-S, cosine for cosine runs), "
      f"warmup {plan.warmup} steps",
      f"- budgets {list(plan.budgets)}, decays {list(plan.decays)} "
      f"(fraction {plan.config.decay_fraction}); WSD-S / cyclic cosine points "
      f"{list(p.ends)}; cyclic re-warm {p.rewarm_steps} steps",
      f"- hill branches: {plan.config.hill_decay_steps}-step decays from "
      f"stable steps {list(plan.hill_steps)}",
      f"- seeds {list(plan.config.seeds)} (data order); spreads are the "
      "sample std over seeds",
  ])


def claim_lines(claims: list[dict]) -> list[str]:
  """The report's line for each claim: its verdict, criterion and numbers."""
  return [f"- **{c['claim']}**: {rva.verdict(c)} — criterion: "
          f"{c['criterion']}.\n  Numbers: "
          f"`{json.dumps(c['numbers'], default=float)}`" for c in claims]


def write(plan: rv.Plan, workdir: str, wall: dict) -> dict:
  """Computes every table and figure and writes ``workdir/report.md``."""
  oracle = rva.Oracle(plan)
  r = rva.Runs(plan, workdir)
  print(f"[{rv.TAG}] analysis: tables", flush=True)
  tables = {
      "wsd_vs_cosine": rva.wsd_vs_cosine(r),
      "groups": rva.groups(r, oracle),
      "river_hill": rva.river_hill(r, oracle),
      "equal_compute": rva.equal_compute(r),
  }
  print(f"[{rv.TAG}] analysis: valley cross-sections", flush=True)
  tables["valley"] = rva.valley(r, oracle)
  claims = rva.claims(plan, tables)
  print(f"[{rv.TAG}] figures", flush=True)
  fig = lambda name: rundir.join(workdir, f"river_valley_{name}.png")
  seed = plan.seeds[0]
  colors = {
      "wsd_vs_cosine": fig_wsd_vs_cosine(
          wsd_vs_cosine_series(r), oracle.losses["eval_loss"],
          fig("wsd_vs_cosine"), f"WSD vs cosine (seed {seed})"),
      "equal_compute": ec.figure(
          ec.curves(plan.equal_compute, workdir, seed),
          tables["equal_compute"]["budgets"], fig("equal_compute"),
          f"eval loss, seed {seed} (stars: each budget's model)"),
  }
  fig_groups(groups_series(r, oracle), fig("groups"))
  fig_river_hill(plan.hill_steps, tables["river_hill"]["series"],
                 len(plan.seeds), fig("river_hill"))
  fig_valley(tables["valley"]["curves"], fig("valley"))
  figures = {k: f"river_valley_{k}.png" for k in (
      "wsd_vs_cosine", "groups", "river_hill", "valley", "equal_compute")}
  md = {k: write_table(workdir, t) for k, t in tables.items()}
  wall = dict(wall, total_s=time.perf_counter() - wall["start"])
  wall.pop("start")
  result = {"claims": claims, "wall_time_s": wall, "figures": figures,
            "figure_colors": colors, "tables": sorted(tables)}
  rundir.write_json(rundir.join(workdir, "claims.json"), result)
  img = lambda k: f"![{k}]({figures[k]})"
  quick = " --quick" if plan.config.get("quick") else ""
  text = f"""# River valley and WSD-S on the bigram corpus

Wen et al., arXiv 2410.05192, scaled down. Produced by
`python -m experiments.river_valley --workdir=DIR{quick}`.
Wall time: {wall['total_s']:.0f} s in all ({wall['train_s']:.0f} s training) on
this machine.

## Settings

{settings(plan, oracle)}

## Claims

{chr(10).join(claim_lines(claims))}

## 1. WSD (main branch + decay branches) vs cosine

{img('wsd_vs_cosine')}

Final eval loss (mean ± std over seeds):

{md['wsd_vs_cosine']}

## 2. Loss by entropy group

{img('groups')}

Excess eval loss above the optimum per group (mean over seeds); the last two
columns split the stable phase's gain (step 0 to {plan.stable_end}) and the
decay's gain ({plan.stable_end} to {plan.budgets[-1]}) between the groups,
weighted by each group's share of tokens.

{md['groups']}

## 3. River and hill along the main branch

{img('river_hill')}

Hill = the drop of a {plan.config.hill_decay_steps}-step decay branch from the
stable checkpoint; river = the excess left after it.

{md['river_hill']}

## 4. Valley cross-section

{img('valley')}

Excess loss along `(1 - alpha) theta_a + alpha theta_b` (seed
{plan.config.seeds[0]}); midpoint dip = mean of the ends minus the midpoint
(> 0: the two points sit on opposite hillsides).

{md['valley']}

## 5. WSD vs WSD-S vs cyclic cosine at equal compute

{img('equal_compute')}

Eval loss at each budget's point (WSD: the decay branch ending at the budget;
WSD-S and cyclic cosine: the step where their decay for that budget ends);
mean ± std over seeds.

{md['equal_compute']}
"""
  rundir.write_text(rundir.join(workdir, "report.md"), text)
  return result


def run(config, workdir: str) -> dict:
  """Trains (or reuses) every run of the study and writes its report;
  returns ``claims.json``'s content."""
  start = time.perf_counter()
  plan = rv.run_all(config, workdir)
  return write(plan, workdir,
               {"start": start, "train_s": time.perf_counter() - start})
