"""Time and peak memory of `predict` (volume -> probabilities, entropy, labels) vs. plain MONAI + torch.

The peer is what a user would write with MONAI alone: `sliding_window_inference`, then
`torch.softmax`, entropy as `-(p * log p).sum(0)` and `argmax`. Both run the bundled
default model on the same volume, each in a fresh process so that peak RSS is its own.
Sizes: a real hippocampus case (~35x50x35) and synthetic 128x128x64 and 256x256x128
volumes; the growth of peak memory with the voxel count is printed as bytes per voxel.

    python benchmarks/bench_predict.py            # all sizes
    python benchmarks/bench_predict.py --quick    # hippocampus case and 128x128x64 only
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
SIZES = {"hippocampus": None, "128x128x64": (128, 128, 64), "256x256x128": (256, 256, 128)}


def make_volume(size):
    import numpy as np

    from UncertaintySegLib.data.hippocampus import load_split, resolve_data_root
    from UncertaintySegLib.predict.io import Geometry, Volume, read_volume

    if SIZES[size] is None:
        return read_volume(load_split(resolve_data_root(), "test")[0].image)
    rng = np.random.default_rng(0)
    array = rng.normal(60, 15, SIZES[size]).astype(np.float32)
    return Volume(array, Geometry((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0)))


def run_ours(volume, model):
    from UncertaintySegLib.predict.pipeline import predict_volume

    prediction = predict_volume(volume, model, device="cpu")
    return prediction.probabilities.shape


def run_peer(volume, model):
    import torch
    from monai.inferers import sliding_window_inference

    from UncertaintySegLib.predict.inference import normalize_intensity

    image = normalize_intensity(torch.as_tensor(volume.array[None], dtype=torch.float32), model.spec.normalization)
    with torch.no_grad():
        logits = sliding_window_inference(image[None], model.spec.roi_size, 1, model.network, overlap=0.25, mode="gaussian")[0]
    probabilities = torch.softmax(logits, 0)
    entropy = -(probabilities * torch.log(probabilities.clamp_min(1e-12))).sum(0)
    labels = probabilities.argmax(0)
    return probabilities.numpy().shape, entropy.numpy().shape, labels.numpy().shape


def worker(implementation, size):
    """Runs in its own process; prints {"seconds", "peak_rss_mb", "baseline_rss_mb"} as JSON."""
    import torch

    from UncertaintySegLib.predict.model_loading import load_model

    torch.set_num_threads(2)
    model = load_model("hippocampus")
    volume = make_volume(size)
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    (run_ours if implementation == "ours" else run_peer)(volume, model)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak, "baseline_rss_mb": baseline, "voxels": int(volume.array.size)}))


def measure(implementation, size):
    command = [sys.executable, __file__, "--worker", implementation, "--size", size]
    completed = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", choices=("ours", "peer"))
    parser.add_argument("--size", choices=list(SIZES))
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.size)
    sizes = list(SIZES)[:2] if args.quick else list(SIZES)
    print(f"{'volume':>12} {'voxels':>10} | {'ours s':>7} {'MONAI s':>8} {'ratio':>6} | "
          f"{'ours peak MB':>12} {'MONAI peak MB':>13} {'ratio':>6} | {'ours extra MB':>13} {'MONAI extra MB':>14}")
    rows = []
    for size in sizes:
        ours, peer = measure("ours", size), measure("peer", size)
        rows.append(ours)
        extra = [r["peak_rss_mb"] - r["baseline_rss_mb"] for r in (ours, peer)]
        print(f"{size:>12} {ours['voxels']:>10} | {ours['seconds']:7.2f} {peer['seconds']:8.2f} {ours['seconds'] / peer['seconds']:6.2f} | "
              f"{ours['peak_rss_mb']:12.0f} {peer['peak_rss_mb']:13.0f} {ours['peak_rss_mb'] / peer['peak_rss_mb']:6.2f} | {extra[0]:13.0f} {extra[1]:14.0f}")
    print("ratio = ours / MONAI; extra = peak RSS minus RSS after loading the model and the volume.")
    small, large = rows[-2], rows[-1]
    extra_mb = [r["peak_rss_mb"] - r["baseline_rss_mb"] for r in (small, large)]
    growth = (extra_mb[1] - extra_mb[0]) * 2**20 / (large["voxels"] - small["voxels"])
    print(f"marginal extra memory of ours between the two largest sizes: {growth:.1f} bytes/voxel "
          "(3 classes: one float32 (C, I, J, K) array is 12 bytes/voxel); time and memory grow linearly with voxels.")

if __name__ == "__main__":
    main()
