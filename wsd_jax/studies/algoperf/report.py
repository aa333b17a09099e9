"""The benchmark's outputs: ``time_to_targets.csv``, ``scores.csv``,
performance-profile figures (steps; seconds with the device named), the
curves of each study's best trial with the target and the realised LR,
tuning robustness (share of trials reaching the target vs LR), and
``report.md`` with a table per workload and verdicts on the papers' claims
this benchmark can test. Figures take arrays; the runs are read here."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from wsd_jax import plots, reports, runs
from wsd_jax.plots import plt
from wsd_jax.runs import rundir
from wsd_jax.studies.algoperf import adaptive, benchmark, layout, scoring

TOL = 1.1  # "matches": within 10% of the other's time to target (steps)
TOL_ANYTIME = 1.01  # WSD-S "matches" WSD: metric within 1% at equal compute


def profile_figure(times: Mapping[str, Mapping[str, float]], path: str,
                   xlabel: str) -> None:
  """``rho_s(tau)`` of every submission on ``tau`` in [1, 4]."""
  grid = scoring.taus()
  fig, ax = plt.subplots(figsize=(8, 4))
  colors = plots.palette(len(times))
  styles = ("-", "--", "-.", ":")  # profiles often coincide: vary the dash
  for i, ((s, rho), c) in enumerate(zip(scoring.profiles(times).items(),
                                         colors)):
    ax.step(grid, rho, where="post", label=s, color=c, lw=1.6,
            ls=styles[i % len(styles)])
  ax.set(xlabel=xlabel, ylabel="share of workloads", ylim=(-0.02, 1.02),
         title="performance profiles")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
  plots.save(fig, path)


def curves_figure(series: Mapping[str, list[tuple]], target: float,
                  metric: str, path: str, title: str) -> None:
  """Per submission, the metric and realised LR of each study's best trial
  (``(steps, values, lr_steps, lrs)`` arrays), with the target line."""
  fig, (ax, lx) = plt.subplots(1, 2, figsize=(12, 4))
  colors = plots.palette(len(series))
  for (s, items), c in zip(series.items(), colors):
    for j, (steps, values, lsteps, lrs) in enumerate(items):
      label = s if j == 0 else None
      ax.plot(steps, values, color=c, lw=1.2, label=label)
      lx.plot(lsteps, lrs, color=c, lw=1.0, label=label)
  ax.axhline(target, color="k", ls="--", lw=1, label="target")
  finite = np.concatenate([v for items in series.values()
                           for _, v, _, _ in items] or [np.zeros(1)])
  hi = np.nanpercentile(finite, 90) if finite.size else 1.0
  ax.set_ylim(min(np.nanmin(finite), target) * 0.98, max(hi, target) * 1.05)
  ax.set(xlabel="step", ylabel=metric, title=title)
  lx.set(xlabel="step", ylabel="learning rate", title="realised LR")
  for a in (ax, lx):
    a.grid(alpha=0.3)
    a.legend(fontsize=7)
  plots.save(fig, path)


def robustness_figure(points: Mapping[str, Mapping[str, list[tuple]]],
                      path: str) -> None:
  """Per workload, for each submission, the share of trials reaching the
  target in LR bins (``(lr, reached)`` pairs; log-spaced bins)."""
  names = list(points)
  fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 3.6),
                           squeeze=False)
  for ax, w in zip(axes[0], names):
    subs = points[w]
    colors = plots.palette(len(subs))
    lrs = np.array([lr for v in subs.values() for lr, _ in v])
    edges = np.geomspace(lrs.min(), lrs.max() * 1.0001, 5)
    centers = np.sqrt(edges[1:] * edges[:-1])
    for (s, v), c in zip(subs.items(), colors):
      lr, hit = np.array([p[0] for p in v]), np.array([p[1] for p in v])
      k = np.clip(np.searchsorted(edges, lr, side="right") - 1, 0, 3)
      frac = [hit[k == b].mean() if (k == b).any() else np.nan
              for b in range(4)]
      ax.plot(centers, frac, "o-", color=c, label=s)
    ax.set(xscale="log", xlabel="peak LR", ylabel="share reaching target",
           title=w, ylim=(-0.05, 1.05))
    ax.grid(alpha=0.3)
  axes[0][0].legend(fontsize=7)
  plots.save(fig, path)


def claims(table: Sequence[dict], rows: Sequence[dict],
           anytime_rows: Sequence[dict] = ()) -> list[dict]:
  """Verdicts on claims of the papers that this benchmark can test (on time
  to target in steps; left out when a submission is absent)."""
  t = {}
  for r in rows:
    t.setdefault(r["submission"], {})[r["workload"]] = r["steps"]
  score = {r["submission"]: r["score_steps"] for r in table}
  out = []

  def matches(a: str, b: str) -> tuple[bool, list]:
    per = [(w, t[a][w], t[b][w]) for w in t[b]]
    ok = all(np.isfinite(x) and x <= TOL * y for _, x, y in per
             if np.isfinite(y))
    return ok, per

  if {"wsd_linear", "cosine"} <= set(t):
    ok, per = matches("wsd_linear", "cosine")
    out.append({"claim": "WSD matches cosine at its own budget (Hägele et "
                         "al.)", "verdict": "supported" if ok else
                "not supported",
                "criterion": f"WSD (linear) reaches every target cosine "
                             f"reaches, within {TOL}x cosine's steps",
                "evidence": per})
  if {"wsd_1sqrt", "wsd_linear"} <= set(t):
    ok = score["wsd_1sqrt"] >= score["wsd_linear"]
    faster = [(w, t["wsd_1sqrt"][w], t["wsd_linear"][w])
              for w in t["wsd_linear"]]
    out.append({"claim": "1-sqrt decay beats linear decay (Hägele et al.)",
                "verdict": "supported" if ok and score["wsd_1sqrt"] >
                score["wsd_linear"] else ("tie" if ok else "not supported"),
                "criterion": "higher benchmark score (steps)",
                "evidence": faster})
  if {"schedule_free", "cosine"} <= set(t):
    ok, per = matches("schedule_free", "cosine")
    out.append({"claim": "schedule-free needs no schedule (Defazio et al.)",
                "verdict": "supported" if ok else "not supported",
                "criterion": f"reaches every target cosine reaches, within "
                             f"{TOL}x cosine's steps",
                "evidence": per})
  if {"constant", "cosine"} <= set(t):
    ok = score["constant"] < score["cosine"]
    out.append({"claim": "a decay is needed: constant LR loses to cosine",
                "verdict": "supported" if ok else "not supported",
                "criterion": "lower benchmark score (steps) than cosine",
                "evidence": [(s, score[s]) for s in ("constant", "cosine")]})
  if {"refined_oracle", "wsd_linear"} <= set(t):
    ok = score["refined_oracle"] > score["wsd_linear"]
    out.append({"claim": "refining a linear-decay run's schedule speeds it "
                         "up (Defazio et al.)",
                "verdict": "supported" if ok else "not supported",
                "criterion": "refined_oracle scores higher (steps) than "
                             "wsd_linear, its source",
                "evidence": [(s, score[s]) for s in ("refined_oracle",
                                                     "wsd_linear")]})
  if anytime_rows:
    ok = all(r["wsd_s"] <= TOL_ANYTIME * r["wsd"] for r in anytime_rows)
    out.append({"claim": "WSD-S's decayed models match separate WSD runs at "
                         "equal compute (Wen et al.)",
                "verdict": "supported" if ok else "not supported",
                "criterion": f"at every S_i the WSD-S metric is within "
                             f"{TOL_ANYTIME - 1:.0%} of the WSD run's",
                "evidence": [(r["workload"], r["steps"], r["wsd_s"],
                              r["wsd"]) for r in anytime_rows]})
  return out


def study_rows(rows: Sequence[dict], k: int) -> list[dict]:
  """``time_to_targets`` rows as if study ``k`` were the only study."""
  return [dict(r, steps=r["study_steps"][k], seconds=r["study_seconds"][k],
               studies_reached=int(np.isfinite(r["study_steps"][k])),
               studies=1, best_trials=[r["best_trials"][k]]) for r in rows]


def by_study(rows: Sequence[dict], anytime_rows: Sequence[dict] = ()
             ) -> tuple[dict, list[dict]]:
  """Each study judged alone: every submission's score (steps) per study,
  and the claims' verdicts per study (AlgoPerf's median over studies hides
  how much one study's luck decides a verdict)."""
  n = rows[0]["studies"] if rows else 0
  scores, verdicts = {}, []
  for k in range(n):
    rk = study_rows(rows, k)
    table = benchmark.score_table(rk)
    for r in table:
      scores.setdefault(r["submission"], []).append(r["score_steps"])
    verdicts.append({v["claim"]: v["verdict"] for v in claims(
        table, rk, [a for a in anytime_rows if a["study"] == k])})
  return scores, verdicts


