"""LR methods that react to training (DESIGN.md, "Adaptive methods"):
hypergradient optimizers and refined schedules."""

from wsd_jax.adaptive.hypergradient import (OPTIMIZERS, adam_hd, applied_lr,
                                            current_lr, sgd_hd)

__all__ = ["OPTIMIZERS", "adam_hd", "applied_lr", "current_lr", "sgd_hd"]
