r"""Loss-curve law validation on real text (stdlib docstrings, byte level).

  python -m experiments.law_study --config=configs/law_study.py \
      --workdir=/tmp/law_study
  python -m experiments.law_study --config=configs/law_study.py:quick \
      --workdir=/tmp/law_study_quick                     # CI, < 60 s

Trains a constant-LR main run, a cosine, a 20% linear WSD and a WSD-S run (one
population of equal length), forks decay branches from the main run, fits the
annealing and multi-power laws on the constant and cosine runs and scores
them on every other run (see ``wsd_jax.studies.law_study``). The MLP LM
(context 8) is used rather than GPT nano: it gives clean curves in a few
minutes on two CPU cores.
"""

import ml_collections

from configs import text


def get_config(arg: str = ""):
  quick = arg == "quick"
  c = ml_collections.ConfigDict()
  t = text.get_config()
  t.model.update(embed_dim=16 if quick else 32, hidden_dim=32 if quick else 256,
                 num_layers=1, context=8)
  t.data.update(seq_len=32 if quick else 64, batch_size=8 if quick else 64)
  t.optimizer.update(weight_decay=0.0)
  t.train.update(log_every=10, grad_clip=1.0, progress=False, plots=False,
                 async_checkpoint=False)
  c.train_config = t
  c.study = ml_collections.ConfigDict(dict(
      total_steps=40 if quick else 1200,   # every full-length run
      warmup_steps=4 if quick else 60,
      peak_value=3e-3,
      eval_every=2 if quick else 20,       # eval_loss points of every curve
      wsd_fraction=0.2,                    # the trained WSD run (linear)
      branch_fractions=(0.1, 0.2),         # decays forked from the main end
      branch_shapes=("linear", "1-sqrt"),
      mid_branch=(0.5, 0.1),               # fork at 50%, decay 10% (linear)
      wsd_s_budgets=(0.5, 0.95),           # x total_steps; ends at total_steps
      fit=("constant", "cosine"),          # runs the laws are fitted on
      laws=("annealing", "multipower"),
      min_step=4 if quick else 300,        # fit and score from this step on
      min_r2=0.0,                          # a worse fit raises FitError
      # The fixed eval set (the same batches at every evaluation): the last
      # eval_fraction of the corpus, its first eval_batches batches of
      # batch_size x seq_len bytes. Full: 64 x 4,096 = 262,144 bytes (8x the
      # 32,768 used before), whose per-batch losses give the sampling error.
      eval_fraction=0.05 if quick else 0.2,
      eval_batches=4 if quick else 64,
      smooth_degree=3,                     # jitter: cubic in log step
      bootstrap=2000,                      # resamples of every CI
  ))
  t.data.update(eval_fraction=c.study.eval_fraction,
                eval_batches=c.study.eval_batches)
  c.corpus_max_bytes = 300_000 if quick else None  # None: whole corpus
  return c
