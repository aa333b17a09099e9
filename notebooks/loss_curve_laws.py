# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %%
# Colab: install wsd_jax from its repository. Elsewhere this cell does nothing.
import subprocess
import sys

REPO_URL = "https://github.com/OWNER/wsd_jax"
if "google.colab" in sys.modules:
  subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                  f"git+{REPO_URL}"], check=True)

# %% [markdown]
# # Loss-curve laws: fit on two runs, predict a third, choose a schedule
#
# `wsd_jax.laws` fits the LR-annealing law (Tissue et al., arXiv 2408.11029)
# and the multi-power law (Luo et al., arXiv 2503.12811) to a few runs and
# predicts the loss curve of any other LR schedule. Here: two short runs (a
# constant LR and a WSD with a 20% decay) fit both laws, a cosine run is held
# out and predicted, and each law proposes the best WSD for the budget.
#
# The runs use the river-valley study's setup (`configs/river_valley.py`):
# a bigram logit table on a synthetic bigram language with plain SGD at a
# high LR, where a decay visibly lowers the loss. `WSD_JAX_QUICK=1` shrinks
# everything to CI size.

# %%
import os
import tempfile

import matplotlib.pyplot as plt
import numpy as np

from configs import river_valley as river_valley_config
from wsd_jax import laws, plots, runs, schedules, train
from wsd_jax.laws import report as law_report
from wsd_jax.train.config import with_schedule

QUICK = os.environ.get("WSD_JAX_QUICK") == "1"

steps = 800  # @param {type:"integer"}
peak = 120.0  # @param {type:"number"}
eval_every = 10  # @param {type:"integer"}
free_iters = 300  # @param {type:"integer"}
workdir = ""  # @param {type:"string"}
if QUICK:
  steps, free_iters = 200, 100
workdir = workdir or tempfile.mkdtemp(prefix="wsd_jax_laws_")
warmup = steps // 20
print("workdir:", workdir)

# %% [markdown]
# ## Train three runs
#
# `train.train_specs` trains runs of one schedule structure as one vmapped
# program: constant and WSD share one, cosine gets its own.

# %%
base = river_valley_config.get_config().run
base.train.update(eval_every=eval_every, log_every=eval_every)
runs_by_name = {
    "constant": schedules.wsd(peak, steps, 0, warmup),
    "wsd20": schedules.wsd(peak, steps, steps // 5, warmup,
                           final_value=0.1 * peak),
    "cosine": schedules.cosine(peak, steps, warmup, final_value=0.1 * peak),
}
train.train_specs([runs.RunSpec(with_schedule(base, s, steps),
                                f"{workdir}/{name}")
                   for name, s in runs_by_name.items()])
curves = {name: laws.Curve.from_run(f"{workdir}/{name}",
                                    min_step=steps // 10)
          for name in runs_by_name}
fit, held_out = [curves["constant"], curves["wsd20"]], curves["cosine"]
for name, c in curves.items():
  print(f"{name:9s} final eval loss {c.losses[-1]:.4f}")

# %% [markdown]
# ## Fit both laws on constant + WSD; predict cosine

# %%
fitted = {"annealing": laws.AnnealingLaw.fit(fit),
          "multipower": laws.MultiPowerLaw.fit(fit)}
for name, law in fitted.items():
  print(name, {k: round(float(v), 5) for k, v in law.params.items()})
  print(law_report.markdown_table(
      law_report.score_table(law, fit, [held_out])))
  law_report.plot_predictions(law, fit, [held_out], f"{workdir}/{name}.png")
  plots.show_png(f"{workdir}/{name}.png")
for name, law in fitted.items():
  score = law.score(held_out)
  print(f"held-out {name}: mean relative error {score['mean_rel_err']:.4%},"
        f" max {score['max_rel_err']:.4%}")

# %% [markdown]
# ## Choose a schedule
#
# `laws.optimize_schedule` minimises a law's predicted final loss: over WSD
# decay lengths and shapes (`family="wsd"`), or over free non-increasing
# per-step LRs (`family="free"`, Adam on the prediction as in Luo et al.).

# %%
law = fitted["multipower"]
best_wsd = laws.optimize_schedule(law, steps, peak, "wsd",
                                  warmup_steps=warmup)
best_free = laws.optimize_schedule(law, steps, peak, "free",
                                   warmup_steps=warmup, num_iters=free_iters)
print("best WSD:", best_wsd)
candidates = {**runs_by_name, "best WSD (law)": best_wsd,
              "free (law)": best_free}
grid = np.arange(steps + 1)
shown = grid[steps // 10:]
fig, (ax_lr, ax_loss) = plt.subplots(1, 2, figsize=(12, 4))
for name, s in candidates.items():
  lrs = np.asarray(s(grid), np.float64)
  predicted = law.predict(lrs, shown)
  ax_lr.plot(grid, lrs, label=name)
  ax_loss.plot(shown, predicted, label=name)
  print(f"{name:15s} predicted final loss {predicted[-1]:.4f}")
ax_lr.set(xlabel="step", ylabel="learning rate", title="schedules")
ax_loss.set(xlabel="step", ylabel="predicted eval loss",
            title="multi-power law's prediction")
ax_loss.plot(held_out.steps, held_out.losses, "k.", ms=3,
             label="cosine, observed")
ax_lr.legend(fontsize=8)
ax_loss.legend(fontsize=8)
plt.show()
