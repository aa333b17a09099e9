"""Population training: a sweep as one vmapped program equals its runs."""

import json

import jax
import ml_collections
import numpy as np
import pytest

from wsd_jax import reports, runs, train
from wsd_jax.runs import rundir
from wsd_jax.train import (load_state, population, train_and_evaluate,
                           train_population, train_specs)
from tiny import tiny_config


def tiny(**schedule) -> ml_collections.ConfigDict:
  c = tiny_config()
  c.schedule.update(schedule)
  return c


def losses(workdir, key="loss"):
  return np.array([r[key] for r in rundir.read_metrics(workdir) if key in r])


def assert_same_run(a, b, rtol=2e-5):
  for key in ("loss", "grad_norm", "lr", "eval_loss"):
    np.testing.assert_allclose(losses(a, key), losses(b, key), rtol=rtol,
                               err_msg=f"{key}: {a} vs {b}")


class CompileCounter:
  def __enter__(self):
    self.count = 0
    def listener(event, duration, **kwargs):
      del duration, kwargs
      if event == "/jax/core/compile/backend_compile_duration":
        self.count += 1
    jax.monitoring.register_event_duration_secs_listener(listener)
    return self

  def __exit__(self, *exc):
    jax.monitoring.clear_event_listeners()


@pytest.mark.slow
def test_grid_members_equal_their_standalone_runs(tmp_path):
  train_and_evaluate(tiny(), str(tmp_path / "warm_up"))  # eager-op compiles
  c = tiny()
  c.population.grid = "peak_value=0.01,0.05;decay_fraction=0.25,0.5"
  with CompileCounter() as pop:
    out = train_and_evaluate(c, str(tmp_path / "pop"))
  listing = json.loads((tmp_path / "pop" / "population.json").read_text())
  assert [m["values"] for m in listing["members"]] == [
      {"peak_value": 0.01, "decay_fraction": 0.25},
      {"peak_value": 0.01, "decay_fraction": 0.5},
      {"peak_value": 0.05, "decay_fraction": 0.25},
      {"peak_value": 0.05, "decay_fraction": 0.5}]
  assert len(out["members"]) == 4
  with CompileCounter() as one:
    train_and_evaluate(tiny(peak_value=0.05, decay_steps=20),
                       str(tmp_path / "one"))
  # The four members compile what one run compiles: one vmapped program.
  assert pop.count == one.count
  assert_same_run(out["members"][3]["workdir"], tmp_path / "one")
  # Each member is an ordinary run: its schedule in run.json is its own.
  run = rundir.read_run(out["members"][1]["workdir"])
  assert run["schedule"]["kwargs"]["decay_steps"] == 20
  assert run["schedule"]["kwargs"]["peak_value"] == 0.01
  finals = [m["eval_loss"] for m in out["members"]]
  assert len(set(finals)) == 4  # the members really differ
  # Every member's checkpoint holds its own state, equal to its own run's.
  _, alone = load_state(str(tmp_path / "one"))
  for i, m in enumerate(out["members"]):
    _, saved = load_state(m["workdir"])
    assert int(saved.step) == 40
    leaves = jax.tree.leaves(saved.params)
    live = jax.tree.leaves(m["state"].params)
    for x, y in zip(leaves, live):
      np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    if i == 3:
      for x, y in zip(leaves, jax.tree.leaves(alone.params)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=2e-5,
                                   atol=1e-7)
    else:
      assert not np.allclose(np.asarray(leaves[0]),
                             np.asarray(jax.tree.leaves(alone.params)[0]))
  reports.population_report(str(tmp_path / "pop"))  # the app draws it
  table = (tmp_path / "pop" / "population.md").read_text()
  assert f"{finals[2]:.5f}" in table and "decay_fraction" in table
  assert (tmp_path / "pop" / "plots" / "population.png").stat().st_size > 5000


@pytest.mark.slow
def test_seeds_read_their_own_data(tmp_path):
  configs = [tiny(), tiny()]
  configs[1].seed = 7
  out = train_population(configs, [str(tmp_path / "a"), str(tmp_path / "b")])
  train_and_evaluate(configs[1], str(tmp_path / "b_alone"))
  assert_same_run(tmp_path / "b", tmp_path / "b_alone")
  assert out[0]["eval_loss"] != out[1]["eval_loss"]


@pytest.mark.slow
def test_static_differences_split_into_groups(tmp_path):
  configs = [tiny(decay_shape="linear"), tiny(decay_shape="cosine"),
             tiny(decay_shape="cosine", peak_value=0.02)]
  with CompileCounter() as counter:
    train_population(configs, [str(tmp_path / f"m{i}") for i in range(3)])
  with CompileCounter() as one:
    train_and_evaluate(configs[2], str(tmp_path / "alone"))
  assert counter.count == 2 * one.count  # two groups, two programs
  assert_same_run(tmp_path / "m2", tmp_path / "alone")


