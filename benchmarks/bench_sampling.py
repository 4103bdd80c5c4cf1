"""Time and peak memory of MC dropout with streaming aggregation vs. the naive way (stack S samples).

Ours: `sample_probabilities` (S sliding-window passes with dropout on, each folded into running
mean / Welford M2 / mean entropy). Naive: the same S passes (MONAI `sliding_window_inference`,
dropout on, same seeds), probabilities stacked into `(S, C, I, J, K)`, then mean, variance, entropy
of the mean, mean entropy and MI from the stack. Each run is a fresh process so peak RSS is its
own. Volumes: a real hippocampus case and a synthetic 256x256x128 one; S = 1, 5, 20.

    python benchmarks/bench_sampling.py            # both volumes
    python benchmarks/bench_sampling.py --quick    # hippocampus case only
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "UncertaintySeg"))

SIZES = {"hippocampus": None, "256x256x128": (256, 256, 128)}
SAMPLES = (1, 5, 20)


def make_image(size):
    import numpy as np

    from UncertaintySegLib.data.hippocampus import load_split, resolve_data_root
    from UncertaintySegLib.predict.io import read_volume

    if SIZES[size] is None:
        return read_volume(load_split(resolve_data_root(), "test")[0].image).array[None].astype(np.float32)
    return np.random.default_rng(0).normal(60, 15, (1, *SIZES[size])).astype(np.float32)


def run_ours(network, spec, image, samples):
    from UncertaintySegLib.predict.sampling import SamplingPlan, sample_probabilities

    moments, timings = sample_probabilities([network], spec, image, SamplingPlan(frozenset({"mc_dropout"}), samples=samples), device="cpu")
    maps = moments.maps()
    return timings["forward_s"], timings["aggregation_s"], maps["mutual_information"].shape


def run_naive(network, spec, image, samples):
    import torch

    from UncertaintySegLib.predict.inference import predict_logits
    from UncertaintySegLib.predict.sampling import mc_dropout_mode, seeded

    forward_started = time.perf_counter()
    stacked = []
    with mc_dropout_mode(network):
        for index in range(samples):
            with seeded(index, torch.device("cpu")):
                stacked.append(torch.softmax(predict_logits(network, spec, image, device="cpu"), dim=0))
    forward = time.perf_counter() - forward_started
    started = time.perf_counter()
    stack = torch.stack(stacked)  # (S, C, I, J, K)
    del stacked
    mean = stack.mean(0)
    variance = stack.var(0, unbiased=False)
    total = torch.special.entr(mean).sum(0)
    expected = torch.special.entr(stack).sum(1).mean(0)
    mutual_information = (total - expected).clamp_min(0)
    return forward, time.perf_counter() - started, (mutual_information.shape, variance.shape)


def worker(implementation, size, samples):
    """Runs in its own process; prints timings and peak RSS as JSON."""
    import torch

    from UncertaintySegLib.predict.model_loading import load_model

    torch.set_num_threads(2)
    model = load_model("hippocampus")
    image = make_image(size)
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    forward, aggregation, _ = (run_ours if implementation == "ours" else run_naive)(model.network, model.spec, image, samples)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "forward_s": forward, "aggregation_s": aggregation, "peak_rss_mb": peak,
                      "baseline_rss_mb": baseline, "voxels": int(image.size)}))


def measure(implementation, size, samples):
    command = [sys.executable, __file__, "--worker", implementation, "--size", size, "--samples", str(samples)]
    completed = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", choices=("ours", "naive"))
    parser.add_argument("--size", choices=list(SIZES))
    parser.add_argument("--samples", type=int)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.size, args.samples)
    sizes = list(SIZES)[:1] if args.quick else list(SIZES)
    print(f"{'volume':>12} {'S':>3} | {'ours s':>7} {'naive s':>8} {'ratio':>6} | {'ours aggr %':>11} {'naive stats %':>13} | "
          f"{'ours extra MB':>13} {'naive extra MB':>14} {'ratio':>6}")
    for size in sizes:
        for samples in SAMPLES:
            ours, naive = measure("ours", size, samples), measure("naive", size, samples)
            extra = [r["peak_rss_mb"] - r["baseline_rss_mb"] for r in (ours, naive)]
            print(f"{size:>12} {samples:>3} | {ours['seconds']:7.2f} {naive['seconds']:8.2f} {ours['seconds'] / naive['seconds']:6.2f} | "
                  f"{100 * ours['aggregation_s'] / ours['forward_s']:11.1f} {100 * naive['aggregation_s'] / naive['forward_s']:13.1f} | "
                  f"{extra[0]:13.0f} {extra[1]:14.0f} {extra[0] / max(extra[1], 1):6.2f}")
    print("ratio = ours / naive; aggr % = aggregation time as a share of the forward passes' time; extra = peak RSS minus\n"
          "RSS after loading the model and the volume. Ours holds mean, M2 and mean entropy plus one sample: its extra\n"
          "memory does not grow with S; the naive stack grows by one (C, I, J, K) float32 array (12 bytes/voxel) per sample.\n"
          "Both grow linearly with the voxel count.")


if __name__ == "__main__":
    main()
