"""The benchmark's workloads. Adding one is one file defining ``WORKLOAD``
(a ``base.Workload``) and its line in ``_MODULES``."""

from __future__ import annotations

import importlib

from wsd_jax.studies.algoperf.workloads.base import METRICS, Workload

_MODULES = ("bigram", "mlp_text", "gpt_nano", "digits")


def registry() -> dict[str, Workload]:
  """Every workload by name (the quick forms included)."""
  out = {}
  for m in _MODULES:
    module = importlib.import_module(f"{__name__}.{m}")
    for w in (getattr(module, "WORKLOAD", None), getattr(module, "QUICK",
                                                         None)):
      if w is not None:
        out[w.name] = w
  return out


def get(name: str) -> Workload:
  """The workload ``name``; a ``ValueError`` lists the known ones."""
  known = registry()
  if name not in known:
    raise ValueError(f"unknown workload {name!r}; known: "
                     f"{', '.join(sorted(known))}")
  return known[name]


__all__ = ["METRICS", "Workload", "get", "registry"]
