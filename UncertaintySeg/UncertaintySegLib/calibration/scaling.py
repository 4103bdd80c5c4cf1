"""Affine scaling of logits, `z'_c = a_c z_c + b_c`, fitted by minimising NLL; three constraints of one code.

- `VectorScaling`: a scale and a bias per class (2C parameters).
- `TemperatureScaling`: one scale shared by every class, no bias (`a = 1/T`): vector scaling
  constrained to one parameter. Dividing by T > 0 keeps every voxel's argmax.
- `PlattScaling`: one shared scale `a` and one bias `b` that shifts the background logit,
  `z'_0 = a z_0 - b`, `z'_c = a z_c` (2 parameters). For two classes this is Rousseau et al.'s
  Platt scaling, a 1x1 convolution with two weights on the foreground-vs-background logit
  difference: `z'_1 - z'_0 = a (z_1 - z_0) + b`. With more classes the same two weights act on
  every foreground-vs-background difference (temperature plus a foreground/background shift);
  a scale and bias per class is `VectorScaling`.

Scales are parameterised as `exp(s)`, so they stay positive; the fit runs L-BFGS (strong Wolfe
line search, float64) on the sampled ROI voxels. NLL is convex in `(a, b)`, and `exp` is a
one-to-one map onto positive scales, so the minimum found is the global one on `a > 0`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..common.errors import InputError
from .base import VoxelCalibrator

BIAS_KINDS = ("none", "per_class", "background")
CHUNK_VOXELS = 1 << 19  # voxels per chunk of the NLL: small temporaries, so peak memory stays near the data's own


@dataclass(frozen=True)
class ScalingConstraint:
    """`shared_scale`: one scale for every class, else one per class; `bias`: 'none', 'per_class',
    or 'background' (one shift of the background logit)."""

    shared_scale: bool
    bias: str

    def expand(self, log_scale, bias, classes: int):
        """Free parameters -> (scale `(C,)`, bias `(C,)`)."""
        import torch

        scale = log_scale.exp().expand(classes) if self.shared_scale else log_scale.exp()
        if self.bias == "none":
            full_bias = torch.zeros(classes, dtype=log_scale.dtype)
        elif self.bias == "per_class":
            full_bias = bias
        else:
            full_bias = torch.cat([-bias, torch.zeros(classes - 1, dtype=log_scale.dtype)])
        return scale, full_bias

    def free_sizes(self, classes: int) -> tuple[int, int]:
        """Numbers of free log-scale and bias parameters."""
        return (1 if self.shared_scale else classes), {"none": 0, "per_class": classes, "background": 1}[self.bias]


def fit_logit_scaling(logits, labels, constraint: ScalingConstraint, max_iterations: int = 200):
    """Scale `(C,)` and bias `(C,)` (float32) minimising the mean NLL of `softmax(logits * scale + bias)`.

    `logits (N, C)` float, `labels (N,)` int64.
    """
    import torch

    classes = logits.shape[1]
    x, y = logits.double(), labels
    scale_size, bias_size = constraint.free_sizes(classes)
    log_scale = torch.zeros(scale_size, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(bias_size, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_scale, bias], lr=1.0, max_iter=max_iterations, tolerance_grad=1e-9,
                                  tolerance_change=1e-12, history_size=20, line_search_fn="strong_wolfe")

    def closure():  # the mean NLL and its gradient, summed over chunks so no (N, C) temporary is large
        optimizer.zero_grad()
        total = 0.0
        for start in range(0, len(y), CHUNK_VOXELS):
            scale, full_bias = constraint.expand(log_scale, bias, classes)
            part = torch.nn.functional.cross_entropy(x[start:start + CHUNK_VOXELS] * scale + full_bias,
                                                     y[start:start + CHUNK_VOXELS], reduction="sum") / len(y)
            part.backward()
            total += float(part.detach())
        return torch.tensor(total, dtype=torch.float64)

    optimizer.step(closure)
    with torch.no_grad():
        scale, full_bias = constraint.expand(log_scale, bias, classes)
    return scale.detach().float().clone(), full_bias.detach().float().clone()


def apply_logit_scaling(logits, scale, bias, channel_dim: int):
    """`logits * scale + bias` with `scale`, `bias` `(C,)` broadcast along `channel_dim`."""
    shape = [1] * logits.ndim
    shape[channel_dim] = -1
    return logits * scale.to(logits.device).view(shape) + bias.to(logits.device).view(shape)


class VectorScaling(VoxelCalibrator):
    """Per-class scale and bias on the logits: `z'_c = scale_[c] * z_c + bias_[c]`.

    Fitted attributes: `scale_ (C,)`, `bias_ (C,)`, plus the base's `n_classes_`, `cases_used_`,
    `voxels_used_`, `nll_before_`, `nll_after_`, `model_`.
    """

    method = "vector"
    title = "Vector scaling"
    order = 1
    panel_label = "Vector scaling"
    constraint = ScalingConstraint(shared_scale=False, bias="per_class")

    def _fit_voxels(self, logits, labels) -> None:
        self.scale_, self.bias_ = fit_logit_scaling(logits, labels, self.constraint)
        self._check_values("the fit diverged: ")

    def _apply(self, logits, channel_dim: int):
        return apply_logit_scaling(logits, self.scale_, self.bias_, channel_dim)

    def _tensors(self) -> dict:
        return {"scale": self.scale_, "bias": self.bias_}

    def _load_tensors(self, tensors: dict) -> None:
        self.scale_, self.bias_ = tensors["scale"].float(), tensors["bias"].float()

    def _tensor_shapes(self) -> dict:
        return {"scale": ((self.n_classes_,), "one value per class"), "bias": ((self.n_classes_,), "one value per class")}

    def _check_values(self, source: str) -> None:
        """Scales (1 / temperature) must be finite and > 0: a negative one inverts the classes' order, 0 flattens them."""
        import torch

        if not bool((torch.isfinite(self.scale_) & (self.scale_ > 0)).all()):
            raise InputError(f"{source}scale: expected finite, positive values (a temperature or scale <= 0 would invert or "
                             f"flatten the labels), found {[float(v) for v in self.scale_]}; fit the calibrator again on the "
                             "model's labelled cases.")
        if not bool(torch.isfinite(self.bias_).all()):
            raise InputError(f"{source}bias: expected finite values, found {[float(v) for v in self.bias_]}; fit the calibrator again.")

    def _summary(self) -> dict:
        return {"scale": [round(float(v), 6) for v in self.scale_], "bias": [round(float(v), 6) for v in self.bias_]}

    def _parameters_text(self) -> str:
        pairs = ", ".join(f"{float(a):.2f}z{'+' if float(b) >= 0 else '-'}{abs(float(b)):.2f}" for a, b in zip(self.scale_, self.bias_))
        return f"per class {pairs}"


