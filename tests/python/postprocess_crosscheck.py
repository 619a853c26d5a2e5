#!/usr/bin/env python3
"""Cross-checks of umamba's post-processing against SciPy and scikit-image.

Our side runs through tests/postprocess/postprocess_tool on raw arrays.

    postprocess_crosscheck.py --tool PATH --mode MODE [--source DIR]

MODE: ccl      connected components vs scipy.ndimage.label: random noise of many densities and
               blobs, 2D (4/8) and 3D (6/18/26), odd sizes, 1 and 2 threads; identical labels
               (scipy numbers components in raster order of their first pixel, as we do)
      classes  instance labels -> 3 classes vs the NeurIPS organisers' create_interior_map
               (skimage find_boundaries(mode='inner'), binary_dilation(disk(1)),
               remove_small_objects(16)) on random label images and the bundled DSB mask
      measure  the measurement table vs skimage.measure.regionprops_table (with and without
               spacing, one and three intensity channels, 2D and 3D)
Exit code 77 when a Python module is missing (CTest counts it as skipped).
"""
import argparse
import csv
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    from scipy import ndimage as ndi
    from skimage import measure, morphology, segmentation
except ImportError as e:  # pragma: no cover
    print(f"skipping: {e}")
    sys.exit(77)

TOOL = None
TMP = None
CHECKS = 0


def check(cond, message):
    global CHECKS
    CHECKS += 1
    if not cond:
        raise AssertionError(message)


