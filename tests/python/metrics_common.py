"""Shared helpers of the metrics cross-checks: run the umamba binary, read its CSV, make the
perturbed label images the checks score (seeded, so the fixtures are reproducible)."""

import csv
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "metrics")


def run_umamba(umamba, args):
    """Runs `umamba args...`; returns (exit code, stdout + stderr)."""
    p = subprocess.run([umamba, "--log-level", "warn"] + args, capture_output=True, text=True)
    return p.returncode, p.stdout + p.stderr


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def shift(labels, dy, dx):
    out = np.zeros_like(labels)
    h, w = labels.shape[-2:]
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[..., yd, xd] = labels[..., ys, xs]
    return out


def erode_labels(labels, iterations=1):
    """Each label eroded on its own (cross-shaped element), so touching cells separate."""
    from scipy import ndimage as ndi

    out = np.zeros_like(labels)
    for i, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None:
            continue
        pad = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in sl)
        m = labels[pad] == i
        e = ndi.binary_erosion(m, iterations=iterations)
        out[pad][e] = i
    return out


def dilate_labels(labels):
    """Grows every label into background by one pixel (the largest neighbouring id wins)."""
    from scipy import ndimage as ndi

    grown = ndi.grey_dilation(labels, size=(3,) * labels.ndim)
    return np.where(labels == 0, grown, labels)


def scramble(labels, seed, drop=0.1, merge=0.1):
    """Drops some cells, merges some into another id and renumbers the rest with gaps."""
    rng = np.random.default_rng(seed)
    ids = np.unique(labels)
    ids = ids[ids > 0]
    lut = np.zeros(int(labels.max()) + 1, dtype=np.int64)
    new = rng.permutation(len(ids)) * 3 + 7
    for k, i in enumerate(ids):
        r = rng.random()
        if r < drop:
            lut[i] = 0
        elif r < drop + merge and k > 0:
            lut[i] = new[k - 1]
        else:
            lut[i] = new[k]
    return lut[labels]


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)
