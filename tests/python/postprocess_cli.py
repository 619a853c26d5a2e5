#!/usr/bin/env python3
"""End-to-end checks of `umamba convert` (to-classes, to-instances, measure) on the bundled data,
read back with tifffile and compared with scikit-image.

    postprocess_cli.py --umamba PATH --source DIR [--opencv 0|1]

- to-classes over a folder holding the DSB mask, a go-nuclear volume and a corrupt file: exit code
  1, the corrupt file named on stderr, the good outputs written and equal to the organisers'
  recipe (skimage), no temporary files left, a run record listing every file;
- to-instances (plain) equals skimage.measure.label(classes == 1) exactly; reclaim gives back
  every DSB nucleus (each ground-truth nucleus has a unique partner at IoU >= 0.5);
- a single input file with -o naming a file writes exactly that file; class probabilities
  (float32, 3 channels) give the same instances as their arg-max class map;
- measure: the CSV equals skimage.measure.regionprops_table, the GeoJSON has one detection per
  nucleus whose polygon area equals the nucleus' pixel count (DSB nuclei have no holes), and the
  overlay PNG is written when the build has OpenCV.
Exit code 77 when a Python module is missing (CTest counts it as skipped).
"""
import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import tifffile
    from skimage import measure, morphology, segmentation
except ImportError as e:  # pragma: no cover
    print(f"skipping: {e}")
    sys.exit(77)

CHECKS = 0


def check(cond, message):
    global CHECKS
    CHECKS += 1
    if not cond:
        raise AssertionError(message)


def umamba(exe, *args):
    return subprocess.run([exe, *map(str, args)], capture_output=True, text=True)


def organisers_classes(inst):
    boundary = segmentation.find_boundaries(inst, mode='inner')
    fp = morphology.disk(1) if inst.ndim == 2 else morphology.ball(1)
    boundary = morphology.binary_dilation(boundary, fp)
    interior = np.logical_and(~boundary, inst > 0)
    lab = measure.label(interior, connectivity=1)
    sizes = np.bincount(lab.ravel())
    interior &= sizes[lab] >= 16
    out = np.zeros(inst.shape, dtype=np.uint8)
    out[interior] = 1
    out[boundary] = 2
    return out


def polygon_area(ring):
    x = np.array([p[0] for p in ring], dtype=np.float64)
    y = np.array([p[1] for p in ring], dtype=np.float64)
    return 0.5 * float(np.sum(x[:-1] * y[1:] - x[1:] * y[:-1]))


