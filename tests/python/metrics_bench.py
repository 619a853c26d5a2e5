"""Benchmark: `umamba evaluate` against the Python references, in the same run on the same data.

  NSD: 13 organ labels on a 512 x 512 x 300 volume pair (0.8 x 0.8 x 2.5 mm, FLARE22 tolerances),
       reference = DeepMind's NSD definition re-stated with SciPy (metrics_nsd_test.restated_nsd,
       the code path of DeepMind's package: correlate + two distance_transform_edt per label).
  F1:  a 10,000 x 10,000 image with 50,000 cells against a shifted, renumbered copy, reference =
       the NeurIPS-CellSeg rule re-stated with scikit-image/SciPy (metrics_f1_test.official_f1,
       2000-pixel tiles, linear_sum_assignment).

The umamba time is the whole command (reading both files, scoring, writing CSV/JSON); the Python
time is the scoring of arrays already in memory. Prints both, the ratio and the agreement.

  metrics_bench.py --umamba build/umamba [--threads N] [--only nsd|f1]
"""

import argparse
import json
import os
import resource
import sys
import tempfile
import time
import warnings

import nibabel as nib
import numpy as np
import tifffile
from skimage import draw

sys.path.insert(0, os.path.dirname(__file__))
from metrics_common import ROOT, read_csv, run_umamba, scramble  # noqa: E402
import metrics_f1_test  # noqa: E402
import metrics_nsd_test  # noqa: E402

FLARE_TOL = {1: 5, 2: 3, 3: 3, 4: 5, 5: 2, 6: 2, 7: 2, 8: 2, 9: 2, 10: 3, 11: 5, 12: 7, 13: 3}


def organs(shape, seed):
    """13 ellipsoids of organ-like sizes in an (x, y, z) volume."""
    rng = np.random.default_rng(seed)
    vol = np.zeros(shape, dtype=np.uint8)
    x, y, z = np.ogrid[:shape[0], :shape[1], :shape[2]]
    radii = [(110, 90, 60), (35, 30, 40), (45, 35, 35), (60, 20, 15), (12, 12, 120),
             (14, 14, 100), (8, 6, 12), (8, 6, 12), (20, 16, 18), (9, 9, 80), (70, 50, 35),
             (40, 15, 20), (35, 30, 40)]
    for label, (rx, ry, rz) in enumerate(radii, start=1):
        c = [rng.uniform(r + 2, n - r - 2) for r, n in zip((rx, ry, rz), shape)]
        e = ((x - c[0]) / rx) ** 2 + ((y - c[1]) / ry) ** 2 + ((z - c[2]) / rz) ** 2 <= 1
        vol[e] = label
    return vol


def cells(shape, n, seed):
    rng = np.random.default_rng(seed)
    out = np.zeros(shape, dtype=np.uint32)
    centres = rng.random((n, 2)) * shape
    radii = rng.uniform(8, 16, n)
    for k in range(n):
        rr, cc = draw.disk(centres[k], radii[k], shape=shape)
        out[rr, cc] = k + 1
    return out


class Times:
    """Wall seconds, and CPU seconds of this process (Python) or of its children (umamba)."""

    def __init__(self, wall, cpu):
        self.wall, self.cpu = wall, cpu

    def __str__(self):
        return f"{self.wall:.2f} s wall / {self.cpu:.2f} s CPU"


def timed(fn, child=False):
    def cpu():
        if child:
            r = resource.getrusage(resource.RUSAGE_CHILDREN)
            return r.ru_utime + r.ru_stime
        return time.process_time()
    t, c = time.perf_counter(), cpu()
    r = fn()
    return Times(time.perf_counter() - t, cpu() - c), r


def ratio(ref, ours):
    return f"{ref.wall / ours.wall:.1f}x wall, {ref.cpu / ours.cpu:.1f}x CPU"


def bench_compute(umamba, threads, gt, pred, extra):
    """`umamba bench metrics`: the scoring alone, best of 3."""
    rc, out = run_umamba(umamba, ["--threads", str(threads), "bench", "metrics", "--gt", gt,
                                  "--pred", pred, "--repeat", "3"] + extra)
    if rc:
        sys.exit(f"umamba bench metrics failed: {out}")
    r = json.loads([line for line in out.splitlines() if line.startswith("{")][-1])
    return Times(r["wall_s"], r["cpu_s"])


