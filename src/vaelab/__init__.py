"""vaelab: train convolutional VAEs on MNIST / Fashion-MNIST and measure what they learned.

    import vaelab
    model = vaelab.load_model("runs/demo")     # config.json + model.safetensors, eval mode, CPU
    mu, logvar = model.encode(x)                # x: [N, 1, 28, 28] in [0, 1]
    px = model.decode_dist(z)                   # px.log_prob(x) -> [N]
    images = model.sample(16, generator=torch.Generator().manual_seed(0))
"""

from vaelab.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from vaelab.errors import VaelabError
from vaelab.evaluation import evaluate_run
from vaelab.models import VAE
from vaelab.training import load_model, train

__all__ = [
    "VAE", "DataConfig", "ModelConfig", "RunConfig", "TrainConfig", "VaelabError", "evaluate_run", "load_model",
    "train",
]
__version__ = "0.1.0"