@pytest.mark.slow
def test_branches_from_several_fork_steps_in_one_program(tmp_path):
  """Equal-length decays from different checkpoints share one program."""
  main = tiny(decay_steps=0)
  main.train.update(checkpoint_every=10, keep_last=5)
  train_and_evaluate(main, str(tmp_path))
  sequential = [train.branch(str(tmp_path), s, 10, "1-sqrt",
                                 name=f"seq{s}") for s in (10, 20, 30)]
  specs = [runs.branch_spec(str(tmp_path), s, 10, "1-sqrt",
                                 name=f"pop{s}") for s in (10, 20, 30)]
  with CompileCounter() as counter:
    out = train_specs(specs)
  for seq, pop in zip(sequential, out):
    assert pop["step"] == seq["step"]
    assert_same_run(seq["workdir"], pop["workdir"])
  assert counter.count <= 3  # step + eval (+ a small helper), not 3x that


@pytest.mark.slow
def test_a_member_can_be_branched(tmp_path):
  c = tiny(decay_steps=0)
  c.population.members = "peak_value=0.01;peak_value=0.03"
  out = train_and_evaluate(c, str(tmp_path))
  member = out["members"][1]["workdir"]
  summary = train.branch(member, 20, 10, "linear", name="decay")
  assert summary["step"] == 30
  assert rundir.read_run(summary["workdir"])["fork_step"] == 20


@pytest.mark.parametrize("spec,match", [
    (dict(grid="peak_value=0.1;optimizer=sgd"), "is neither 'seed', a field of the schedule"),
    (dict(grid="peak_value"), "not KEY=VALUES"),
    (dict(grid="decay_fraction=1.5"), "decay_fraction"),
])
def test_bad_population_specs(tmp_path, spec, match):
  c = tiny()
  c.population.update(spec)
  with pytest.raises(ValueError, match=match):
    population.expand(c, str(tmp_path))


def test_members_parse():
  p = ml_collections.ConfigDict(dict(grid="", members="peak_value=1e-3,seed=2;"
                                     "decay_shape=cosine"))
  assert population.members(p) == [{"peak_value": 1e-3, "seed": 2},
                                   {"decay_shape": "cosine"}]


@pytest.mark.slow
def test_optimizer_arguments_are_population_leaves(tmp_path):
  """Members that differ in numeric optimizer arguments share one program
  and each equals its own run (Adam-HD: initial LR and hypergradient LR)."""
  def hd(**opt):
    c = tiny(name="constant", value=1.0)
    for k in ("peak_value", "total_steps", "decay_steps", "warmup_steps"):
      del c.schedule[k]
    c.optimizer.update(name="adam_hd", learning_rate=0.05, hypergrad_lr=1e-4,
                       weight_decay=None)
    c.optimizer.update(opt)
    return c
  train_and_evaluate(hd(), str(tmp_path / "warm_up"))
  c = hd()
  c.population.grid = ("optimizer.learning_rate=0.01,0.05;"
                       "optimizer.hypergrad_lr=1e-4,1e-3")
  with CompileCounter() as pop:
    out = train_and_evaluate(c, str(tmp_path / "pop"))
  with CompileCounter() as one:
    train_and_evaluate(hd(learning_rate=0.05, hypergrad_lr=1e-3),
                       str(tmp_path / "one"))
  assert pop.count == one.count  # one vmapped program for the four
  assert_same_run(out["members"][3]["workdir"], tmp_path / "one")
  lrs = [runs.Run(m["workdir"]).per_step("lr") for m in out["members"]]
  assert [x[0] for x in lrs] == pytest.approx([0.01, 0.01, 0.05, 0.05])
  # a larger hypergradient LR moves the LR further from where it started
  assert abs(lrs[1][-1] - 0.01) > abs(lrs[0][-1] - 0.01)
  assert abs(lrs[3][-1] - 0.05) > abs(lrs[2][-1] - 0.05)
  with pytest.raises(ValueError, match="optimizer.name='sgd': only numeric"):
    bad = hd()
    bad.population.grid = "optimizer.name=sgd,adam"
    population.expand(bad, str(tmp_path / "bad"))
  with pytest.raises(ValueError, match="has no argument 'beta9'"):
    bad = hd()
    bad.population.grid = "optimizer.beta9=1,2"
    population.expand(bad, str(tmp_path / "bad"))
