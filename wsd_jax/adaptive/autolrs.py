"""AutoLRS (Jin et al., arXiv 2105.10762): a controller that sets the LR of a
run stage by stage, on top of run specs.

Stage ``j`` starts at step ``s_j`` of the main run (``WORKDIR``), whose
checkpoint there is the snapshot (train state and data-iterator position;
stage 0 starts from the config's initial state). ``k`` trials
(``WORKDIR/autolrs/stage_J/trial_I``, ordinary run directories forked from
``s_j``) each train ``tau'_j`` steps at a constant LR from the snapshot, so
they read the same batches; the forecast of each one's loss after ``tau_j``
steps (``autolrs_search.forecast``: ``a exp(b t) + c`` on the spline-denoised
training loss) is the objective of the search; the explored LR with the
lowest forecast is then *exploited*: the main run restarts from the
snapshot, as in the authors' code, and trains ``tau_j`` steps at it. Then
``tau'`` and ``tau`` double, up to ``tau_max`` for ``tau`` (``tau'`` stops
doubling with it); the last stage is cut at ``config.train.steps``.

Variants (each a small strategy that explores one stage):

* ``"autolrs"`` — the paper's: the ``k`` LRs are proposed one after another
  by Bayesian optimisation (``autolrs_search.GPLCB``: a GP over the log-LR
  with the lower-confidence-bound acquisition, one random initial point,
  recreated each stage), each trial a run of its own.
* ``"autolrs_grid"`` — not the paper's algorithm: the ``k`` LRs of a stage
  are proposed at once, evenly spaced in log-LR (stage 0: over the whole
  ``lr_bounds``; later stages: over one decade centred on the previous
  stage's LR, shifted into the bounds), and trained as ONE vmapped
  population (``train.train_specs`` stacks equal-length branches of one
  checkpoint into one program). Same forecast and choice; no sequential
  search, so a stage costs one program instead of ``k``.

Compute: every optimizer step counts, exploration included. The main run's
``metrics.jsonl`` rows carry ``compute_steps`` (its steps plus ``k * tau'``
of every stage begun); its ``lr`` is the exploited LR, and its effective
schedule (``run.json``) is a splice of constants, one per stage. Its
``run.json`` records ``method`` and the parameters under ``autolrs``, and
its name gains ``(VARIANT)``, so ``python -m experiments.runs`` shows it.

Records (written whole with ``rundir.write_json``; rerunning the same
command resumes and reuses every finished trial)::

    WORKDIR/autolrs/controller.json       variant, k, tau', tau, tau_max, bounds
    WORKDIR/autolrs/stage_J/stage.json    steps, each trial's LR, loss series,
                                          forecast (a, b, c, value), how it was
                                          proposed, the choice, done flags
    WORKDIR/autolrs/stage_J/trial_I/      the trial's run directory (its
                                          parent: the main run, ../../..)

Defaults scaled to short runs (a deviation from the paper, whose values are
for runs of 10^5 steps and more: ``k = 10``, ``tau' = 100``, ``tau = 1000``,
``tau_max = 8000``): ``k = 10``, ``tau = config.train.steps // 8``,
``tau' = max(tau // 10, 5)`` (the paper's ratio), ``tau_max =
config.train.steps // 2``; ``lr_bounds`` default to ``peak / 100 .. peak *
10`` around ``config.schedule.peak_value``. Other deviations: the forecast
always uses the training loss (the paper switches to the validation loss,
evaluated every ``tau' / 16`` steps, once ``tau`` reaches ``tau_max``), and
there is no warmup before the first stage. Trials train with
``skip_nonfinite``: a trial with a non-finite loss is told to the search as
``1e6`` (the authors' value) and never chosen.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import ml_collections
import numpy as np

from wsd_jax import runs, schedules
from wsd_jax.adaptive import autolrs_search as search
from wsd_jax.runs import rundir

VARIANTS = ("autolrs", "autolrs_grid")
PAPER = dict(k=10, tau_prime=100, tau=1000, tau_max=8000)
DIVERGED = 1e6          # what a trial with a non-finite loss is told as
GRID_DECADES = 1.0      # autolrs_grid: width of a later stage's grid
RECORDS = "autolrs"     # WORKDIR/RECORDS/...
FORMAT = 1


@dataclasses.dataclass(frozen=True)
class Params:
  """What an AutoLRS run is, checked (:func:`params`)."""
  variant: str
  k: int
  tau_prime: int
  tau: int
  tau_max: int
  lr_bounds: tuple[float, float]

  def to_json(self) -> dict:
    return dict(dataclasses.asdict(self), lr_bounds=list(self.lr_bounds))


@dataclasses.dataclass(frozen=True)
class Stage:
  index: int
  start: int       # the main run's step at the snapshot
  tau: int         # exploit steps (the last stage's are cut at train.steps)
  tau_prime: int   # steps of each trial


def _int(name: str, value: Any, minimum: int) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
      or value < minimum:
    raise ValueError(f"{name}={value!r} must be an integer >= {minimum}")
  return int(value)


def params(config: ml_collections.ConfigDict, variant: str = "autolrs",
           k: int | None = None, tau_prime: int | None = None,
           tau: int | None = None, tau_max: int | None = None,
           lr_bounds: tuple[float, float] | None = None) -> Params:
  """The run's parameters, defaults filled in (see the module docstring).

  Raises:
    ValueError: naming the bad value.
  """
  if variant not in VARIANTS:
    raise ValueError(f"variant={variant!r} is not an AutoLRS variant; known: "
                     f"{', '.join(VARIANTS)}")
  steps = _int("config.train.steps", config.train.steps, 1)
  k = _int("k", 10 if k is None else k, 2)
  tau = _int("tau", max(steps // 8, 1) if tau is None else tau, 1)
  tau_prime = _int("tau_prime", max(tau // 10, search.MIN_POINTS)
                   if tau_prime is None else tau_prime, search.MIN_POINTS)
  tau_max = _int("tau_max", max(steps // 2, tau) if tau_max is None
                 else tau_max, 1)
  if tau_max < tau:
    raise ValueError(f"tau_max={tau_max} must be >= tau={tau}")
  if lr_bounds is None:
    peak = config.schedule.get("peak_value")
    if peak is None:
      raise ValueError("lr_bounds: config.schedule has no peak_value to "
                       "center default bounds on; pass lr_bounds=(lo, hi)")
    lr_bounds = (float(peak) / 100, float(peak) * 10)
  try:
    lo, hi = (float(v) for v in lr_bounds)
  except (TypeError, ValueError):
    raise ValueError(f"lr_bounds={lr_bounds!r} must be two numbers "
                     "(lo, hi)") from None
  if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo < hi):
    raise ValueError(f"lr_bounds={lr_bounds!r} must satisfy 0 < lo < hi "
                     "(finite)")
  return Params(variant, k, tau_prime, tau, tau_max, (lo, hi))


def plan(steps: int, p: Params) -> list[Stage]:
  """The stages: ``tau_j = min(tau * 2**j, tau_max)``; ``tau'_j = tau' *
  2**d`` with ``d`` the full doublings ``tau`` made (so ``tau'`` stops
  doubling when ``tau`` is capped); the last stage ends at ``steps``."""
  out, start, j = [], 0, 0
  doublings = 0
  while p.tau * 2 ** (doublings + 1) <= p.tau_max:
    doublings += 1
  while start < steps:
    tau = min(p.tau * 2 ** j, p.tau_max, steps - start)
    out.append(Stage(j, start, tau, p.tau_prime * 2 ** min(j, doublings)))
    start, j = start + tau, j + 1
  return out


def compute_steps(step: int, stages: list[Stage], k: int) -> int:
  """Optimizer steps spent when the main run is at ``step``: its own plus
  ``k * tau'`` of every stage begun before it."""
  return int(step) + sum(k * s.tau_prime for s in stages if s.start < step)


