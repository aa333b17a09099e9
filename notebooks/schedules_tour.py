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
# # A tour of the schedule family
#
# `wsd_jax.schedules` holds the LR schedules of the literature (WSD and its
# decay shapes, WSD-S, Power, REX, UBA, cyclic cosine, infinite schedules, …)
# as optax schedules that are also JAX pytrees. This notebook draws the
# family, shows what being a pytree buys (a sweep compiles once; a population
# runs under `jax.vmap`), trains a population with the library's trainer, and
# forks decay branches and WSD-S from a tiny run.
#
# `WSD_JAX_QUICK=1` shrinks everything to CI size.

# %%
import os
import tempfile

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

from configs import bigram as bigram_config
from configs import river_valley as river_valley_config
from experiments import plot_schedules
from wsd_jax import plots, reports, runs, schedules, train
from wsd_jax.runs import tree
from wsd_jax.train.config import with_schedule

QUICK = os.environ.get("WSD_JAX_QUICK") == "1"

total_steps = 10_000  # @param {type:"integer"}
peak = 1e-3  # @param {type:"number"}
budget = 200  # @param {type:"integer"}
workdir = ""  # @param {type:"string"}
if QUICK:
  budget = 100
workdir = workdir or tempfile.mkdtemp(prefix="wsd_jax_tour_")
print("workdir:", workdir)

# %% [markdown]
# ## The family
#
# One instance of every schedule on a common budget (the figure of
# `python -m experiments.plot_schedules`).

# %%
family = plot_schedules.family(total_steps, peak)
for name, sched in family.items():
  print(f"{name:32s} lr(0.5 T) = {float(sched(total_steps // 2)):.3e}   "
        f"lr(0.95 T) = {float(sched(int(0.95 * total_steps))):.3e}")
plots.show_png(plots.schedule_grid(family, total_steps,
                                   f"{workdir}/schedules.png"))

# %% [markdown]
# ## Schedules are pytrees
#
# Numbers (peak, step counts, shape parameters) are leaves; discrete choices
# (the decay shape) are static and part of the tree structure.

# %%
lr = schedules.wsd(peak_value=3e-3, total_steps=1_000, decay_steps=200,
                   warmup_steps=50, decay_shape="1-sqrt")
print(lr)
print("leaves:", jax.tree.leaves(lr))
same = schedules.wsd(1e-3, 1_000, 300, 50, decay_shape="1-sqrt")
other = schedules.wsd(1e-3, 1_000, 300, 50, decay_shape="linear")
print("another peak, same structure:",
      jax.tree.structure(lr) == jax.tree.structure(same))
print("another decay shape, same structure:",
      jax.tree.structure(lr) == jax.tree.structure(other))

# %% [markdown]
# ## A sweep compiles once
#
# A jitted function takes the schedule as an argument. Here it trains a
# noisy quadratic with `optax.adamw(learning_rate=schedule)` for 1,000 steps;
# a sweep over peaks and decay lengths reuses one compilation.

# %%
def final_loss(schedule, key):
  """Adam under ``schedule`` on a noisy 16-d quadratic; the last loss."""
  tx = optax.adamw(learning_rate=schedule, weight_decay=0.0)
  scale = jnp.linspace(0.1, 10.0, 16)

  def step(carry, k):
    x, state = carry
    g = scale * x + 0.5 * jax.random.normal(k, x.shape)
    updates, state = tx.update(g, state, x)
    return (optax.apply_updates(x, updates), state), None

  x = jnp.ones(16)
  (x, _), _ = jax.lax.scan(step, (x, tx.init(x)), jax.random.split(key, 1_000))
  return 0.5 * jnp.sum(scale * x**2)


run_one = jax.jit(final_loss)
key = jax.random.key(0)
for p in (3e-3, 1e-2, 3e-2):
  for d in (100, 200, 400):
    loss = run_one(schedules.wsd(p, 1_000, d, 50, "1-sqrt"), key)
    print(f"peak {p:.0e}, decay {d:3d}: final loss {float(loss):.4f}")
# _cache_size(): how many programs jax compiled for this jitted function.
print("jit cache size after the sweep:", run_one._cache_size())

# %% [markdown]
# ## A population under `jax.vmap`
#
# `schedules.stack` stacks schedules of one structure; `jax.vmap` over the
# stack runs every member in one program.