def agreement(verdicts: Sequence[dict], per_study: Sequence[dict]) -> None:
  """Adds to each verdict how many studies, judged alone, give the
  median's verdict (``median_verdict``); with several studies, a verdict
  that no majority of them gives becomes ``inconclusive``."""
  n = len(per_study)
  for v in verdicts:
    v["median_verdict"] = v.get("median_verdict", v["verdict"])
    v["studies_agreeing"] = sum(p.get(v["claim"]) == v["median_verdict"]
                                for p in per_study)
    v["studies"] = n
    v["verdict"] = (v["median_verdict"] if n < 2 or
                    2 * v["studies_agreeing"] > n else "inconclusive")


def realised_lrs(run_dir: str) -> np.ndarray:
  """The LR of every update: logged per step (an adaptive method's own), or
  the schedule's (runs without per-step logs)."""
  run = runs.Run(run_dir)
  try:
    return run.per_step("lr")
  except ValueError:
    return run.lrs()


def clocks(root: str, subs: Sequence[str], ws, studies: int) -> dict:
  """How many trials' seconds are of each clock (``clock.json``)."""
  count = {}
  for s in subs:
    for w in ws:
      for k in range(studies):
        for c in (layout.read_clock(root, s, k, w.name) or {}).get(
            "clocks", []):
          count[c] = count.get(c, 0) + 1
  return count