# ----------------------------------------------------------------------------
# Records


def records_dir(workdir: str) -> str:
  return rundir.join(workdir, RECORDS)


def stage_dir(workdir: str, index: int) -> str:
  return rundir.join(records_dir(workdir), f"stage_{index}")


def trial_dir(workdir: str, stage: int, trial: int) -> str:
  return rundir.join(stage_dir(workdir, stage), f"trial_{trial}")


def stage_path(workdir: str, index: int) -> str:
  return rundir.join(stage_dir(workdir, index), "stage.json")


def read_stages(workdir: str) -> list[dict]:
  """The stage records of an AutoLRS run, in order (for studies)."""
  out, j = [], 0
  while rundir.exists(stage_path(workdir, j)):
    out.append(rundir.read_json(stage_path(workdir, j)))
    j += 1
  return out


def _check_controller(workdir: str, p: Params) -> None:
  """Writes ``controller.json`` of a new run; refuses a rerun with other
  parameters or a workdir that holds another kind of run."""
  path = rundir.join(records_dir(workdir), "controller.json")
  want = dict(p.to_json(), format=FORMAT)
  if rundir.exists(path):
    have = rundir.read_json(path)
    if have != want:
      diff = "; ".join(f"{key}: {have.get(key)!r} -> {v!r}"
                       for key, v in want.items() if have.get(key) != v)
      raise ValueError(f"{workdir} holds an AutoLRS run with other "
                       f"parameters ({diff}); rerun with the same flags or "
                       "use a new --workdir")
    return
  if rundir.is_run(workdir):
    raise ValueError(f"{workdir} holds a run that is not an AutoLRS run; use "
                     "a new --workdir")
  rundir.write_json(path, want)


