#!/usr/bin/env python3
"""Cross-checks of `umamba predict` outputs with independent readers and labellers.

    predict_crosscheck.py --umamba BIN --model DIR --image PATH --work DIR

For a real image (the bundled DSB 2018 nuclei, 512x512 uint16):
- streamed plain instances (--stream always: band-by-band labelling joined by the BandMerger,
  spilled and rewritten) equal scikit-image's label(argmax(probabilities) == interior,
  connectivity=2) on the probabilities the same run wrote, read back with tifffile; with
  --min-size, objects below it (NumPy bincount) removed, then relabel_sequential;
- the label TIFF is uint16, [Y, X], 0..N consecutive, named <name>_label.tiff;
- whole-image mode with --measurements --geojson: the CSV equals regionprops_table (label, area,
  centroid, bbox) of the label image, and the GeoJSON has one detection per label whose polygon
  area (shoelace) equals the label's pixel count when the label has no holes;
- the manifest lists the image as done with the instance count found here.
Exit 77 when a Python module is missing (CTest counts it as skipped).
"""
import argparse
import csv
import json
import os
import shutil
import subprocess
import sys

try:
    import numpy as np
    import tifffile
    from scipy import ndimage
    from skimage import measure, segmentation
except ImportError as e:  # pragma: no cover
    print(f"skipped: {e}")
    sys.exit(77)


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        print(" ".join(cmd), "\n", p.stdout, p.stderr)
        raise SystemExit(f"umamba exited with {p.returncode}")
    return p


def expected_plain(prob, min_size):
    classes = np.argmax(prob, axis=0)  # [K, Y, X] -> [Y, X], ties to the lower class
    lab = measure.label(classes == 1, connectivity=2)
    if min_size > 1:
        sizes = np.bincount(lab.ravel())
        small = sizes < min_size
        small[0] = False
        lab[small[lab]] = 0
        lab, _, _ = segmentation.relabel_sequential(lab)
    return lab


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--umamba", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--image", required=True)
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    shutil.rmtree(a.work, ignore_errors=True)
    os.makedirs(a.work)
    stem = os.path.basename(a.image).rsplit(".", 1)[0]
    checks = 0

    for min_size in (0, 30):
        out = os.path.join(a.work, f"stream{min_size}")
        run([a.umamba, "predict", a.image, "-m", a.model, "-o", out, "--no-mirror",
             "--postprocess", "plain", "--min-size", str(min_size), "--stream", "always",
             "--probabilities", "--progress", "off"])
        lab = tifffile.imread(os.path.join(out, f"{stem}_label.tiff"))
        prob = tifffile.imread(os.path.join(out, f"{stem}_prob.tiff"))
        assert lab.dtype == np.uint16, lab.dtype
        assert prob.dtype == np.float32, prob.dtype
        if prob.shape[-1] == 3 and prob.ndim == 3 and prob.shape[0] != 3:
            prob = np.moveaxis(prob, -1, 0)  # contiguous samples read as [Y, X, K]
        assert prob.shape[0] == 3, prob.shape
        assert lab.shape == prob.shape[1:], (lab.shape, prob.shape)
        np.testing.assert_allclose(prob.sum(axis=0), 1.0, atol=1e-5)
        want = expected_plain(prob, min_size)
        n = int(want.max())
        assert n > 0, "the model found nothing; the check would be empty"
        assert np.array_equal(lab, want), (
            f"min_size {min_size}: {np.count_nonzero(lab != want)} pixels differ")
        assert set(np.unique(lab)) == set(range(n + 1)), "labels not consecutive"
        m = json.load(open(os.path.join(out, "umamba_predict.json")))
        rec = m["files"][os.path.basename(a.image)]
        assert rec["status"] == "done" and rec["mode"] == "streamed", rec
        assert rec["instances"] == n, (rec["instances"], n)
        checks += 1
        print(f"streamed plain, min_size {min_size}: {n} instances equal skimage.label")

    out = os.path.join(a.work, "whole")
    run([a.umamba, "predict", a.image, "-m", a.model, "-o", out, "--no-mirror",
         "--measurements", "--geojson", "--progress", "off"])
    lab = tifffile.imread(os.path.join(out, f"{stem}_label.tiff"))
    n = int(lab.max())
    assert set(np.unique(lab)) == set(range(n + 1)), "labels not consecutive"
    with open(os.path.join(out, f"{stem}_objects.csv")) as f:
        rows = list(csv.DictReader(f))
    props = measure.regionprops_table(lab, properties=("label", "area", "centroid", "bbox"))
    assert len(rows) == n == len(props["label"]), (len(rows), n)
    for i, row in enumerate(rows):
        for col in ("label", "area", "centroid-0", "centroid-1", "bbox-0", "bbox-1", "bbox-2",
                    "bbox-3"):
            assert abs(float(row[col]) - float(props[col][i])) < 1e-9, (i, col, row[col])
    checks += 1
    print(f"whole image: {n} instances, CSV equals regionprops_table")
    gj = json.load(open(os.path.join(out, f"{stem}.geojson")))
    feats = gj["features"]
    assert len(feats) == n, (len(feats), n)
    areas = np.bincount(lab.ravel(), minlength=n + 1)
    boxes = ndimage.find_objects(lab)  # per label, so each check looks at its box only
    padded = np.pad(lab, 1)
    compared = 0
    for feat in feats:
        label = int(feat["properties"]["measurements"]["label"])
        ring = np.array(feat["geometry"]["coordinates"][0], dtype=float)
        x, y = ring[:, 0], ring[:, 1]
        area = 0.5 * abs(np.dot(x[:-1], y[1:]) - np.dot(x[1:], y[:-1]))
        ys, xs = boxes[label - 1]
        mask = padded[ys.start:ys.stop + 2, xs.start:xs.stop + 2] == label  # box + 1-pixel rim
        filled = ndimage.binary_fill_holes(mask)
        n_pieces = ndimage.label(mask, structure=np.ones((3, 3)))[1]
        if np.array_equal(filled, mask) and n_pieces == 1:
            assert area == areas[label], (label, area, areas[label])
            compared += 1
    checks += 1
    print(f"GeoJSON: {len(feats)} detections, {compared} polygon areas equal pixel counts")
    print(f"{checks} checks passed")


if __name__ == "__main__":
    main()
