"""Insert dropout into a trained MONAI UNet that has none, at Rousseau et al.'s two placements.

- "decoder": before each decoder block and before the output convolution;
- "center": before the lowest encoder block and after the lowest decoder block.

Each inserted `torch.nn.Dropout` is a child module of the block it wraps (`dropout_before` /
`dropout_after`), applied by a forward hook. It holds no parameters, so the network's
state_dict is unchanged and the original weights load as they are; MC dropout finds it like
any other dropout layer. Retraining the blocks after it is `dropout_retraining.py`'s job.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..common.errors import InputError

PLACEMENTS = ("decoder", "center")


@dataclass
class UNetBlocks:
    """A MONAI UNet's blocks, top level first: `encoders[i]` and `decoders[i]` share level i; `bottom` is the deepest."""

    encoders: list
    bottom: object
    decoders: list


def unet_blocks(network) -> UNetBlocks:
    """Walk MONAI's `UNet` nesting: Sequential(encoder, SkipConnection(<next level>), decoder) per level."""
    import torch
    from monai.networks.layers import SkipConnection
    from monai.networks.nets import UNet

    if not isinstance(network, UNet):
        raise InputError(
            f"dropout can be inserted into a MONAI UNet, found {type(network).__name__}. "
            "Use a model that has dropout layers, or method ensemble/tta."
        )
    encoders, decoders, level = [], [], network.model
    while isinstance(level, torch.nn.Sequential) and len(level) == 3 and isinstance(level[1], SkipConnection):
        encoders.append(level[0])
        decoders.append(level[2])
        level = level[1].submodule
    return UNetBlocks(encoders=encoders, bottom=level, decoders=decoders)


def dropout_sites(network, placement: str) -> list[tuple[object, str]]:
    """[(module, "before" | "after")] where `placement` puts dropout, in forward order."""
    if placement not in PLACEMENTS:
        raise InputError(f"dropout placement {placement!r}: expected one of {', '.join(PLACEMENTS)}.")
    blocks = unet_blocks(network)
    if placement == "center":
        return [(blocks.encoders[-1], "before"), (blocks.decoders[-1], "after")]
    sites = [(decoder, "before") for decoder in reversed(blocks.decoders)]
    output = output_unit(blocks.decoders[0])
    return sites + [(output, "before")] if output is not None else sites


def output_unit(top_decoder):
    """The unit after the top decoder's up-convolution that returns the logits; `None` where the
    up-convolution itself is the output (MONAI UNet with `num_res_units=0`)."""
    from monai.networks.blocks import Convolution

    if isinstance(top_decoder, Convolution) or len(top_decoder) < 2:
        return None
    return top_decoder[-1]


def insert_dropout(network, placement: str, p: float) -> list[str]:
    """Add dropout with probability `p` to `network` in place; returns the names of the wrapped modules."""
    import torch

    if not 0.0 < p < 1.0:
        raise InputError(f"dropout probability {p}: expected a value between 0 and 1 (e.g. 0.1).")
    names = {module: name for name, module in network.named_modules()}
    wrapped = []
    for module, side in dropout_sites(network, placement):
        attribute = f"dropout_{side}"
        if hasattr(module, attribute):
            raise InputError(f"dropout was already inserted at '{names[module]}'; insert it once.")
        module.add_module(attribute, torch.nn.Dropout(p).train(module.training))  # eval network: dropout off
        if side == "before":
            module.register_forward_pre_hook(lambda block, args: (block.dropout_before(args[0]), *args[1:]))
        else:
            module.register_forward_hook(lambda block, args, output: block.dropout_after(output))
        wrapped.append(f"{names[module]} ({side})")
    return wrapped


def modules_after_dropout(network, placement: str) -> list:
    """The blocks whose input depends on the inserted dropout: those that retraining updates."""
    blocks = unet_blocks(network)
    if placement == "center":
        return [blocks.encoders[-1], blocks.bottom, *blocks.decoders]
    return list(blocks.decoders)
