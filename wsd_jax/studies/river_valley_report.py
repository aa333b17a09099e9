"""The river-valley study: figures, tables (Markdown + JSON) and report.md.

Figures take arrays (gathered from ``runs.Run`` by the ``*_series``
functions) and draw each method in its one colour (``plots.color``).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import time

import jax
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


def fig_groups(hill_steps, stable, decayed, decay: int, path: str) -> str:
  """Exact excess per entropy level along the main branch (lines, at the
  hill steps) and after a ``decay``-step decay from each (dots); mean over
  seeds. ``stable[S, H, G]``, ``decayed[S, H, G]``."""
  st, de = np.asarray(stable).mean(0), np.asarray(decayed).mean(0)
  steps = np.asarray(hill_steps)
  fig, ax = plt.subplots(figsize=(7.5, 4.4))
  for g, c in enumerate(plots.palette(st.shape[1])):
    ax.plot(steps, np.maximum(st[:, g], 1e-5), "-", lw=1.3, color=c,
            label=f"level {g}")
    ax.plot(steps + decay, np.maximum(de[:, g], 1e-5), "o", ms=4, color=c)
  ax.set_yscale("log")
  ax.set(xlabel="step", ylabel="exact excess loss above optimum (nats)",
         title=f"by entropy level: main branch (lines), after a {decay}-step "
         "decay (dots)")
  ax.title.set_fontsize(9)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7, ncol=2)
  return plots.save(fig, path)


def fig_levels(weights, before, after, path: str) -> str:
  """Per non-deterministic level: the share of the decay's gain it gets vs
  the equal-help baseline (left), and the fraction of its excess the decay
  removes (right; mean and range over seeds)."""
  w, e0, e1 = np.asarray(weights), np.asarray(before), np.asarray(after)
  lv = np.arange(1, e0.shape[1])
  gain = ((e0 - e1) * w)[:, 1:]
  share = gain / gain.sum(1, keepdims=True)
  base = (e0 * w)[:, 1:] / (e0 * w)[:, 1:].sum(1, keepdims=True)
  frac = ((e0 - e1) / e0)[:, 1:]
  fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
  a.plot(lv, share.mean(0), "o-", color="C0", label="decay's gain (actual)")
  a.plot(lv, base.mean(0), "s--", color="C1",
         label="equal help (same fraction removed)")
  a.set(xlabel="entropy level", ylabel="share of the decay's gain",
        title="gain per level (non-deterministic levels)")
  b.errorbar(lv, frac.mean(0), yerr=[frac.mean(0) - frac.min(0),
                                     frac.max(0) - frac.mean(0)],
             fmt="o-", color="C0", capsize=3)
  b.set(xlabel="entropy level", ylabel="fraction of the excess removed",
        title="relative gain (mean, min-max over seeds)")
  for ax in (a, b):
    ax.title.set_fontsize(9)
    ax.grid(alpha=0.3)
  a.legend(fontsize=8)
  return plots.save(fig, path)


def fig_river_hill(hill_steps, stable, decayed, decays, path: str) -> str:
  """Exact excess of the stable checkpoints and the river (excess after a
  decay) of every decay length, mean over seeds."""
  steps = np.asarray(hill_steps)
  de = np.asarray(decayed).mean(0)
  lines = [("stable checkpoint", steps, np.asarray(stable).mean(0))] + [
      (f"river: after a {d}-step decay", steps, de[:, j])
      for j, d in enumerate(decays)]
  return plots.curves(lines, path, xlabel="stable step the decay starts from",
                      ylabel="exact excess loss (nats)",
                      title="river vs start step, by decay length "
                      f"(mean of {len(stable)} seeds)", hline=0.0,
                      hline_label="optimum")


def fig_curvature(entropy, curv, level, path: str) -> str:
  h, c, lv = np.asarray(entropy), np.asarray(curv).mean(0), np.asarray(level)
  fig, ax = plt.subplots(figsize=(6.5, 4.2))
  for g, col in enumerate(plots.palette(int(lv.max()) + 1)):
    sel = lv == g
    ax.plot(h[sel], np.maximum(c[sel], 1e-9), "o", ms=4, color=col,
            label=f"level {g}")
  ax.set_yscale("log")
  ax.set(xlabel="entropy of P[x] (nats)",
         ylabel="pi[x] * lambda_max(diag(q) - q q^T)",
         title="uncertainty vs curvature per token (end of stable phase)")
  ax.title.set_fontsize(9)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7, ncol=2)
  return plots.save(fig, path)


def fig_valley(curves: list[dict], path: str) -> str:
  fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=False)
  for ax, kind in zip(axes, ("stable", "decayed")):
    for c in curves:
      if c["kind"] == kind:
        ax.plot(c["alphas"], c["excess"], "o-", ms=3, lw=1.2, label=c["label"])
    ax.set_title(f"between consecutive {kind} checkpoints (convex: the "
                 "table loss is)", fontsize=8)
    ax.set_xlabel("alpha (0 = first, 1 = second)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  axes[0].set_ylabel("exact excess loss")
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


def settings(plan: rv.Plan, spec) -> str:
  d, p = plan.base().data, plan.equal_compute
  mass = np.bincount(spec.group_of_token, spec.stationary, spec.num_groups)
  return "\n".join([
      f"- data: synthetic bigram language (spec seed {d.spec_seed}), "
      f"vocabulary {d.vocab_size}, {d.num_groups} entropy levels of first "
      f"tokens (next-token support {spec.support_sizes.tolist()}; "
      f"stationary mass {np.round(mass, 3).tolist()}), batch "
      f"{d.batch_size} x {d.seq_len} tokens; optimum (exact) "
      f"{spec.optimal_loss:.4f} nats",
      f"- model: bigram logit table (zeros at init); optimizer: "
      f"{plan.config.run.optimizer.name}, peak LR {plan.peak} (single peak, "
      f"untuned), decays to {plan.final:g} (linear for WSD / WSD-S, cosine "
      f"for cosine runs), warmup {plan.warmup} steps",
      f"- budgets {list(plan.budgets)}, decays {list(plan.decays)} "
      f"(fraction {plan.config.decay_fraction}); WSD-S / cyclic cosine points "
      f"{list(p.ends)}; cyclic re-warm {p.rewarm_steps} steps",
      f"- hill branches: linear decays of {list(plan.hill_decays)} steps "
      f"from stable steps {list(plan.hill_steps)}",
      f"- seeds {list(plan.seeds)} (data order); every verdict is a paired "
      "95% interval over seeds (``studies.verdicts``), except the curvature "
      "correlation's (bootstrap over tokens)",
  ])


def machine() -> str:
  """The machine the report was made on (CPU count, load, platform)."""
  load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
  return (f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPU "
          f"cores visible, jax {jax.default_backend()} backend, load average "
          f"{load} (1/5/15 min) when the report was written")


def cpu_seconds() -> float:
  """User + system CPU time of this process so far."""
  u = resource.getrusage(resource.RUSAGE_SELF)
  return u.ru_utime + u.ru_stime


def invocations(history: list[dict]) -> str:
  """Every invocation of the study in this directory (a rerun reuses the
  finished runs, so the first one that trained them holds the training
  time)."""
  if len(history) < 2:
    return ""
  return "Every invocation in this directory:\n\n" + "\n".join(
      f"{i}. {h['total_s']:.0f} s wall ({h['train_s']:.0f} s training, "
      f"{h['cpu_s']:.0f} CPU-s) on {h['machine']}"
      for i, h in enumerate(history, 1)) + "\n"


def claim_lines(claims: list[dict]) -> list[str]:
  """The report's line for each claim: its verdict, criterion and numbers."""
  return [f"- **{c['claim']}** ({rva.TOY}): **{rva.verdict(c)}** — "
          f"criterion: {c['criterion']}.\n  Numbers: "
          f"`{json.dumps(c['numbers'], default=float)}`" for c in claims]


