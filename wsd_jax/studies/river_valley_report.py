"""The river-valley study: figures, tables (Markdown + JSON) and report.md."""

from __future__ import annotations

import json
import os
import time

import numpy as np

from wsd_jax import plots
from wsd_jax.plots import plt
from wsd_jax.runs import rundir
from wsd_jax.studies import river_valley as rv
from wsd_jax.studies import river_valley_analysis as rva


def _curve(workdir: str, key: str = "eval_loss"):
  ev = rva.evals(workdir)
  steps = np.array(sorted(ev))
  return steps, np.array([ev[s][key] for s in steps])


def fig_wsd_vs_cosine(plan, workdir, oracle, path) -> str:
  seed = int(plan.config.seeds[0])
  main = rv.main_dir(workdir, seed)
  series = [("WSD main branch", *_curve(main))]
  for b in plan.budgets[:-1]:
    series.append((f"WSD decay to {b}",
                   *_curve(rundir.branch_dir(main, rv.budget_branch(b)))))
  for b in plan.budgets:
    series.append((f"cosine to {b}", *_curve(rv.cosine_dir(workdir, seed, b))))
  return plots.curves(series, path, ylabel="eval loss",
                      title=f"WSD vs cosine (seed {seed})",
                      hline=oracle.losses["eval_loss"], hline_label="optimum")


def fig_groups(plan, workdir, oracle, path) -> str:
  steps = sorted(s for s in rva.evals(rv.main_dir(workdir, int(plan.config.seeds[0]))) if s > 0)
  excess = np.mean([rva.group_excess_along(rv.main_dir(workdir, s), oracle,
                                           steps) for s in plan.config.seeds],
                   axis=0)
  d = int(plan.config.hill_decay_steps)
  decayed = np.mean([[oracle.group_excess(rva.evals(rundir.branch_dir(
      rv.main_dir(workdir, s), rv.hill_branch(h)))[h + d])
                      for h in plan.hill_steps] for s in plan.config.seeds],
                    axis=0)
  fig, ax = plt.subplots(figsize=(7, 4.2))
  for g in oracle.groups:
    line, = ax.plot(steps, np.maximum(excess[:, g], 1e-4), lw=1.3,
                    label=f"group {g} (support {oracle.support[g]})")
    ax.plot(np.array(plan.hill_steps) + d, np.maximum(decayed[:, g], 1e-4),
            "o", color=line.get_color(), ms=4)
  ax.axvline(plan.stable_end, color="k", ls=":", lw=1)
  ax.set_yscale("log")
  ax.set_xlabel("step")
  ax.set_ylabel("excess eval loss above optimum")
  ax.set_title("by entropy group: main branch (lines), after a short decay (dots)",
               fontsize=9)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  return plots.save(fig, path)


def fig_river_hill(plan, table, path) -> str:
  steps = np.array(plan.hill_steps)
  s = table["series"]
  series = [(f"{k} (mean of {len(plan.config.seeds)} seeds)", steps,
             np.array(s[k])[:, 0]) for k in ("stable", "river", "hill")]
  return plots.curves(series, path, ylabel="excess eval loss",
                      title="excess = river + hill along the main branch",
                      hline=0.0, hline_label="optimum")


def fig_valley(table, path) -> str:
  fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=False)
  for ax, kind in zip(axes, ("stable", "decayed")):
    for c in table["curves"]:
      if c["kind"] == kind:
        ax.plot(c["alphas"], c["excess"], "o-", ms=3, lw=1.2, label=c["label"])
    ax.set_title(f"between consecutive {kind} checkpoints", fontsize=9)
    ax.set_xlabel("alpha (0 = first, 1 = second)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  axes[0].set_ylabel("excess eval loss")
  return plots.save(fig, path)


def fig_equal_compute(plan, workdir, table, path) -> str:
  seed = int(plan.config.seeds[0])
  main = rv.main_dir(workdir, seed)
  fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 3.8))
  ax.plot(*_curve(rv.wsd_s_dir(workdir, seed)), lw=1.2, label="WSD-S")
  ax.plot(*_curve(rv.cyclic_dir(workdir, seed)), lw=1.2, label="cyclic cosine")
  ax.plot(*_curve(main), lw=1.2, label="WSD (main + decay branches)", color="C2")
  for b in plan.budgets[:-1]:
    ax.plot(*_curve(rundir.branch_dir(main, rv.budget_branch(b))), lw=1.2,
            color="C2")
  ax.set_xlabel("step")
  ax.set_ylabel("eval loss")
  ax.set_title(f"seed {seed}", fontsize=9)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  for j, (key, label) in enumerate((("wsd_s", "WSD-S"), ("wsd", "WSD"),
                                    ("cyclic", "cyclic cosine"))):
    vals = np.array([row[-1][key] for row in table["rows"]])
    x = np.arange(len(plan.budgets)) + (j - 1) * 0.25
    bx.errorbar(x, vals.mean(axis=1), yerr=vals.std(axis=1, ddof=1)
                if vals.shape[1] > 1 else None, fmt="o", capsize=3, label=label)
  bx.set_xticks(range(len(plan.budgets)),
                [f"{b}\n({e} steps)" for b, e in
                 zip(plan.budgets, plan.wsd_s().checkpoint_steps)])
  bx.set_xlabel("budget (total compute)")
  bx.set_ylabel("final eval loss (mean ± std over seeds)")
  bx.grid(alpha=0.3)
  bx.legend(fontsize=8)
  return plots.save(fig, path)


