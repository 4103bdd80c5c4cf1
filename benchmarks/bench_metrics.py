"""Speed and memory of calibration binning vs MONAI, torchmetrics and the memory floor, on one input.

Input: 3-class float32 probabilities `(3, N)` (softmax of N(0, 4^2) logits: a spread of
confidences, as in a segmentation's uncertain band) and uint8 labels, N = 10^6, 10^7, 10^8.
Measured in one run on the same arrays, best of `--repeat` runs each:

- ours, class-wise and top-label (`CalibrationHistogram(...).update`; Numba, one block of voxels per thread);
- MONAI 1.6 `calibration_binning` (class-wise; its one-hot float32 reference is built outside the timing);
- torchmetrics `multiclass_calibration_error` (top-label, norm="l1");
- the floor: one `sum()` over the probability array (reading it once).

Peak extra memory of ours is the rise of the process's peak RSS (VmHWM, reset before the call)
above its RSS before it. The peers need O(N) temporaries (one-hot reference, int64 bin
indices); at 10^8 voxels they are skipped unless `--peers-at-1e8` (they need several GB).

    python benchmarks/bench_metrics.py             # 10^6, 10^7, 10^8
    python benchmarks/bench_metrics.py --max 1e7   # stop at 10^7
"""

import argparse
import time
from pathlib import Path

import numpy as np
import torch

GENERATION_CHUNK = 1 << 22


def make_input(voxels: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    probabilities = np.empty((3, voxels), np.float32)
    labels = np.empty(voxels, np.uint8)
    for start in range(0, voxels, GENERATION_CHUNK):
        stop = min(voxels, start + GENERATION_CHUNK)
        logits = rng.normal(scale=4.0, size=(3, stop - start)).astype(np.float32)
        exp = np.exp(logits - logits.max(0))
        probabilities[:, start:stop] = exp / exp.sum(0)
        labels[start:stop] = rng.integers(0, 3, stop - start)
    return probabilities, labels


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def timed(function, repeat: int) -> tuple[float, float]:
    """Best wall time of `repeat` calls, and the peak RSS rise (MiB) during them."""
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    before = _status_kib("VmRSS")
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - started)
    return best, max(_status_kib("VmHWM") - before, 0) / 1024


def ours(probabilities, labels, variant):
    from UncertaintySegLib.evaluation.calibration_metrics import CalibrationHistogram

    return lambda: CalibrationHistogram(3, variant, bins=20).update(probabilities, labels).compute()


def monai_binning(probabilities, labels):
    from monai.metrics import calibration_binning

    one_hot = torch.nn.functional.one_hot(torch.from_numpy(labels).long(), 3).T.float()[None]  # its input format, untimed
    return lambda: calibration_binning(torch.from_numpy(probabilities)[None], one_hot, num_bins=20)


def torchmetrics_ece(probabilities, labels):
    from torchmetrics.functional.classification import multiclass_calibration_error

    return lambda: multiclass_calibration_error(torch.from_numpy(probabilities).T, torch.from_numpy(labels).long(), 3,
                                                n_bins=20, norm="l1", validate_args=False)


def floor(probabilities):
    return lambda: probabilities.sum()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max", type=float, default=1e8, help="largest voxel count (default 1e8)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--peers-at-1e8", action="store_true", help="also run MONAI and torchmetrics at 10^8 voxels")
    args = parser.parse_args()
    torch.set_num_threads(1)
    warm_p, warm_y = make_input(4096)
    for variant in ("class_wise", "top_label"):
        ours(warm_p, warm_y, variant)()  # compile (or load the cached) kernels outside the timings
    print(f"{'voxels':>8} {'method':<28} {'seconds':>9} {'Mvoxel/s':>9} {'x floor':>8} {'ours cw is x faster':>20} {'peak extra MiB':>15}")
    for voxels in (10**6, 10**7, 10**8):
        if voxels > args.max:
            break
        probabilities, labels = make_input(voxels)
        runs = {"ours class-wise": ours(probabilities, labels, "class_wise"),
                "ours top-label": ours(probabilities, labels, "top_label"),
                "floor: sum()": floor(probabilities)}
        if voxels < 10**8 or args.peers_at_1e8:
            runs["MONAI calibration_binning"] = monai_binning(probabilities, labels)
            runs["torchmetrics MCE (top-label)"] = torchmetrics_ece(probabilities, labels)
        results = {name: timed(run, args.repeat) for name, run in runs.items()}
        floor_s, ours_s = results["floor: sum()"][0], results["ours class-wise"][0]
        for name, (seconds, memory) in results.items():
            print(f"{voxels:>8.0e} {name:<28} {seconds:>9.4f} {voxels / seconds / 1e6:>9.1f} {seconds / floor_s:>8.1f} "
                  f"{seconds / ours_s:>20.1f} {memory:>15.1f}")
        if "MONAI calibration_binning" not in results:
            print(f"{voxels:>8.0e} MONAI and torchmetrics skipped: their O(N) temporaries (one-hot reference, int64 bin "
                  "indices) need several GB here; pass --peers-at-1e8 to run them anyway.")
        del probabilities, labels


if __name__ == "__main__":
    main()
