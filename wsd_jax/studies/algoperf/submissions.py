"""Submissions: an optimizer, a schedule family and a search space.

A submission's search space (AlgoPerf's JSON format, ``search.py``) is the
same on every workload; a hyperparameter point becomes a trainer config
through ``build``. In the benchmark, schedules span the workload's budget
``max_steps`` (``>= step_hint``; its target was set by a cosine over
``0.75 * step_hint``, so a tuned submission has room, as in AlgoPerf).
Searched values are schedule leaves or numeric optimizer arguments
(``optimizer_point``), so a study's trials train as one vmapped population
(``train.train_specs``).

``kind`` says how a study trains: ``population`` (the above); ``refined``
(the refined schedule of the same study's best ``source`` trial, ``peak_scale``
times its peak; with ``runs_of`` the same runs as that submission, the
source trial's steps and seconds added to the time: see ``adaptive.py``); ``autolrs`` (one AutoLRS run per trial).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import ml_collections

from wsd_jax import schedules
from wsd_jax.train.config import with_schedule

LR = {"learning_rate": {"min": 1e-3, "max": 1.0, "scaling": "log"}}
WARMUP = {"warmup_fraction": {"min": 0.02, "max": 0.1, "scaling": "linear"}}
DECAY = {"decay_fraction": {"min": 0.1, "max": 0.4, "scaling": "linear"}}
ADAMW = dict(name="adamw", b1=0.9, b2=0.95, weight_decay=0.0)


@dataclasses.dataclass(frozen=True)
class Submission:
  """One training algorithm: fixed optimizer arguments, a schedule family
  built from a hyperparameter point, and its search space."""
  name: str
  schedule: Callable[[Mapping[str, Any], int], schedules.Schedule]
  search_space: Mapping[str, Mapping[str, Any]]
  optimizer: Mapping[str, Any] = dataclasses.field(
      default_factory=lambda: dict(ADAMW))
  description: str = ""
  optimizer_point: tuple[str, ...] = ()  # point keys set in config.optimizer
  kind: str = "population"               # population | refined | autolrs
  source: str | None = None              # refined: the submission refined
  runs_of: str | None = None             # refined: another submission's
                                         # runs, the source trial counted

  def build(self, point: Mapping[str, Any], base: ml_collections.ConfigDict,
            horizon: int, steps: int) -> ml_collections.ConfigDict:
    """The trainer config of one trial: ``base`` with this optimizer and
    the schedule of ``point`` over ``horizon`` steps, trained ``steps``
    (schedule decay points on ``base``'s evaluation cadence where a family
    has them, so its decayed models are evaluated)."""
    unit = int(base.train.get("eval_every") or 1)
    c = with_schedule(base, self.schedule(point, horizon, unit), steps)
    c.optimizer.update(self.optimizer)
    c.optimizer.update({k: float(point[k]) for k in self.optimizer_point})
    return c


def _warmup(p: Mapping[str, Any], horizon: int) -> int:
  return round(float(p.get("warmup_fraction", 0.05)) * horizon)


def _decay(p: Mapping[str, Any], horizon: int) -> int:
  return max(1, round(float(p["decay_fraction"]) * horizon))


def _cosine(p, h, unit=1):
  return schedules.cosine(p["learning_rate"], h, warmup_steps=_warmup(p, h))


def _constant(p, h, unit=1):
  return schedules.wsd(p["learning_rate"], h, decay_steps=0,
                       warmup_steps=_warmup(p, h))


def _wsd(shape: str):
  def fn(p, h, unit=1):
    return schedules.wsd(p["learning_rate"], h, decay_steps=_decay(p, h),
                         warmup_steps=_warmup(p, h), decay_shape=shape)
  return fn


def wsd_s_ends(h: int, unit: int = 1) -> tuple[int, int, int]:
  """The steps WSD-S's decays end at: ``h/3`` and ``2h/3`` rounded to the
  evaluation cadence ``unit``, and ``h``."""
  return (unit * max(1, round(h / (3 * unit))),
          unit * max(2, round(2 * h / (3 * unit))), h)


def _wsd_s(p, h, unit=1):
  # Budgets chosen so that the decays end exactly at wsd_s_ends(h, unit):
  # decay i has round(f * B_i) steps and ends at B_i + earlier decays.
  f = float(p["decay_fraction"])
  e1, e2, e3 = wsd_s_ends(h, unit)
  d1 = round(f * e1)
  b2 = e2 - d1
  d2 = round(f * b2)
  return schedules.wsd_s(p["learning_rate"], (e1, b2, e3 - d1 - d2),
                         decay_fraction=f, warmup_steps=_warmup(p, h))


def _rex(p, h, unit=1):
  return schedules.rex(p["learning_rate"], h, warmup_steps=_warmup(p, h),
                       beta=p.get("beta", 0.5))


def _uba(p, h, unit=1):
  return schedules.uba(p["learning_rate"], h, p["phi"],
                       warmup_steps=_warmup(p, h))


def _power(p, h, unit=1):
  # Power scheduler (Shen et al.): lr = min(max, a * n**b) in tokens n. The
  # ratio lr(n) / lr(n_w) = (n / n_w)**b does not depend on tokens per step,
  # so n counts steps and a puts the power value at the peak when the
  # warmup ends; the same point means the same shape on every workload.
  warm = max(1, _warmup(p, h))
  b = float(p["exponent"])
  return schedules.power(p["learning_rate"], p["learning_rate"] / warm ** b,
                         b, 1.0, h, warmup_steps=warm,
                         decay_steps=_decay(p, h))


def _hd(p, h, unit=1):
  # Pure hypergradient descent: the schedule multiplies the adapted LR.
  return schedules.constant(1.0)


def _none(p, h, unit=1):
  raise ValueError("this submission's schedule is derived while it trains "
                   "(see adaptive.py)")


ADAM_HD = dict(name="adam_hd", b1=0.9, b2=0.95, weight_decay=None)
PEAK_SCALE = {"peak_scale": {"min": 0.5, "max": 2.0, "scaling": "log"}}


SUBMISSIONS = {s.name: s for s in (
    Submission("cosine", _cosine, LR | WARMUP,
               description="AdamW, warmup + cosine to 0 (baseline)"),
    Submission("constant", _constant, LR | WARMUP,
               description="AdamW, warmup + constant (control)"),
    Submission("wsd_linear", _wsd("linear"), LR | WARMUP | DECAY,
               description="WSD, linear decay"),
    Submission("wsd_1sqrt", _wsd("1-sqrt"), LR | WARMUP | DECAY,
               description="WSD, 1-sqrt decay"),
    Submission("wsd_s", _wsd_s, LR | WARMUP | {
        "decay_fraction": {"min": 0.1, "max": 0.3, "scaling": "linear"}},
               description="WSD-S, budgets h/3, 2h/3, h"),
    Submission("rex", _rex, LR | WARMUP | {
        "beta": {"min": 0.3, "max": 0.9, "scaling": "linear"}},
               description="REX"),
    Submission("uba", _uba, LR | WARMUP | {
        "phi": {"min": 1.0, "max": 4.0, "scaling": "linear"}},
               description="UBA"),
    Submission("power", _power, LR | WARMUP | DECAY | {
        "exponent": {"min": -0.8, "max": -0.2, "scaling": "linear"}},
               description="Power scheduler: lr (n / n_warmup)**b after "
                           "warmup, capped at the peak, then a linear decay"),
    Submission("schedule_free", _constant,
               LR | WARMUP,
               optimizer=dict(name="contrib.schedule_free_adamw", b1=0.9,
                              b2=0.95, weight_decay=0.0),
               description="schedule-free AdamW, warmup + constant"),
    Submission("adam_hd", _hd, LR | {
        "hypergrad_lr": {"min": 1e-6, "max": 1e-2, "scaling": "log"}},
               optimizer=ADAM_HD,
               optimizer_point=("learning_rate", "hypergrad_lr"),
               description="Adam-HD (pure hypergradient descent on the LR)"),
    Submission("refined_oracle", _none, PEAK_SCALE, kind="refined",
               source="wsd_linear",
               description="AdamW under the l1-refined schedule of the "
                           "study's best wsd_linear trial (source not "
                           "counted)"),
    Submission("refined_on_the_clock", _none, PEAK_SCALE, kind="refined",
               source="wsd_linear", runs_of="refined_oracle",
               description="refined_oracle with the source trial's steps "
                           "and seconds counted"),
    Submission("autolrs", _none, LR, kind="autolrs",
               description="AutoLRS (the LR of each stage by BO while "
                           "training), LRs searched in [lr/100, 10 lr]; "
                           "exploration counted"),
)}
QUICK = ("cosine", "constant", "wsd_linear")


def get(name: str) -> Submission:
  """The submission ``name``; a ``ValueError`` lists the known ones."""
  if name not in SUBMISSIONS:
    raise ValueError(f"unknown submission {name!r}; known: "
                     f"{', '.join(SUBMISSIONS)}")
  return SUBMISSIONS[name]
