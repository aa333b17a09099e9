"""The tiny bigram run most tests train: a few seconds on a laptop CPU."""

import ml_collections

from wsd_jax import schedules
from wsd_jax.train import base_config

WSD = dict(name="wsd", peak_value=0.05, total_steps=40, decay_steps=10,
           warmup_steps=5)


def tiny_config(schedule=None, **train) -> ml_collections.ConfigDict:
  """Vocab 16, 16 x 8 tokens a step, 40 steps of WSD; ``train`` overrides
  ``config.train``. ``schedule`` is a schedule or a schedule config dict."""
  c = base_config()
  c.data.update(vocab_size=16, seq_len=8, batch_size=16, eval_batches=2)
  if isinstance(schedule, schedules.Schedule):
    schedule = schedules.to_config(schedule)
  c.schedule = ml_collections.ConfigDict(schedule or WSD)
  c.train.update(steps=40, log_every=5, eval_every=20, checkpoint_every=20,
                 progress=False, plots=False)
  c.train.update(train)
  return c


def config_file(tmp_path, config: ml_collections.ConfigDict) -> str:
  """A config file whose get_config() returns ``config`` (for the apps)."""
  path = tmp_path / "config.py"
  path.write_text("import json\nimport ml_collections\n\n\ndef get_config():\n"
                  f"  return ml_collections.ConfigDict(json.loads("
                  f"{config.to_json()!r}))\n")
  return str(path)
