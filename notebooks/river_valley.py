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
# # The river valley, on a laptop CPU
#
# A scaled-down reproduction of Wen et al. (arXiv 2410.05192): a bigram logit
# table trained with SGD at a high constant LR on a synthetic bigram language
# whose first tokens have graded next-token entropy, so the optimal loss of
# every token group is known exactly. The study trains a WSD main branch with
# decay branches, cosine, WSD-S and cyclic cosine over several seeds, forks a
# short decay from stable checkpoints to split the excess loss into *hill*
# (what a decay removes) and *river* (what is left), and gives a verdict on
# each claim of the paper.
#
# This is exactly what `python -m experiments.river_valley --workdir=DIR
# [--quick]` runs: `wsd_jax.studies.river_valley_report.run(config, workdir)`
# with `configs/river_valley.py`. The full form takes about 6.5 CPU-minutes
# (8 seeds), `quick` under one. `WSD_JAX_QUICK=1` shrinks it further, to CI
# size (one seed, two budgets: a pipeline check, not evidence).

# %%
import os
import tempfile

from configs import river_valley as river_valley_config
from wsd_jax import plots
from wsd_jax.studies import river_valley_report

QUICK = os.environ.get("WSD_JAX_QUICK") == "1"

quick = False  # @param {type:"boolean"}
seeds = 0  # @param {type:"integer"}
workdir = ""  # @param {type:"string"}
config = river_valley_config.get_config("quick" if quick or QUICK else "")
if seeds:  # 0: the config's seeds (8; 2 when quick)
  config.seeds = tuple(range(seeds))
if QUICK:
  config.update(budgets=(80, 160), seeds=(0,), hill_every=72,
                hill_decays=(8, 16))
workdir = workdir or tempfile.mkdtemp(prefix="wsd_jax_river_valley_")
print("workdir:", workdir)
print(config)

# %% [markdown]
# ## Run the study
#
# Rerunning with the same `workdir` reuses every finished run and only redoes
# the analysis.

# %%
result = river_valley_report.run(config, workdir)
for claim in result["claims"]:
  print(f"{claim['verdict'].upper()}: {claim['claim']}")
  print(f"    criterion: {claim['criterion']}")
print(f"wall time: {result['wall_time_s']['total_s']:.0f} s "
      f"({result['wall_time_s']['train_s']:.0f} s training)")

# %% [markdown]
# ## Figures and tables
#
# Every figure is a PNG in `workdir` and every table is Markdown (and JSON)
# beside it; `workdir/report.md` puts them together.

# %%
for name in result["figures"]:
  plots.show_png(f"{workdir}/{result['figures'][name]}")
for name in result["tables"]:
  print(f"### {name}\n")
  with open(f"{workdir}/{name}.md") as f:
    print(f.read())
