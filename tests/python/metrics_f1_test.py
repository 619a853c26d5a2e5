"""Cross-check: `umamba evaluate --metric f1` against the NeurIPS 2022 Cell Segmentation
challenge's F1 rule, re-stated here in Python with scikit-image and SciPy from the description of
the official script (JunMa11/NeurIPS-CellSeg baseline/compute_metric.py: frame removal with
unique(mask*frame)[1:], relabel_sequential, dense IoU table, linear_sum_assignment on
-(IoU >= t) - IoU/(2 n_min), 2000-pixel tiles from 25 megapixels). This is a re-statement of the
official rule, not the official file.

Cases: the DSB 2018 mask against shifted, eroded, dilated and scrambled copies, the NeurIPS
training pair (when ../shared/data is present), synthetic edge cases (empty images, single
pixels, exact IoU = 1/2 ties, frame cells) and a 5000 x 5000 image scored in tiles. TP, FP, FN,
cell counts and F1 must be identical.

  metrics_f1_test.py --umamba build/umamba [--write-fixtures]
"""

import argparse
import json
import os
import sys
import tempfile

import numpy as np
import tifffile
from scipy.optimize import linear_sum_assignment
from skimage import draw, segmentation

sys.path.insert(0, os.path.dirname(__file__))
from metrics_common import (FIXTURES, ROOT, dilate_labels, erode_labels, fail, read_csv,  # noqa
                            run_umamba, scramble, shift)

# ---- the official rule, re-stated -------------------------------------------------------------


def drop_frame_cells(mask):
    w, h = mask.shape
    frame = np.ones((w, h))
    frame[2:w - 2, 2:h - 2] = 0
    found = np.unique(mask * frame)
    for i in found[1:]:
        mask[mask == i] = 0
    return segmentation.relabel_sequential(mask)[0]


def true_positives(gt, seg, th):
    n_gt, n_seg = int(gt.max()), int(seg.max())
    counts = np.bincount(gt.ravel().astype(np.int64) * (n_seg + 1) + seg.ravel(),
                         minlength=(n_gt + 1) * (n_seg + 1)).reshape(n_gt + 1, n_seg + 1)
    area_seg = counts.sum(axis=0, keepdims=True)
    area_gt = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = counts / (area_seg + area_gt - counts)
    iou[np.isnan(iou)] = 0.0
    iou = iou[1:, 1:]
    n_min = min(iou.shape)
    cost = -(iou >= th).astype(float) - iou / (2 * n_min)
    r, c = linear_sum_assignment(cost)
    return int((iou[r, c] >= th).sum())


def counts_of(gt, seg, th):
    n_gt, n_seg = int(gt.max()), int(seg.max())
    if n_seg == 0:
        return 0, 0, 0
    tp = true_positives(gt, seg, th)
    return tp, n_seg - tp, n_gt - tp


