"""The config resolver: every choice settable on every config, schedule
lengths that follow train.steps, optimizers by name, text files checked."""

import inspect
import logging

import ml_collections
import numpy as np
import optax
import pytest

from configs import bigram, gpt, law_study, river_valley, text, wsd_s
from wsd_jax import schedules
from wsd_jax.data import text as text_data
from wsd_jax.train import config as config_lib
from wsd_jax.train.step import make_optimizer

NESTED = {"base", "first", "second"}  # schedules inside schedules: Python only


@pytest.fixture(autouse=True)
def _fresh_warnings():
  config_lib._warn_once.cache_clear()  # each test sees its own warnings


def warnings(caplog) -> list[str]:
  return [r.getMessage() for r in caplog.records
          if r.levelno == logging.WARNING]


def all_train_configs():
  """Every trainer config the config files make (study files hold one)."""
  yield "bigram", bigram.get_config()
  yield "text", text.get_config()
  for size in ("nano", "micro", "mini", "124m"):
    yield f"gpt:{size}", gpt.get_config(f"size={size}")
  yield "river_valley", river_valley.get_config().run
  yield "law_study", law_study.get_config().train_config
  yield "wsd_s", wsd_s.get_config().train_config


@pytest.mark.parametrize("name,config", list(all_train_configs()))
def test_every_config_declares_every_argument(name, config):
  for family, cls in schedules.SCHEDULES.items():
    missing = set(inspect.signature(cls).parameters) - NESTED - set(
        config.schedule)
    assert not missing, f"{name}: schedule {family} needs {missing}"
  assert {"decay_fraction", "warmup_fraction"} <= set(config.schedule)
  assert set(config_lib.OPTIMIZER_ARGUMENTS) <= set(config.optimizer)
  assert config.schedule.total_steps is None, name  # follows train.steps


@pytest.mark.parametrize("name,config,expected", [
    ("bigram", bigram.get_config(), (0.05, 800, 160, 40)),
    ("text", text.get_config(), (3e-3, 2000, 400, 100)),
    ("gpt:nano", gpt.get_config("size=nano"), (3e-3, 1000, 200, 20)),
    ("gpt:micro", gpt.get_config("size=micro"), (2e-3, 2000, 400, 40)),
    ("gpt:mini", gpt.get_config("size=mini"), (1e-3, 5000, 1000, 100)),
    ("gpt:124m", gpt.get_config("size=124m"), (6e-4, 20000, 4000, 400)),
])
def test_configs_keep_their_schedules_at_their_step_counts(name, config,
                                                           expected):
  peak, total, decay, warmup = expected
  assert config_lib.resolve_schedule(config) == schedules.wsd(
      peak, total, decay, warmup_steps=warmup), name


def test_schedule_follows_train_steps():
  c = gpt.get_config("size=nano")
  c.train.steps = 100  # before: a 1000-step schedule that never left its peak
  assert config_lib.resolve_schedule(c) == schedules.wsd(
      3e-3, 100, 20, warmup_steps=2)


def test_explicit_total_steps_scales_the_fractions():
  c = bigram.get_config()
  c.train.steps = 400  # a main run to branch: still at the peak at 400
  c.schedule.total_steps = 800
  s = config_lib.resolve_schedule(c)
  assert s == schedules.wsd(0.05, 800, 160, warmup_steps=40)
  assert float(s(399)) == pytest.approx(0.05)


def test_a_step_count_wins_over_its_fraction():
  c = bigram.get_config()
  c.schedule.update(decay_steps=100, warmup_steps=0)
  assert config_lib.resolve_schedule(c) == schedules.wsd(0.05, 800, 100)


def test_switching_family_drops_other_families_keys_with_one_warning(caplog):
  c = bigram.get_config()
  c.schedule.name = "cosine"
  with caplog.at_level(logging.WARNING):
    assert config_lib.resolve_schedule(c) == schedules.cosine(
        0.05, 800, warmup_steps=40)
    config_lib.resolve_schedule(c)  # e.g. a population member: not again
  [line] = warnings(caplog)
  assert "'cosine'" in line and "decay_fraction=0.2" in line


