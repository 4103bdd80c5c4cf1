"""`CaseSource`: labelled cases read from files one at a time, their ROI built, the model's networks run on them.

What `calibrate` and `compare` fit calibrators on (`logit_cases`) and report NLL with (`nll_report`).
"""

from __future__ import annotations

import numpy as np

from ..common.errors import InputError


class CaseSource:
    """Reads labelled cases one at a time, builds their ROI, and runs the model's networks on them."""

    def __init__(self, model, roi: str, masks: dict | None, device: str, max_voxels: int | None, seed: int):
        self.model, self.roi, self.masks, self.device, self.max_voxels, self.seed = model, roi, masks, device, max_voxels, seed

    def read(self, case) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(image (C_in, I, J, K), labels (I, J, K) int64, ROI (I, J, K) bool or None), checked, for one case."""
        from ..predict.inference import check_image
        from ..predict.io import read_volume
        from ..evaluation.roi import roi_mask

        volume, reference = read_volume(case.image), read_volume(case.label)
        image = check_image(volume, self.model.spec)
        labels = reference.array
        if labels.shape != image.shape[1:]:
            raise InputError(f"case '{case.case_id}': label map has shape {labels.shape}, the image {image.shape[1:]}: "
                             "expected the same grid.")
        classes = self.model.spec.num_classes
        if labels.min() < 0 or labels.max() >= classes or not np.array_equal(labels, np.round(labels)):
            raise InputError(f"case '{case.case_id}': labels hold values {labels.min():g}..{labels.max():g}, model "
                             f"'{self.model.spec.name}' has {classes} classes ({', '.join(self.model.spec.class_names)}): "
                             f"expected class indices 0..{classes - 1}.")
        mask = None
        if self.masks is not None:
            path = self.masks.get(case.case_id) or (next(iter(self.masks.values())) if len(self.masks) == 1 else None)
            if path is None:
                raise InputError(f"no ROI mask for case '{case.case_id}' in --mask: expected a file named {case.case_id}.")
            mask = read_volume(path).array
        region = roi_mask({"none": "whole"}.get(self.roi, self.roi), labels, reference.geometry.spacing, mask)
        if region is not None and not region.any():
            raise InputError(f"case '{case.case_id}': the {self.roi} ROI is empty (no voxel to calibrate on)"
                             + ("; the reference has no foreground" if self.roi == "bbox" else "")
                             + ". Use --roi none, or leave the case out.")
        return image, labels.astype(np.int64), region

    def logits(self, network, image):
        from ..predict.inference import predict_logits

        return predict_logits(network, self.model.spec, image, device=self.device)

    def logit_cases(self, cases, progress, stage: str):
        """(logits (C, I, J, K), labels, ROI) per case and network: every network's deterministic pass, pooled."""
        for index, case in enumerate(cases):
            progress(f"{stage}: {case.case_id} ({index + 1}/{len(cases)})", 0.05 + 0.6 * index / max(len(cases), 1))
            image, labels, region = self.read(case)
            for network in self.model.networks:
                yield self.logits(network, image), labels, region

    def nll_report(self, cases, progress, stage: str, span: tuple[float, float], transform=None, networks_after=None) -> dict:
        """Mean NLL per forward pass before and after calibration over at most `max_voxels` sampled ROI voxels
        per case and network: after = `transform(logits)`, or the logits of `networks_after` (fine-tuned, one per network)."""
        import torch

        from .cases import check_case, sample_index, voxels_at

        rng = np.random.default_rng(self.seed + 1)
        totals, voxels = [0.0, 0.0], 0
        for index, case in enumerate(cases):
            progress(f"{stage}: {case.case_id} ({index + 1}/{len(cases)})", span[0] + (span[1] - span[0]) * index / len(cases))
            image, labels, region = self.read(case)
            for member, network in enumerate(self.model.networks):
                checked = check_case(self.logits(network, image), labels, region, index)
                chosen = sample_index(checked.mask, self.max_voxels, rng)
                target = checked.labels.reshape(-1)[chosen]
                calibrated = transform(checked.logits) if transform is not None else self.logits(networks_after[member], image)
                for slot, logits in enumerate((checked.logits, calibrated)):
                    totals[slot] += float(torch.nn.functional.cross_entropy(voxels_at(logits.float(), chosen).double(), target, reduction="sum"))
                voxels += int(target.numel())
        if not voxels:
            return {"cases": 0, "voxels": 0, "nll_before": None, "nll_after": None}
        return {"cases": len(cases), "passes": len(cases) * len(self.model.networks), "voxels": voxels,
                "nll_before": totals[0] / voxels, "nll_after": totals[1] / voxels}