def bench_nsd(umamba, tmp, threads):
    shape = (512, 512, 300)
    zooms = (0.8, 0.8, 2.5)
    gt = organs(shape, 1)
    pred = np.roll(organs(shape, 1), (2, -1, 1), axis=(0, 1, 2))
    pred[metrics_f1_test.np.arange(shape[0]) % 97 == 0] = 0  # a few missing sagittal planes
    gdir, pdir, out = (os.path.join(tmp, d) for d in ("nsd_gt", "nsd_pred", "nsd_out"))
    os.makedirs(gdir)
    os.makedirs(pdir)
    for d, a in ((gdir, gt), (pdir, pred)):
        img = nib.Nifti1Image(a, np.diag(list(zooms) + [1.0]))
        img.header.set_zooms(zooms)
        nib.save(img, os.path.join(d, "case_0001.nii.gz"))
    stored = tuple(float(v) for v in nib.load(os.path.join(gdir, "case_0001.nii.gz")).header.get_zooms())
    t_ours, (rc, log) = timed(lambda: run_umamba(umamba, ["--threads", str(threads), "evaluate",
                                                          "--gt", gdir, "--pred", pdir,
                                                          "--metric", "nsd", "--tolerances",
                                                          os.path.join(ROOT, "configs/nsd_tolerances_abdomen.json"),
                                                          "-o", out]), child=True)
    if rc:
        sys.exit(f"umamba failed: {log}")
    ours = {int(r["label"]): float(r["nsd"]) for r in read_csv(os.path.join(out, "nsd_per_case.csv"))}

    def reference():
        res = {}
        for label, tol in FLARE_TOL.items():
            g, p = gt == label, pred == label
            res[label] = metrics_nsd_test.convention(
                g, p, lambda: metrics_nsd_test.restated_nsd(g, p, stored, tol))
        return res

    compute = bench_compute(umamba, threads, os.path.join(gdir, "case_0001.nii.gz"),
                            os.path.join(pdir, "case_0001.nii.gz"),
                            ["--metric", "nsd", "--tolerances",
                             os.path.join(ROOT, "configs/nsd_tolerances_abdomen.json")])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t_ref, ref = timed(reference)
        t_read, _ = timed(lambda: [np.asarray(nib.load(os.path.join(d, "case_0001.nii.gz")).dataobj)
                                   for d in (gdir, pdir)])
    diff = max(abs(ours[k] - ref[k]) for k in ref)
    print(f"NSD 13 labels, 512x512x300: umamba {t_ours} (whole command), Python reference "
          f"{t_ref} -> {ratio(t_ref, t_ours)}; max |NSD diff| {diff:.2e}")
    both = Times(t_ref.wall + t_read.wall, t_ref.cpu + t_read.cpu)
    print(f"    with reading on both sides (nibabel load {t_read} added to Python): "
          f"{ratio(both, t_ours)}")
    print(f"    scoring only (umamba bench metrics, reading excluded as for Python): {compute} "
          f"-> {ratio(t_ref, compute)}")


def bench_f1(umamba, tmp, threads):
    gt = cells((10000, 10000), 50000, 2)
    pred = scramble(metrics_f1_test.np.roll(gt, (2, 3), axis=(0, 1)), seed=7, drop=0.05,
                    merge=0.05).astype(np.uint32)
    gdir, pdir, out = (os.path.join(tmp, d) for d in ("f1_gt", "f1_pred", "f1_out"))
    os.makedirs(gdir)
    os.makedirs(pdir)
    tifffile.imwrite(os.path.join(gdir, "wsi_label.tiff"), gt, compression="zlib")
    tifffile.imwrite(os.path.join(pdir, "wsi_label.tiff"), pred, compression="zlib")
    t_ours, (rc, log) = timed(lambda: run_umamba(umamba, ["--threads", str(threads), "evaluate",
                                                          "--gt", gdir, "--pred", pdir,
                                                          "--metric", "f1", "-o", out]),
                           child=True)
    if rc:
        sys.exit(f"umamba failed: {log}")
    ours = read_csv(os.path.join(out, "f1_per_case.csv"))[0]
    compute = bench_compute(umamba, threads, os.path.join(gdir, "wsi_label.tiff"),
                            os.path.join(pdir, "wsi_label.tiff"), ["--metric", "f1"])
    t_ref, ref = timed(lambda: metrics_f1_test.official_f1(gt, pred, 0.5))
    t_read, _ = timed(lambda: [tifffile.imread(os.path.join(d, "wsi_label.tiff"))
                               for d in (gdir, pdir)])
    same = all(int(ours[k]) == ref[k] for k in ("tp", "fp", "fn", "true_num", "pred_num"))
    print(f"F1 10000x10000, {int(gt.max())} cells: umamba {t_ours} (whole command), Python "
          f"reference {t_ref} -> {ratio(t_ref, t_ours)}; counts identical: {same} "
          f"(TP {ref['tp']}, F1 {ref['f1']:.4f})")
    both = Times(t_ref.wall + t_read.wall, t_ref.cpu + t_read.cpu)
    print(f"    with reading on both sides (tifffile read {t_read} added to Python): "
          f"{ratio(both, t_ours)}")
    print(f"    scoring only (umamba bench metrics, reading excluded as for Python): {compute} "
          f"-> {ratio(t_ref, compute)}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--umamba", required=True)
    ap.add_argument("--threads", type=int, default=0, help="umamba --threads (0 = all cores)")
    ap.add_argument("--only", choices=("nsd", "f1"))
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; "
          f"umamba --threads {args.threads}")
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "nsd"):
            bench_nsd(args.umamba, tmp, args.threads)
        if args.only in (None, "f1"):
            bench_f1(args.umamba, tmp, args.threads)


if __name__ == "__main__":
    main()
