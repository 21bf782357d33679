"""The convolutional VAE: encoder → diagonal Gaussian q(z|x), a prior p(z) (standard normal, or the VampPrior of
`vaelab.models.priors`), decoder → p(x|z).

The public surface (`vaelab.models.base`): `encode(x) → Posterior` (mean, log-variance), `decode_dist(z)` (a torch
distribution whose `log_prob(x)` is `[N]`), `sample(n, generator)`, `latent_dim`. Loss terms are per image,
in nats. Every method also takes `labels` (the class of each image, int64 `[N]`): the conditional variants need
them, the plain VAE ignores them, so that code written once serves both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import nn
from torch.distributions import Distribution
from torch.nn import functional as F

from vaelab.data.datasets import iterate_batches
from vaelab.models.base import FamilyModule, Posterior, kl_per_dimension
from vaelab.models.blocks import down_stage, up_stage
from vaelab.models.disentangling import (
    DISCRIMINATOR_BETAS,
    TCDiscriminator,
    capacity_at,
    permute_dimensions,
    total_correlation_terms,
)
from vaelab.models.likelihoods import LIKELIHOODS
from vaelab.models.options import ModelConfig
from vaelab.models.pixelcnn import AutoregressiveImage, GatedPixelCNN
from vaelab.models.priors import (
    PSEUDO_INPUT_SCALE,
    mixture_kl_terms,
    mixture_log_density,
    sample_mixture,
    standard_normal_log_density,
)
from vaelab.models.registry import require_image_shape, require_images
from vaelab.models.training_step import (
    GeneratorSpec,
    Phase,
    RunSettings,
    StepContext,
    TrainingStep,
    ValidationData,
    kl_weight,
    kl_with_free_bits,
)


def standard_kl_terms(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> dict[str, torch.Tensor]:
    """Against N(0, I): the KL in closed form, "kl" `[N]` and "kl_per_dim" `[N, D]`, and "log_prior" log p(z) `[N]`
    at the codes `z`."""
    kl_dims = kl_per_dimension(mu, logvar)
    return {"kl": kl_dims.sum(1), "kl_per_dim": kl_dims, "log_prior": standard_normal_log_density(z)}


def reparameterised_terms(
    x: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    noise: torch.Tensor | None,
    decode_dist: Callable[[torch.Tensor], Distribution],
    kl_terms: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], dict[str, torch.Tensor]] = standard_kl_terms,
) -> dict[str, torch.Tensor]:
    """The loss terms once q(z|x) is known: −log p(x|z) at one reparameterised z (standard normal `noise`, drawn
    when None), and the KL terms of the model's prior (`kl_terms(z, mu, logvar)`: "kl", "kl_per_dim",
    "log_prior"). Each model passes its own `decode_dist` (e.g. with the label bound)."""
    if noise is None:
        noise = torch.randn_like(mu)
    z = mu + noise * (0.5 * logvar).exp()
    recon = -decode_dist(z).log_prob(x)
    return {"recon": recon, **kl_terms(z, mu, logvar), "mu": mu, "logvar": logvar, "z": z}


class VAE(FamilyModule):
    """The convolutional VAE (`--model vae`): a stride-2 conv encoder to a diagonal Gaussian q(z|x), a standard
    normal prior, and a transposed-conv decoder whose output the run's likelihood reads as p(x|z).

    Images are float `[N, C, H, W]` in [0, 1] of the run's shape (`config.image_shape`); loss terms are per image,
    in nats. The conditional variant (`cvae`, a subclass) adds a one-hot label; its methods then need `labels`,
    which the plain VAE ignores.

    Examples:
        ```python
        import torch
        import vaelab

        model = vaelab.load_model("runs/demo")          # a trained one; or untrained:
        model = vaelab.VAE(vaelab.RunConfig().model)    # MNIST's shape, 32 latent dimensions
        x = torch.rand(8, *model.config.image_shape)    # [8, 1, 28, 28] in [0, 1]
        mu, logvar = model.encode(x)                    # [8, 32] each
        log_px = model.decode_dist(mu).log_prob(x)      # [8], nats
        images = model.sample(16, generator=torch.Generator().manual_seed(0))   # [16, 1, 28, 28]
        ```
    """

    def __init__(self, config: ModelConfig, condition_dim: int = 0, input_planes: int = 0) -> None:
        """`condition_dim` widens the encoder's last layer and the decoder's first by a condition vector (the
        one-hot label of the conditional variant), `input_planes` the encoder's input by that many image planes;
        0 and 0 give the plain VAE, whose parameter names it keeps."""
        super().__init__(config)
        require_image_shape(config)
        image_channels, height, width = config.image_shape
        likelihood = LIKELIHOODS[config.likelihood]
        stages = config.stage_widths  # `channels`, extended to the image's resolution
        planes = image_channels * likelihood.planes_per_channel
        # The transposed convs give the likelihood's planes, or, under a PixelCNN, the maps that condition it.
        autoregressive = config.decoder.name == "pixelcnn"
        decoder_widths = [config.decoder.pixelcnn_channels if autoregressive else planes, *stages]
        encoder_widths = [image_channels + input_planes, *stages]
        stride = 2 ** len(stages)
        self.feature_shape = (height // stride, width // stride)
        self.feature_width = stages[-1]
        features = stages[-1] * self.feature_shape[0] * self.feature_shape[1]

        encoder: list[nn.Module] = [
            down_stage(encoder_widths[i], encoder_widths[i + 1], config.blocks_per_stage)
            for i in range(len(stages))
        ]
        encoder.append(nn.Flatten())
        decoder_input: list[nn.Module] = []
        decoder_width = config.latent_dim + condition_dim
        if config.hidden_dim:
            encoder += [nn.Linear(features, config.hidden_dim), nn.ReLU()]
            decoder_input += [nn.Linear(decoder_width, config.hidden_dim), nn.ReLU()]
        encoder.append(nn.Linear((config.hidden_dim or features) + condition_dim, 2 * config.latent_dim))
        decoder_input += [nn.Linear(config.hidden_dim or decoder_width, features), nn.ReLU()]
        self.encoder = nn.Sequential(*encoder)
        self.decoder_input = nn.Sequential(*decoder_input)
        self.decoder = nn.Sequential(
            *[
                up_stage(decoder_widths[i + 1], decoder_widths[i], config.blocks_per_stage, last=(i == 0))
                for i in reversed(range(len(stages)))
            ]
        )
        self.likelihood = likelihood()
        if autoregressive:
            self.autoregressive = GatedPixelCNN(planes, config.decoder.pixelcnn_channels,
                                                config.decoder.pixelcnn_layers, config.decoder.pixelcnn_channels)
        if config.objective.name == "factorvae":  # trained beside the VAE, by its own optimizer (see ELBOStep)
            self.tc_discriminator = TCDiscriminator(config.latent_dim)
        if config.prior.name == "vamp":  # the VampPrior's pseudo-inputs u_k, as logits: u_k = sigmoid(·) is an image
            self.pseudo_inputs = nn.Parameter(
                PSEUDO_INPUT_SCALE * torch.randn(config.prior.components, *config.image_shape)
            )

    def encode(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> Posterior:
        """x `[N, C, H, W]` in [0, 1] → q(z|x): mean and log-variance, each `[N, latent_dim]`, float32."""
        require_images(x, self.config, "encode")
        mu, logvar = self.encoder(x).float().chunk(2, dim=1)
        return Posterior(mu, logvar)

    def trunk_features(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's hidden features, before the read-out of mu and log-variance (where a conditional variant
        appends the label)."""
        return self.encoder[:-1](x)

    def decoder_output(self, z: torch.Tensor) -> torch.Tensor:
        """Raw decoder output, float32 `[N, C·planes, H, W]`: what the likelihood reads (logits for Bernoulli); under
        a PixelCNN decoder, the maps `[N, pixelcnn_channels, H, W]` that condition it."""
        h = self.decoder_input(z).view(-1, self.feature_width, *self.feature_shape)
        return self.decoder(h).float()

    def output_dist(self, decoder_output: torch.Tensor) -> Distribution:
        """p(x|z) from the decoder's output: the likelihood reading it pixel by pixel (factorised), or the PixelCNN
        conditioned on it (autoregressive)."""
        if self.config.decoder.name == "pixelcnn":
            return AutoregressiveImage(self.autoregressive, decoder_output, self.likelihood)
        return self.likelihood(decoder_output)

    def decode_dist(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> Distribution:
        """p(x|z) as a distribution over whole images: `log_prob(x)` is `[N]`, `.mean` is `[N, C, H, W]` (for a
        PixelCNN decoder, the conditional means along one sampled path: see `vaelab.models.pixelcnn`)."""
        return self.output_dist(self.decoder_output(z))

    def decode(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The mean image of p(x|z), in [0, 1]."""
        return self.decode_dist(z, labels).mean

    def prior_components(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The VampPrior's components, the posterior means and log-variances of its pseudo-inputs `[K, D]` each
        (a conditional model encodes pseudo-input k as class k mod classes); None for the standard normal prior."""
        if self.config.prior.name != "vamp":
            return None
        pseudo_inputs = torch.sigmoid(self.pseudo_inputs)
        labels = None
        if self.config.classes is not None:  # ignored by the unconditional kinds
            labels = torch.arange(pseudo_inputs.shape[0], device=pseudo_inputs.device) % self.config.classes
        return self.encode(pseudo_inputs, labels)

    def kl_terms(self, z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> dict[str, torch.Tensor]:
        """KL(q(z|x) ‖ p(z)) per image ("kl" `[N]`) and per dimension ("kl_per_dim" `[N, D]`), and log p(z)
        ("log_prior" `[N]`), for codes z drawn from q: in closed form for the standard normal prior, one-sample
        estimates for the VampPrior (see `vaelab.models.priors`)."""
        components = self.prior_components()
        if components is None:
            return standard_kl_terms(z, mu, logvar)
        return mixture_kl_terms(z, mu, logvar, *components)

    def prior_log_density(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) of codes `[..., D]`: `[...]`."""
        components = self.prior_components()
        if components is None:
            return standard_normal_log_density(z)
        return mixture_log_density(z, *components)

    @torch.no_grad()
    def prior_marginals(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean and standard deviation of p(z) in each dimension, `[D]` each on the CPU: 0 and 1 for N(0, I),
        the mixture's moments for the VampPrior. Traversals step in these units."""
        components = self.prior_components()
        if components is None:
            return torch.zeros(self.latent_dim), torch.ones(self.latent_dim)
        means, logvars = (part.float().cpu() for part in components)
        mean = means.mean(0)
        return mean, ((logvars.exp() + means.pow(2)).mean(0) - mean.pow(2)).clamp(min=0).sqrt()

    @torch.no_grad()
    def prior_mode(self) -> torch.Tensor:
        """A most probable code of p(z), `[D]` on the CPU: 0 for N(0, I); for the VampPrior, the component mean
        where the mixture's density is highest."""
        components = self.prior_components()
        if components is None:
            return torch.zeros(self.latent_dim)
        means = components[0]
        return means[self.prior_log_density(means).argmax()].float().cpu()

    @torch.no_grad()
    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """`n` codes z ~ p(z) `[n, D]` on the model's device, drawn on the CPU from `generator`."""
        components = self.prior_components()
        if components is None:
            return torch.randn(n, self.latent_dim, generator=generator).to(self.device)
        return sample_mixture(n, *components, generator=generator).to(self.device)

    def sample(
        self, n: int, generator: torch.Generator | None = None, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """`n` images decoded from prior draws z ~ p(z): `[n, C, H, W]` in [0, 1]."""
        return self.decode(self.sample_prior(n, generator), labels)

    def reconstruct(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Decode the posterior mean of each input."""
        mu, _ = self.encode(x, labels)
        return self.decode(mu, labels)

    def loss_terms(
        self, x: torch.Tensor, noise: torch.Tensor | None = None, labels: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Per-image reconstruction −log p(x|z) with one reparameterised z, and the KL per dimension.

        `noise` (standard normal, `[N, latent_dim]`) may be passed so that callers control the randomness.
        """
        mu, logvar = self.encode(x, labels)
        return reparameterised_terms(x, mu, logvar, noise, lambda z: self.decode_dist(z, labels), self.kl_terms)


class ELBOStep(TrainingStep):
    """The VAE's objective, for the plain and the conditional VAE: per image −log p(x|z) plus the latent penalty of
    `model.objective` (see `vaelab.models.disentangling`), one reparameterised z per image from the run's "noise"
    generator. The default, `beta`: β·KL(q(z|x) ‖ p(z)), β warmed up over `kl_warmup_steps`, KL below `free_bits`
    nats per dimension not penalised. `factorvae` adds a discriminator step after each VAE step."""

    def __init__(self, config: RunSettings, train_labels: torch.Tensor) -> None:
        super().__init__(config, train_labels)
        self.objective = config.model.objective.name

    def generators(self) -> dict[str, GeneratorSpec]:
        if self.objective == "factorvae":
            return {"noise": GeneratorSpec(2), "permutation": GeneratorSpec(3)}
        return {"noise": GeneratorSpec(2)}

    def parameter_groups(self, model: VAE) -> dict[str, Iterable[nn.Parameter]]:
        if self.objective != "factorvae":
            return {"model": model.parameters()}
        return {"model": [p for name, p in model.named_parameters() if not name.startswith("tc_discriminator.")],
                "discriminator": model.tc_discriminator.parameters()}

    def optimizer_options(self, name: str) -> dict[str, Any]:
        return {"betas": DISCRIMINATOR_BETAS} if name == "discriminator" else {}

    def beta(self, step: int) -> float:
        objective = self.config.model.objective
        return kl_weight(step, objective.beta, self.scaled_steps(objective.kl_warmup_steps))

    def capacity(self, step: int) -> float:
        objective = self.config.model.objective
        steps = self.scaled_steps(objective.capacity_steps) or self.run_steps
        return capacity_at(step, objective.capacity_max, steps)

    def schedule_values(self, step: int) -> dict[str, float]:
        if self.objective == "capacity":
            return {"capacity": self.capacity(step)}
        return {"beta": self.beta(step)} if self.objective == "beta" else {}

    def latent_penalty(
        self, model: VAE, terms: dict[str, torch.Tensor], step: int
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """What the objective adds to −log p(x|z), per image `[N]`, and the terms it logs."""
        weight = self.config.model.objective.tc_weight
        if self.objective == "tcvae":
            parts = total_correlation_terms(terms["z"], terms["mu"], terms["logvar"], terms["log_prior"],
                                            len(self.pool))
            return parts["mi"] + weight * parts["tc"] + parts["dim_kl"], parts
        if self.objective == "factorvae":
            tc = model.tc_discriminator(terms["z"])
            return terms["kl"] + weight * tc, {"tc": tc}
        if self.objective == "capacity":
            gap = (terms["kl"].mean() - self.capacity(step)).abs()
            return (self.config.model.objective.capacity_weight * gap).expand_as(terms["kl"]), {}
        return self.beta(step) * kl_with_free_bits(terms["kl"], terms["kl_per_dim"],
                                                    self.config.model.objective.free_bits), {}

    def step(
        self, model: VAE, intensities: torch.Tensor, labels: torch.Tensor, context: StepContext
    ) -> Iterator[Phase]:
        x = context.modelled(intensities)
        noise = self.noise(x, context)
        with context.autocast():
            terms = model.loss_terms(x, noise, labels)
        # FactorVAE's VAE step reads the TC through the discriminator without training it; the discriminator's own
        # step then tells the batch's codes (detached) from the same codes with each dimension shuffled.
        discriminating = self.objective == "factorvae"
        if discriminating:
            model.tc_discriminator.requires_grad_(False)
        try:
            penalty, logged = self.latent_penalty(model, terms, context.step)
            loss = (terms["recon"] + penalty).mean()
            yield Phase(loss, {"loss": loss, "recon": terms["recon"], "kl": terms["kl"], **logged})
        finally:
            if discriminating:
                model.tc_discriminator.requires_grad_(True)
        if discriminating:
            yield self.discriminator_phase(model, terms["z"].detach(), context)

    def discriminator_phase(self, model: VAE, z: torch.Tensor, context: StepContext) -> Phase:
        joint = model.tc_discriminator(z)
        product = model.tc_discriminator(permute_dimensions(z, context.generators["permutation"]))
        loss = F.softplus(-joint) + F.softplus(product)
        accuracy = ((joint > 0).float() + (product < 0).float()) / 2
        return Phase(loss.mean(), {"loss_d": loss, "d_accuracy": accuracy}, optimizer="discriminator")

    def noise(self, x: torch.Tensor, context: StepContext) -> torch.Tensor:
        """Standard normal ε `[N, latent_dim]` for the reparameterised z of a batch."""
        latent_dim = self.config.model.latent_dim
        return torch.randn(x.shape[0], latent_dim, generator=context.generators["noise"], device=x.device)

    def validate(self, model: VAE, data: ValidationData) -> dict[str, Any]:
        """Validation ELBO with fixed noise: one reparameterised sample per image; the KL in closed form (standard
        prior) or estimated at that sample (VampPrior)."""
        device = data.inputs.device
        generator = torch.Generator(device).manual_seed(data.seed)
        recon_sum, kl_sum = 0.0, 0.0
        kl_dims_sum = torch.zeros(self.config.model.latent_dim, device=device)
        for index in iterate_batches(data.inputs.shape[0], VALIDATION_BATCH):
            index = index.to(device)
            x, y = data.inputs[index], data.labels[index]
            noise = torch.randn(x.shape[0], self.config.model.latent_dim, generator=generator, device=device)
            terms = model.loss_terms(x, noise, y)
            recon_sum += terms["recon"].sum().item()
            kl_sum += terms["kl"].sum().item()
            kl_dims_sum += terms["kl_per_dim"].sum(0)
        n = data.inputs.shape[0]
        kl_per_dim = (kl_dims_sum / n).tolist()
        recon, kl = recon_sum / n, kl_sum / n
        return {
            "val_loss": recon + self.config.model.objective.beta * kl,
            "val_recon": recon,
            "val_kl": kl,
            "val_elbo": -(recon + kl),
            "val_kl_per_dim": kl_per_dim,
        }

    def summary(self, row: dict[str, Any]) -> str:
        return f"val ELBO {row['val_elbo']:.2f}  val KL {row['val_kl']:.2f}"


VALIDATION_BATCH = 1000