def _losses(workdir: str, start: int, steps: int) -> list[float | None]:
  """The training loss of each step ``start+1 .. start+steps`` (None where
  it was not finite)."""
  by_step = {r["step"]: r.get("loss") for r in rundir.read_metrics(workdir)}
  return [by_step.get(start + t + 1) for t in range(steps)]


def _trial_record(workdir: str, stage: Stage, trial: int, lr: float,
                  proposal: dict) -> dict:
  """A finished trial: its LR, losses and forecast of the stage's end."""
  tdir = trial_dir(workdir, stage.index, trial)
  losses = _losses(tdir, stage.start, stage.tau_prime)
  record = {"trial": trial, "lr": lr, "workdir": f"trial_{trial}",
            "losses": losses, "proposal": proposal, "forecast": None,
            "diverged": True, "told": DIVERGED}
  if all(v is not None for v in losses):
    try:
      f = search.forecast(losses, stage.tau)
    except ValueError:
      return record
    if math.isfinite(f.value):
      record.update(forecast=f._asdict(), diverged=False, told=f.value)
  return record


def _choose(trials: list[dict]) -> dict:
  """The explored LR with the lowest forecast (the authors' rule); if every
  trial diverged, the smallest LR tried."""
  ok = [t for t in trials if not t["diverged"]]
  if not ok:
    best = min(trials, key=lambda t: t["lr"])
    return {"lr": best["lr"], "trial": best["trial"], "forecast": None,
            "rule": "all trials diverged: the smallest LR"}
  best = min(ok, key=lambda t: (t["told"], t["lr"]))
  return {"lr": best["lr"], "trial": best["trial"], "forecast": best["told"],
          "rule": "lowest forecast"}


# ----------------------------------------------------------------------------
# The controller


