"""Pipelines: multi-step workflows over many runs (train → evaluate → analyse → report)."""
