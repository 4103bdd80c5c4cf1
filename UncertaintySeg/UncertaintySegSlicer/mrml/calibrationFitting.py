"""Fit a post-hoc calibrator (or fine-tune the last layer) on reference segmentations in the scene, then save it.

The panel's "Fit now from reference segmentations": the user picks (volume, reference) pairs that
are already in the scene; each is read as arrays on the volume's grid (the reference matched to the
model's classes as `reference.labelsFromReferenceNode` does for evaluation), run through every
network of the model for its logits (`inference.predict_logits`, one deterministic pass each, an
ensemble's passes pooled, as `uncertaintyseg calibrate` does), and given to the calibrator's
`fit_cases(..., model=model_fingerprint(model))`. Calibration is fitted inside the reference's
foreground box dilated 8 mm in-plane and 2 slices (`roi="bbox"`, the CLI's default) or on the whole volume.
Fine-tuning (`LastLayerFineTuning`) trains copies of the networks and is saved as a new model folder.

    logic = slicer.util.getModuleLogic("UncertaintySeg")
    fitted = logic.fitCalibrator([(volumeNode, segmentationNode), ...], model="hippocampus", method="temperature",
                                 saveTo="hippocampus-ts-local")
    logic.run(volumeNode, model="hippocampus", calibrator=fitted.folder)

Free of Qt; the nodes given are only read. Fitting runs in the calling process (seconds for the scaling
methods on a few cases; fine-tuning takes longer): `progress(stage, fraction)` is called between steps.
"""

import time
from dataclasses import dataclass, field
from pathlib import Path

from UncertaintySegLib.evaluation.roi import roi_kinds
from UncertaintySegSlicer.mrml.reference import labelsFromReferenceNode
from UncertaintySegSlicer.mrml.volumes import geometryFromNode, volumeFromNode

FIT_ROIS = roi_kinds(with_mask=False)  # the panel fits inside the reference's box or on the whole volume


@dataclass
class FittedCalibration:
    """A calibrator fitted in the scene: `calibrator` (a fitted `Calibrator`, or `LastLayerFineTuning` for "finetune"),
    the pairs it saw (node names), and where it was saved (`folder`, after `save`)."""

    calibrator: object
    method: str
    model: dict  # model_fingerprint of the model it was fitted for
    pairs: list = field(default_factory=list)  # (volume name, reference name)
    settings: dict = field(default_factory=dict)
    fitSeconds: float = 0.0
    folder: Path = None

    @property
    def isModel(self):
        """Fine-tuning changes the network: its result is a model folder, not a logits calibrator."""
        return self.method == "finetune"

    @property
    def description(self):
        return self.calibrator.describe()

    def report(self):
        """`fit_report.json`: what was fitted, on which nodes, with which settings, for which model."""
        return {"method": self.method, "description": self.description, "model": self.model,
                "data": {"source": "3D Slicer scene", "pairs": [{"volume": v, "reference": r} for v, r in self.pairs]},
                "settings": {**self.settings, "calibrator": self.calibrator.get_params()},
                "timings": {"fit_s": round(self.fitSeconds, 3)}}

    def save(self, folder, overwrite=False):
        """Write the calibrator (or the fine-tuned model folder) and `fit_report.json` into `folder`, whole or not at all."""
        from UncertaintySegLib.calibration import save_fitted
        from UncertaintySegLib.common.output_folders import atomic_output_folder

        with atomic_output_folder(folder, overwrite=overwrite) as staging:
            save_fitted(self.calibrator, staging, self.report())
        self.folder = Path(folder)
        return self.folder


def sceneCase(volumeNode, referenceNode, spec, roi="bbox", index=0):
    """(image `(C_in, I, J, K)`, labels `(I, J, K)` int64, ROI `(I, J, K)` bool or None) of one (volume, reference) pair."""
    import numpy as np

    from UncertaintySegLib.common.errors import InputError
    from UncertaintySegLib.predict.inference import check_image
    from UncertaintySegLib.evaluation.roi import roi_mask

    if volumeNode is None or referenceNode is None or volumeNode.GetScene() is None or referenceNode.GetScene() is None:
        raise InputError(f"calibration pair {index + 1} lost its volume or its reference (removed from the scene?): "
                         "remove the pair and add it again.")
    what = f"pair {index + 1} ('{volumeNode.GetName()}', '{referenceNode.GetName()}')"
    try:
        image = check_image(volumeFromNode(volumeNode), spec)
    except InputError as error:
        raise InputError(f"{what}: {error}") from None
    labels = labelsFromReferenceNode(referenceNode, volumeNode, list(spec.class_names)).astype(np.int64)
    region = roi_mask(roi, labels, geometryFromNode(volumeNode).spacing)
    if region is not None and not region.any():
        raise InputError(f"{what}: the reference has no foreground, so its dilated box is empty: give a reference that "
                         "segments the structure, or fit on the whole volume.")
    return image, labels, region


