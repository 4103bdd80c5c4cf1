"""Dice per class and inference time of a model on the hippocampus `test` split (model-card numbers).

    .venv/bin/python scripts/test_split_dice.py [MODEL]     # MODEL defaults to the bundled "hippocampus"
"""

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "UncertaintySeg"))

from UncertaintySegLib.data import load_split, resolve_data_root  # noqa: E402
from UncertaintySegLib.io import read_volume  # noqa: E402
from UncertaintySegLib.metrics import dice_per_class  # noqa: E402
from UncertaintySegLib.models import load_model  # noqa: E402
from UncertaintySegLib.pipeline import predict_volume  # noqa: E402


def main(model_name: str = "hippocampus") -> None:
    import torch

    torch.set_num_threads(2)
    model = load_model(model_name)
    cases = load_split(resolve_data_root(), "test")
    predict_volume(read_volume(cases[0].image), model, device="cpu")  # warm-up
    dice, seconds = [], []
    for case in cases:
        image = read_volume(case.image)
        started = time.perf_counter()
        prediction = predict_volume(image, model, device="cpu")
        seconds.append(time.perf_counter() - started)
        dice.append(dice_per_class(prediction.labels, read_volume(case.label).array, model.spec.num_classes))
    for index, name in enumerate(model.spec.class_names[1:]):
        values = [d[index] for d in dice]
        print(f"Dice {name}: mean {statistics.mean(values):.4f}, sd {statistics.stdev(values):.4f}, min {min(values):.4f}")
    print(f"mean Dice over classes: {statistics.mean(statistics.mean(d) for d in dice):.4f} ({len(cases)} test cases)")
    print(f"predict time per case (inference + maps, CPU, 2 threads): median {statistics.median(seconds):.3f} s, max {max(seconds):.3f} s")


if __name__ == "__main__":
    main(*sys.argv[1:])
