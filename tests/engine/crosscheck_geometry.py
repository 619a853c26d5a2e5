"""Cross-check of the engine's sliding-window geometry against nnU-Net v2's formulas evaluated with
NumPy, SciPy and PyTorch (an independent implementation; reference umamba-mamba-nnunet.md §4.4).

Usage: crosscheck_geometry.py PATH/TO/engine_geometry_dump
Exits non-zero and prints the first mismatch when any answer differs (steps exactly, the float16
Gaussian map bit for bit).
"""
import json
import random
import subprocess
import sys

import numpy as np
import torch
from scipy.ndimage import gaussian_filter


def nnunet_steps(size, tile, step):
    # compute_steps_for_sliding_window, one axis: the same operations in the same order.
    target = tile * step
    n = int(np.ceil((size - tile) / target)) + 1
    max_step = size - tile
    actual = max_step / (n - 1) if n > 1 else 99999999999
    return [int(np.round(actual * i)) for i in range(n)]


def nnunet_gaussian(patch):
    # compute_gaussian(tile_size, sigma_scale=1/8, value_scaling_factor=10, dtype=torch.float16)
    tmp = np.zeros(patch)
    tmp[tuple(i // 2 for i in patch)] = 1
    g = gaussian_filter(tmp, [i * 1.0 / 8 for i in patch], 0, mode="constant", cval=0)
    g = torch.from_numpy(g)
    g = g / torch.max(g) * 10
    g = g.type(torch.float16)
    g[g == 0] = torch.min(g[g != 0])
    return g.float().numpy()


def main():
    tool = sys.argv[1]
    rng = random.Random(1234)
    steps = []
    for tile in [1, 3, 16, 40, 64, 96, 128, 160, 192, 224, 320, 512]:
        for step in [0.5, 0.125, 0.25, 0.33, 0.7, 1.0]:
            for _ in range(30):
                steps.append([tile + rng.randint(0, 8 * tile + 5), tile, step])
    for size in range(40, 400):  # dense: rounding ties are frequent
        steps.append([size, 40, 0.125])
    patches2d = [(16, 16), (17, 33), (64, 48), (512, 512), (1, 7)]
    patches3d = [(8, 16, 16), (5, 7, 9), (20, 56, 48), (40, 64, 32)]
    gauss = [[1, py, px] for py, px in patches2d] + [list(p) for p in patches3d]
    query = {"steps": steps, "gaussian": gauss}
    res = subprocess.run([tool], input=json.dumps(query), capture_output=True, text=True, check=True)
    out = json.loads(res.stdout)
    bad = 0
    for q, got in zip(steps, out["steps"]):
        want = nnunet_steps(*q)
        if got != want:
            print(f"steps mismatch for size {q[0]} tile {q[1]} step {q[2]}: ours {got}, nnU-Net {want}")
            bad += 1
    for q, got, patch in zip(gauss, out["gaussian"], patches2d + patches3d):
        want = nnunet_gaussian(patch).ravel()
        got = np.asarray(got, dtype=np.float32)
        if got.shape != want.shape or not np.array_equal(got, want):
            diff = np.abs(got - want).max() if got.shape == want.shape else "shape"
            print(f"gaussian mismatch for patch {patch}: max |diff| {diff}")
            bad += 1
    print(f"{len(steps)} step queries, {len(gauss)} Gaussian maps compared; {bad} mismatches")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
