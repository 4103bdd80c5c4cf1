"""A small 3-D Probabilistic U-Net (Kohl et al., NeurIPS 2018) for stochastic segmentation.

Parts, all built from the `model.json` args (`"network": {"name": "ProbabilisticUNet", "args": {...}}`):
- backbone: a MONAI `UNet` returning `feature_channels` feature maps `(B, F, *spatial)`;
- prior net: image `(B, C_in, *spatial)` -> axis-aligned Gaussian `(mu, log_sigma)`, each `(B, L)`;
- posterior net: image + one-hot label -> the same kind of Gaussian (used only in training);
  both are small conv encoders (stride-2 convolutions) ending in global average pooling;
- fcomb: the latent `z` `(B, L)` broadcast over space, concatenated with the features and mapped by
  1x1x1 convolutions to class logits `(B, out_channels, *spatial)`.

`forward(x)` uses the prior *mean* as latent: deterministic, so `predict` without sampling
(softmax, ensemble, TTA, calibration) is well defined and is the model's "most likely" segmentation.
`sample(x)` draws `z = mu + sigma * eps` from the prior, `eps ~ N(0, I)`.

Sliding windows: Kohl's latent is drawn once per image, but sliding-window inference calls the
network per window, and each window sees another crop, so the prior's `mu`, `sigma` differ per window.
Inside `with network.shared_latent_noise():` the first `sample` call draws `eps` (a `(L,)` vector,
under the caller's seeded RNG) and every later call (every window and every window of a batch)
reuses it: one draw is one quantile of the prior, held fixed over the image. Where the image fits
one window this is exactly a per-image prior draw. `sampling.sample_probabilities` enters this
context for every pass of `--method sample`.

Training: `elbo_loss(x, labels, beta)` = cross-entropy (mean over voxels) of the reconstruction from
a posterior sample + `beta` * KL(posterior || prior) (closed form, summed over the latent dims,
averaged over the batch). With a per-voxel mean cross-entropy, `beta` weighs KL against one voxel's loss.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn
from torch.nn import functional as F


def kl_divergence_gaussians(mu_q, log_sigma_q, mu_p, log_sigma_p):
    """KL(q || p) of axis-aligned Gaussians, summed over the last (latent) dim: `(B, L)` each -> `(B,)`.

    KL = sum_l log(sigma_p / sigma_q) + (sigma_q^2 + (mu_q - mu_p)^2) / (2 sigma_p^2) - 1/2.
    """
    variance_ratio = torch.exp(2 * (log_sigma_q - log_sigma_p))
    mean_term = (mu_q - mu_p) ** 2 * torch.exp(-2 * log_sigma_p)
    return (log_sigma_p - log_sigma_q + 0.5 * (variance_ratio + mean_term) - 0.5).sum(dim=-1)


class GaussianEncoder(nn.Module):
    """Conv encoder + global average pooling: `(B, C_in, *spatial)` -> `(mu, log_sigma)`, each `(B, latent_dim)`."""

    def __init__(self, in_channels: int, channels, latent_dim: int):
        super().__init__()
        layers, previous = [], in_channels
        for level, width in enumerate(channels):
            layers += [nn.Conv3d(previous, width, 3, stride=1 if level == 0 else 2, padding=1), nn.LeakyReLU(0.01)]
            layers += [nn.Conv3d(width, width, 3, padding=1), nn.LeakyReLU(0.01)]
            previous = width
        self.encoder = nn.Sequential(*layers)
        self.head = nn.Conv3d(previous, 2 * latent_dim, 1)
        self.latent_dim = latent_dim

    def forward(self, x):
        pooled = self.encoder(x).mean(dim=(2, 3, 4), keepdim=True)
        mu, log_sigma = self.head(pooled).flatten(1).chunk(2, dim=1)
        return mu, log_sigma.clamp(-10.0, 10.0)


class ProbabilisticUNet(nn.Module):
    """Probabilistic U-Net: `(B, in_channels, I, J, K)` -> logits `(B, out_channels, I, J, K)`.

    Args: `channels`/`strides`/`num_res_units` of the MONAI UNet backbone, `feature_channels` (F) it
    returns, `latent_dim` (L), `encoder_channels` of the prior and posterior nets, `fcomb_channels`
    and `fcomb_layers` (1x1x1 convolutions, the last one to the classes).
    """

    def __init__(self, spatial_dims: int = 3, in_channels: int = 1, out_channels: int = 3, channels=(8, 16, 32),
                 strides=(2, 2), num_res_units: int = 0, feature_channels: int = 8, latent_dim: int = 6,
                 encoder_channels=(8, 16, 32), fcomb_channels: int = 16, fcomb_layers: int = 3):
        super().__init__()
        from monai.networks.nets import UNet

        if spatial_dims != 3:
            raise ValueError(f"ProbabilisticUNet is 3-D: spatial_dims must be 3, found {spatial_dims}")
        if out_channels < 2:
            raise ValueError(f"ProbabilisticUNet needs softmax logits over at least 2 classes, found out_channels={out_channels}")
        if latent_dim < 1 or fcomb_layers < 1 or not encoder_channels:
            raise ValueError("latent_dim and fcomb_layers must be at least 1 and encoder_channels non-empty")
        self.num_classes = out_channels
        self.latent_dim = latent_dim
        self.backbone = UNet(spatial_dims=3, in_channels=in_channels, out_channels=feature_channels, channels=channels,
                             strides=strides, num_res_units=num_res_units)
        self.prior_net = GaussianEncoder(in_channels, encoder_channels, latent_dim)
        self.posterior_net = GaussianEncoder(in_channels + out_channels, encoder_channels, latent_dim)
        layers, previous = [], feature_channels + latent_dim
        for _ in range(fcomb_layers - 1):
            layers += [nn.Conv3d(previous, fcomb_channels, 1), nn.ReLU()]
            previous = fcomb_channels
        layers.append(nn.Conv3d(previous, out_channels, 1))
        self.fcomb = nn.Sequential(*layers)
        self._shared_noise: dict | None = None

    def prior(self, x):
        """Prior Gaussian of the latent given the image: `(mu, log_sigma)`, each `(B, L)`."""
        return self.prior_net(x)

    def posterior(self, x, labels):
        """Posterior Gaussian given the image and integer labels `(B, *spatial)` or `(B, 1, *spatial)`."""
        if labels.dim() == x.dim():
            labels = labels[:, 0]
        one_hot = F.one_hot(labels.long(), self.num_classes).movedim(-1, 1).to(x.dtype)
        return self.posterior_net(torch.cat([x, one_hot], dim=1))

    def combine(self, features, z):
        """Features `(B, F, *spatial)` + latent `(B, L)` broadcast over space -> logits `(B, out_channels, *spatial)`."""
        tiled = z[:, :, None, None, None].expand(-1, -1, *features.shape[2:])
        return self.fcomb(torch.cat([features, tiled.to(features.dtype)], dim=1))

    def forward(self, x):
        """Deterministic logits with the prior mean as latent."""
        mu, _ = self.prior(x)
        return self.combine(self.backbone(x), mu)

    def sample(self, x):
        """Logits with a latent drawn from the prior; inside `shared_latent_noise()` the draw's noise is reused."""
        mu, log_sigma = self.prior(x)
        if self._shared_noise is not None:
            if "eps" not in self._shared_noise:
                self._shared_noise["eps"] = torch.randn(self.latent_dim, device=mu.device, dtype=mu.dtype)
            eps = self._shared_noise["eps"].expand_as(mu)
        else:
            eps = torch.randn_like(mu)
        return self.combine(self.backbone(x), mu + torch.exp(log_sigma) * eps)

    @contextlib.contextmanager
    def shared_latent_noise(self):
        """One prior draw for every `sample` call inside (every sliding window of one pass); see the module doc."""
        previous, self._shared_noise = self._shared_noise, {}
        try:
            yield self
        finally:
            self._shared_noise = previous

    def elbo_terms(self, x, labels):
        """(cross-entropy of the posterior-sample reconstruction, mean KL(posterior || prior)), both scalars."""
        if labels.dim() == x.dim():
            labels = labels[:, 0]
        mu_q, log_sigma_q = self.posterior(x, labels)
        mu_p, log_sigma_p = self.prior(x)
        z = mu_q + torch.exp(log_sigma_q) * torch.randn_like(mu_q)
        logits = self.combine(self.backbone(x), z)
        reconstruction = F.cross_entropy(logits, labels.long())
        kl = kl_divergence_gaussians(mu_q, log_sigma_q, mu_p, log_sigma_p).mean()
        return reconstruction, kl

    def elbo_loss(self, x, labels, beta: float = 1.0):
        """Negative ELBO to minimise: reconstruction cross-entropy + beta * KL(posterior || prior)."""
        reconstruction, kl = self.elbo_terms(x, labels)
        return reconstruction + beta * kl
