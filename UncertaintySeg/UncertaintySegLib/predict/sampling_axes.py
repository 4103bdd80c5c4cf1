"""The sampling axes: every way `predict` draws several probability samples, each declared once, in `AXES`.

A method is one axis or a combination of axes ("ensemble+tta"); "softmax", the single deterministic pass
of the first network, is none. The samples of a method are the product of its axes, nested by level,
outermost first:
- NETWORKS: every network of the model (its members) instead of the first one;
- INPUTS: transforms of the image, each undone on the logits (several INPUTS axes: every combination);
- DRAWS: a random pass, drawn S times (`--samples`) per network and transform, the n-th sample of the run
  seeded with seed + n; several DRAWS axes share those S passes (the first one names them).
Within a level the axes keep `AXES`' order, which is also the order of a method's name ("mc_dropout+ensemble").

Everything else is derived from `AXES`: `sampling.METHODS`, `parse_method`, `networks_to_sample` and the
sampling loop; the panel's `UncertaintyMethod`, `compare`'s sampling methods, ranking's hint and active
learning's scoring methods. Adding an axis is one `SamplingAxis(...)` here (and its test). Torch and numpy
are imported inside the hooks, so importing this file is cheap (the Slicer panel does).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

from ..common.errors import InputError

NETWORKS, INPUTS, DRAWS = "networks", "inputs", "draws"
LEVELS = (NETWORKS, INPUTS, DRAWS)  # nesting of the sampling loop, outermost first
SINGLE_PASS = "softmax"  # the method that is no axis: one deterministic pass, combined with nothing

# What an axis can need of the model (`SamplingAxis.needs`); a method runs on a model that offers all its axes' needs.
MEMBERS, DROPOUT, STOCHASTIC_MODEL = "several members", "dropout layers", "a stochastic network"


@dataclass(frozen=True)
class SamplingAxis:
    """One way of drawing samples. `level` is NETWORKS, INPUTS or DRAWS (see the module doc); the hooks a level uses:

    - `check(networks, model_name, stochastic)`: raise `InputError` when the networks sampled cannot do it
      (`stochastic`: model.json declares the forward random by design);
    - INPUTS: `steps(plan)` the transforms, `transform(image, step)` on the `(C_in, I, J, K)` image and
      `undo(logits, step)` on the `(C, I, J, K)` logits;
    - DRAWS: `network_mode(network)`, a context around all the passes of one network, and `pass_mode(network)`,
      a context around one pass that yields keyword arguments for `inference.predict_logits`;
    - `describe(step, plan, count)`: its part of a sample's label ("member 2/5", "flip I+K", "draw 3/10").
    """

    name: str  # its `--method` part
    level: str
    label: str  # the panel's text for the axis alone
    combined_label: str  # its text within a combination ("Ensemble + MC dropout")
    needs: frozenset = frozenset()  # of MEMBERS, DROPOUT, STOCHASTIC_MODEL: what it needs of the model
    several: str = ""  # how it draws two or more samples, for messages ("with --samples 2 or more")
    describe: Callable | None = None
    check: Callable | None = None
    steps: Callable | None = None
    transform: Callable | None = None
    undo: Callable | None = None
    network_mode: Callable | None = None
    pass_mode: Callable | None = None
    compare: bool = False  # `compare` sets it beside the calibrators (on the base network; NETWORKS: every member)
    panel_combinations: bool = True  # the panel offers it in combinations too, not only alone

    @property
    def draws_samples(self) -> bool:
        """Whether `--samples` and `--seed` matter: the axis draws random passes."""
        return self.level == DRAWS


# MC dropout ----------------------------------------------------------------------------------------------------

def dropout_layers(network) -> list[str]:
    """Names of the dropout modules with p > 0 of a torch network (MONAI builds p = 0 ones when dropout is off)."""
    import torch

    return [name for name, module in network.named_modules()
            if isinstance(module, torch.nn.modules.dropout._DropoutNd) and module.p > 0]


@contextlib.contextmanager
def mc_dropout_mode(network):
    """Network in eval mode except its dropout layers; every module's mode is restored on exit."""
    import torch

    modes = {module: module.training for module in network.modules()}
    network.eval()
    for module in network.modules():
        if isinstance(module, torch.nn.modules.dropout._DropoutNd):
            module.train()
    try:
        yield network
    finally:
        for module, training in modes.items():
            module.train(training)


def _check_dropout(networks, model_name, stochastic) -> None:
    for network in networks:
        if not hasattr(network, "named_modules") or not dropout_layers(network):
            raise InputError(
                f"method 'mc_dropout' needs dropout layers, and model '{model_name}' has none. Insert some with "
                "--insert-dropout decoder|center (or `uncertaintyseg insert-dropout ... --retrain`), or use ensemble/tta."
            )


# A stochastic model's own draws --------------------------------------------------------------------------------

