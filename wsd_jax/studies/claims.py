"""Every study's verdicts on the papers' claims, in one table.

Each study writes its claims into its results JSON, committed under
``docs/``. This module reads those files, checks every verdict again from
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

BEGIN, END = "<!-- claims:begin -->", "<!-- claims:end -->"


@dataclasses.dataclass
class Claim:
  """One verdict: ``rule`` is ``below`` (``mean < margin``,
  ``verdicts.verdict``), ``within`` (``|mean| < margin``), ``combine``
  (``verdicts.combine`` of ``parts``) or ``benchmark`` (AlgoPerf's
  supported / not supported, a rule on scores with no interval)."""
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

  def estimate(self) -> str:
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
    if self.per_seed is not None and len(self.per_seed) >= 2:
      again = verdicts.paired(self.per_seed, np.zeros(len(self.per_seed)))
      if not np.allclose(again["ci"], self.ci, rtol=1e-6, atol=1e-12):
        raise ValueError(f"{self.study}: {self.text!r}: the stored interval "
                         f"{self.ci} is not the paired interval of its "
                         f"per-seed differences ({again['ci']})")
    if self.rule == "below":
      return verdicts.verdict(self.ci, self.margin)
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


def _algoperf(d: dict) -> list[Claim]:
  n = d["info"]
  setting = (f"AlgoPerf-style benchmark, {', '.join(n['workloads'])}; "
             f"{n['studies']} study x {n['trials']} trials")
  return [Claim("algoperf", c["claim"], setting, c["criterion"],
                c["verdict"], rule="benchmark",
                report="docs/algoperf_qualification.md")
          for c in d["claims"]]


# (docs JSON, reader): the order of the README table.
STUDIES: list[tuple[str, Callable[[dict], list[Claim]]]] = [
    ("adaptive_study.json", _adaptive),
    ("lr_scaling.json", _lr_scaling),
    ("algoperf_qualification.json", _algoperf),
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
