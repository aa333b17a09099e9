"""Every study's verdicts on the papers' claims, in one table.

Each study writes its claims into its results JSON in its workdir; the
run whose report is in ``docs/`` has that JSON committed beside it (the
river valley's ``claims.json`` as ``docs/river_valley_claims.json``, the
adaptive and LR-scaling studies' ``results.json`` as ``docs/adaptive_study
.json`` and ``docs/lr_scaling.json``, AlgoPerf's full mode's ``report.json`` as
``docs/algoperf_full.json``, the others under their own name). This module
reads those files, checks every verdict again from
the numbers stored next to it (the interval, the margin and the rule of
``studies.verdicts``; for paired per-seed differences, the interval too),
and renders one Markdown table. ``python -m experiments.claims`` prints it
and (``--write``) puts it into the README between the ``claims`` markers, so
the README's verdicts are computed, never typed; ``tests/test_claims.py``
fails when the README's table and the committed results disagree.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any, Callable, Sequence

import numpy as np

from wsd_jax import reports
from wsd_jax.studies import verdicts
from wsd_jax.studies.algoperf import report as ap_report

BEGIN, END = "<!-- claims:begin -->", "<!-- claims:end -->"


@dataclasses.dataclass
class Claim:
  """One verdict: ``rule`` is ``below`` (``mean < margin``,
  ``verdicts.verdict``), ``above`` (``mean > margin``), ``within``
  (``|mean| < margin``), ``combine`` (``verdicts.combine`` of ``parts``),
  ``custom`` (the study's own rule, ``recheck``, on the stored numbers) or
  ``benchmark`` (a rule on scores with no interval, kept as stored)."""
  study: str
  text: str
  setting: str
  measure: str
  verdict: str
  rule: str = "below"
  mean: float | None = None
  ci: tuple[float, float] | None = None
  margin: float | None = None
  per_seed: Sequence[float] | None = None
  parts: Sequence["Claim"] = ()
  report: str = ""
  shown: str | None = None            # the estimate column, when not mean/CI
  recheck: Callable[[], str] | None = dataclasses.field(default=None,
                                                       repr=False)

  def estimate(self) -> str:
    if self.shown is not None:
      return self.shown
    if self.rule == "combine":
      return "; ".join(f"{p.setting}: {p.estimate()}" for p in self.parts)
    if self.ci is None:
      return "no interval (one study)"
    lo, hi = self.ci
    return f"{_num(self.mean)} [{_num(lo)}, {_num(hi)}]"

  def recompute(self) -> str:
    """The verdict from the stored numbers alone."""
    if self.rule == "combine":
      return verdicts.combine([p.recompute() for p in self.parts])
    if self.rule == "benchmark":
      return self.verdict  # the rule lives in the AlgoPerf report (tested)
    if self.rule == "custom":  # the study's own rule on the stored numbers
      return self.recheck()
    if self.per_seed is not None and len(self.per_seed) >= 2:
      again = verdicts.paired(self.per_seed, np.zeros(len(self.per_seed)))
      if not np.allclose(again["ci"], self.ci, rtol=1e-6, atol=1e-12):
        raise ValueError(f"{self.study}: {self.text!r}: the stored interval "
                         f"{self.ci} is not the paired interval of its "
                         f"per-seed differences ({again['ci']})")
    if self.rule == "below":
      return verdicts.verdict(self.ci, self.margin)
    if self.rule == "above":
      lo, hi = self.ci
      return verdicts.verdict([-hi, -lo], -self.margin)
    if self.rule == "within":
      lo, hi = self.ci
      return verdicts.combine([verdicts.verdict([lo, hi], self.margin),
                               verdicts.verdict([-hi, -lo], self.margin)])
    raise ValueError(f"{self.study}: unknown rule {self.rule!r}")


def _num(x: float) -> str:
  if x is None or not math.isfinite(x):
    return str(x)
  return f"{x:+.3g}" if abs(x) >= 1e-3 or x == 0 else f"{x:+.2e}"


def _record(study: str, r: dict, setting: str, report: str) -> Claim:
  """A claim record as the studies write it (``verdicts.paired`` fields
  plus ``text``, ``measure``, ``margin``, ``verdict``; optional ``rule``,
  ``parts``)."""
  parts = r.get("parts") or {}
  if isinstance(parts, dict):
    parts = [dict(v, setting=k) for k, v in parts.items()]
  return Claim(
      study=study, text=r.get("text") or r.get("claim"),
      setting=r.get("setting", setting), measure=r.get("measure", ""),
      verdict=r["verdict"],
      rule=r.get("rule", "combine" if parts else "below"),
      mean=r.get("mean"), ci=tuple(r["ci"]) if "ci" in r else None,
      margin=r.get("margin"), per_seed=r.get("per_seed"),
      parts=[_record(study, dict(p, text=r.get("text"), measure=r.get(
          "measure", ""), margin=p.get("margin", r.get("margin"))),
                     p.get("setting", ""), report) for p in parts],
      report=report)


# ------------------------------------------------------------ the studies

def _adaptive(d: dict) -> list[Claim]:
  setting = {"bigram": "toy illustration: convex bigram table, Adam",
             "text": "byte-level MLP LM on text, 200 steps",
             "federation": "toy illustration: federated bigram"}
  return [_record("adaptive", r, setting.get(r["workload"], r["workload"]),
                  "docs/adaptive_study.md") for r in d["claims"]]


def _lr_scaling(d: dict) -> list[Claim]:
  a = d["analysis"]
  pairs = [Claim("lr_scaling", "", f"B={p['batches'][0]} vs "
                 f"B={p['batches'][1]}", "", p["verdict"], rule="within",
                 mean=p["diff"], ci=tuple(p["ci"]), margin=a["margin"])
           for p in a["pairs"]]
  both = Claim(
      "lr_scaling", "the optimal-LR exponent b (eta_opt = a T^b) does not "
      "depend on the batch size (Shen et al., Power scheduler)",
      "toy illustration: MLP LM on text, 2^16-2^19 tokens",
      "b_B - b_B' per batch pair, bootstrap over seeds", a["verdict"],
      rule="combine", parts=pairs, report="docs/lr_scaling.md")
  if not a["all_interior"] and both.recompute() != "refuted":
    both.rule, both.mean, both.ci = "benchmark", None, None  # edge optimum
  near = Claim(
      "lr_scaling", "b is near the paper's -0.51 (Shen et al.)",
      "toy illustration: MLP LM on text",
      "pooled b - (-0.51), bootstrap", a["near_paper"], rule="within",
      mean=a["pooled_b"] - a["paper_b"],
      ci=(a["pooled_b_ci"][0] - a["paper_b"],
          a["pooled_b_ci"][1] - a["paper_b"]), margin=a["margin"],
      report="docs/lr_scaling.md")
  return [both, near]


def _algoperf(report: str) -> Callable[[dict], list[Claim]]:
  """The AlgoPerf report's claims, rechecked with its own rules on its
  stored times to target (and, with several studies, on each study
  alone)."""

  def read(d: dict) -> list[Claim]:
    n = d["info"]
    studies = int(n["studies"])
    setting = (f"AlgoPerf-style benchmark, {', '.join(n['workloads'])}; "
               f"{studies} {'study' if studies == 1 else 'studies'} x "
               f"{n['trials']} trials")
    rows, anytime = d["time_to_targets"], d.get("anytime", [])
    again = ap_report.claims(d["scores"], rows, anytime)
    if studies > 1:
      ap_report.agreement(again, ap_report.by_study(rows, anytime)[1])
    again = {v["claim"]: v for v in again}
    out = []
    for c in d["claims"]:
      shown = None
      a = again.get(c["claim"], {})
      if studies > 1:
        if a.get("studies_agreeing") != c["studies_agreeing"]:
          raise ValueError(f"algoperf: {c['claim']!r}: {c['studies_agreeing']}"
                           f" studies agree by the report, "
                           f"{a.get('studies_agreeing')} by its times to "
                           "target")
        shown = (f"no interval; median over studies: "
                 f"{c['median_verdict']}; {c['studies_agreeing']} of "
                 f"{studies} studies alone agree")
      out.append(Claim("algoperf", c["claim"], setting, c["criterion"],
                       c["verdict"], rule="custom", report=report,
                       shown=shown,
                       recheck=lambda v=a.get("verdict"): v))
    return out

  return read


def _paired(study: str, d: dict, setting: str, margin: float,
            report: str, rule: str = "below") -> Claim:
  """A part: one ``verdicts.paired`` record judged against ``margin``."""
  return Claim(study, "", setting, "", d["verdict"], rule=rule,
               mean=d["mean"], ci=tuple(d["ci"]), margin=margin,
               per_seed=d.get("per_seed"), report=report)


def _river_valley(d: dict) -> list[Claim]:
  rep = "docs/river_valley_report.md"
  toy = "toy illustration: convex bigram table, SGD, 8 seeds, exact loss"
  by = {c["claim"]: c for c in d["claims"]}
  out = []
  c = by["the stable phase makes progress that only shows after the decay"]
  n = c["numbers"]
  out.append(Claim(
      "river_valley", c["claim"] + " (Wen et al.)", toy,
      "stable-phase drop − river drop; −(smallest hill)", c["verdict"],
      rule="combine", report=rep, parts=[
          _paired("river_valley", dict(n["stable_minus_river_drop"],
                                       verdict=n["verdicts"][0]),
                  "stable − river drop", 0.0, rep),
          _paired("river_valley", dict(n["minus_min_hill"],
                                       verdict=n["verdicts"][1]),
                  "−min hill", 0.0, rep)]))
  c = by["the decay mostly helps uncertain tokens"]
  n = c["numbers"]
  part = _paired("river_valley", dict(n["baseline_minus_actual"],
                                      verdict=c["verdict"]), toy, 0.0, rep)
  part.text = c["claim"] + " (Wen et al.), against an equal-help baseline"
  part.measure = "equal-help share − uncertain half's share of the gain"
  out.append(part)
  c = by["uncertain tokens lie along sharp directions (curvature)"]
  sp = c["numbers"]["spearman"]
  out.append(Claim(
      "river_valley", "uncertain tokens lie along sharp directions "
      "(Wen et al.: ~0.39 on real data)", toy,
      "Spearman(entropy, curvature) over tokens, bootstrap", c["verdict"],
      rule="above", mean=sp["r"], ci=tuple(sp["ci"]), margin=0.0,
      report=rep))
  c = by["WSD-S <= WSD <= cyclic cosine at equal compute"]
  parts = []
  for k, b in enumerate(c["numbers"]["budgets"]):
    names = (["wsd_minus_cyclic"] if k == 0
             else ["wsd_s_minus_wsd", "wsd_minus_cyclic"])
    for name, v in zip(names, b["verdicts"]):
      parts.append(_paired("river_valley", dict(b[name], verdict=v),
                           f"{b['budget']} steps, {name.replace('_', ' ')}",
                           0.0, rep))
  out.append(Claim(
      "river_valley", "WSD-S ≤ WSD ≤ cyclic cosine at equal compute "
      "(Wen et al.), one untuned peak", toy, "paired differences",
      c["verdict"], rule="combine", parts=parts, report=rep,
      shown="see the fair comparison below"))
  return out


def _fair_compare(d: dict) -> list[Claim]:
  a, rep = d["analysis"], "docs/fair_compare.md"
  toy = ("toy illustration: convex bigram table, SGD; each method at its "
         "own peak, 5 fresh seeds")
  budgets = d["plan"]["budgets"]
  parts = []
  for b, o in zip(budgets, a["order"]):
    for name in ("wsd_s_minus_wsd", "wsd_minus_cyclic"):
      parts.append(_paired("fair_compare", o[name], f"{b}: {name}",
                           a["margin"], rep))
  order = Claim(
      "fair_compare", "WSD-S ≤ WSD ≤ cyclic cosine at equal compute "
      "(Wen et al.)", toy, f"paired differences (WSD = {a['order'][0]['wsd']})"
      f", margin {a['margin']}", a["verdict"], rule="combine", parts=parts,
      report=rep)
  gaps = [f"{b}: {_num(o['wsd_minus_cyclic']['mean'])}"
          for b, o in zip(budgets, a["order"])]
  order.shown = "WSD − cyclic cosine " + ", ".join(gaps) + " (CIs in report)"
  out = [order]
  for c in a["comparisons"]:
    if c["a"].endswith("1-sqrt") and c["b"] == c["a"].replace("1-sqrt",
                                                              "linear"):
      ps = [_paired("fair_compare", v, f"{b}", a["margin"], rep)
            for b, v in zip(budgets, c["budgets"])]
      frac = c["a"].split("_")[1]
      cl = Claim("fair_compare", f"a 1-sqrt decay beats a linear one "
                 f"({frac}% decay; Hägele et al.)", toy,
                 f"loss 1-sqrt − linear per budget, margin {a['margin']}",
                 verdicts.combine([p.verdict for p in ps]), rule="combine",
                 parts=ps, report=rep)
      out.append(cl)
  return out


def _zipf_regime(d: dict) -> list[Claim]:
  a, rep = d["analysis"], "docs/zipf_regime.md"
  toy = ("toy illustration: Zipfian bigram, V=1024, context-1 MLP LM, "
         "AdamW, exact loss")
  last = a["regime"]["last_third"]
  river = _paired("zipf_regime", last, toy, 0.0, rep)
  river.text = ("regime check: the river does not run out (the decayed "
                "loss still falls over the run's last third)")
  river.measure = (f"decayed loss at step {last['to_step']} − at "
                   f"{last['from_step']}")
  o = a["order"]
  parts = []
  for b in o["budgets"]:
    for name, v in b["parts"].items():
      parts.append(_paired("zipf_regime", v, f"{b['budget']}: {name}",
                           o["margin"], rep))
  order = Claim(
      "zipf_regime", "WSD-S ≤ WSD ≤ cyclic cosine at equal compute "
      "(Wen et al.)", toy + "; each method at its own peak",
      f"paired differences, margin {o['margin']}", o["verdict"],
      rule="combine", parts=parts, report=rep)
  order.shown = "WSD − cyclic cosine " + ", ".join(
      f"{b['budget']}: {_num(b['parts']['wsd <= cyclic_cosine']['mean'])}"
      for b in o["budgets"]) + " (CIs in report)"
  return [river, order]


def _decay_shapes(d: dict) -> list[Claim]:
  from wsd_jax.studies import decay_shapes as ds  # its own rules
  rep = "docs/decay_shapes.md"
  toy = "toy illustration: byte-level MLP LM on text, AdamW"
  sh = d["shapes"]
  row = next(r for r in sh["rows"] if r["method"] == "wsd_1-sqrt")
  vs = row["vs_cosine"]
  both = row["interior"] and next(
      r for r in sh["rows"] if r["method"] == "cosine")["interior"]
  match = Claim(
      "decay_shapes", "a 20% 1-sqrt cooldown matches cosine (Hägele et al.)",
      toy + ", 256 steps, each at its own peak, 5 seeds",
      f"loss 1-sqrt − cosine; matches: abs(d) < {sh['margin']:.4f} "
      f"({sh['margin_rel']:.1%})", sh["claim_1sqrt_matches_cosine"],
      rule="within" if both else "custom", mean=vs["mean"],
      ci=tuple(vs["ci"]), margin=sh["margin"], per_seed=vs["per_seed"],
      recheck=lambda: "inconclusive", report=rep)
  f = d["fractions"]
  per = f["per_length"]
  lo, hi = f["claim_range"]
  rng = Claim(
      "decay_shapes", f"the optimal decay fraction is {lo:.0%}–{hi:.0%} "
      "(Tissue et al.)", toy + ", linear WSD at 3 run lengths, 5 seeds",
      "optimal fraction, bootstrap CI over seeds", f["in_range"],
      rule="custom", report=rep,
      recheck=lambda: verdicts.combine([
          v if v == "refuted" or p["interior"] else "inconclusive"
          for p in per for v in [ds.in_range(p["ci"], lo, hi)]]),
      shown=", ".join(f"{p['steps']} steps: {p['optimum']:.2f} "
                      f"[{p['ci'][0]:.2f}, {p['ci'][1]:.2f}]" for p in per))
  shrink = Claim(
      "decay_shapes", "the optimal decay fraction shrinks as runs get "
      "longer (Tissue et al.)", toy, "slope of the optimum vs log2(length)",
      f["shrinks"], rule="custom", mean=f["slope"], ci=tuple(f["slope_ci"]),
      report=rep, recheck=lambda: ds.slope_verdict(
          f.get("fractions") or d["plan"]["fractions"],
          [p["steps"] for p in per], [p["optimum"] for p in per],
          [p["interior"] for p in per], f["slope_ci"]))
  law = d["law"]
  lawc = Claim(
      "decay_shapes", "the annealing law predicts the optimal decay "
      "fraction (Tissue et al.)", toy + "; law fitted on a constant and a "
      "cosine run", "law's optimum inside the measured CI",
      d["law_verdict"], rule="custom", report=rep,
      recheck=lambda: ds.law_verdict(per, law["per_length"]),
      shown=", ".join(f"{q['steps']} steps: {q['optimum']:.2f}"
                      for q in law["per_length"]))
  return [match, rng, shrink, lawc]


def _gpt_valley(d: dict) -> list[Claim]:
  a, rep = d["analysis"], "docs/gpt_valley.md"
  p = d["plan"]
  toy = (f"toy illustration: GPT ({d['num_params']:,} parameters) on text, "
         f"AdamW, {len(p['seeds'])} seeds")
  out = []
  for key, what, measure in (
      ("dip", "Wen et al.", "−(midpoint dip) between checkpoints"),
      ("monotone", "Wen et al.", "loss(later) − loss(earlier) checkpoint"),
      ("sharpness_rises", "edge of stability",
       "top Hessian eigenvalue, start − end of decay"),
      ("precond_sharpness_rises", "edge of stability, Adam",
       "top eigenvalue of P⁻¹H, start − end of decay")):
    c = a[key]
    parts = [_paired("gpt_valley", q, q["part"], c["margin"], rep)
             for q in c["parts"]]
    out.append(Claim("gpt_valley", f"{c['claim']} ({what})", toy, measure,
                     c["verdict"], rule="combine", parts=parts, report=rep))
  return out


def _law_study(d: dict) -> list[Claim]:
  """The multi-power law's held-out error against the project's goal (mean
  below 0.3%; Luo et al. report 0.11-0.17%), interval over held-out runs."""
  v = d["verdicts"]["multipower"]
  worst = d["summary"]["multipower"]["max_rel_err"]
  c = Claim(
      "law_study", "the multi-power law predicts held-out schedules' loss "
      "curves within 0.3% mean relative error (Luo et al.: 0.11–0.17%)",
      "byte-level MLP LM on text, fitted on constant + cosine, 6 held-out "
      "runs", "mean relative error, bootstrap over held-out runs", "",
      mean=v["mean_rel_err"], ci=tuple(v["ci"]), margin=0.003,
      report="docs/law_study.md")
  c.verdict = c.recompute()  # the study states the goal; its rule is here
  c.shown = (f"{c.mean:.2%} [{c.ci[0]:.2%}, {c.ci[1]:.2%}]; worst "
             f"{worst:.2%}; noise floor {v['mean_rel_err'] / v['ratio']:.2%}")
  return [c]


# (docs JSON, reader): the order of the README table.
STUDIES: list[tuple[str, Callable[[dict], list[Claim]]]] = [
    ("river_valley_claims.json", _river_valley),
    ("fair_compare.json", _fair_compare),
    ("zipf_regime.json", _zipf_regime),
    ("decay_shapes.json", _decay_shapes),
    ("gpt_valley.json", _gpt_valley),
    ("law_study.json", _law_study),
    ("adaptive_study.json", _adaptive),
    ("lr_scaling.json", _lr_scaling),
    ("algoperf_full.json", _algoperf("docs/algoperf_full.md")),
]


def collect(docs: str) -> list[Claim]:
  """Every claim of every study whose results are in ``docs``."""
  out = []
  for name, read in STUDIES:
    path = os.path.join(docs, name)
    with open(path) as f:
      data = json.load(f)
    out.extend(read(data))
  return out


def check(claims: Sequence[Claim]) -> None:
  """Raises, naming the claim, if a stored verdict is not what its
  numbers give."""
  for c in claims:
    again = c.recompute()
    if again != c.verdict:
      raise ValueError(f"{c.study}: {c.text!r} ({c.setting}) says "
                       f"{c.verdict!r} but its numbers give {again!r}")


def markdown(claims: Sequence[Claim]) -> str:
  rows = [[c.text, c.setting, c.measure, c.estimate(), f"**{c.verdict}**",
           f"[report]({c.report})"] for c in claims]
  return reports.markdown_table(
      ["claim", "setting", "measured", "estimate [95% CI]", "verdict", ""],
      rows)


def block(docs: str) -> str:
  claims = collect(docs)
  check(claims)
  return f"{BEGIN}\n{markdown(claims).rstrip()}\n{END}"


def replace_block(text: str, new_block: str) -> str:
  """``text`` with its claims block replaced; raises if the markers are
  missing or out of order."""
  i, j = text.find(BEGIN), text.find(END)
  if i < 0 or j < i:
    raise ValueError(f"no {BEGIN} ... {END} block to replace")
  return text[:i] + new_block + text[j + len(END):]


def readme_block(readme_text: str) -> str:
  i, j = readme_text.find(BEGIN), readme_text.find(END)
  if i < 0 or j < i:
    raise ValueError(f"the README has no {BEGIN} ... {END} block")
  return readme_text[i:j + len(END)]


def as_dict(c: Claim) -> dict[str, Any]:
  return dataclasses.asdict(c)
