"""Training: the loop, run-directory I/O, schedules."""

from vaelab.training.checkpoint import load_model, read_config, read_metrics
from vaelab.training.trainer import NonFiniteLossError, TrainResult, train

__all__ = ["NonFiniteLossError", "TrainResult", "load_model", "read_config", "read_metrics", "train"]