# %%
peaks = np.geomspace(1e-3, 1e-1, 4 if QUICK else 9)
population = schedules.stack([schedules.wsd(float(p), 1_000, 200, 50, "1-sqrt")
                              for p in peaks])
run_population = jax.jit(jax.vmap(final_loss, in_axes=(0, None)))
losses = run_population(population, key)
lrs = jax.vmap(lambda s: s(jnp.arange(1_001)))(population)
print("population final losses:", np.round(np.asarray(losses), 4))
print("vmapped jit cache size:", run_population._cache_size())

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.5))
ax1.plot(np.asarray(lrs).T)
ax1.set(xlabel="step", ylabel="learning rate", yscale="log",
        title="the population's schedules")
ax2.plot(peaks, np.asarray(losses), "o-")
ax2.set(xlabel="peak LR", ylabel="final loss", xscale="log", yscale="log",
        title="one vmapped program")
plt.show()

# %% [markdown]
# ## The library trainer: a population of runs as one program
#
# `train.train_population` stacks runs that differ only in schedule numbers
# and seed into one jitted, vmapped train step; each member is an ordinary
# run directory. Here: the bigram corpus (its optimal loss is known), cosine
# schedules at three peaks.

# %%
base = bigram_config.get_config()
base.train.update(progress=False, plots=False, eval_every=budget // 10,
                  log_every=budget // 10)
pop_peaks = (0.01, 0.05, 0.2)
configs = [with_schedule(base, schedules.cosine(p, budget, budget // 20),
                         budget) for p in pop_peaks]
dirs = [f"{workdir}/population/peak{p}" for p in pop_peaks]
train.train_population(configs, dirs)
series = [(f"cosine, peak {p}", *runs.Run(d).eval_curve())
          for p, d in zip(pop_peaks, dirs)]
plots.show_png(plots.curves(
    series, f"{workdir}/population.png", ylabel="eval loss",
    hline=runs.Run(dirs[0]).data_info.get("optimal_loss"),
    hline_label="optimal loss"))

# %% [markdown]
# ## Branches and WSD-S on a tiny run
#
# One main run at the peak LR; decays forked from its checkpoints
# (`train.branch`); WSD-S continues the main run from a decayed branch
# (`train.continue_from_branch`). The tree equals one run of
# `schedules.wsd_s` with the same budgets, step for step. The runs use the
# river-valley setup (`configs/river_valley.py`: plain SGD at a high LR, where
# a decay visibly lowers the loss).

# %%
sgd = river_valley_config.get_config().run
sgd.train.update(eval_every=budget // 20, log_every=budget // 20)
wsds = schedules.wsd_s(120.0, budgets=(budget, 2 * budget), decay_fraction=0.1,
                       warmup_steps=budget // 20)
(d1, d2), (e1, e2) = wsds.decay_steps, wsds.checkpoint_steps
d1, d2 = int(d1), int(d2)
main_dir = f"{workdir}/wsd_main"
constant = schedules.wsd(120.0, e2, decay_steps=0, warmup_steps=budget // 20)
main_config = with_schedule(sgd, constant, e1 - d1,
                            keep_steps=(e1 - d1, e2 - d2))
train.train_and_evaluate(main_config, main_dir)         # stable to the fork
train.branch(main_dir, e1 - d1, d1, "linear")           # budget 1's decay
first = runs.branch_name(e1 - d1, d1, "linear")
main_config.train.steps = e2 - d2
train.continue_from_branch(main_config, main_dir, first)  # WSD-S
last = train.branch(main_dir, e2 - d2, d2, "linear")    # budget 2's decay

root = runs.Run(main_dir)
print(tree.format_tree(root))
tree_lrs = runs.Run(last["workdir"]).lrs(e2 + 1)
wsds_lrs = np.asarray(wsds(np.arange(e2 + 1)))
print("max |tree LRs - wsd_s LRs|:", float(np.max(np.abs(tree_lrs - wsds_lrs))))

# %%
fig, ax = plt.subplots(figsize=(7, 3))
ax.plot(tree_lrs, label="main run + WSD-S + last branch")
ax.plot(wsds_lrs, "--", label="schedules.wsd_s")
ax.set(xlabel="step", ylabel="learning rate")
ax.legend()
plt.show()
plots.show_png(reports.tree_figure(main_dir))
