#!/usr/bin/env python3
"""Cross-check of `umamba synth` with independent readers and labelling (tifffile, SciPy).

Runs the built CLI, reads its files with tifffile and checks, with scipy.ndimage as the
independent implementation:
  - the NeurIPS and nnU-Net layouts (names, dataset.json, synth.json, 3D spacing sidecars);
  - labels: uint16, consecutive 1..N with N = the manifest's cells_placed, each label one
    face-connected component (scipy.ndimage.label, connectivity 1), the fraction of cells touching
    another label close to the requested one;
  - intensities: mean foreground minus mean background close to contrast x full scale;
  - 3D: the ImageJ spacing and XY resolution written into the stack;
  - reproducibility: --threads 1 gives identical files, and image i alone (--seed S+i) equals
    image i of a multi-image run.
Exit status 77 (skipped) when tifffile or SciPy is missing.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

try:
    import numpy as np
    import tifffile
    from scipy import ndimage as ndi
except ImportError as e:  # pragma: no cover
    print(f"skipped: {e}")
    sys.exit(77)

failures = []


def check(cond, message):
    if not cond:
        failures.append(message)
        print("FAIL:", message)


def run(umamba, *args):
    cmd = [umamba, "--log-level", "warn", *args]
    subprocess.run(cmd, check=True)


def components_ok(labels):
    """Every label is one face-connected component (scipy.ndimage.label)."""
    structure = ndi.generate_binary_structure(labels.ndim, 1)
    bad = []
    for i, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None:
            continue
        _, n = ndi.label(labels[sl] == i, structure=structure)
        if n != 1:
            bad.append((i, n))
    return bad


def touching_fraction(labels):
    """Fraction of labels with a face neighbour of another non-zero label."""
    touching = set()
    for axis in range(labels.ndim):
        a = np.moveaxis(labels, axis, 0)
        u, v = a[:-1], a[1:]
        m = (u != v) & (u > 0) & (v > 0)
        touching.update(np.unique(u[m]).tolist())
        touching.update(np.unique(v[m]).tolist())
    return len(touching) / max(1, labels.max())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--umamba", required=True)
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    shutil.rmtree(a.work, ignore_errors=True)
    os.makedirs(a.work)

    # ---- 2D, NeurIPS layout
    out = os.path.join(a.work, "neurips")
    common = ["--size", "400x360", "--cell-diameter", "14", "--touching", "0.4",
              "--illumination", "0", "--contrast", "0.3", "--background", "0.1"]
    run(a.umamba, "synth", "-o", out, "--count", "3", "--seed", "5", *common)
    manifest = json.load(open(os.path.join(out, "synth.json")))
    check(manifest["layout"] == "neurips" and manifest["count"] == 3, "synth.json layout/count")
    for i, rec in enumerate(manifest["images"]):
        name = f"synth_{i:04d}"
        check(rec["name"] == name and rec["seed"] == 5 + i, f"manifest entry {i}")
        img = tifffile.imread(os.path.join(out, "images", name + ".tif"))
        lab = tifffile.imread(os.path.join(out, "labels", name + "_label.tiff"))
        check(img.shape == (400, 360) and img.dtype == np.uint16, f"{name} image {img.shape} {img.dtype}")
        check(lab.shape == (400, 360) and lab.dtype == np.uint16, f"{name} labels {lab.shape} {lab.dtype}")
        ids = np.unique(lab)
        n = rec["cells_placed"]
        check(np.array_equal(ids, np.arange(n + 1)), f"{name}: labels not consecutive 0..{n}")
        bad = components_ok(lab)
        check(not bad, f"{name}: labels with several components {bad[:5]}")
        frac = touching_fraction(lab)
        check(abs(frac - 0.4) < 0.1, f"{name}: touching fraction {frac:.3f}, requested 0.4")
        fg, bg = img[lab > 0].mean(), img[lab == 0].mean()
        check(abs((fg - bg) - 0.3 * 4095) < 0.12 * 0.3 * 4095,
              f"{name}: foreground - background = {fg - bg:.1f}, expected about {0.3 * 4095:.1f}")
        check(abs(bg - 0.1 * 4095) < 0.03 * 4095, f"{name}: background mean {bg:.1f}")

    # Image 2 alone, and the whole run on one thread, give the same files' pixels.
    alone = os.path.join(a.work, "alone")
    run(a.umamba, "synth", "-o", alone, "--count", "1", "--seed", "7", *common)
    one = os.path.join(a.work, "one_thread")
    run(a.umamba, "--threads", "1", "synth", "-o", one, "--count", "3", "--seed", "5", *common)
    for sub, name, ref in [("images", "synth_0000.tif", "synth_0002.tif"),
                           ("labels", "synth_0000_label.tiff", "synth_0002_label.tiff")]:
        check(np.array_equal(tifffile.imread(os.path.join(alone, sub, name)),
                             tifffile.imread(os.path.join(out, sub, ref))),
              f"--seed 7 alone differs from image 2 of --seed 5 ({sub})")
    for i in range(3):
        for sub, name in [("images", f"synth_{i:04d}.tif"), ("labels", f"synth_{i:04d}_label.tiff")]:
            check(np.array_equal(tifffile.imread(os.path.join(one, sub, name)),
                                 tifffile.imread(os.path.join(out, sub, name))),
                  f"--threads 1 differs: {sub}/{name}")

    # ---- 3D, nnU-Net layout, anisotropic
    out3 = os.path.join(a.work, "nnunet")
    run(a.umamba, "synth", "-o", out3, "--layout", "nnunet", "--size", "24x80x72", "--dtype", "u8",
        "--cell-diameter", "16", "--spacing", "0.25", "--spacing-z", "0.75", "--touching", "0.3")
    ds = json.load(open(os.path.join(out3, "dataset.json")))
    check(ds["numTraining"] == 1 and ds["file_ending"] == ".tif" and
          ds["channel_names"] == {"0": "fluorescence"}, f"dataset.json {ds}")
    img_path = os.path.join(out3, "imagesTr", "synth_0000_0000.tif")
    lab_path = os.path.join(out3, "labelsTr", "synth_0000.tif")
    img = tifffile.imread(img_path)
    lab = tifffile.imread(lab_path)
    check(img.shape == (24, 80, 72) and img.dtype == np.uint8, f"3D image {img.shape} {img.dtype}")
    check(lab.shape == (24, 80, 72) and lab.dtype == np.uint16, f"3D labels {lab.shape} {lab.dtype}")
    for p in [img_path, lab_path]:
        side = json.load(open(p[:-4] + ".json"))
        check(side == {"spacing": [0.75, 0.25, 0.25]}, f"sidecar of {p}: {side}")
    with tifffile.TiffFile(img_path) as tif:
        ij = tif.imagej_metadata or {}
        check(abs(float(ij.get("spacing", 0)) - 0.75) < 1e-6, f"ImageJ spacing {ij.get('spacing')}")
        xres = tif.pages[0].tags["XResolution"].value
        check(abs(xres[0] / xres[1] - 4.0) < 1e-3, f"XResolution {xres} (expected 4 px/um)")
    bad = components_ok(lab)
    check(not bad, f"3D labels with several components {bad[:5]}")
    n = json.load(open(os.path.join(out3, "synth.json")))["images"][0]["cells_placed"]
    check(np.array_equal(np.unique(lab), np.arange(n + 1)), "3D labels not consecutive")
    # Spheres in um are three times shorter in slices than in columns (aspect 3).
    ratios = []
    for i, sl in enumerate(ndi.find_objects(lab), start=1):
        if sl is None or any(s.start == 0 or s.stop == d for s, d in zip(sl, lab.shape)):
            continue
        zz, yy, xx = np.nonzero(lab[sl] == i)
        if len(zz) > 80:
            ratios.append(np.sqrt(xx.var() / zz.var()))
    check(len(ratios) >= 3 and abs(np.mean(ratios) - 3.0) < 0.5,
          f"3D extent ratio x/z {np.mean(ratios) if ratios else None} over {len(ratios)} cells")

    if failures:
        print(f"{len(failures)} check(s) failed")
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
