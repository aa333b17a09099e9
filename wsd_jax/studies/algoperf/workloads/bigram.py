"""Synthetic bigram language (``wsd_jax.data.bigram``): its optimal loss is
known exactly, so the target's gap to it is reported."""

from configs import bigram as bigram_config
from wsd_jax.studies.algoperf.workloads.base import Workload


def _config():
  c = bigram_config.get_config()
  c.data.eval_batches = 8
  return c


WORKLOAD = Workload(
    name="bigram", metric="validation/loss", step_hint=400, max_steps=400,
    eval_every=20, train_config=_config,
    description="bigram table on the synthetic bigram corpus (V=64)")

# The CI form: the same task, a short step hint (its target is set over 45
# steps) and a budget of 4x the hint, so that two untuned trials can reach a
# target tuned over 64.
QUICK = Workload(
    name="bigram_quick", metric="validation/loss", step_hint=60,
    max_steps=240, eval_every=20, train_config=_config,
    description="bigram, short step hint (--quick)")
