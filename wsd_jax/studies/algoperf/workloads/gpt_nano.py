"""GPT nano, byte level, on the stdlib docstring corpus."""

from configs import gpt as gpt_config
from wsd_jax.studies.algoperf.workloads.base import Workload


def _config():
  c = gpt_config.get_config("size=nano")
  c.data.update(seq_len=128, batch_size=16, eval_batches=8)
  return c


WORKLOAD = Workload(
    name="gpt_nano", metric="validation/loss", step_hint=600, max_steps=600,
    eval_every=50, train_config=_config, corpus=True,
    corpus_max_bytes=1_000_000,
    description="GPT nano (byte level) on stdlib docstrings")