class CalibrationFittingMixin:
    """`fitCalibrator` for the module's Logic (and the console)."""

    def fitCalibrator(self, pairs, model="hippocampus", method="temperature", device="auto", roi="bbox", saveTo=None,
                      overwrite=False, seed=0, progress=None, trustBundle=False, **settings):
        """Fit `method` on `pairs` of (volume node, reference segmentation or label map node); a `FittedCalibration`.

        `model`: a bundled model name, a model path, or a loaded model. `roi`: "bbox" or "whole" (the voxels fitted on;
        fine-tuning trains on whole cases). `saveTo`: also save it there (refused if it exists, unless `overwrite`).
        `trustBundle`: let MONAI run a MONAI bundle's config code (as `--trust-bundle`).
        `settings` go to the calibrator (e.g. `max_epochs=5` for auxconv and finetune).
        """
        from UncertaintySegLib.calibration import fit_calibration, make_calibrator, model_fingerprint
        from UncertaintySegLib.common.errors import InputError
        from UncertaintySegLib.predict.model_loading import load_model

        progress = progress or (lambda stage, fraction: None)
        pairs = list(pairs)
        if not pairs:
            raise InputError("no calibration pairs: add at least one (volume, reference segmentation) pair.")
        if roi not in FIT_ROIS:
            raise InputError(f"calibration ROI '{roi}': expected one of {', '.join(FIT_ROIS)}.")
        make_calibrator(method, {"seed": seed, **settings})  # an unknown method or setting is refused before any work
        if method == "finetune" and len(pairs) < 2:
            raise InputError(f"fine-tuning needs at least 2 pairs (one is held out to stop early), found {len(pairs)}.")
        progress("loading model", 0.0)
        loadedModel = load_model(model, trust_bundle=trustBundle) if isinstance(model, (str, Path)) else model
        fingerprint = model_fingerprint(loadedModel)
        started = time.perf_counter()
        calibrator = fit_calibration(
            method, loadedModel, {"seed": seed, **settings},
            logit_cases=lambda: self._logitCases(pairs, loadedModel, roi, device, progress),
            training_cases=lambda: self._fineTuningCases(pairs, loadedModel.spec, progress),
            progress=lambda stage, fraction, **details: progress(f"fine-tuning: {stage}", 0.3 + 0.65 * fraction))
        fitted = FittedCalibration(calibrator, method, fingerprint, [(v.GetName(), r.GetName()) for v, r in pairs],
                                   {"roi": roi, "device": device, "seed": seed}, time.perf_counter() - started)
        if saveTo is not None:
            progress("saving", 0.97)
            fitted.save(saveTo, overwrite=overwrite)
        progress("done", 1.0)
        return fitted

    @staticmethod
    def _logitCases(pairs, loadedModel, roi, device, progress):
        """(logits (C, I, J, K), labels, ROI) per pair and network, one at a time."""
        from UncertaintySegLib.predict.inference import predict_logits

        passes = len(pairs) * len(loadedModel.networks)
        for index, (volumeNode, referenceNode) in enumerate(pairs):
            image, labels, region = sceneCase(volumeNode, referenceNode, loadedModel.spec, roi, index)
            for member, network in enumerate(loadedModel.networks):
                step = index * len(loadedModel.networks) + member
                progress(f"logits of '{volumeNode.GetName()}' ({index + 1}/{len(pairs)})", 0.05 + 0.9 * step / passes)
                yield predict_logits(network, loadedModel.spec, image, device=device), labels, region

    @staticmethod
    def _fineTuningCases(pairs, spec, progress):
        """[(image (I, J, K) float32 normalised as the model expects, labels (I, J, K) int64)], as `train.load_cases` gives."""
        from UncertaintySegLib.common.errors import InputError
        from UncertaintySegLib.training.train import prepare_case

        if spec.input_channels != 1:
            raise InputError(f"model '{spec.name}' takes {spec.input_channels} channels: the panel fine-tunes one-channel models.")
        cases = []
        for index, (volumeNode, referenceNode) in enumerate(pairs):
            progress(f"reading '{volumeNode.GetName()}' ({index + 1}/{len(pairs)})", 0.3 * index / len(pairs))
            image, labels, _ = sceneCase(volumeNode, referenceNode, spec, "whole", index)
            cases.append(prepare_case(image[0], labels, spec.normalization))
        return cases
