"""Byte-level MLP language model on the stdlib docstring corpus."""

from configs import text as text_config
from wsd_jax.studies.algoperf.workloads.base import Workload


def _config():
  # 512 tokens a step, 8,192 evaluation tokens: sized so that target setting
  # (74 runs of 300 steps) fits a 2-core CPU in well under an hour.
  c = text_config.get_config()
  c.data.update(seq_len=32, batch_size=16, eval_batches=16)
  return c


WORKLOAD = Workload(
    name="mlp_text", metric="validation/loss", step_hint=400,
    max_steps=400, eval_every=50, train_config=_config, corpus=True,
    corpus_max_bytes=1_000_000,
    description="byte-level MLP LM (context 4) on stdlib docstrings")
