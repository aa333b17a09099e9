r"""Loss-curve laws asked to extrapolate: fit on short runs, predict 3x longer.

  python -m experiments.law_extrapolation --config=configs/law_extrapolation.py \
      --workdir=/tmp/law_extrapolation
  python -m experiments.law_extrapolation --config=configs/law_extrapolation.py:quick \
      --workdir=/tmp/law_extrapolation_quick                # CI, < 2 min

A byte-level MLP LM (the law study's, half as wide) on the Python standard
library's source code (about 25 MB, so that no run repeats data; see
``law_extrapolation.use_source_corpus``). Fit set:
the first ``fit_steps`` steps of a constant run, a cosine and a two-stage
run of ``fit_steps``; held out: runs of ``predict_steps`` (3x): the constant
run beyond ``fit_steps``, a cosine, WSD decays and a two-stage run (see
``wsd_jax.studies.law_extrapolation``). ``python -m experiments.law_loop``
reuses these runs (``loop`` below).

The peak LR is 3e-2, where a decay helps as in LM pretraining (measured over
400 steps: a 50% WSD decay ends 0.09 below the constant run). At 3e-3 and
1e-2 every decay ended above the constant run (by 0.16 for a cosine of 1,000
steps at 3e-3): the model was still far from its noise floor, a regime where
the laws' annealing terms have little to describe.
"""

import ml_collections

from configs import text


def get_config(arg: str = ""):
  quick = arg == "quick"
  c = ml_collections.ConfigDict()
  t = text.get_config()
  t.model.update(embed_dim=16 if quick else 32, hidden_dim=32 if quick else 128,
                 num_layers=1, context=8)
  # A larger fixed eval set than the law study's (8 batches) for less noise.
  t.data.update(seq_len=32 if quick else 64, batch_size=8 if quick else 64,
                eval_batches=2 if quick else 16)
  t.optimizer.update(weight_decay=0.0)
  t.train.update(log_every=10, grad_clip=1.0, progress=False, plots=False,
                 async_checkpoint=False)
  c.train_config = t
  c.study = ml_collections.ConfigDict(dict(
      fit_steps=60 if quick else 1000,        # the fit runs
      predict_steps=180 if quick else 3000,   # the held-out runs: 3x
      warmup_steps=6 if quick else 50,
      peak_value=3e-2,                        # decays help (see the docstring)
      eval_every=3 if quick else 25,          # eval_loss points of every run
      two_stage=(0.6, 0.1),                   # drop at 60% of a run to 0.1x peak
      held_out_two_stage=(2 / 3, 0.1),        # the long two-stage run
      wsd=((0.2, "linear"), (0.2, "1-sqrt"), (0.1, "1-sqrt")),  # held-out decays
      min_step=9 if quick else 200,           # fit and score from this step on
      laws=("multipower", "annealing"),
      variants=("lbfgs", "paper", "prior", "prior_tail_short", "prior_tail",
                "starts_tail", "early_stop"),  # law_extrapolation.VARIANTS
      keep="prior_tail",                      # the variant the bands use
      bootstrap=8 if quick else 64,           # refits for the 90% band
      level=0.9,
      seed=0,
  ))
  # The loop study (python -m experiments.law_loop): the law fitted on the
  # fit runs proposes schedules of predict_steps; they are trained and
  # compared with the held-out cosine and WSD runs.
  c.loop = ml_collections.ConfigDict(dict(
      law="multipower",
      families=("free", "wsd"),               # laws.optimize_schedule families
      num_iters=100 if quick else 400,        # the "free" family's Adam steps
  ))
  c.corpus_max_bytes = 1_000_000 if quick else None  # None: every file
  return c
