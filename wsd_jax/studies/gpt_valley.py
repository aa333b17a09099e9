"""Valley cross-sections and sharpness on GPT nano (``python -m
experiments.gpt_valley``): issue #15 item 5.

The river-valley study draws the loss along the segment between two
checkpoints of a bigram table, whose loss is convex: a cross-section there
cannot show a valley. Here the model is a small GPT decoder (non-convex) on
the byte-level stdlib docstring corpus. Per seed::

    DIR/seed{S}/                      main run: warmup, then a constant LR;
                                      checkpoints at the stable steps
    DIR/seed{S}/branches/decay/       linear decay to 0 from the fork step,
                                      checkpoints every decay_every steps

The seeds' main runs train as one vmapped program, then their branches
(``train.train_specs``); a finished run is not trained again, so rerunning
only redoes the analysis (itself cached per seed in ``DIR/analysis/``).

Measured, per seed, on FIXED data (the same batches for every point):

- cross-sections ``L((1 - a) theta_A + a theta_B)`` on the held-out eval
  set for ``a`` in ``[-0.25, 1.25]``: between consecutive stable
  checkpoints, from the fork to the decayed end, and between consecutive
  decay checkpoints; the midpoint dip ``(L(0) + L(1)) / 2 - L(0.5)``;
- sharpness: the top Hessian eigenvalue of the training loss on a fixed
  set of training batches (``studies.sharpness``, power iteration on
  forward-over-reverse HVPs, float32) at the stable checkpoints, along the
  decay and inside each segment; and the Adam-preconditioned sharpness
  (top eigenvalue of ``P^-1 H``, ``P = sqrt(nu_hat) + eps`` from the
  checkpoint's optimizer state) next to Adam's stability threshold
  ``38 / lr`` (Cohen et al., arXiv 2207.14484).

Claims (per-seed paired differences, ``verdicts.paired`` and ``verdict``
with margin 0, computed in code):

(i) stable iterates sit on opposite hillsides: the midpoint dip between
    consecutive stable checkpoints is > 0 (the claim ``-dip < 0``), for
    every pair;
(ii) the decay moves down into the valley: the eval loss decreases between
    consecutive decay checkpoints (``L_{k+1} - L_k < 0`` for every k);
(iii) direction of sharpness along the decay, reported both ways:
    "sharpness rises" (``S_fork - S_end < 0``, the edge-of-stability
    intuition: the LR falls, so the stable ceiling 2/lr rises) and
    "sharpness falls" (``S_end - S_fork < 0``), for the raw and the
    preconditioned sharpness.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from configs import gpt as gpt_config
from wsd_jax import data as data_lib
from wsd_jax import plots, reports, runs, schedules
from wsd_jax.data import corpus
from wsd_jax.plots import plt
from wsd_jax.runs import rundir
from wsd_jax.studies import common, sharpness
from wsd_jax.studies.verdicts import LEVEL, combine, paired, verdict
from wsd_jax.train import load_state
from wsd_jax.train.config import with_schedule
from wsd_jax.train.step import loss_fn as model_loss

TAG = "gpt_valley"
BRANCH = "decay"
ADAM_B1 = 0.9
ADAM_EPS = 1e-8  # optax.adamw's default (config.optimizer.eps unset)


@dataclasses.dataclass(frozen=True)
class Plan:
  """What to train and where to look."""
  seeds: tuple[int, ...]
  stable_steps: tuple[int, ...]     # main-run checkpoints; the last is its end
  fork: int                         # the decay branch leaves the main run here
  decay_steps: int
  decay_every: int                  # decay checkpoints every this many steps
  warmup_steps: int
  peak_lr: float
  d_model: int = 64
  num_layers: int = 2
  num_heads: int = 4
  seq_len: int = 64
  batch: int = 16
  eval_rows: int = 128              # fixed held-out set: rows of seq_len
  hessian_rows: int = 64            # fixed training batch set for sharpness
  points: int = 13                  # alphas on [-0.25, 1.25]
  inner: tuple[float, ...] = (0.25, 0.5, 0.75)  # sharpness inside segments
  tol: float = 1e-3
  max_iters: int = 200
  corpus_bytes: int | None = None

  def __post_init__(self):
    def bad(name, why):
      raise ValueError(f"{name}={getattr(self, name)!r}: {why}")
    if len(self.seeds) < 1 or len(set(self.seeds)) != len(self.seeds):
      bad("seeds", "need distinct seeds")
    st = self.stable_steps
    if len(st) < 2 or list(st) != sorted(set(st)) or st[0] <= self.warmup_steps:
      bad("stable_steps", "need >= 2 increasing steps after warmup_steps="
          f"{self.warmup_steps}")
    if self.fork not in st:
      bad("fork", f"must be one of stable_steps {st}")
    if self.decay_steps < 1:
      bad("decay_steps", "must be >= 1")
    if self.decay_every < 1 or self.decay_steps % self.decay_every:
      bad("decay_every", f"must divide decay_steps={self.decay_steps}")
    if self.points < 7 or (self.points - 1) % 6:
      bad("points", "the grid over [-0.25, 1.25] must hold 0, 0.5 and 1: "
          "7, 13, 19, ...")
    if not self.peak_lr > 0:
      bad("peak_lr", "must be > 0")
    if any(not 0 < a < 1 for a in self.inner):
      bad("inner", "alphas inside a segment are in (0, 1)")
    for name in ("eval_rows", "hessian_rows"):
      if getattr(self, name) < 1 or getattr(self, name) % self.batch:
        bad(name, f"must be a positive multiple of batch={self.batch}")

  @property
  def total(self) -> int:
    return self.stable_steps[-1]

  @property
  def decay_points(self) -> tuple[int, ...]:
    """Fork, every decay checkpoint, decayed end."""
    return tuple(range(self.fork, self.fork + self.decay_steps + 1,
                       self.decay_every))

  @property
  def alphas(self) -> np.ndarray:
    return np.linspace(-0.25, 1.25, self.points)

  def main_schedule(self) -> schedules.Schedule:
    return schedules.wsd(self.peak_lr, self.total, decay_steps=0,
                         warmup_steps=self.warmup_steps)

  def lr_at(self, point: tuple[str, int]) -> float:
    """The LR of the step that produced checkpoint ``(kind, step)``: the
    schedule at ``step - 1`` (the main run's schedule is 0 at its own end
    step, which it never trains)."""
    kind, step = point
    if kind == "stable" or step == self.fork:
      return float(self.main_schedule()(step - 1))
    return float(self.peak_lr * (1 - (step - 1 - self.fork)
                                 / self.decay_steps))


def plan(quick: bool = False) -> Plan:
  """Full: GPT (2 layers, d_model 64, 4 heads; the ``nano`` preset) on
  64-byte sequences, batch 16, 3 seeds; AdamW peak 3e-3 (configs/gpt.py's
  nano LR), warmup 40, constant to 600, stable checkpoints every 120 steps;
  a 120-step linear decay to 0 (20% of 600) from step 480, checkpoints every
  30. Quick (CI): 1 layer, d_model 32, 2 seeds, 40 + 10 steps."""
  if quick:
    return Plan(seeds=(0, 1), stable_steps=(20, 30, 40), fork=30,
                decay_steps=10, decay_every=5, warmup_steps=4, peak_lr=3e-3,
                d_model=32, num_layers=1, num_heads=2, seq_len=32, batch=8,
                eval_rows=16, hessian_rows=16, points=7, inner=(0.5,),
                max_iters=20, corpus_bytes=100_000)
  return Plan(seeds=(0, 1, 2), stable_steps=(240, 360, 480, 600), fork=480,
              decay_steps=120, decay_every=30, warmup_steps=40, peak_lr=3e-3)


def main_dir(root: str, seed: int) -> str:
  return rundir.join(root, f"seed{seed}")


def decay_dir(root: str, seed: int) -> str:
  return rundir.branch_dir(main_dir(root, seed), BRANCH)


def base_config(p: Plan, root: str) -> ml_collections.ConfigDict:
  """The main runs' config: configs/gpt.py's nano, shrunk to the plan."""
  c = gpt_config.get_config("size=nano")
  c.model.update(num_layers=p.num_layers, d_model=p.d_model,
                 num_heads=p.num_heads)
  c.data.update(seq_len=p.seq_len, batch_size=p.batch, eval_batch_size=p.batch,
                eval_batches=p.eval_rows // p.batch)
  c.data.paths = corpus.stdlib_corpus(
      rundir.join(root, "stdlib_docstrings.txt"), p.corpus_bytes)
  c.train.update(log_every=p.decay_every, eval_every=p.decay_every,
                 progress=False, plots=False, async_checkpoint=False)
  return with_schedule(c, p.main_schedule(), p.total,
                       keep_steps=p.stable_steps)


def train(p: Plan, root: str) -> None:
  """Main runs (one vmapped program over seeds), then the decay branches."""
  base = base_config(p, root)
  mains = []
  for s in p.seeds:
    c = ml_collections.ConfigDict(base.to_dict())
    c.seed = int(s)
    mains.append(runs.RunSpec(c, main_dir(root, s)))
  common.train_stage(TAG, f"main runs ({len(p.seeds)} seeds)", mains)
  branches = []
  for s in p.seeds:
    if common.finished(decay_dir(root, s), p.fork + p.decay_steps):
      branches.append(None)
      continue
    branches.append(runs.branch_spec(
        main_dir(root, s), p.fork, p.decay_steps, "linear", 0.0, BRANCH,
        train_overrides=dict(checkpoint_every=p.decay_every, keep_every=0,
                             keep_last=1, keep_steps=p.decay_points)))
  common.train_stage(TAG, "decay branches", branches)


# ---------------------------------------------------------------- measuring

def fixed_batches(config: ml_collections.ConfigDict, split: str, rows: int
                  ) -> dict:
  """``rows`` rows of ``split`` as one batch: the held-out eval set, or
  the first rows of the training stream of seed 0 (the same for every
  run, checkpoint and point)."""
  c = ml_collections.ConfigDict(config.data.to_dict())
  c.update(batch_size=rows, eval_batch_size=rows, eval_batches=1)
  it = iter(data_lib.make_dataset(c, split, seed=0))
  batch = next(it)
  return {k: jnp.asarray(v) for k, v in batch.items()}


class Measure:
  """Loss and sharpness of parameter vectors of one model shape."""

  def __init__(self, p: Plan, config: ml_collections.ConfigDict, graphdef):
    self.p = p
    eval_b = fixed_batches(config, "eval", p.eval_rows)
    hess_b = fixed_batches(config, "train", p.hessian_rows)
    self.eval_loss = jax.jit(lambda w: model_loss(w, graphdef, eval_b))
    # One function object per Measure: top_eigenvalue compiles it once.
    self.train_loss = lambda w: model_loss(w, graphdef, hess_b)

  def sharp(self, params, scale=None) -> dict:
    e = sharpness.top_eigenvalue(self.train_loss, params, scale=scale,
                                 tol=self.p.tol, max_iters=self.p.max_iters)
    return dataclasses.asdict(e)

  def section(self, pa, pb) -> list[float]:
    return [float(self.eval_loss(lerp(pa, pb, a))) for a in self.p.alphas]


def lerp(pa, pb, a: float):
  return jax.tree.map(lambda x, y: (1 - a) * x + a * y, pa, pb)


def dip(alphas: Sequence[float], losses: Sequence[float]) -> float:
  """``(L(0) + L(1)) / 2 - L(0.5)``: > 0 when the segment's middle is lower
  than its ends (the ends on opposite hillsides of a valley)."""
  at = {round(float(a), 6): float(l) for a, l in zip(alphas, losses)}
  for k in (0.0, 0.5, 1.0):
    if k not in at:
      raise ValueError(f"alphas {list(alphas)} do not hold {k}")
  return (at[0.0] + at[1.0]) / 2 - at[0.5]


def restore(workdir: str, steps: Sequence[int]) -> tuple:
  """``(setup, {step: state})``: one ``train.setup`` for a run, then each
  checkpoint restored into its state (``load_state`` builds everything
  again per step)."""
  s, _ = load_state(workdir, steps[0])
  ckpt = runs.Checkpointer(rundir.checkpoint_dir(workdir), read_only=True)
  return s, {st: ckpt.restore(st, s.state, None) for st in steps}


def measure_seed(p: Plan, root: str, seed: int, m: "Measure | None" = None
                 ) -> dict:
  """Every cross-section and sharpness of one seed (``m``: a ``Measure``
  to reuse, so that its compiled functions are reused)."""
  mdir, ddir = main_dir(root, seed), decay_dir(root, seed)
  s, main_states = restore(mdir, p.stable_steps)
  _, decay_states = restore(ddir, p.decay_points[1:])
  states = {("stable", k): v for k, v in main_states.items()}
  states.update({("decay", k): v for k, v in decay_states.items()})
  states[("decay", p.fork)] = states[("stable", p.fork)]
  m = m or Measure(p, ml_collections.ConfigDict(rundir.read_config(mdir)),
                   s.graphdef)
  b2 = float(s.config.optimizer.b2)
  params = {k: v.params for k, v in states.items()}
  out = {"points": {}, "sections": [], "num_params": int(sum(
      x.size for x in jax.tree.leaves(states[("stable", p.fork)].params)))}
  for (kind, st), stt in states.items():
    if (kind, st) == ("decay", p.fork):
      continue
    lr = p.lr_at((kind, st))
    pre = sharpness.adam_preconditioner(stt.opt_state, stt.params, ADAM_EPS,
                                        b2)
    out["points"][f"{kind}{st}"] = {
        "kind": kind, "step": st, "lr": lr,
        "eval_loss": float(m.eval_loss(stt.params)),
        "train_loss": float(m.train_loss(stt.params)),
        "sharpness": m.sharp(stt.params),
        "precond_sharpness": m.sharp(stt.params, pre)}
  segs = [("stable", ("stable", a), ("stable", b))
          for a, b in zip(p.stable_steps, p.stable_steps[1:])]
  segs.append(("fork_to_end", ("stable", p.fork),
               ("decay", p.decay_points[-1])))
  segs += [("decay", ("decay", a), ("decay", b))
           for a, b in zip(p.decay_points, p.decay_points[1:])]
  for kind, a, b in segs:
    losses = m.section(params[a], params[b])
    inner = [m.sharp(lerp(params[a], params[b], x))["value"]
             for x in p.inner] if kind != "decay" else []
    out["sections"].append({
        "kind": kind, "from": list(a), "to": list(b),
        "label": f"{a[0]} {a[1]} -> {b[0]} {b[1]}",
        "losses": losses, "dip": dip(p.alphas, losses),
        "inner_alphas": list(p.inner) if inner else [],
        "inner_sharpness": inner})
  return out


def measure(p: Plan, root: str) -> list[dict]:
  """``measure_seed`` of every seed, cached in ``DIR/analysis/`` (keyed by
  the plan)."""
  key = dataclasses.asdict(p)
  out, m = [], None
  for seed in p.seeds:
    path = rundir.join(root, "analysis", f"seed{seed}.json")
    if os.path.exists(path):
      cached = rundir.read_json(path)
      if cached.get("plan") == _jsonable(key):
        out.append(cached["result"])
        continue
    if m is None:  # one for all seeds: same shapes, same fixed batches
      mdir = main_dir(root, p.seeds[0])
      s, _ = load_state(mdir, p.stable_steps[0])
      m = Measure(p, ml_collections.ConfigDict(rundir.read_config(mdir)),
                  s.graphdef)
    start = time.perf_counter()
    r = measure_seed(p, root, seed, m)
    r["seconds"] = time.perf_counter() - start
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rundir.write_json(path, {"plan": _jsonable(key), "result": r})
    print(f"[{TAG}] seed {seed}: measured in {r['seconds']:.1f} s",
          flush=True)
    out.append(r)
  return out


def _jsonable(x):
  return json.loads(json.dumps(x))


# ---------------------------------------------------------------- analysis

def claim(name: str, diffs_a: Sequence[Sequence[float]],
          diffs_b: Sequence[Sequence[float]], labels: Sequence[str],
          margin: float = 0.0) -> dict:
  """A claim ``mean(a_k - b_k) < margin`` for every part ``k`` (per-seed
  values ``a_k``, ``b_k``): ``paired`` + ``verdict`` per part, ``combine``
  over parts."""
  parts = []
  for lab, a, b in zip(labels, diffs_a, diffs_b):
    t = paired(a, b)
    parts.append({"part": lab, **t, "verdict": verdict(t["ci"], margin)})
  return {"claim": name, "margin": margin, "parts": parts,
          "verdict": combine([q["verdict"] for q in parts])}


def analyse(p: Plan, per_seed: list[dict]) -> dict:
  """The claims from ``measure``'s per-seed results (one dict per seed)."""
  stable = [[s for s in r["sections"] if s["kind"] == "stable"]
            for r in per_seed]
  labels = [s["label"] for s in stable[0]]
  n = len(labels)
  zeros = [0.0] * len(per_seed)
  # (i) -dip < 0 for every consecutive stable pair
  c1 = claim("stable-phase midpoint dip > 0 (opposite hillsides)",
             [[-r[k]["dip"] for r in stable] for k in range(n)],
             [zeros] * n, labels)
  # (ii) L_{k+1} - L_k < 0 along the decay
  keys = [("stable" if st == p.fork else "decay") + str(st)
          for st in p.decay_points]
  loss = [[r["points"][k]["eval_loss"] for r in per_seed] for k in keys]
  c2 = claim("eval loss decreases monotonically along the decay",
             loss[1:], loss[:-1],
             [f"{a} -> {b}" for a, b in zip(keys, keys[1:])])
  out = {"dip": c1, "monotone": c2}
  first, last = keys[0], keys[-1]
  for name in ("sharpness", "precond_sharpness"):
    v = {k: [r["points"][k][name]["value"] for r in per_seed] for k in keys}
    out[f"{name}_rises"] = claim(f"{name} rises along the decay "
                                 f"({first} < {last})", [v[first]], [v[last]],
                                 [f"{first} - {last}"])
    out[f"{name}_falls"] = claim(f"{name} falls along the decay "
                                 f"({last} < {first})", [v[last]], [v[first]],
                                 [f"{last} - {first}"])
  # Descriptive: the fork-to-end section's dip and the decay sections'.
  out["fork_to_end_dip"] = paired([r["sections"][n]["dip"] for r in per_seed],
                                  zeros)
  conv = [pt[name]["converged"] for r in per_seed
          for pt in r["points"].values()
          for name in ("sharpness", "precond_sharpness")]
  out["power_iterations_converged"] = f"{sum(conv)}/{len(conv)}"
  # How close to the stability thresholds (descriptive): the largest
  # sharpness * lr / 2 and preconditioned sharpness * lr / 38 measured.
  pts = [pt for r in per_seed for pt in r["points"].values()]
  lr = lambda pt: p.lr_at((pt["kind"], pt["step"]))
  out["edge_ratio"] = {
      "sharpness_over_2_per_lr": max(pt["sharpness"]["value"] * lr(pt) / 2
                                     for pt in pts),
      "precond_over_38_per_lr": max(
          pt["precond_sharpness"]["value"] * lr(pt) * (1 - ADAM_B1)
          / (2 + 2 * ADAM_B1) for pt in pts)}
  return out