def ci(p: dict, digits: int = 4) -> str:
  return rva.ci_text(p, digits)


def write(plan: rv.Plan, workdir: str, wall: dict) -> dict:
  """Computes every table and figure and writes ``workdir/report.md``."""
  r = rva.Runs(plan, workdir)
  spec = r.spec
  print(f"[{rv.TAG}] analysis: exact losses from the checkpoints", flush=True)
  m = rva.measure(r)
  tables = {
      "wsd_vs_cosine": rva.wsd_vs_cosine(r),
      "groups": rva.groups(r, m),
      "river_hill": rva.river_hill(r, m),
      "curvature": rva.curvature_table(r, m),
      "valley": rva.valley(r, m),
      "equal_compute": rva.equal_compute(r),
  }
  check = rva.exact_check(r, m)
  claims = rva.claims(plan, tables)
  print(f"[{rv.TAG}] figures", flush=True)
  fig = lambda name: rundir.join(workdir, f"river_valley_{name}.png")
  seed = plan.seeds[0]
  rh, g = tables["river_hill"], tables["groups"]
  colors = {
      "wsd_vs_cosine": fig_wsd_vs_cosine(
          wsd_vs_cosine_series(r), spec.optimal_loss,
          fig("wsd_vs_cosine"), f"WSD vs cosine (seed {seed})"),
      "equal_compute": ec.figure(
          ec.curves(plan.equal_compute, workdir, seed),
          tables["equal_compute"]["budgets"], fig("equal_compute"),
          f"eval loss, seed {seed} (stars: each budget's model)"),
  }
  fig_groups(plan.hill_steps, m["stable"], m["decayed"][:, :, -1],
             plan.hill_decays[-1], fig("groups"))
  fig_levels(g["weights"], g["before"], g["after"], fig("levels"))
  fig_river_hill(plan.hill_steps, rh["stable"], rh["decayed"],
                 plan.hill_decays, fig("river_hill"))
  cv = tables["curvature"]
  fig_curvature(cv["entropy"], cv["curv"], cv["level"], fig("curvature"))
  fig_valley(tables["valley"]["curves"], fig("valley"))
  figures = {k: f"river_valley_{k}.png" for k in (
      "wsd_vs_cosine", "groups", "levels", "river_hill", "curvature",
      "valley", "equal_compute")}
  md = {k: write_table(workdir, t) for k, t in tables.items()}
  wall = dict(wall, total_s=time.perf_counter() - wall["start"],
              cpu_s=cpu_seconds() - wall["cpu_start"], machine=machine())
  wall.pop("start")
  wall.pop("cpu_start")
  log = rundir.join(workdir, "invocations.json")
  history = (rundir.read_json(log) if rundir.exists(log) else []) + [wall]
  rundir.write_json(log, history)
  result = {"claims": claims, "wall_time_s": wall, "machine": machine(),
            "exact_check": check, "figures": figures,
            "figure_colors": colors, "tables": sorted(tables)}
  rundir.write_json(rundir.join(workdir, "claims.json"), result)
  img = lambda k: f"![{k}]({figures[k]})"
  quick = " --quick" if plan.config.get("quick") else ""
  uc, rc, cc = claims[1]["numbers"], claims[0]["numbers"], claims[2]["numbers"]
  longest = plan.hill_decays[-1]
  rel = rh["hill_relative_to_longest"]
  rel_rows = reports.markdown_table(
      ["decay (steps)", f"hill / hill of the {longest}-step decay, mean "
       "over start steps [95% CI over seeds]"],
      [[d, ci(rel[str(d)], 3)] for d in plan.hill_decays]).rstrip("\n")
  vd = tables["valley"]["random_dips"]
  text = f"""# River valley and WSD-S on the bigram language ({rva.TOY})

Wen et al., arXiv 2410.05192, scaled down to a bigram logit table: a
{rva.TOY}, not evidence about language models. Produced by
`python -m experiments.river_valley --workdir=DIR{quick}`.
Wall time: {wall['total_s']:.0f} s in all ({wall['train_s']:.0f} s training,
{wall['cpu_s']:.0f} CPU-seconds of this process) on {wall['machine']}.
{invocations(history)}

## Settings

{settings(plan, spec)}

## Claims

{chr(10).join(claim_lines(claims))}

## Exact measurement

Every loss below (except sections 1 and 6) is the exact population loss of a
checkpoint's table, `sum_x pi[x] CE(P[x], softmax(W[x]))` per level, from the
language's transition matrix: no eval-sample noise. Check against the
trainer's eval loss on its {check['eval_tokens']} sampled tokens at step
{plan.stable_end}: the table scored on those tokens in numpy gives
{[round(v, 5) for v in check['numpy_eval']]} (trainer:
{[round(v, 5) for v in check['eval_loss']]}); the exact loss
{[round(v, 5) for v in check['exact_loss']]} lies
{[round(v, 2) for v in check['z']]} standard errors from it.

## 1. WSD (main branch + decay branches) vs cosine

{img('wsd_vs_cosine')}

Final eval loss (mean ± std over seeds; the difference paired by seed, same
eval tokens):

{md['wsd_vs_cosine']}

## 2. Loss by entropy level: what the decay removes

{img('groups')}

{img('levels')}

Exact excess per level (mean over seeds) at the end of the stable phase
({plan.stable_end}) and after the last budget's decay ({plan.budgets[-1]});
shares of the token-weighted gain, and the fraction of each level's remaining
excess the decay removes.

{md['groups']}

The claim's baseline: if the decay removed the same fraction of the remaining
excess at every non-deterministic level, the uncertain half (levels >=
{spec.num_groups // 2}) would get {uc['equal_help_baseline']:.3f} of the gain;
it gets {uc['uncertain_half_share']:.3f} (baseline - actual
{ci(uc['baseline_minus_actual'], 3)}, paired over {len(plan.seeds)} seeds). The
fraction removed falls with the level in
{uc['seeds_fraction_falls_with_entropy']} of {len(plan.seeds)} seeds
(Spearman of fraction vs level per seed:
{uc['spearman_fraction_vs_level_per_seed']}).

## 3. River and hill at several decay lengths

{img('river_hill')}

River = the exact excess left after a decay of each length from the stable
checkpoint; hill = stable excess - river (mean ± std over seeds).

{md['river_hill']}

How much of the longest decay's hill a shorter one removes:

{rel_rows}

Progress that only shows after the decay ({longest}-step decay, steps
{rc['from_step']} to {rc['to_step']}): the river falls by
{rc['river_drop']:.4f}, the stable excess by {rc['stable_drop']:.4f};
stable drop - river drop {ci(rc['stable_minus_river_drop'])} (the river falls
more in {rc['seeds_river_falls_more']} of {len(plan.seeds)} seeds).

## 4. Uncertainty vs curvature per token

{img('curvature')}

Curvature of token x: `pi[x] * lambda_max(diag(q) - q q^T)`, the top
eigenvalue of the population loss's Hessian in row x at the learned row `q =
softmax(W[x])` (end of the stable phase, mean over seeds). Over
{cc['tokens']} tokens: Pearson {cc['pearson']['r']:.3f}
{[round(v, 3) for v in cc['pearson']['ci']]}, Spearman
{cc['spearman']['r']:.3f} {[round(v, 3) for v in cc['spearman']['ci']]}
(bootstrap 95% CIs over tokens); Wen et al. report ~0.39 on real data
(second-hand).

{md['curvature']}

## 5. Valley cross-section

{img('valley')}

Exact excess along `(1 - alpha) theta_a + alpha theta_b` (seed
{plan.seeds[0]}). **The table loss is convex in the table** (a sum of
softmax cross-entropies, each convex in its logits), so every such curve is
convex and the midpoint dip (mean of the ends minus the midpoint) is >= 0 for
*any* pair of points: measured on {vd['pairs']} random pairs (checkpoints
plus Gaussian noise), the dip lies in [{vd['min']:.2e}, {vd['max']:.2e}]. A
positive dip here shows how far apart the two points are across the valley's
curvature, not that they sit on opposite hillsides; a non-convex version on
GPT-nano is docs/gpt_valley.md.

{md['valley']}

## 6. WSD vs WSD-S vs cyclic cosine at equal compute

**Single peak, untuned — see docs/fair_compare.md for the tuned comparison.**

{img('equal_compute')}

Eval loss at each budget's point (WSD: the decay branch ending at the budget;
WSD-S and cyclic cosine: the step where their decay for that budget ends);
mean ± std over seeds, and paired differences (same seed, same eval tokens).

{md['equal_compute']}
"""
  rundir.write_text(rundir.join(workdir, "report.md"), text)
  return result


def run(config, workdir: str) -> dict:
  """Trains (or reuses) every run of the study and writes its report;
  returns ``claims.json``'s content."""
  start, cpu = time.perf_counter(), cpu_seconds()
  plan = rv.run_all(config, workdir)
  return write(plan, workdir,
               {"start": start, "cpu_start": cpu,
                "train_s": time.perf_counter() - start})