def official_f1(gt, seg, th, keep_border=False):
    if np.prod(gt.shape) < 25_000_000:
        if not keep_border:
            gt = drop_frame_cells(gt.astype(np.int32))
            seg = drop_frame_cells(seg.astype(np.int32))
        gt = segmentation.relabel_sequential(gt)[0]
        seg = segmentation.relabel_sequential(seg)[0]
        n_true, n_pred = int(gt.max()), int(seg.max())
        tp, fp, fn = counts_of(gt, seg, th)
    else:
        roi = 2000
        h, w = gt.shape
        nh, nw = -(-h // roi), -(-w // roi)
        gp = np.zeros((nh * roi, nw * roi), dtype=np.int64)
        sp = np.zeros_like(gp)
        gp[:h, :w] = gt
        sp[:h, :w] = seg
        tp = fp = fn = n_true = n_pred = 0
        for i in range(nh):
            for j in range(nw):
                gr = gp[roi * i:roi * (i + 1), roi * j:roi * (j + 1)]
                sr = sp[roi * i:roi * (i + 1), roi * j:roi * (j + 1)]
                if not keep_border:
                    gr, sr = drop_frame_cells(gr.copy()), drop_frame_cells(sr.copy())
                gr = segmentation.relabel_sequential(gr)[0]
                sr = segmentation.relabel_sequential(sr)[0]
                n_true += int(gr.max())
                n_pred += int(sr.max())
                a, b, c = counts_of(gr, sr, th)
                tp, fp, fn = tp + a, fp + b, fn + c
    if tp == 0:
        f1 = 0.0
    else:
        precision, recall = tp / n_pred, tp / n_true
        f1 = 2 * (precision * recall) / (precision + recall)
    return dict(true_num=n_true, pred_num=n_pred, tp=tp, fp=fp, fn=fn, f1=f1)


# ---- the cases -----------------------------------------------------------------------------------


def random_cells(shape, n, seed, rmin=3, rmax=9):
    rng = np.random.default_rng(seed)
    out = np.zeros(shape, dtype=np.uint32)
    for k in range(1, n + 1):
        c = rng.random(2) * shape
        r = rng.uniform(rmin, rmax)
        rr, cc = draw.disk(c, r, shape=shape)
        out[rr, cc] = k
    return out


def build_cases(shared):
    cases = {}
    dsb = tifffile.imread(os.path.join(ROOT, "examples/data/dsb2018/mask2d.tif"))
    cases["dsb_shift"] = (dsb, shift(dsb, 2, 1).astype(np.uint16))
    cases["dsb_shift4"] = (dsb, shift(dsb, -4, 3).astype(np.int32))
    cases["dsb_erode"] = (dsb, erode_labels(dsb, 2))
    cases["dsb_dilate"] = (dsb, dilate_labels(dsb).astype(np.uint32))
    cases["dsb_scramble"] = (dsb, scramble(shift(dsb, 1, 1), seed=3).astype(np.int32))
    neurips = os.path.join(shared, "cells2d/neurips-cellseg/labels/cell_00225_label.tiff")
    if os.path.exists(neurips):
        g = tifffile.imread(neurips)
        cases["neurips_erode"] = (g, erode_labels(g, 3).astype(np.int16))
        cases["neurips_shift"] = (g, shift(g, 9, -7).astype(np.int16))
        cases["neurips_same"] = (g, g.copy())
    else:
        print("note: NeurIPS pair not found under", shared, "- skipped")
    z = np.zeros((64, 64), dtype=np.uint16)
    one = z.copy()
    one[30, 30] = 5
    cases["empty_both"] = (z, z)
    cases["empty_gt"] = (z, one)
    cases["empty_pred"] = (one, z)
    cases["single_pixel"] = (one, one)
    tie_g, tie_p = z.copy(), z.copy()
    tie_g[10, 10:12] = 1           # 2-pixel cell, 1 pixel predicted: IoU = 1/2
    tie_p[10, 10] = 4
    tie_g[20, 10:14] = 2           # split in two exact halves
    tie_p[20, 10:12] = 5
    tie_p[20, 12:14] = 6
    tie_g[40:43, 40:43] = 3        # 9 pixels vs 6 inside + 3 outside: 6/12 = 1/2
    tie_p[40:43, 40:42] = 7
    tie_p[40:43, 43] = 7
    cases["ties"] = (tie_g, tie_p)
    frame_g, frame_p = z.copy(), z.copy()
    frame_g[0:3, 5:9] = 1
    frame_g[30:33, 61:64] = 2
    frame_g[20:25, 20:25] = 3
    frame_p[20:25, 20:25] = 1      # matches a kept cell
    frame_p[1:3, 5:9] = 2          # frame cell in both
    frame_p[25:27, 20:25] = 1      # grows cell 1 ... still inside
    frame_p[50:55, 1:6] = 3        # predicted cell touching the frame, no gt
    cases["frame_cells"] = (frame_g, frame_p)
    big = random_cells((5000, 5000), 6000, seed=1)
    cases["large_tiled"] = (big, scramble(shift(big, 1, 2), seed=5).astype(np.uint32))
    syn = random_cells((700, 900), 900, seed=2)
    cases["synthetic_crowded"] = (syn, erode_labels(shift(syn, 2, 0), 1))
    return cases


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--umamba", required=True)
    ap.add_argument("--shared", default=os.path.join(ROOT, "..", "shared", "data"))
    ap.add_argument("--write-fixtures", action="store_true")
    args = ap.parse_args()
    cases = build_cases(args.shared)
    fixture_path = os.path.join(FIXTURES, "f1_reference.json")
    fixture = json.load(open(fixture_path)) if os.path.exists(fixture_path) else None
    reference = {}
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        gdir, pdir = os.path.join(tmp, "gt"), os.path.join(tmp, "pred")
        os.makedirs(gdir)
        os.makedirs(pdir)
        for name, (g, p) in cases.items():
            tifffile.imwrite(os.path.join(gdir, name + "_label.tiff"), g, compression="zlib")
            tifffile.imwrite(os.path.join(pdir, name + "_label.tiff"), p, compression="zlib")
        for th, keep in (("0.5", False), ("0.7", False), ("0.3", False), ("0.5", True)):
            out = os.path.join(tmp, f"out_{th}_{keep}")
            cmd = ["evaluate", "--gt", gdir, "--pred", pdir, "--metric", "f1", "--threshold", th,
                   "-o", out] + (["--keep-border"] if keep else [])
            rc, log = run_umamba(args.umamba, cmd)
            if rc != 0:
                fail(f"umamba evaluate failed ({rc}):\n{log}")
            ours = {r["name"]: r for r in read_csv(os.path.join(out, "f1_per_case.csv"))}
            key = f"t{th}" + ("_keep_border" if keep else "")
            reference[key] = {}
            for name, (g, p) in cases.items():
                if keep and name == "large_tiled":
                    continue  # the script's tiled branch fails with --count_bd_cells
                want = official_f1(g.copy(), p.copy(), float(th), keep_border=keep)
                reference[key][name] = want
                got = ours[name]
                for k in ("true_num", "pred_num", "tp", "fp", "fn"):
                    if int(got[k]) != want[k]:
                        print(f"MISMATCH {key} {name} {k}: ours {got[k]} reference {want[k]}")
                        failures += 1
                if float(got["f1"]) != want["f1"]:
                    print(f"MISMATCH {key} {name} f1: ours {got['f1']} reference {want['f1']}")
                    failures += 1
                if fixture and name in fixture["results"].get(key, {}):
                    if fixture["results"][key][name] != want:
                        print(f"NOTE {key} {name}: reference differs from the stored fixture")
                        failures += 1
                print(f"{key:18s} {name:18s} TP {want['tp']:5d} FP {want['fp']:5d} "
                      f"FN {want['fn']:5d} F1 {want['f1']:.6f}  ours {float(got['f1']):.6f}")
    if args.write_fixtures:
        os.makedirs(FIXTURES, exist_ok=True)
        with open(fixture_path, "w") as f:
            json.dump({"command": "tests/python/metrics_f1_test.py --umamba build/umamba "
                                  "--write-fixtures (.venv: numpy, scipy, scikit-image, tifffile)",
                       "rule": "NeurIPS-CellSeg compute_metric.py, re-stated in Python",
                       "results": reference}, f, indent=1)
            f.write("\n")
    if failures:
        fail(f"{failures} mismatches")
    print("OK: F1 identical to the re-stated official rule on", len(cases), "cases x 4 settings")


if __name__ == "__main__":
    main()
