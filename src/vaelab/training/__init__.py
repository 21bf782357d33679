"""Training: the family-agnostic loop, the write side of run directories, new run vs. resume."""

from vaelab.training.trainer import NonFiniteLossError, TrainResult, train

__all__ = ["NonFiniteLossError", "TrainResult", "train"]
