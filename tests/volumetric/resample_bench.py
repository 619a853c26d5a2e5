"""Benchmark: volumetric/resample.h (through resample_tool) against scikit-image/SciPy doing the
same nnU-Net resampling of the bundled CT (30x101x122, 3 mm) in the same run.

  .venv/bin/python tests/volumetric/resample_bench.py --tool build-vol/tests/volumetric/resample_tool \
      --source . [--repeats 3]

Ours is timed as the whole tool process (start, raw file read, resampling, raw file write), so the
ratio understates the resampling itself. Prints the median wall time of each and their ratio.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import nibabel as nib
from skimage.transform import resize


def median_time(fn, repeats):
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tool", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    base = os.path.join(a.source, "examples", "data", "totalsegmentator")
    ct = np.asarray(nib.load(os.path.join(base, "example_ct_sm.nii.gz")).dataobj,
                    dtype=np.float64).transpose(2, 1, 0)
    seg = np.asarray(nib.load(os.path.join(base, "example_seg.nii.gz")).dataobj).astype(
        np.int32).transpose(2, 1, 0)
    tmp = tempfile.mkdtemp()
    ci, co = os.path.join(tmp, "ct.raw"), os.path.join(tmp, "out.raw")
    ct.astype("<f4").tofile(ci)
    si = os.path.join(tmp, "seg.raw")
    seg.tofile(si)
    shape = (60, 202, 244)  # 1.5 mm isotropic
    print(f"CT {ct.shape} -> {shape} (1.5 mm); {os.cpu_count()} CPUs; median of {a.repeats}")

    def ours_data():
        subprocess.run([a.tool, "resize", ci, co, "1", *map(str, ct.shape), *map(str, shape), "3"],
                       check=True)

    def sk_data():
        resize(ct, shape, order=3, mode="edge", anti_aliasing=False, clip=True)

    def ours_seg():
        subprocess.run([a.tool, "seg", si, co, *map(str, seg.shape), *map(str, shape), "1", "-1"],
                       check=True)

    def sk_seg():
        out = np.zeros(shape, dtype=seg.dtype)
        for v in np.unique(seg):
            out[resize((seg == v).astype(float), shape, 1, mode="edge", anti_aliasing=False)
                >= 0.5] = v

    for name, ours, ref in [("data order 3", ours_data, sk_data),
                            ("segmentation (41 organs, one-hot order 1)", ours_seg, sk_seg)]:
        t_ours = median_time(ours, a.repeats)
        t_ref = median_time(ref, a.repeats)
        print(f"{name}: ours {t_ours:.3f} s, scikit-image {t_ref:.3f} s, "
              f"ratio {t_ref / t_ours:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
