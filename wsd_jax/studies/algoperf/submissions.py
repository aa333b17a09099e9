"""Submissions: an optimizer, a schedule family and a search space.

A submission's search space (AlgoPerf's JSON format, ``search.py``) is the
same on every workload; a hyperparameter point becomes a trainer config
through ``build``. In the benchmark, schedules span the workload's budget
``max_steps`` (``>= step_hint``; its target was set by a cosine over
``0.75 * step_hint``, so a tuned submission has room, as in AlgoPerf). Optimizer arguments are fixed per submission and only
schedule arguments are searched, so a study's trials differ only in schedule
leaves and train as one vmapped population (``train.train_specs``).
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

  def build(self, point: Mapping[str, Any], base: ml_collections.ConfigDict,
            horizon: int, steps: int) -> ml_collections.ConfigDict:
    """The trainer config of one trial: ``base`` with this optimizer and
    the schedule of ``point`` over ``horizon`` steps, trained ``steps``."""
    c = with_schedule(base, self.schedule(point, horizon), steps)
    c.optimizer.update(self.optimizer)
    return c


def _warmup(p: Mapping[str, Any], horizon: int) -> int:
  return round(float(p.get("warmup_fraction", 0.05)) * horizon)


def _decay(p: Mapping[str, Any], horizon: int) -> int:
  return max(1, round(float(p["decay_fraction"]) * horizon))


def _cosine(p, h):
  return schedules.cosine(p["learning_rate"], h, warmup_steps=_warmup(p, h))


def _constant(p, h):
  return schedules.wsd(p["learning_rate"], h, decay_steps=0,
                       warmup_steps=_warmup(p, h))


def _wsd(shape: str):
  def fn(p, h):
    return schedules.wsd(p["learning_rate"], h, decay_steps=_decay(p, h),
                         warmup_steps=_warmup(p, h), decay_shape=shape)
  return fn


def _wsd_s(p, h):
  # Budgets h/3, 2h/3 and the last one chosen so the run ends at h.
  f = float(p["decay_fraction"])
  b1 = round(h / 3)
  b2 = 2 * b1
  d1, d2 = round(f * b1), round(f * b2)
  return schedules.wsd_s(p["learning_rate"], (b1, b2, h - d1 - d2),
                         decay_fraction=f, warmup_steps=_warmup(p, h))


def _rex(p, h):
  return schedules.rex(p["learning_rate"], h, warmup_steps=_warmup(p, h),
                       beta=p.get("beta", 0.5))


def _uba(p, h):
  return schedules.uba(p["learning_rate"], h, p["phi"],
                       warmup_steps=_warmup(p, h))


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
    Submission("schedule_free", _constant,
               LR | WARMUP,
               optimizer=dict(name="contrib.schedule_free_adamw", b1=0.9,
                              b2=0.95, weight_decay=0.0),
               description="schedule-free AdamW, warmup + constant"),
)}
QUICK = ("cosine", "constant", "wsd_linear")


def get(name: str) -> Submission:
  """The submission ``name``; a ``ValueError`` lists the known ones."""
  if name not in SUBMISSIONS:
    raise ValueError(f"unknown submission {name!r}; known: "
                     f"{', '.join(SUBMISSIONS)}")
  return SUBMISSIONS[name]
