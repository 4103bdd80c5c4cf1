"""Small helpers shared by test modules: synthetic training cases and folder digests."""

import hashlib

import numpy as np


def digest(folder):
    """File name -> SHA-256 of every file in `folder` (to show a folder was left untouched)."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def blob_cases(count=5, shape=(14, 18, 14)):
    """(image, label) pairs already normalised: a bright class-1 blob at a random place and a dark class-2 blob
    near the end of axis J, on noise."""
    rng = np.random.default_rng(1)
    cases = []
    for _ in range(count):
        label = np.zeros(shape, np.int64)
        centre = rng.integers(4, 9, 3)
        label[tuple(slice(c - 2, c + 2) for c in centre)] = 1
        label[2:5, -6:-2, 2:5] = 2
        image = rng.normal(0, 0.3, shape).astype(np.float32) + (label == 1) * 2.0 - (label == 2) * 2.0
        cases.append((image, label))
    return cases
