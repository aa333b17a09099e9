"""Byte-level MLP language model on the stdlib docstring corpus."""

from configs import text as text_config
from wsd_jax.studies.algoperf.workloads.base import Workload


def _config():
  c = text_config.get_config()
  c.data.update(seq_len=64, batch_size=32, eval_batches=8)
  return c


WORKLOAD = Workload(
    name="mlp_text", metric="validation/loss", step_hint=600,
    max_steps=600, eval_every=50, train_config=_config, corpus=True,
    corpus_max_bytes=1_000_000,
    description="byte-level MLP LM (context 4) on stdlib docstrings")
