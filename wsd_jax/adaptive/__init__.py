"""LR methods that react to training (DESIGN.md, "Adaptive methods"):
hypergradient optimizers and refined schedules."""

from wsd_jax.adaptive import refined
from wsd_jax.adaptive.hypergradient import (OPTIMIZERS, adam_hd, applied_lr,
                                            current_lr, sgd_hd)
from wsd_jax.adaptive.refined import (refined_schedule,
                                      refined_schedule_from_run,
                                      refined_values)

__all__ = ["OPTIMIZERS", "adam_hd", "applied_lr", "current_lr", "refined",
           "refined_schedule", "refined_schedule_from_run", "refined_values",
           "sgd_hd"]