# ---------------------------------------------------------------- report

def section_figure(p: Plan, per_seed: list[dict], path: str) -> str:
  """Cross-sections: stable pairs (left), fork -> decayed end and the decay
  sections (right); seed 0 solid, others faint."""
  fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
  groups = [("stable",), ("fork_to_end", "decay")]
  for ax, kinds in zip(axes, groups):
    secs = [s for s in per_seed[0]["sections"] if s["kind"] in kinds]
    colors = plots.palette(len(secs))
    for j, r in enumerate(per_seed):
      mine = [s for s in r["sections"] if s["kind"] in kinds]
      for c, s in zip(colors, mine):
        ax.plot(p.alphas, s["losses"], "-o" if j == 0 else "-", ms=3,
                color=c, alpha=1.0 if j == 0 else 0.35, lw=1.2,
                label=s["label"] if j == 0 else None)
    for x in (0, 1):
      ax.axvline(x, color="0.6", lw=0.6, ls=":")
    ax.set(xlabel="alpha: (1 - alpha) theta_A + alpha theta_B",
           ylabel="eval loss (fixed held-out set)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  axes[0].set_title("between stable checkpoints (constant LR)")
  axes[1].set_title("within the decay")
  fig.suptitle("Toy illustration: GPT loss cross-sections "
               f"({len(per_seed)} seeds; seed {p.seeds[0]} marked)")
  return plots.save(fig, path)


def sharpness_figure(p: Plan, per_seed: list[dict], path: str) -> str:
  """Sharpness (left) and preconditioned sharpness vs 38/lr (right) at the
  checkpoints, by step (stable and along the decay)."""
  fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
  for ax, name in zip(axes, ("sharpness", "precond_sharpness")):
    for kind, marker in (("stable", "o"), ("decay", "s")):
      for j, r in enumerate(per_seed):
        pts = sorted((v["step"], v[name]["value"]) for v in
                     r["points"].values() if v["kind"] == kind)
        if kind == "decay":
          fork = r["points"][f"stable{p.fork}"]
          pts = [(p.fork, fork[name]["value"])] + pts
        x, y = zip(*pts)
        ax.plot(x, y, "-" + marker, ms=4, alpha=0.8,
                color=plots.palette(2)[kind == "decay"],
                label=f"{kind}" if j == 0 else None)
    ax.set(xlabel="step", ylabel=f"top eigenvalue ({name})")
    ax.grid(alpha=0.3)
  steps = np.arange(p.stable_steps[0], p.fork + p.decay_steps + 1)
  thr = [(2 + 2 * ADAM_B1) / ((1 - ADAM_B1) * p.lr_at(
      ("stable" if s <= p.fork else "decay", s))) for s in steps]
  axes[1].plot(steps, thr, "k--", lw=0.8, label="38 / lr (Adam stability)")
  axes[1].set_yscale("log")
  axes[0].set_title("Hessian top eigenvalue (training loss)")
  axes[1].set_title("preconditioned: top eigenvalue of P^-1 H")
  for ax in axes:
    ax.legend(fontsize=7)
  fig.suptitle("Toy illustration: sharpness at checkpoints "
               f"({len(per_seed)} seeds)")
  return plots.save(fig, path)


def _ci(t: dict, d: int = 4) -> str:
  return f"{t['mean']:+.{d}f} [{t['ci'][0]:+.{d}f}, {t['ci'][1]:+.{d}f}]"


def claim_table(c: dict) -> str:
  return reports.markdown_table(
      ["part", "per seed", f"mean [{LEVEL:.0%} CI]", "verdict"],
      [[q["part"], ", ".join(f"{x:+.4f}" for x in q["per_seed"]), _ci(q),
        q["verdict"]] for q in c["parts"]])


def markdown(r: dict) -> str:
  p, a, per = r["plan"], r["analysis"], r["per_seed"]
  keys = sorted(per[0]["points"], key=lambda k: (per[0]["points"][k]["step"],
                                                 k.startswith("decay")))
  def mean_std(vals):
    return common.fmt(*common.mean_std(vals), digits=3)
  rows = []
  for k in keys:
    pts = [x["points"][k] for x in per]
    lr = pts[0]["lr"]
    rows.append([k, f"{lr:.2e}", mean_std([q["eval_loss"] for q in pts]),
                 mean_std([q["sharpness"]["value"] for q in pts]),
                 f"{2 / lr:.0f}" if lr > 0 else "inf",
                 mean_std([q["precond_sharpness"]["value"] for q in pts]),
                 f"{(2 + 2 * ADAM_B1) / ((1 - ADAM_B1) * lr):.0f}"
                 if lr > 0 else "inf"])
  at = list(np.round(r["alphas"], 6))
  i0, i5, i1 = at.index(0.0), at.index(0.5), at.index(1.0)
  sec_rows = []
  for i in range(len(per[0]["sections"])):
    ss = [x["sections"][i] for x in per]
    inner = (", ".join(
        f"{al}: {mean_std([s['inner_sharpness'][j] for s in ss])}"
        for j, al in enumerate(ss[0]["inner_alphas"])) or "-")
    sec_rows.append([ss[0]["label"],
                     *[mean_std([s["losses"][k] for s in ss])
                       for k in (i0, i5, i1)],
                     _ci(paired([s["dip"] for s in ss], [0.0] * len(ss))),
                     inner])
  lines = [
      "# Valley cross-sections and sharpness on GPT nano\n",
      "**Toy illustration.** " + r["regime"] + "\n",
      "Issue #15 item 5: the river-valley study's cross-sections are drawn "
      "on a bigram table, whose loss is convex, so they cannot show a "
      "valley. Here the same measurements run on a (non-convex) GPT.\n",
      "## Setup\n",
      f"- Model: GPT decoder, {p['num_layers']} layers, d_model "
      f"{p['d_model']}, {p['num_heads']} heads, RoPE, tied embeddings, "
      f"byte vocabulary (256); {r['num_params']:,} parameters, float32.",
      f"- Data: stdlib docstring corpus ({r['corpus']['bytes']:,} bytes, "
      f"Python {r['corpus'].get('python', '?')}), sequences of "
      f"{p['seq_len']} bytes, batch {p['batch']}.",
      f"- Optimizer: AdamW (b1 0.9, b2 0.95, weight decay 0.1, clip 1), "
      f"peak LR {p['peak_lr']}, linear warmup {p['warmup_steps']} steps, "
      f"then constant to step {p['stable_steps'][-1]} (main run); "
      f"checkpoints at the stable steps {p['stable_steps']}.",
      f"- Decay branch: linear to 0 over {p['decay_steps']} steps from step "
      f"{p['fork']} (ends at {p['fork'] + p['decay_steps']}), checkpoints "
      f"every {p['decay_every']}.",
      f"- Seeds {p['seeds']} (initialisation and data order).",
      f"- Cross-sections: eval loss on one fixed held-out set of "
      f"{p['eval_rows']} x {p['seq_len']} bytes, at {p['points']} alphas "
      "in [-0.25, 1.25]; midpoint dip = (L(0) + L(1))/2 - L(0.5).",
      f"- Sharpness: top Hessian eigenvalue of the training loss on a fixed "
      f"set of {p['hessian_rows']} training rows (the same for every point), "
      "power iteration on forward-over-reverse HVPs in float32, relative "
      f"residual tol {p['tol']}, at most {p['max_iters']} iterations "
      f"({a['power_iterations_converged']} converged at the checkpoints). "
      "Preconditioned: top eigenvalue of P^-1 H with Adam's P = "
      "sqrt(nu_hat) + eps from each checkpoint's optimizer state; Adam is "
      "stable below (2 + 2 b1) / ((1 - b1) lr) = 38 / lr (Cohen et al., "
      "arXiv 2207.14484). 2 / lr is gradient descent's threshold, shown "
      "for reference only: the raw sharpness does not govern Adam.",
      f"- Command: `python -m experiments.gpt_valley --workdir=DIR"
      f"{' --quick' if r['quick'] else ''}`. Time recorded when the work "
      f"was done: training {r['recorded']['train_main_s']:.0f} s (main "
      f"runs, seeds as one vmapped program; the trainer's train_time_s, "
      f"without evaluation and checkpointing) + "
      f"{r['recorded']['train_decay_s']:.0f} s (decay branches), measuring "
      + ", ".join(f"{x:.0f}" for x in r['recorded']['measure_s_per_seed'])
      + f" s per seed. This invocation: {r['wall_s']:.0f} s (work already "
      f"done is reused) on {r['machine']}; load average (1, 5, 15 min) at "
      f"start {r['load_start']}, at end {r['load_end']}."
      + (f" {r['note']}" if r.get("note") else "") + "\n",
      "## Verdicts\n",
      "Each claim is `mean(d) < 0` over seeds for per-seed paired "
      "differences d (95% Student-t interval): **reproduced** if the "
      "interval is wholly below 0, **refuted** if wholly at or above, else "
      "inconclusive; a claim of several parts combines them.\n",
      *[f"- {a[k]['claim']}: **{a[k]['verdict']}**" for k in
        ("dip", "monotone", "sharpness_rises", "sharpness_falls",
         "precond_sharpness_rises", "precond_sharpness_falls")],
      f"- (descriptive) midpoint dip of the section fork -> decayed end: "
      f"{_ci(a['fork_to_end_dip'])}\n",
      "## (i) Midpoint dip between consecutive stable checkpoints\n",
      "d = -dip (the claim: d < 0).\n",
      claim_table(a["dip"]),
      "## (ii) Eval loss along the decay\n",
      "d = L(next) - L(previous) (the claim: d < 0).\n",
      claim_table(a["monotone"]),
      "## (iii) Sharpness along the decay\n",
      *[f"{a[k]['claim']}:\n\n{claim_table(a[k])}" for k in
        ("sharpness_rises", "sharpness_falls", "precond_sharpness_rises",
         "precond_sharpness_falls")],
      "## Checkpoints (mean ± std over seeds)\n",
      reports.markdown_table(["point", "lr", "eval loss", "sharpness",
                              "2/lr", "precond. sharpness", "38/lr"], rows),
      "## Cross-sections (mean ± std over seeds)\n",
      reports.markdown_table(["segment", "L(0)", "L(0.5)", "L(1)",
                              "dip mean [95% CI]",
                              "sharpness inside (alpha: value)"], sec_rows),
      f"![cross-sections]({r['figures']['sections']})\n",
      f"![sharpness]({r['figures']['sharpness']})\n",
      "## What it means\n",
      r["meaning"] + "\n"]
  return "\n".join(lines)


def meaning(a: dict) -> str:
  """Text that follows the computed verdicts (no verdict is typed by
  hand)."""
  v = {k: a[k]["verdict"] for k in a if isinstance(a[k], dict) and
       "verdict" in a[k]}
  out = []
  out.append(
      "A positive midpoint dip means the straight line between two stable "
      "checkpoints passes below both ends, as it does when the iterates sit "
      "on opposite walls of a valley whose floor is lower than where the "
      f"constant LR holds them; claim (i): {v['dip']}.")
  out.append(
      "Claim (ii), the eval loss falls between every two consecutive decay "
      f"checkpoints: {v['monotone']} (a part whose interval crosses 0 makes "
      "it inconclusive).")
  out.append(
      f"Raw sharpness rises along the decay: {v['sharpness_rises']}; falls: "
      f"{v['sharpness_falls']}. Preconditioned sharpness rises: "
      f"{v['precond_sharpness_rises']}; falls: "
      f"{v['precond_sharpness_falls']}. For gradient descent the "
      "edge-of-stability picture predicts the sharpness to rise toward 2/lr "
      "as the LR falls; Adam's update is P^-1 g, so what its stability sees "
      "is the preconditioned sharpness against 38/lr, and P itself changes "
      "during the decay (nu tracks the shrinking gradients), so the raw and "
      "preconditioned sharpness need not move together. The table's 2/lr "
      "and 38/lr columns show how far each measurement is from its "
      "threshold: at most "
      f"{a['edge_ratio']['sharpness_over_2_per_lr']:.1%} of 2/lr (raw) and "
      f"{a['edge_ratio']['precond_over_38_per_lr']:.1%} of 38/lr "
      "(preconditioned) here, so these runs are not at the edge of "
      "stability and the thresholds do not explain the direction measured."
      if max(a["edge_ratio"].values()) < 0.5 else
      "and 38/lr columns show how far each measurement is from its "
      "threshold: at most "
      f"{a['edge_ratio']['sharpness_over_2_per_lr']:.1%} of 2/lr (raw) and "
      f"{a['edge_ratio']['precond_over_38_per_lr']:.1%} of 38/lr "
      "(preconditioned).")
  out.append("These are small runs on one CPU (toy illustration), not "
             "evidence about LLM pretraining at scale.")
  return " ".join(out)


def recorded(p: Plan, root: str, per_seed: list[dict]) -> dict:
  """Seconds spent when the work was done (a rerun reuses it): training
  from the runs' logs (``train_time_s``, the seeds trained as one program),
  measuring per seed from the cache."""
  def last(d):
    t = runs.Run(d).column("train_time_s")[1]
    return float(t[-1]) if len(t) else float("nan")
  return {"train_main_s": last(main_dir(root, p.seeds[0])),
          "train_decay_s": last(decay_dir(root, p.seeds[0])),
          "measure_s_per_seed": [float(r.get("seconds", float("nan")))
                                 for r in per_seed]}


def machine() -> str:
  return f"{platform.machine()} CPU, {os.cpu_count()} cores (shared)"


def load() -> str:
  try:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())
  except OSError:
    return "n/a"


