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
# # LR schedules judged AlgoPerf's way
#
# Steps (and training seconds) to a fixed validation target per workload,
# under a fixed quasirandom tuning budget (each study's trials are one
# vmapped population), aggregated by performance profiles and AlgoPerf's
# score (Dahl et al., arXiv 2306.07179). This is what
# `python -m experiments.algoperf --workdir=DIR --quick` runs:
# `wsd_jax.studies.algoperf.app.run`, which writes AlgoPerf's own layout
# (`submissions/SUB/study_K/WORKLOAD_jax/trial_I/eval_measurements.csv`),
# `scores.csv`, `time_to_targets.csv`, the figures and `report.md`.
#
# The defaults below are `--quick`'s: the `bigram_quick` workload (a bigram
# table on the synthetic bigram corpus; its target is committed in the
# package), three submissions, one study of two trials. With so few trials
# the scores are noisy, not findings. `WSD_JAX_QUICK=1` shrinks it to CI
# size.

# %%
import os
import tempfile

from wsd_jax import plots, reports
from wsd_jax.studies.algoperf import app
from wsd_jax.studies.algoperf import submissions as submissions_lib

QUICK = os.environ.get("WSD_JAX_QUICK") == "1"

workloads = "bigram_quick"  # @param {type:"string"}
submissions = "cosine,constant,wsd_linear"  # @param {type:"string"}
studies = 1  # @param {type:"integer"}
trials = 2  # @param {type:"integer"}
workdir = ""  # @param {type:"string"}
if QUICK:
  submissions, trials = "cosine,wsd_linear", 1
workdir = workdir or tempfile.mkdtemp(prefix="wsd_jax_algoperf_")
print("workdir:", workdir)
print("submissions to choose from:")
for sub in submissions_lib.SUBMISSIONS.values():
  print(f"  {sub.name:22s} {sub.description}")

# %% [markdown]
# ## Run the benchmark
#
# Rerunning with the same `workdir` resumes per (submission, study,
# workload).

# %%
result = app.run(workdir, quick=True, workloads=workloads.split(","),
                 submissions=submissions.split(","), studies=studies,
                 trials=trials)
print(f"device: {result['info']['device']}; wall {result['info']['wall_s']} s")

# %% [markdown]
# ## Scores and time to target
#
# `score_steps` is the area under the performance profile of steps to target
# divided by 3 (1 = best on every workload); `speedup_vs_cosine` compares
# steps to target with the cosine baseline.

# %%
print(reports.markdown_table(
    ["submission", "score (steps)", "score (seconds)", "speed-up vs cosine",
     "workloads reached"],
    [[r["submission"], r["score_steps"], r["score_seconds"],
      r["speedup_vs_cosine"], r["workloads_reached"]]
     for r in result["scores"]], digits=3))
print(reports.markdown_table(
    ["submission", "workload", "steps to target", "seconds to target",
     "studies reached"],
    [[r["submission"], r["workload"], r["steps"], r["seconds"],
      f"{r['studies_reached']} of {r['studies']}"] for r in result["rows"]],
    digits=1))

# %% [markdown]
# ## Performance profile and curves

# %%
plots.show_png(f"{workdir}/performance_profile_steps.png")
for w in workloads.split(","):
  plots.show_png(f"{workdir}/curves_{w}.png")
