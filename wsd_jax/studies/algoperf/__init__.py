"""AlgoPerf-style comparisons of LR schedules (Dahl et al., arXiv 2306.07179):
workloads with fixed targets, submissions tuned by quasirandom search as
populations, time to target, performance profiles and scores."""
