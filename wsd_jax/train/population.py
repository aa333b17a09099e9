"""``config.population``: a sweep written in the config, trained as one program.

Strings, so that a sweep can be given on the command line::

    --config.population.grid='peak_value=1e-3,3e-3,1e-2;decay_fraction=0.1,0.2;seed=0,1'
    --config.population.members='peak_value=1e-3;seed=3,peak_value=2e-3'

``grid`` is a product of lists (``key=v1,v2,...`` joined by ``;``);
``members`` lists members (``;``-separated, each ``key=v,key=v``). Keys are
``seed``, a field of the schedule (``peak_value``, ``decay_steps``, ...) or
a numeric optimizer argument written ``optimizer.NAME`` (``optimizer.b2``,
``optimizer.weight_decay``, ``optimizer.hypergrad_lr``, ...: optax's
``inject_hyperparams`` keeps them in the optimizer state, so members that
differ in them still share one program); ``decay_fraction`` sets the
schedule's ``decay_fraction`` (its decay is ``round(fraction *
total_steps)`` steps, see ``train.config``). Each
member is an ordinary run directory ``WORKDIR/members/NAME`` (laws, plots and
branching work on it); ``WORKDIR/population.json`` lists them.
"""

from __future__ import annotations

import itertools

import jax
import ml_collections

from wsd_jax.runs import rundir


def _value(text: str):
  for kind in (int, float):
    try:
      return kind(text)
    except ValueError:
      pass
  return text


def _pairs(spec: str, what: str) -> list[tuple[str, str]]:
  out = []
  for item in filter(None, (p.strip() for p in spec.split(";"))):
    if "=" not in item:
      raise ValueError(f"config.population.{what}: {item!r} is not KEY=VALUES")
    key, values = item.split("=", 1)
    out.append((key.strip(), values))
  return out


def members(population: ml_collections.ConfigDict) -> list[dict]:
  """The list of ``{key: value}`` overrides the population describes."""
  out = []
  grid = _pairs(population.get("grid", "") or "", "grid")
  if grid:
    keys = [k for k, _ in grid]
    lists = [[_value(v) for v in values.split(",")] for _, values in grid]
    out += [dict(zip(keys, combo)) for combo in itertools.product(*lists)]
  for member in filter(None, (population.get("members", "") or "").split(";")):
    out.append({k.strip(): _value(v) for k, v in
                (kv.split("=", 1) for kv in member.split(",") if kv.strip())})
  return out


def is_population(config: ml_collections.ConfigDict) -> bool:
  p = config.get("population")
  return bool(p and (p.get("grid") or p.get("members")))


def _member_name(index: int, values: dict) -> str:
  parts = [f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
           for k, v in values.items()]
  return "_".join([f"m{index:03d}"] + parts)


def _set_optimizer_arg(optimizer: ml_collections.ConfigDict, key: str,
                       value) -> None:
  name = key.removeprefix("optimizer.")
  if name == "name" or not isinstance(value, (int, float)) or isinstance(
      value, bool):
    raise ValueError(f"population key {key}={value!r}: only numeric "
                     "optimizer arguments can differ between members (the "
                     "optimizer itself is one per population)")
  if name not in optimizer:
    raise ValueError(f"population key {key!r}: the optimizer config has no "
                     f"argument {name!r} (it has {sorted(optimizer)})")
  optimizer[name] = float(value)


def expand(config: ml_collections.ConfigDict, workdir: str
           ) -> tuple[list[ml_collections.ConfigDict], list[str]]:
  """Member configs (without ``population``) and their run directories."""
  overrides = members(config.population)
  base = config.to_dict()
  del base["population"]
  configs, workdirs, listing = [], [], []
  for i, values in enumerate(overrides):
    c = ml_collections.ConfigDict(base)
    for key, v in values.items():
      field = key.removeprefix("schedule.")
      if key == "seed":
        c.seed = int(v)
      elif key.startswith("optimizer."):
        _set_optimizer_arg(c.optimizer, key, v)
      elif field == "decay_fraction":
        if not isinstance(v, (int, float)) or not 0 < v <= 1:
          raise ValueError(f"population: decay_fraction must be in (0, 1], "
                           f"got {v!r}")
        c.schedule.update(decay_fraction=float(v), decay_steps=None)
      elif field in c.schedule:
        c.schedule[field] = type(c.schedule[field])(v) if isinstance(
            c.schedule[field], (int, float)) else v
      else:
        raise ValueError(
            f"population key {key!r} is neither 'seed', a field of the "
            f"schedule {c.schedule.name!r} ({sorted(c.schedule)}) nor "
            "'optimizer.NAME'; members may differ only in the seed, the "
            "schedule and numeric optimizer arguments")
    name = _member_name(i, values)
    configs.append(c)
    workdirs.append(rundir.member_dir(workdir, name))
    listing.append({"name": name, "workdir": f"{rundir.MEMBERS}/{name}",
                    "values": values})
  if jax.process_index() == 0:
    rundir.write_json(rundir.join(workdir, rundir.POPULATION),
                      {"members": listing})
  return configs, workdirs