class _Controller:
  """Trains the stages of one AutoLRS run (see the module docstring)."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: str,
               p: Params):
    from wsd_jax import train  # the trainer imports wsd_jax.adaptive
    self.train = train
    self.config, self.workdir, self.p = config, workdir, p
    self.stages = plan(int(config.train.steps), p)

  # -- configs and specs --------------------------------------------------

  def _config(self, lr: float, steps: int, **train_fields
              ) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict(self.config.to_dict())
    c.schedule = ml_collections.ConfigDict(
        schedules.to_config(schedules.constant(float(lr))))
    c.train.steps = int(steps)
    c.train.update(train_fields)
    return c

  def trial_spec(self, stage: Stage, trial: int, lr: float) -> runs.RunSpec:
    """A trial: ``tau'`` steps at ``lr`` from the stage's snapshot, every
    step's loss logged."""
    t = stage.tau_prime
    config = self._config(lr, stage.start + t, log_every=1, eval_every=t,
                          checkpoint_every=t, keep_last=1, keep_every=0,
                          keep_steps=(), skip_nonfinite=True, progress=False,
                          plots=False)
    start = None
    if stage.start:
      start = runs.Start(rundir.checkpoint_dir(self.workdir), stage.start,
                         schedule=runs.Run(self.workdir).schedule)
    return runs.RunSpec(config, trial_dir(self.workdir, stage.index, trial),
                        start, {"parent": "../../..",
                                "fork_step": stage.start})

  def _mark_trial(self, stage: Stage, trial: int, lr: float) -> None:
    tdir = trial_dir(self.workdir, stage.index, trial)
    lineage = rundir.read_run(tdir)
    lineage["autolrs_trial"] = {"variant": self.p.variant,
                                "stage": stage.index, "trial": trial,
                                "lr": lr}
    rundir.write_json(rundir.run_path(tdir), lineage)

  def train_trials(self, stage: Stage, lrs: dict[int, float]
                   ) -> dict | None:
    """Trains trials ``{index: lr}`` (all in one ``train_specs`` call);
    returns the summary of a signal stop, else None."""
    results = self.train.train_specs(
        [self.trial_spec(stage, i, lr) for i, lr in lrs.items()])
    for r in results:
      if r.get("stopped_by"):
        return r
    for i, lr in lrs.items():
      self._mark_trial(stage, i, lr)
    return None

  # -- stages ---------------------------------------------------------------

  def _record(self, stage: Stage) -> dict:
    path = stage_path(self.workdir, stage.index)
    if rundir.exists(path):
      record = rundir.read_json(path)
      have = (record["start_step"], record["tau"], record["tau_prime"])
      if have != (stage.start, stage.tau, stage.tau_prime):
        raise ValueError(
            f"{self.workdir}: stage {stage.index} was run as (start, tau, "
            f"tau') = {have}, but config.train.steps="
            f"{self.config.train.steps} plans "
            f"{(stage.start, stage.tau, stage.tau_prime)}; rerun with the "
            "train.steps of the first run or use a new --workdir")
      return record
    return {"stage": stage.index, "start_step": stage.start,
            "tau": stage.tau, "tau_prime": stage.tau_prime,
            "variant": self.p.variant, "k": self.p.k,
            "lr_bounds": list(self.p.lr_bounds), "trials": [],
            "pending": None, "choice": None, "exploited": False}

  def save(self, record: dict) -> None:
    rundir.write_json(stage_path(self.workdir, record["stage"]), record)

  def exploit(self, stage: Stage, lr: float) -> dict:
    """The main run from the snapshot: ``tau`` steps at ``lr``."""
    keep = sorted(set(self.config.train.keep_steps)
                  | {s.start for s in self.stages if 0 < s.start})
    config = self._config(lr, stage.start + stage.tau, keep_steps=tuple(keep))
    summary = self.train.train_and_evaluate(
        config, self.workdir, allow_changes=("schedule",))
    lineage = rundir.read_run(self.workdir)
    lineage.update(method=self.p.variant, autolrs=dict(
        self.p.to_json(), records=RECORDS))
    rundir.write_json(rundir.run_path(self.workdir), lineage)
    self.annotate()
    return summary

  def annotate(self) -> None:
    """Adds ``compute_steps`` to every row of the main run's metrics."""
    path = rundir.join(self.workdir, rundir.METRICS)
    rows = rundir.read_metrics(self.workdir)
    for row in rows:
      row["compute_steps"] = compute_steps(row["step"], self.stages,
                                           self.p.k)
    rundir.write_text(path, "".join(
        json.dumps(r) + "\n" for r in rows))

  def run(self) -> dict:
    _check_controller(self.workdir, self.p)
    strategy = STRATEGIES[self.p.variant]
    summary, previous = None, None
    for stage in self.stages:
      record = self._record(stage)
      if record["choice"] is None:
        stopped = strategy(self, stage, record, previous)
        if stopped is not None:  # a signal stopped a trial: rerun resumes
          return {"workdir": self.workdir, "stage": stage.index,
                  "stopped_by": stopped["stopped_by"]}
        record.update(choice=_choose(record["trials"]), pending=None)
        self.save(record)
      if not record["exploited"]:
        summary = self.exploit(stage, record["choice"]["lr"])
        if summary.get("stopped_by"):
          return summary
        record["exploited"] = True
        self.save(record)
      previous = record
    if summary is None:  # everything was done before
      summary = dict(runs.Run(self.workdir).metrics[-1],
                     workdir=self.workdir)
    last = self.stages[-1]
    return dict(summary, variant=self.p.variant,
                compute_steps=compute_steps(last.start + last.tau,
                                            self.stages, self.p.k),
                lrs=[r["choice"]["lr"] for r in read_stages(self.workdir)])