def test_decay_shape_and_other_families_by_key():
  c = gpt.get_config("size=nano")
  c.schedule.decay_shape = "1-sqrt"
  assert config_lib.resolve_schedule(c).decay_shape == "1-sqrt"
  c.schedule.update(name="wsd_s", budgets=(400, 800))  # its own fraction
  assert config_lib.resolve_schedule(c) == schedules.wsd_s(
      3e-3, (400, 800), decay_fraction=0.2, warmup_steps=20,
      decay_shape="1-sqrt")
  c.schedule.update(name="rex", beta=0.9)
  r = config_lib.schedule_kwargs(c)
  assert r.kwargs == dict(peak_value=3e-3, total_steps=1000, warmup_steps=20,
                          beta=0.9)
  assert set(r.ignored) == {"budgets", "decay_fraction", "decay_shape"}


def test_to_config_form_resolves_as_written():
  sched = schedules.branch(schedules.wsd(0.05, 800, 160), 400, 80)
  c = config_lib.with_schedule(bigram.get_config(), sched, 480)
  assert config_lib.resolve_schedule(c) == sched


@pytest.mark.parametrize("key,value,match", [
    ("total_steps", 0, "total_steps=0 must be >= 1"),
    ("decay_fraction", 1.5, "decay_fraction=1.5 must be in"),
    ("name", "wsdd", "name='wsdd' is not a schedule"),
])
def test_bad_schedule_values(key, value, match):
  c = bigram.get_config()
  c.schedule[key] = value
  with pytest.raises(ValueError, match=match):
    config_lib.resolve_schedule(c)


def test_a_key_of_no_family_is_refused():
  c = bigram.get_config()
  c.schedule = ml_collections.ConfigDict(dict(name="wsd", peak_value=0.1,
                                              decay_stepz=3))
  with pytest.raises(ValueError, match="decay_stepz.*did you mean "
                                       "'decay_steps'"):
    config_lib.resolve_schedule(c)


def resolve_bigram(caplog, train_steps: int, total_steps: int = 800):
  """bigram.py with an explicit schedule length; its log records."""
  c = bigram.get_config()
  c.schedule.total_steps = total_steps
  c.train.steps = train_steps
  with caplog.at_level(logging.INFO):
    config_lib.resolve_schedule(c)


def test_training_past_the_schedule_warns_once(caplog):
  resolve_bigram(caplog, 900)
  [line] = warnings(caplog)
  assert "train.steps=900" in line and "step 800" in line


def test_stopping_before_the_end_is_information(caplog):
  resolve_bigram(caplog, 400)  # a main run to fork decays from
  assert not warnings(caplog)
  [info] = [r.getMessage() for r in caplog.records
            if r.levelno == logging.INFO and "stops before" in r.getMessage()]
  assert "train.steps=400" in info and "step 800" in info


def test_optimizer_by_name_with_its_own_arguments(caplog):
  c = bigram.get_config()  # adamw's b1, b2, weight_decay
  c.optimizer.update(name="sgd", momentum=0.9)
  with caplog.at_level(logging.WARNING):
    tx = make_optimizer(c.optimizer)
    make_optimizer(c.optimizer)
  assert config_lib.optimizer_kwargs(c.optimizer).kwargs == {"momentum": 0.9}
  [line] = warnings(caplog)
  assert "'sgd'" in line and "b1=0.9" in line and "weight_decay=0.0" in line
  state = tx.init({"w": np.zeros(2, np.float32)})
  assert float(state.hyperparams["momentum"]) == pytest.approx(0.9)
  c.optimizer.name = "contrib.schedule_free_adamw"
  assert isinstance(make_optimizer(c.optimizer), optax.GradientTransformation)
  c.optimizer.name = "adamww"
  with pytest.raises(ValueError, match="'adamww' is not an optax optimizer"):
    make_optimizer(c.optimizer)


def test_binary_text_data_is_refused(tmp_path):
  exe = tmp_path / "prog"
  exe.write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 8)
  noise = tmp_path / "noise.txt"  # no NUL byte, mostly not UTF-8
  noise.write_bytes(bytes(np.random.default_rng(0).integers(1, 256, 4096,
                                                             np.uint8)))
  ok = tmp_path / "ok.txt"
  ok.write_bytes("naïve café\n".encode() * 50 + "déjà".encode("latin-1"))
  assert text_data.resolve_paths(str(ok)) == [str(ok)]
  with pytest.raises(ValueError, match=f"{exe}.*NUL byte at offset 7"):
    text_data.resolve_paths(f"{ok},{exe}")
  with pytest.raises(ValueError, match=f"{noise}.*not valid UTF-8"):
    text_data.resolve_paths(str(noise))
  c = text.get_config()
  c.data.paths = str(exe)
  with pytest.raises(ValueError, match="NUL byte"):
    config_lib.validate(c)  # before any compute, no mesh needed