def run(workdir: str, quick: bool = False, plan_: Plan | None = None) -> dict:
  """Trains (resumes), measures, analyses; writes ``report.md``,
  ``results.json``, ``gpt_valley_sections.png`` and
  ``gpt_valley_sharpness.png`` to ``workdir``; returns the results."""
  start, load_start = time.perf_counter(), load()
  p = plan_ or plan(quick)
  train(p, workdir)
  t_train = time.perf_counter() - start
  per_seed = measure(p, workdir)
  t_measure = time.perf_counter() - start - t_train
  for r in per_seed:  # from the plan (measurements cached by older code)
    for pt in r["points"].values():
      pt["lr"] = p.lr_at((pt["kind"], pt["step"]))
  a = analyse(p, per_seed)
  figs = {"sections": section_figure(
              p, per_seed, rundir.join(workdir, "gpt_valley_sections.png")),
          "sharpness": sharpness_figure(
              p, per_seed, rundir.join(workdir, "gpt_valley_sharpness.png"))}
  cfg = rundir.read_config(main_dir(workdir, p.seeds[0]))
  n_params = per_seed[0]["num_params"]
  results = {
      "plan": _jsonable(dataclasses.asdict(p)), "quick": quick,
      "alphas": p.alphas.tolist(),
      "regime": ("A GPT decoder of "
                 f"{n_params:,} parameters trained for "
                 f"{p.fork + p.decay_steps} steps of {p.batch} x "
                 f"{p.seq_len} bytes on a CPU; LLM pretraining is billions "
                 "of tokens on models 10^4 times larger."),
      "num_params": n_params, "corpus": corpus.describe(cfg["data"]["paths"]),
      "per_seed": per_seed, "analysis": a, "meaning": meaning(a),
      "figures": {k: os.path.basename(v) for k, v in figs.items()},
      "train_s": t_train, "measure_s": t_measure,
      "recorded": recorded(p, workdir, per_seed),
      "wall_s": time.perf_counter() - start, "machine": machine(),
      "load_start": load_start, "load_end": load()}
  rundir.write_json(rundir.join(workdir, "results.json"), results)
  rundir.write_text(rundir.join(workdir, "report.md"), markdown(results))
  return results
