"""vaelab: train convolutional VAEs on small image datasets and measure what they learned.

    import vaelab
    model = vaelab.load_model("runs/demo")     # config.json + model.safetensors, eval mode, frozen, CPU
    mu, logvar = model.encode(x)                # x: [N, C, H, W] in [0, 1], the shape of the run's dataset
    px = model.decode_dist(z)                   # px.log_prob(x) -> [N]
    images = model.sample(16, generator=torch.Generator().manual_seed(0))

The names below are loaded on first use (PEP 562): `import vaelab` and the command line's help import no torch.
"""

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_HOMES = {
    "DataConfig": "vaelab.config", "ModelConfig": "vaelab.config", "RunConfig": "vaelab.config",
    "TrainConfig": "vaelab.config", "VaelabError": "vaelab.errors", "evaluate_run": "vaelab.evaluation",
    "VAE": "vaelab.models.vae", "load_model": "vaelab.rundir", "read_config": "vaelab.rundir",
    "train": "vaelab.training", "copy_pretrained": "vaelab.pretrained", "list_pretrained": "vaelab.pretrained",
    "edit": "vaelab.analysis.directions", "analyse_directions": "vaelab.analysis.directions",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'vaelab' has no attribute '{name}'")
    return getattr(import_module(_HOMES[name]), name)