def run_tool(*args):
    proc = subprocess.run([TOOL, *map(str, args)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise AssertionError(f"postprocess_tool {' '.join(map(str, args))} failed: {proc.stderr}")
    return proc.stdout


def shape3(a):
    return (1,) * (3 - a.ndim) + a.shape


def ours_ccl(a, conn, threads):
    src = os.path.join(TMP, "in.raw")
    dst = os.path.join(TMP, "out.raw")
    np.ascontiguousarray(a).tofile(src)
    z, y, x = shape3(a)
    n = int(run_tool("ccl", src, dst, z, y, x, a.dtype.name, conn, 0, threads))
    return np.fromfile(dst, dtype=np.uint32).reshape(a.shape), n


def scipy_structure(ndim, conn):
    if ndim == 2:
        return ndi.generate_binary_structure(2, 1 if conn == 4 else 2)
    return ndi.generate_binary_structure(3, {6: 1, 18: 2, 26: 3}[conn])


def blobs(rng, shape, sigma, level):
    f = ndi.gaussian_filter(rng.random(shape), sigma)
    return (f > np.quantile(f, level)).astype(np.uint8)


def mode_ccl():
    rng = np.random.default_rng(2026)
    cases = []
    for shape in [(1, 1), (3, 200), (200, 3), (67, 129), (257, 301)]:
        for d in [0.05, 0.3, 0.5, 0.7, 0.95]:
            cases.append((rng.random(shape) < d).astype(np.uint8))
        cases.append(blobs(rng, shape, 3, 0.5))
    for shape in [(2, 3, 4), (9, 33, 65), (31, 40, 50)]:
        for d in [0.1, 0.4, 0.6, 0.9]:
            cases.append((rng.random(shape) < d).astype(np.uint8))
        cases.append(blobs(rng, shape, 2, 0.5))
    cases.append(blobs(rng, (120, 140), 3, 0.4).astype(np.uint16) * 1000)
    for a in cases:
        for conn in ([4, 8] if a.ndim == 2 else [6, 18, 26]):
            expected, n_expected = ndi.label(a, structure=scipy_structure(a.ndim, conn))
            for threads in (1, 2):
                got, n = ours_ccl(a, conn, threads)
                check(n == n_expected, f"ccl {a.shape} conn {conn} threads {threads}: "
                                       f"{n} components, scipy {n_expected}")
                check(np.array_equal(got, expected),
                      f"ccl {a.shape} conn {conn} threads {threads}: labels differ from scipy at "
                      f"{np.argwhere(got != expected)[:3].tolist()}")


def organisers_classes(inst):
    """The organisers' create_interior_map (2D), also run on 3D volumes with ball(1)."""
    boundary = segmentation.find_boundaries(inst, mode='inner')
    fp = morphology.disk(1) if inst.ndim == 2 else morphology.ball(1)
    boundary = morphology.binary_dilation(boundary, fp)
    interior = np.logical_and(~boundary, inst > 0)
    interior = morphology.remove_small_objects(interior, min_size=16)
    out = np.zeros(inst.shape, dtype=np.uint8)
    out[interior] = 1
    out[boundary] = 2
    return out


def ours_classes(inst):
    src = os.path.join(TMP, "inst.raw")
    dst = os.path.join(TMP, "classes.raw")
    np.ascontiguousarray(inst).tofile(src)
    z, y, x = shape3(inst)
    run_tool("classes", src, dst, z, y, x, inst.dtype.name, 2, 1, 16)
    return np.fromfile(dst, dtype=np.uint8).reshape(inst.shape)


def random_instances(rng, shape, sigma):
    fg = blobs(rng, shape, sigma, 0.5).astype(bool)
    seeds = ndi.gaussian_filter(rng.random(shape), sigma)
    # Split the foreground into touching instances: quantised smooth field, then components.
    bands = (seeds * 400).astype(np.int64) % 5 + 1
    out = np.zeros(shape, dtype=np.int32)
    n = 0
    for v in range(1, 6):
        lab, k = ndi.label(fg & (bands == v))
        out[lab > 0] = lab[lab > 0] + n
        n += k
    return out


def mode_classes(source):
    import warnings
    warnings.simplefilter("ignore")  # remove_small_objects' min_size deprecation
    rng = np.random.default_rng(7)
    cases = [random_instances(rng, s, 3) for s in [(64, 80), (129, 257), (5, 300)]]
    cases += [random_instances(rng, (12, 40, 50), 2)]
    try:
        import tifffile
        cases.append(tifffile.imread(os.path.join(source, "examples/data/dsb2018/mask2d.tif")))
        cases.append(tifffile.imread(
            os.path.join(source, "examples/data/go-nuclear/1135_mini_label.tif")))
    except ImportError:
        pass
    for inst in cases:
        expected = organisers_classes(inst)
        got = ours_classes(inst)
        check(np.array_equal(got, expected),
              f"classes {inst.shape} {inst.dtype}: {np.count_nonzero(got != expected)} pixels "
              f"differ from the organisers' recipe, e.g. at "
              f"{np.argwhere(got != expected)[:3].tolist()}")


def ours_measure(labels, spacing, intensity=None):
    src = os.path.join(TMP, "labels.raw")
    out = os.path.join(TMP, "table.csv")
    np.ascontiguousarray(labels).tofile(src)
    z, y, x = shape3(labels)
    args = ["measure", src, z, y, x, labels.dtype.name, *spacing, out]
    if intensity is not None:
        isrc = os.path.join(TMP, "intensity.raw")
        np.ascontiguousarray(intensity).tofile(isrc)
        args += [isrc, intensity.shape[0], intensity.dtype.name]
    run_tool(*args)
    with open(out) as f:
        rows = list(csv.DictReader(f))
    return {k: np.array([float(r[k]) for r in rows]) for k in rows[0]} if rows else {}


def mode_measure():
    rng = np.random.default_rng(11)
    for shape, spacing in [((90, 110), (1.0, 0.5, 0.25)), ((14, 30, 40), (2.0, 0.4, 0.3))]:
        labels = random_instances(rng, shape, 2 if len(shape) == 3 else 3).astype(np.uint16)
        sp = spacing if len(shape) == 3 else spacing[1:]
        for channels in (0, 1, 3):
            intensity = None
            if channels:
                intensity = rng.integers(0, 4000, size=(channels, *shape)).astype(np.uint16)
            got = ours_measure(labels, spacing, intensity)
            props = ["label", "area", "bbox", "centroid", "equivalent_diameter_area"]
            if channels:
                props += ["intensity_mean", "intensity_min", "intensity_max"]
            img = None
            if channels == 1:
                img = intensity[0]
            elif channels == 3:
                img = np.moveaxis(intensity, 0, -1)
            ref = measure.regionprops_table(labels, intensity_image=img, properties=props)
            ref_phys = measure.regionprops_table(labels, properties=["area",
                                                                     "equivalent_diameter_area"],
                                                 spacing=sp)
            for name, values in ref.items():
                check(name in got, f"measure: our table lacks column {name}")
                check(np.allclose(got[name], values, rtol=1e-12, atol=1e-9),
                      f"measure {shape} channels {channels}: column {name} differs from skimage")
            check(np.allclose(got["area_physical"], ref_phys["area"], rtol=1e-12),
                  f"measure {shape}: area_physical differs from skimage's area with spacing")
            check(np.allclose(got["equivalent_diameter_physical"],
                              ref_phys["equivalent_diameter_area"], rtol=1e-12),
                  f"measure {shape}: equivalent_diameter_physical differs from skimage")


def main():
    global TOOL, TMP
    ap = argparse.ArgumentParser()
    ap.add_argument("--tool", required=True)
    ap.add_argument("--mode", required=True, choices=["ccl", "classes", "measure"])
    ap.add_argument("--source", default=os.path.join(os.path.dirname(__file__), "..", ".."))
    args = ap.parse_args()
    TOOL = args.tool
    with tempfile.TemporaryDirectory() as tmp:
        TMP = tmp
        if args.mode == "ccl":
            mode_ccl()
        elif args.mode == "classes":
            mode_classes(args.source)
        else:
            mode_measure()
    print(f"{args.mode}: {CHECKS} checks passed")


if __name__ == "__main__":
    main()