def write_all(root: str, ws, subs: Sequence[str], targets: Mapping,
              rows: Sequence[dict], table: Sequence[dict], info: dict,
              anytime_rows: Sequence[dict] = ()) -> None:
  """Writes every output of the benchmark into ``root``."""
  benchmark.write_csv(rundir.join(root, "time_to_targets.csv"), {
      k: [r[k] for r in rows] for k in ("submission", "workload", "steps",
                                        "seconds", "studies_reached",
                                        "studies")})
  benchmark.write_csv(rundir.join(root, "scores.csv"), {
      k: [r[k] for r in table] for k in ("submission", "score_steps",
                                         "score_seconds", "speedup_vs_cosine",
                                         "workloads_reached")})
  times = {key: {s: {r["workload"]: r[key] for r in rows
                     if r["submission"] == s} for s in subs}
           for key in benchmark.TIME_COLS}
  profile_figure(times["steps"],
                 rundir.join(root, "performance_profile_steps.png"),
                 "tau (ratio of steps to target to the best)")
  profile_figure(times["seconds"],
                 rundir.join(root, "performance_profile_seconds.png"),
                 f"tau (ratio of seconds; {info['device']})")
  robust = {}
  for w in ws:
    target = float(targets[w.name]["target"])
    series = {}
    for s in subs:
      best = [r for r in rows if r["submission"] == s
              and r["workload"] == w.name][0]["best_trials"]
      series[s] = []
      for k, i in enumerate(best):
        m = layout.read_trial(root, s, k, w.name, i)
        lrs = realised_lrs(adaptive.run_dir(root, s, k, w.name, i))
        lsteps = np.arange(len(lrs))
        series[s].append((m["global_step"], m[w.metric], lsteps, lrs))
      robust.setdefault(w.name, {})[s] = [
          (float(rundir.read_json(rundir.join(
              benchmark.trial_dir(root, s, k, w.name, i),
              "hparams.json"))["learning_rate"]),
           scoring.first_reached(benchmark.load_trials(
               root, s, k, w.name, info["trials"])[i][w.metric], target) >= 0)
          for k in range(info["studies"]) for i in range(info["trials"])]
    curves_figure(series, target, w.metric,
                  rundir.join(root, f"curves_{w.name}.png"),
                  f"{w.name}: best trial of each study")
  robustness_figure(robust, rundir.join(root, "robustness.png"))
  if anytime_rows:
    benchmark.write_csv(rundir.join(root, "anytime.csv"), {
        k: [r[k] for r in anytime_rows] for k in ("workload", "study",
                                                  "steps", "wsd_s", "wsd")})
  verdicts = claims(table, rows, anytime_rows)
  study_scores, per_study = by_study(rows, anytime_rows)
  agreement(verdicts, per_study)
  info = info | {"clocks": clocks(root, subs, ws, info["studies"])}
  rundir.write_json(rundir.join(root, "report.json"), _plain(
      {"info": info, "scores": table, "claims": verdicts,
       "study_scores": study_scores, "time_to_targets": rows,
       "anytime": list(anytime_rows)}))
  rundir.write_text(rundir.join(root, "report.md"),
                    markdown(ws, targets, rows, table, verdicts, robust,
                             info, anytime_rows, study_scores))