class TemperatureScaling(VectorScaling):
    """Logits divided by one temperature `temperature_ = 1 / scale_[0]` (T > 1 softens, T < 1 sharpens):
    `VectorScaling` with one shared scale and no bias. Keeps every voxel's argmax."""

    method = "temperature"
    title = "Temperature scaling"
    order = 0
    panel_label = "Temperature scaling"
    constraint = ScalingConstraint(shared_scale=True, bias="none")

    @property
    def temperature_(self) -> float:
        return 1.0 / float(self.scale_[0])

    def _summary(self) -> dict:
        return {"temperature": round(self.temperature_, 6)}

    def _parameters_text(self) -> str:
        return f"T = {self.temperature_:.3f}"


class PlattScaling(VectorScaling):
    """Rousseau et al.'s Platt scaling: `z'_fg - z'_bg = platt_scale_ * (z_fg - z_bg) + platt_bias_` for every
    foreground class; `VectorScaling` with one shared scale and a single bias on the background logit."""

    method = "platt"
    title = "Platt scaling"
    order = 2
    panel_label = "Platt scaling"
    constraint = ScalingConstraint(shared_scale=True, bias="background")

    @property
    def platt_scale_(self) -> float:
        return float(self.scale_[0])

    @property
    def platt_bias_(self) -> float:
        return -float(self.bias_[0])

    def _summary(self) -> dict:
        return {"scale": round(self.platt_scale_, 6), "bias": round(self.platt_bias_, 6)}

    def _parameters_text(self) -> str:
        return f"a = {self.platt_scale_:.3f}, b = {self.platt_bias_:+.3f}"
