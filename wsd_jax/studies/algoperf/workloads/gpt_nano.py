"""GPT nano, byte level, on the stdlib docstring corpus."""

from configs import gpt as gpt_config
from wsd_jax.studies.algoperf.workloads.base import Workload


def _config():
  # 512 tokens a step, 8,192 evaluation tokens (see mlp_text).
  c = gpt_config.get_config("size=nano")
  c.data.update(seq_len=64, batch_size=8, eval_batches=16)
  return c


WORKLOAD = Workload(
    name="gpt_nano", metric="validation/loss", step_hint=400, max_steps=400,
    eval_every=50, train_config=_config, corpus=True,
    corpus_max_bytes=1_000_000,
    description="GPT nano (byte level) on stdlib docstrings")