def _plain(x):
  """``x`` with NumPy scalars as Python numbers and tuples as lists."""
  if isinstance(x, dict):
    return {k: _plain(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_plain(v) for v in x]
  return x.item() if hasattr(x, "item") else x


def seconds_note(info: dict) -> str:
  """Which seconds the report's ``score`` columns hold."""
  n = info.get("clocks", {})
  return ("Seconds (`score`) are training seconds: compilation counts; "
          "evaluation, logging and checkpointing do not. The trials of a "
          "study train as one vmapped program and share its clock: "
          f"{n.get('population', 0)} trial(s) hold their population's "
          f"seconds, {n.get('alone', 0)} the seconds of a run of their own "
          "(each study's best trial rerun alone"
          + ("" if info.get("rerun_best") else " — off in this invocation")
          + "; one-trial studies, refined trials trained one by one, "
          "AutoLRS with its exploration runs' seconds added). "
          "`refined_on_the_clock` adds its source trial's steps and seconds. "
          "A study's time to target is its best trial's, so "
          + ("with the rerun these are single-run seconds. " if
             info.get("rerun_best") else "these are population seconds "
             "where a study has several trials. ") +
          "Never compare seconds across devices.")


def cost_note(cost: dict | None) -> str:
  """The summed cost of every (submission, study, workload), over all the
  sittings that trained them."""
  if not cost:
    return ""
  out = (f"Training all {cost['units']} (submission, study, workload) units "
         f"took {cost['wall_s'] / 60:.1f} min of wall time and "
         f"{cost['cpu_s'] / 60:.1f} CPU-min, summed over the sittings that "
         "trained them (each unit's `clock.json` has its own, with the load).")
  if cost["unrecorded"]:
    out += (f" {cost['unrecorded']} unit(s) were trained before costs were "
            "recorded and are not in the sum.")
  return out


def markdown(ws, targets, rows, table, verdicts, robust, info,
             anytime_rows=(), study_scores=None) -> str:
  """``report.md``."""
  out = ["# AlgoPerf-style comparison of LR schedules\n",
         f"Device (seconds): {info['device']} (`device_kind` "
         f"{info.get('device_kind')}, platform {info.get('platform')}). "
         f"{info['studies']} studies x {info['trials']} trials per "
         "submission and workload. "
         f"Wall time of this invocation {info['wall_s']:.0f} s (finished "
         "studies are reused, not retrained). "
         + cost_note(info.get("cost")) + " Command: "
         f"`{info['argv']}`\n",
         seconds_note(info) + "\n",
         "## Scores\n",
         reports.markdown_table(
             ["submission", "score (steps)", "score (seconds)",
              "speedup vs cosine (steps, geo-mean)", "workloads reached"],
             [[r["submission"], r["score_steps"], r["score_seconds"],
               r["speedup_vs_cosine"], r["workloads_reached"]]
              for r in table], digits=3)]
  if study_scores and info["studies"] > 1:
    n = info["studies"]
    out.append(f"### Study by study\n\nThe score (steps) with each study "
               f"judged alone, as if it were the only one: the spread is "
               f"how much one study's tuning luck moves a score; the "
               f"scores above use the median over the {n} studies.\n")
    out.append(reports.markdown_table(
        ["submission"] + [f"study {k}" for k in range(n)] + ["range"],
        [[s] + list(v) + [max(v) - min(v)] for s, v in
         study_scores.items()], digits=3))
  for w in ws:
    t = targets[w.name]
    extra = (f", optimal loss {t['optimal_loss']:.5f}"
             if "optimal_loss" in t else "")
    out.append(f"## {w.name}\n\n{w.description}. Target {w.metric} <= "
               f"{t['target']:.5f}{extra}; step hint {w.step_hint}, "
               f"{w.max_steps} steps, evaluation every {w.eval_every}.\n")
    out.append(reports.markdown_table(
        ["submission", "steps to target (median)", "seconds",
         "studies reached", "trials reaching target"],
        [[r["submission"], r["steps"], r["seconds"],
          f"{r['studies_reached']}/{r['studies']}",
          f"{sum(h for _, h in robust[w.name][r['submission']])}/"
          f"{len(robust[w.name][r['submission']])}"]
         for r in rows if r["workload"] == w.name], digits=3))
  if anytime_rows:
    out.append("## WSD-S anytime: its decayed models vs WSD runs at equal "
               "compute\n\nThe best WSD-S trial of each study at the end "
               "of each of its decays (S_i) vs a WSD run of S_i steps with "
               "the same peak, warmup, decay fraction and seed (lower is "
               "better).\n")
    out.append(reports.markdown_table(
        ["workload", "study", "S_i (steps)", "WSD-S", "WSD (S_i steps)",
         "WSD-S / WSD"],
        [[r["workload"], r["study"], r["steps"], r["wsd_s"], r["wsd"],
          r["wsd_s"] / r["wsd"] if r["wsd"] else float("nan")]
         for r in anytime_rows], digits=4))
  out.append("## Claims\n\nThe median verdict is AlgoPerf's way: on the "
             "median over studies. \"Studies agreeing\" counts the studies "
             "that, judged alone, give the median verdict; with several "
             "studies the verdict is the median one only when a majority "
             "agree, and `inconclusive` otherwise.\n")
  out.append(reports.markdown_table(
      ["claim", "verdict", "median verdict", "studies agreeing",
       "criterion"],
      [[v["claim"], v["verdict"], v.get("median_verdict", v["verdict"]),
        f"{v.get('studies_agreeing', '?')}/{v.get('studies', '?')}",
        v["criterion"]] for v in verdicts]))
  return "\n".join(out)