def _bayesian(ctl: _Controller, stage: Stage, record: dict,
              previous: dict | None) -> dict | None:
  """``autolrs``: k trials one after another, each proposed by GP-LCB."""
  del previous
  bounds = tuple(ctl.p.lr_bounds)
  bo = search.GPLCB(seed=int(ctl.config.seed) * 1000 + stage.index)
  for t in record["trials"]:
    bo.tell(search.to_unit(t["lr"], bounds), t["told"])
  while len(record["trials"]) < ctl.p.k:
    i = len(record["trials"])
    if record["pending"] is None:  # a rerun trains the LR it was given
      u = bo.ask()
      record["pending"] = {"trial": i, "lr": search.from_unit(u, bounds),
                           "proposal": dict(bo.last, u=u)}
      ctl.save(record)
    lr, proposal = record["pending"]["lr"], record["pending"]["proposal"]
    if (stopped := ctl.train_trials(stage, {i: lr})) is not None:
      return stopped
    trial = _trial_record(ctl.workdir, stage, i, lr, proposal)
    record["trials"].append(trial)
    record["pending"] = None
    ctl.save(record)
    bo.tell(search.to_unit(lr, bounds), trial["told"])
  return None


def grid_lrs(k: int, bounds: tuple[float, float],
             center: float | None = None) -> list[float]:
  """``autolrs_grid``'s proposals: ``k`` LRs evenly spaced in log-LR (bin
  centres) over ``bounds``, or over ``GRID_DECADES`` decades centred on
  ``center`` (shifted to lie inside ``bounds``)."""
  lo, hi = 0.0, 1.0
  if center is not None:
    width = GRID_DECADES / math.log10(bounds[1] / bounds[0])
    if width < 1:
      c = search.to_unit(center, bounds)
      lo = min(max(c - width / 2, 0.0), 1.0 - width)
      hi = lo + width
  return [search.from_unit(lo + (hi - lo) * (i + 0.5) / k, bounds)
          for i in range(k)]


def _grid(ctl: _Controller, stage: Stage, record: dict,
          previous: dict | None) -> dict | None:
  """``autolrs_grid``: the k LRs at once, trained as one population."""
  if record["pending"] is None:
    center = previous["choice"]["lr"] if previous else None
    record["pending"] = {"lrs": grid_lrs(ctl.p.k, ctl.p.lr_bounds, center),
                         "center": center}
    ctl.save(record)
  lrs = record["pending"]["lrs"]
  if (stopped := ctl.train_trials(stage, dict(enumerate(lrs)))) is not None:
    return stopped
  proposal = {"proposed_by": "grid", "center": record["pending"]["center"],
              "population": ctl.p.k}
  record["trials"] = [_trial_record(ctl.workdir, stage, i, lr, proposal)
                      for i, lr in enumerate(lrs)]
  return None


STRATEGIES = {"autolrs": _bayesian, "autolrs_grid": _grid}


def train(config: ml_collections.ConfigDict, workdir: str, *,
          variant: str = "autolrs", k: int | None = None,
          tau_prime: int | None = None, tau: int | None = None,
          tau_max: int | None = None,
          lr_bounds: tuple[float, float] | None = None) -> dict:
  """Trains ``config`` with AutoLRS in ``workdir``; rerunning resumes.

  Trains until ``config.train.steps`` exploit (kept) steps, with
  ``config.optimizer`` as the base optimizer whose LR AutoLRS sets
  (``config.schedule`` only gives the default ``lr_bounds``).

  Args:
    config: a config as in ``configs/`` (no ``population``).
    workdir: the main run's directory.
    variant: ``"autolrs"`` (the paper's sequential BO) or
      ``"autolrs_grid"`` (one vmapped population per stage).
    k: LRs tried per stage.
    tau_prime, tau, tau_max: trial steps, exploit steps of the first stage,
      the cap of the exploit steps.
    lr_bounds: ``(lo, hi)``, the LRs searched.

  Returns:
    The main run's summary (as ``train.train_and_evaluate``'s: ``step``,
    ``eval_loss``, ...) with ``compute_steps`` (all optimizer steps,
    exploration included), ``variant`` and ``lrs`` (the LR of each stage);
    ``stopped_by`` if a signal stopped it.

  Raises:
    ValueError: for an unknown variant, bad ``k``, ``tau``s or bounds, or a
      bad config, before anything is trained or written.
  """
  from wsd_jax.train import config as config_lib
  from wsd_jax.train import population
  p = params(config, variant, k, tau_prime, tau, tau_max, lr_bounds)
  if population.is_population(config):
    raise ValueError("config.population: AutoLRS trains one run; clear "
                     "config.population.grid/members")
  config_lib.validate(config)
  return _Controller(config, workdir, p).run()