def _check_stochastic(networks, model_name, stochastic) -> None:
    if stochastic:
        return
    for network in networks:
        if not callable(getattr(network, "sample", None)):
            raise InputError(
                f"method 'sample' needs a stochastic model, and model '{model_name}' ({type(network).__name__}) has no "
                "sample(x) method and is not declared \"stochastic\": true in model.json. Use a model that draws "
                "samples (e.g. a ProbabilisticUNet), mark a random-by-design network stochastic, or use mc_dropout/ensemble/tta."
            )


@contextlib.contextmanager
def _model_draw(network):
    """A pass through `network.sample` where it has one (else its random-by-design forward), with one latent
    draw shared by all the pass's sliding windows where the network offers `shared_latent_noise()`."""
    draws = callable(getattr(network, "sample", None))
    shared = network.shared_latent_noise() if draws and hasattr(network, "shared_latent_noise") else contextlib.nullcontext()
    with shared:
        yield {"draw": draws}


# Ensemble ------------------------------------------------------------------------------------------------------

def _check_members(networks, model_name, stochastic) -> None:
    if len(networks) < 2:
        raise InputError(
            f"method 'ensemble' needs a model with several members; '{model_name}' has 1 network. "
            "Use an ensemble model (e.g. hippocampus-dice, hippocampus-ce) or give several models to --model."
        )


# Test-time augmentation ----------------------------------------------------------------------------------------

def _flips(plan) -> list[tuple[int, ...]]:
    """Axis subsets of the image to flip: all 2^k subsets of `plan.tta_axes`, identity first."""
    import itertools

    return [subset for size in range(len(plan.tta_axes) + 1) for subset in itertools.combinations(plan.tta_axes, size)]


def _flip_image(image, flip):
    import numpy as np

    return np.ascontiguousarray(np.flip(image, axis=[a + 1 for a in flip])) if flip else image


def _flip_logits(logits, flip):
    import torch

    return torch.flip(logits, dims=[a + 1 for a in flip]) if flip else logits


AXES: dict[str, SamplingAxis] = {axis.name: axis for axis in (
    SamplingAxis(
        "mc_dropout", DRAWS, "MC dropout", "MC dropout", needs=frozenset({DROPOUT}), several="with --samples 2 or more",
        describe=lambda draw, plan, count: f"MC dropout sample {draw + 1}/{plan.samples}",
        check=_check_dropout, network_mode=mc_dropout_mode, compare=True),
    SamplingAxis(
        "sample", DRAWS, "The model's own samples (Probabilistic U-Net)", "the model's own samples",
        needs=frozenset({STOCHASTIC_MODEL}), several="with --samples 2 or more",
        describe=lambda draw, plan, count: f"draw {draw + 1}/{plan.samples}",
        check=_check_stochastic, pass_mode=_model_draw, compare=True, panel_combinations=False),
    SamplingAxis(
        "ensemble", NETWORKS, "Deep ensemble", "Ensemble", needs=frozenset({MEMBERS}),
        several="with an ensemble model or several --model",
        describe=lambda member, plan, count: f"member {member + 1}/{count}", check=_check_members, compare=True),
    SamplingAxis(
        "tta", INPUTS, "Test-time augmentation (flips)", "test-time augmentation", several="with one --tta-axes axis or more",
        describe=lambda flip, plan, count: "flip " + ("+".join("IJK"[a] for a in flip) if flip else "none"),
        steps=_flips, transform=_flip_image, undo=_flip_logits),
)}


def method_axes(methods) -> list[SamplingAxis]:
    """The axes of a set of method names (softmax: none), in nesting order: by level, then as in `AXES`."""
    chosen = [axis for name, axis in AXES.items() if name in methods]
    return sorted(chosen, key=lambda axis: LEVELS.index(axis.level))


def methods_for(offers) -> tuple[str, ...]:
    """The axes a model offering `offers` (a set of MEMBERS, DROPOUT, STOCHASTIC_MODEL) can run."""
    return tuple(name for name, axis in AXES.items() if axis.needs <= set(offers))


def several_samples_hint() -> str:
    """How to draw several samples, in words: 'mc_dropout (with --samples 2 or more), ..., or tta (...)'."""
    hints = [f"{name} ({axis.several})" if axis.several else name for name, axis in AXES.items()]
    return "--method " + (", ".join(hints[:-1]) + ", or " if len(hints) > 1 else "") + hints[-1]


def panel_methods() -> list[tuple[str, str]]:
    """(value, label) of the methods the panel offers after Automatic and softmax: each axis alone that
    combines, their combinations (names in alphabetical order, as `predict --method` takes them), then the
    axes offered alone only."""
    import itertools

    combining = [name for name, axis in AXES.items() if axis.panel_combinations]
    alone = [name for name in AXES if name not in combining]
    combinations = [parts for size in range(2, len(combining) + 1) for parts in itertools.combinations(sorted(combining), size)]
    methods = [(name, AXES[name].label) for name in combining]
    for parts in combinations:
        label = " + ".join(AXES[name].combined_label for name in parts)
        methods.append(("+".join(parts), label[:1].upper() + label[1:]))
    return methods + [(name, AXES[name].label) for name in alone]
