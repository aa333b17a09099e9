"""The README's table of verdicts is computed from the committed results,
and a verdict its own numbers do not give is caught."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from wsd_jax.studies import claims, verdicts

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")


def test_readme_table_is_the_computed_one():
  with open(os.path.join(ROOT, "README.md")) as f:
    readme = f.read()
  assert claims.readme_block(readme) == claims.block(DOCS), (
      "README's claims table is stale: run python -m experiments.claims "
      "--write")


def test_every_committed_verdict_follows_from_its_numbers():
  cs = claims.collect(DOCS)
  assert len(cs) >= 10
  claims.check(cs)
  for c in cs:
    if c.rule in ("below", "within"):
      assert c.ci[0] <= c.mean <= c.ci[1], c


def _copy_docs(tmp_path):
  d = tmp_path / "docs"
  d.mkdir()
  for name, _ in claims.STUDIES:
    shutil.copy(os.path.join(DOCS, name), d / name)
  return d


def test_a_flipped_verdict_is_an_error_naming_the_claim(tmp_path):
  d = _copy_docs(tmp_path)
  path = d / "adaptive_study.json"
  data = json.loads(path.read_text())
  first = data["claims"][0]
  first["verdict"] = ("refuted" if first["verdict"] != "refuted"
                      else "reproduced")
  path.write_text(json.dumps(data))
  with pytest.raises(ValueError, match="adaptive: .*its numbers give"):
    claims.check(claims.collect(str(d)))


def test_an_algoperf_verdict_its_times_do_not_give_is_an_error(tmp_path):
  """The benchmark's verdicts are rechecked from its stored scores and
  times to target: a changed score flips "constant loses to cosine", and a
  changed count of agreeing studies is caught."""
  d = _copy_docs(tmp_path)
  path = d / "algoperf_full.json"
  data = json.loads(path.read_text())
  claims.check(claims.collect(str(d)))
  for r in data["scores"]:  # constant now scores above cosine
    if r["submission"] == "constant":
      r["score_steps"] = 2.0
  path.write_text(json.dumps(data))
  with pytest.raises(ValueError, match="algoperf: 'a decay is needed"):
    claims.check(claims.collect(str(d)))
  # a stored count of agreeing studies that the times do not give
  with open(os.path.join(DOCS, "algoperf_full.json")) as f:
    data = json.load(f)
  data["claims"][0]["studies_agreeing"] += 1
  path.write_text(json.dumps(data))
  with pytest.raises(ValueError, match="studies agree by the report"):
    claims.check(claims.collect(str(d)))


def test_an_interval_that_is_not_its_seeds_is_an_error(tmp_path):
  d = _copy_docs(tmp_path)
  path = d / "adaptive_study.json"
  data = json.loads(path.read_text())
  rec = next(r for r in data["claims"] if len(r.get("per_seed", [])) >= 2
             and len(set(r["per_seed"])) > 1)
  rec["per_seed"] = [x * 3 for x in rec["per_seed"]]
  path.write_text(json.dumps(data))
  with pytest.raises(ValueError, match="not the paired interval"):
    claims.check(claims.collect(str(d)))


@pytest.mark.parametrize("ci,verdict", [
    ((-0.1, 0.1), "reproduced"), ((0.25, 0.3), "refuted"),
    ((-0.3, -0.25), "refuted"), ((-0.3, 0.1), "inconclusive")])
def test_within_rule(ci, verdict):
  c = claims.Claim("s", "t", "x", "m", verdict, rule="within",
                   mean=sum(ci) / 2, ci=ci, margin=0.2)
  assert c.recompute() == verdict


def test_combine_and_below_rules_match_verdicts():
  d = verdicts.paired([0.1, 0.12, 0.11], [0, 0, 0])
  part = claims.Claim("s", "t", "a", "m", "refuted", mean=d["mean"],
                      ci=tuple(d["ci"]), margin=0.0, per_seed=d["per_seed"])
  ok = claims.Claim("s", "t", "b", "m", "reproduced", mean=-1.0,
                    ci=(-1.5, -0.5), margin=0.0)
  both = claims.Claim("s", "t", "x", "m", "refuted", rule="combine",
                      parts=[part, ok])
  assert part.recompute() == "refuted" and ok.recompute() == "reproduced"
  assert both.recompute() == "refuted"


def test_missing_markers_are_refused():
  with pytest.raises(ValueError, match="claims:begin"):
    claims.replace_block("no block here", "x")


def test_app_writes_the_block_into_a_readme(tmp_path):
  readme = tmp_path / "README.md"
  readme.write_text(f"intro\n{claims.BEGIN}\nold\n{claims.END}\noutro\n")
  r = subprocess.run([sys.executable, "-m", "experiments.claims", "--write",
                      f"--readme={readme}"], cwd=ROOT, capture_output=True,
                     text=True, timeout=120)
  assert r.returncode == 0, r.stderr[-2000:]
  text = readme.read_text()
  assert text.startswith("intro\n") and text.endswith("\noutro\n")
  assert claims.readme_block(text) == claims.block(DOCS)