def main():
    import warnings
    warnings.simplefilter("ignore", FutureWarning)  # skimage 0.26 deprecations in the recipe
    ap = argparse.ArgumentParser()
    ap.add_argument("--umamba", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--opencv", type=int, default=1)
    args = ap.parse_args()
    exe = args.umamba
    data = os.path.join(args.source, "examples", "data")
    mask_path = os.path.join(data, "dsb2018", "mask2d.tif")
    gt = tifffile.imread(mask_path)
    with tempfile.TemporaryDirectory() as tmp:
        inputs = os.path.join(tmp, "in")
        os.makedirs(inputs)
        shutil.copy(mask_path, inputs)
        shutil.copy(os.path.join(data, "go-nuclear", "1135_mini_label.tif"), inputs)
        with open(os.path.join(inputs, "broken.tif"), "wb") as f:
            f.write(b"II*\x00garbage")

        # to-classes over a folder with a corrupt file
        classes_dir = os.path.join(tmp, "classes")
        r = umamba(exe, "convert", "to-classes", inputs, "-o", classes_dir)
        check(r.returncode == 1, f"to-classes with a corrupt file: exit {r.returncode}")
        check("broken.tif" in r.stderr, f"the corrupt file is not named: {r.stderr}")
        files = sorted(os.listdir(classes_dir))
        check(files == ["1135_mini_label.tif", "mask2d.tif", "umamba_convert.json"],
              f"to-classes outputs: {files}")
        record = json.load(open(os.path.join(classes_dir, "umamba_convert.json")))
        check([f["ok"] for f in record["files"]] == [True, False, True],
              f"run record: {record['files']}")
        classes = tifffile.imread(os.path.join(classes_dir, "mask2d.tif"))
        check(np.array_equal(classes, organisers_classes(gt)),
              "to-classes differs from the organisers' recipe on the DSB mask")
        vol = tifffile.imread(os.path.join(data, "go-nuclear", "1135_mini_label.tif"))
        vol_classes = tifffile.imread(os.path.join(classes_dir, "1135_mini_label.tif"))
        check(np.array_equal(vol_classes, organisers_classes(vol)),
              "to-classes differs from the recipe (ball(1)) on the go-nuclear volume")

        # to-instances, plain: exactly label(interior, 8-connected)
        plain_dir = os.path.join(tmp, "plain")
        r = umamba(exe, "convert", "to-instances", classes_dir, "-o", plain_dir, "--mode", "plain")
        check(r.returncode == 0, f"to-instances plain failed: {r.stderr}")
        plain = tifffile.imread(os.path.join(plain_dir, "mask2d.tif"))
        check(plain.dtype == np.uint16, f"instances dtype {plain.dtype}")
        check(np.array_equal(plain, measure.label(classes == 1, connectivity=2)),
              "plain mode differs from skimage.measure.label(classes == 1)")

        # to-instances, reclaim (a single file to a named file, with a suffix ignored)
        single = os.path.join(tmp, "single", "nuclei_label.tif")
        r = umamba(exe, "convert", "to-instances", os.path.join(classes_dir, "mask2d.tif"), "-o",
                   single)
        check(r.returncode == 0 and os.path.exists(single), f"single-file output: {r.stderr}")
        check(os.listdir(os.path.dirname(single)) == ["nuclei_label.tif"],
              f"single-file mode wrote {os.listdir(os.path.dirname(single))}")
        reclaim = tifffile.imread(single)
        matched = 0
        for g in np.unique(gt[gt > 0]):
            cells, counts = np.unique(reclaim[gt == g], return_counts=True)
            best = cells[np.argmax(counts)]
            if best == 0:
                continue
            inter = counts.max()
            union = np.count_nonzero(gt == g) + np.count_nonzero(reclaim == best) - inter
            matched += 2 * inter >= union
        n_gt = len(np.unique(gt[gt > 0]))
        check(matched == n_gt, f"reclaim matched {matched} of {n_gt} DSB nuclei")

        # class probabilities (float32, channels last as RGB samples) -> the same instances
        rng = np.random.default_rng(3)
        probs = rng.random((*classes.shape, 3)).astype(np.float32) * 0.2
        for c in range(3):
            probs[..., c][classes == c] += 1.0
        prob_path = os.path.join(tmp, "probs.tif")
        tifffile.imwrite(prob_path, probs, photometric="rgb")
        from_probs = os.path.join(tmp, "from_probs.tif")
        r = umamba(exe, "convert", "to-instances", prob_path, "-o", from_probs)
        check(r.returncode == 0, f"to-instances from probabilities failed: {r.stderr}")
        check(np.array_equal(tifffile.imread(from_probs), reclaim),
              "instances from probabilities differ from those of the class map")

        # measure
        images = os.path.join(tmp, "images")
        os.makedirs(images)
        shutil.copy(os.path.join(data, "dsb2018", "img2d.tif"), os.path.join(images, "mask2d.tif"))
        meas = os.path.join(tmp, "measure")
        r = umamba(exe, "convert", "measure", mask_path, "-o", meas, "--images", images)
        check(r.returncode == 0, f"measure failed: {r.stderr}")
        img = tifffile.imread(os.path.join(data, "dsb2018", "img2d.tif"))
        ref = measure.regionprops_table(gt, intensity_image=img, properties=[
            "label", "area", "bbox", "centroid", "equivalent_diameter_area", "intensity_mean",
            "intensity_min", "intensity_max"])
        with open(os.path.join(meas, "mask2d_objects.csv")) as f:
            rows = list(csv.DictReader(f))
        for name, values in ref.items():
            got = np.array([float(row[name]) for row in rows])
            check(np.allclose(got, values, rtol=1e-12), f"measure CSV column {name} differs")
        geo = json.load(open(os.path.join(meas, "mask2d.geojson")))
        feats = geo["features"]
        check(geo["type"] == "FeatureCollection" and len(feats) == n_gt,
              f"GeoJSON: {len(feats)} features for {n_gt} nuclei")
        for feat in feats:
            label = feat["properties"]["measurements"]["label"]
            check(feat["properties"]["objectType"] == "detection", "objectType")
            check(feat["geometry"]["type"] == "Polygon", "geometry type")
            area = polygon_area(feat["geometry"]["coordinates"][0])
            check(area == np.count_nonzero(gt == label),
                  f"GeoJSON polygon of nucleus {label}: area {area}, "
                  f"{np.count_nonzero(gt == label)} pixels")
        overlay = os.path.join(meas, "mask2d_overlay.png")
        if args.opencv:
            from skimage import io as skio
            ov = skio.imread(overlay)
            check(ov.shape == (*gt.shape, 3) and ov.dtype == np.uint8,
                  f"overlay {ov.shape} {ov.dtype}")
        leftovers = [f for d, _, fs in os.walk(tmp) for f in fs if ".tmp-" in f]
        check(not leftovers, f"temporary files left: {leftovers}")
    print(f"convert: {CHECKS} checks passed")


if __name__ == "__main__":
    main()
