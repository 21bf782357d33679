"""Local paths: edits that bend with the latent space instead of following one straight line.

At every point of the path the step is the gradient of a small network that predicts the attribute from the code,
less its component along the gradient of a second network's log-probability of the image's class (the class the
second network reads in the starting code): the local, Jacobian-based form of InterFaceGAN's conditional
manipulation (Shen et al. 2020). A straight direction has to trade one against the other for every image at once;
a path re-aims at each of SUBSTEPS steps per standard edit, so it can move the attribute where the class boundary
is far and slide along the boundary where it is near. Without classes (or for a conditional model, whose label
holds the class) the path follows the attribute's gradient alone.

The networks are fitted on the codes the linear directions are fitted on (`vaelab.analysis.directions`); they are
small (two hidden layers of HIDDEN units, stored in half precision) and live beside directions.json in
directions.safetensors, so that `vaelab edit` walks the same paths the measurements walked.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vaelab.errors import VaelabError
from vaelab.hardware import one_thread
from vaelab.rundir import load_tensors, save_tensors

HIDDEN = 64
EPOCHS = 40
BATCH = 512
LEARNING_RATE = 3e-3
WEIGHT_DECAY = 1e-4
SUBSTEPS = 8  # gradient steps per standard edit: an amount is walked in eighths of one
CLASSIFIER = "class-network"  # its key among the attribute networks in the file


def code_network(latent_dim: int, outputs: int) -> nn.Sequential:
    """code `[N, D]` → `[N, outputs]`: two hidden layers of HIDDEN units with a smooth activation (its gradient is
    the path's direction, so it must not be piecewise constant as a ReLU network's is)."""
    return nn.Sequential(nn.Linear(latent_dim, HIDDEN), nn.SiLU(), nn.Linear(HIDDEN, HIDDEN), nn.SiLU(),
                         nn.Linear(HIDDEN, outputs))


def _fit(outputs: int, codes: torch.Tensor, loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
         seed: int) -> nn.Sequential:
    """A code network of `outputs` fitted by Adam on minibatches of the codes (`loss(outputs, index)` reads the
    targets of the batch's rows); its initial weights drawn from `seed`, the caller's random state left alone."""
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = code_network(codes.shape[1], outputs)
    optimizer = torch.optim.Adam(network.parameters(), LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    for _ in range(EPOCHS):
        for batch in torch.randperm(len(codes), generator=generator).split(BATCH):
            optimizer.zero_grad()
            loss(network(codes[batch]), batch).backward()
            optimizer.step()
    with torch.no_grad():  # stored in half precision (the shipped models' size budget): the paths measured are
        for parameter in network.parameters():  # the paths walked again from the file
            parameter.copy_(parameter.half().float())
    return network.eval().requires_grad_(False)


def _unit(vectors: torch.Tensor) -> torch.Tensor:
    return vectors / vectors.norm(dim=1, keepdim=True).clamp_min(1e-12)


@dataclass
class LocalPaths:
    """The attribute networks (code → the standardised attributes; one network predicts all the attributes fitted
    on the same codes): attribute → (network, its output), and, where a class is to be held, the class network
    (code → class logits)."""

    attributes: dict[str, tuple[nn.Sequential, int]]
    classifier: nn.Sequential | None

    @classmethod
    def fit(cls, codes: np.ndarray, attributes: dict[str, np.ndarray], labels: np.ndarray | None,
            seed: int = 0) -> LocalPaths:
        """Fit on codes `[N, D]`, their attributes (name → `[N]`, nan where undefined) and their classes (None: no
        class to hold), on one thread (networks this small only spin a second one)."""
        with one_thread():
            return cls._fit_networks(codes, attributes, labels, seed)

    @classmethod
    def _fit_networks(cls, codes: np.ndarray, attributes: dict[str, np.ndarray], labels: np.ndarray | None,
                      seed: int) -> LocalPaths:
        inputs = torch.from_numpy(codes).float()
        followed = {name: values for name, values in attributes.items()  # an attribute that never varies: no path
                    if np.isfinite(values).sum() >= 2 and np.nanstd(values) > 0}
        networks: dict[str, tuple[nn.Sequential, int]] = {}
        if followed:
            values = np.stack(list(followed.values()), axis=1)
            targets = torch.from_numpy((values - np.nanmean(values, 0)) / np.nanstd(values, 0)).float()
            known = torch.isfinite(targets)
            targets = torch.nan_to_num(targets)

            def squared_error(outputs: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
                return ((outputs - targets[batch]) ** 2 * known[batch]).sum() / known[batch].sum().clamp_min(1)

            network = _fit(len(followed), inputs, squared_error, seed)
            networks = {name: (network, k) for k, name in enumerate(followed)}
        classifier = None
        if labels is not None:
            classes = torch.from_numpy(labels).long()
            classifier = _fit(int(labels.max()) + 1, inputs,
                              lambda outputs, batch: nn.functional.cross_entropy(outputs, classes[batch]), seed)
        return cls(networks, classifier)

    def classes(self, codes: torch.Tensor) -> torch.Tensor | None:
        """The class the class network reads in each code `[N]` (None without one): the class a path holds."""
        return None if self.classifier is None else self.classifier(codes.float()).argmax(1)

    def direction(self, attribute: str, codes: torch.Tensor, classes: torch.Tensor | None) -> torch.Tensor:
        """The unit step `[N, D]` at each code: up the attribute, across no class boundary."""
        network, output = self.attributes[attribute]
        with torch.enable_grad():
            point = codes.detach().float().requires_grad_(True)
            rise = torch.autograd.grad(network(point)[:, output].sum(), point)[0]
            if classes is not None and self.classifier is not None:
                point = codes.detach().float().requires_grad_(True)
                own = torch.log_softmax(self.classifier(point), 1).gather(1, classes[:, None]).sum()
                across = _unit(torch.autograd.grad(own, point)[0])
                rise = rise - (rise * across).sum(1, keepdim=True) * across
        return _unit(rise).to(codes.dtype)

    def walk(self, attribute: str, codes: torch.Tensor, amounts: Sequence[float], scale: float) -> torch.Tensor:
        """Each code `[N, D]` walked to each amount (in standard edits of `scale` latent units; negative lowers the
        attribute): `[N, len(amounts), D]`, the amount 0 being the code itself."""
        if attribute not in self.attributes:
            raise VaelabError(f"no local path for '{attribute}' in directions.safetensors; run `vaelab directions` "
                              "again")
        signed_steps = [round(a * SUBSTEPS) for a in amounts]  # an amount is walked in whole substeps
        walked = {0: codes}
        with one_thread():
            classes = self.classes(codes)
            for sign in (1, -1):
                point = codes
                for step in range(1, max([sign * s for s in signed_steps] + [0]) + 1):
                    point = point + sign * scale / SUBSTEPS * self.direction(attribute, point, classes)
                    walked[sign * step] = point
        return torch.stack([walked[s] for s in signed_steps], dim=1)

    def save(self, path: Path) -> None:
        """Every network's weights into one safetensors file (written whole or not at all, with its checksum)."""
        keys = {id(network): f"attributes-{k}" for k, network in
                enumerate(dict.fromkeys(network for network, _ in self.attributes.values()))}
        networks = {keys[id(network)]: network for network, _ in self.attributes.values()}
        if self.classifier is not None:
            networks[CLASSIFIER] = self.classifier
        tensors = {f"{name}/{key}": value.half() for name, network in networks.items()
                   for key, value in network.state_dict().items()}  # exact: `_fit` rounded them so
        layout = {"networks": {name: [network[0].in_features, network[-1].out_features]
                               for name, network in networks.items()},
                  "attributes": {name: [keys[id(network)], output] for name, (network, output) in
                                 self.attributes.items()}}
        save_tensors(path, tensors, {"layout": json.dumps(layout, sort_keys=True)})

    @classmethod
    def load(cls, path: Path) -> LocalPaths:
        """The networks `save` wrote (safetensors: reading them runs no code), or a one-line error."""
        if not path.is_file():
            raise VaelabError(f"{path} does not exist; run `vaelab directions {path.parent}` again")
        try:
            tensors, metadata = load_tensors(path)
            layout = json.loads(metadata["layout"])
            networks = {}
            for name, (latent_dim, outputs) in layout["networks"].items():
                network = code_network(latent_dim, outputs)
                network.load_state_dict({key.split("/", 1)[1]: value.float() for key, value in tensors.items()
                                         if key.split("/", 1)[0] == name})
                networks[name] = network.eval().requires_grad_(False)
            attributes = {name: (networks[key], output) for name, (key, output) in layout["attributes"].items()}
        except (VaelabError, KeyError, ValueError, RuntimeError, json.JSONDecodeError) as error:
            raise VaelabError(f"{path} is unreadable ({error}); run `vaelab directions {path.parent}` again") from None
        return cls(attributes, networks.get(CLASSIFIER))
