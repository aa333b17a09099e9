"""Build schedules by name or from a config, and write them back as configs."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np

from wsd_jax.schedules import named
from wsd_jax.schedules.engine import Schedule

SCHEDULES: dict[str, type[Schedule]] = {
    cls.name: cls for cls in (
        named.Constant, named.Linear, named.Cosine, named.WSD, named.Rex,
        named.UBA, named.Power, named.WSDS, named.CyclicCosine,
        named.Infinite, named.InverseSqrt, named.Branch, named.Splice, named.Tabulated)
}


def get(name: str, **kwargs: Any) -> Schedule:
  """Builds the schedule called ``name`` (e.g. ``get("wsd", peak_value=...)``)."""
  if name not in SCHEDULES:
    raise ValueError(f"unknown schedule {name!r}; known schedules: "
                     f"{', '.join(sorted(SCHEDULES))}")
  cls = SCHEDULES[name]
  fields = {f.name for f in dataclasses.fields(cls) if f.init}
  if unknown := sorted(set(kwargs) - fields):
    raise ValueError(f"unknown argument(s) {unknown} for schedule {name!r}; "
                     f"it takes {sorted(fields)}")
  for key in ("base", "first", "second"):  # nested schedules
    if isinstance(kwargs.get(key), Mapping) or hasattr(kwargs.get(key),
                                                       "to_dict"):
      try:
        kwargs[key] = from_config(kwargs[key])
      except ValueError as e:
        raise ValueError(f"{key}: {e}") from None
  try:
    return cls(**kwargs)
  except TypeError as e:  # A missing required argument.
    raise ValueError(f"schedule {name!r}: {e}") from None


def from_config(config: Mapping[str, Any]) -> Schedule:
  """Builds a schedule from ``{"name": ..., "kwargs": {...}}`` or a flat
  mapping ``{"name": ..., **kwargs}`` (e.g. an ``ml_collections.ConfigDict``)."""
  if hasattr(config, "to_dict"):
    config = config.to_dict()
  config = dict(config)
  if "name" not in config:
    raise ValueError(f"a schedule config needs a 'name', got {config!r}")
  name = config.pop("name")
  kwargs = dict(config.pop("kwargs", {}) or {})
  kwargs.update(config)
  return get(name, **kwargs)


def _plain(x: Any) -> Any:
  if isinstance(x, Schedule):
    return to_config(x)
  if isinstance(x, (tuple, list)):
    return [_plain(v) for v in x]
  if isinstance(x, (np.ndarray, np.generic)) or hasattr(x, "tolist"):
    return np.asarray(x).tolist()
  return x


def to_config(schedule: Schedule) -> dict[str, Any]:
  """``{"name": ..., "kwargs": {...}}`` with JSON-ready values; the inverse of
  :func:`from_config`."""
  return {"name": schedule.name,
          "kwargs": {f.name: _plain(getattr(schedule, f.name))
                     for f in dataclasses.fields(schedule) if f.init}}