def markdown(t: dict) -> str:
  """A table without its raw per-seed column."""
  keep = [i for i, c in enumerate(t["columns"]) if c != "per seed"]
  lines = ["| " + " | ".join(t["columns"][i] for i in keep) + " |",
           "|" + "---|" * len(keep)]
  lines += ["| " + " | ".join(str(r[i]) for i in keep) + " |" for r in t["rows"]]
  return "\n".join(lines)


def write_table(out: str, t: dict) -> str:
  rundir.write_json(os.path.join(out, f"{t['name']}.json"), t)
  md = markdown(t)
  with open(os.path.join(out, f"{t['name']}.md"), "w") as f:
    f.write(md + "\n")
  return md


def settings(plan: rv.Plan, oracle) -> str:
  d = plan.config.run.data
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
      f"{list(plan.wsd_s().checkpoint_steps)}; cyclic re-warm "
      f"{round(plan.config.rewarm_fraction * plan.budgets[0])} steps",
      f"- hill branches: {plan.config.hill_decay_steps}-step decays from "
      f"stable steps {list(plan.hill_steps)}",
      f"- seeds {list(plan.config.seeds)} (data order); spreads are the "
      "sample std over seeds",
  ])


def write(plan: rv.Plan, workdir: str, wall: dict) -> dict:
  """Computes every table and figure and writes ``workdir/report.md``."""
  oracle = rva.Oracle(plan)
  print("[river_valley] analysis: tables", flush=True)
  tables = {
      "wsd_vs_cosine": rva.wsd_vs_cosine(plan, workdir),
      "groups": rva.groups(plan, workdir, oracle),
      "river_hill": rva.river_hill(plan, workdir, oracle),
      "equal_compute": rva.equal_compute(plan, workdir),
  }
  print("[river_valley] analysis: valley cross-sections", flush=True)
  tables["valley"] = rva.valley(plan, workdir, oracle)
  claims = rva.claims(plan, tables, oracle)
  print("[river_valley] figures", flush=True)
  fig = lambda name: os.path.join(workdir, f"river_valley_{name}.png")
  figures = {
      "wsd_vs_cosine": fig_wsd_vs_cosine(plan, workdir, oracle,
                                         fig("wsd_vs_cosine")),
      "groups": fig_groups(plan, workdir, oracle, fig("groups")),
      "river_hill": fig_river_hill(plan, tables["river_hill"],
                                   fig("river_hill")),
      "valley": fig_valley(tables["valley"], fig("valley")),
      "equal_compute": fig_equal_compute(plan, workdir,
                                         tables["equal_compute"],
                                         fig("equal_compute")),
  }
  md = {k: write_table(workdir, t) for k, t in tables.items()}
  wall = dict(wall, total_s=time.perf_counter() - wall["start"])
  wall.pop("start")
  result = {"claims": claims, "wall_time_s": wall,
            "figures": {k: os.path.basename(v) for k, v in figures.items()},
            "tables": sorted(tables)}
  rundir.write_json(os.path.join(workdir, "claims.json"), result)
  img = lambda k: f"![{k}]({os.path.basename(figures[k])})"
  claim_lines = [
      f"- **{c['claim']}**: {'reproduced' if c['reproduced'] else 'NOT reproduced'}"
      f" — criterion: {c['criterion']}.\n  Numbers: `{json.dumps(c['numbers'], default=float)}`"
      for c in claims]
  text = f"""# River valley and WSD-S on the bigram corpus

Wen et al., arXiv 2410.05192, scaled down. Produced by
`python -m experiments.river_valley --workdir=DIR{' --quick' if plan.config.get('quick') else ''}`.
Wall time: {wall['total_s']:.0f} s in all ({wall['train_s']:.0f} s training) on
this machine.

## Settings

{settings(plan, oracle)}

## Claims

{chr(10).join(claim_lines)}

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
  with open(os.path.join(workdir, "report.md"), "w") as f:
    f.write(text)
  return result
