"""Cross-check: `umamba evaluate --metric nsd|dsc` against independent implementations.

1. DeepMind surface-distance's definition re-stated here in NumPy/SciPy (neighbour codes by
   scipy.ndimage.correlate, surfel areas from the marching-cubes normals table, distances from
   scipy.ndimage.distance_transform_edt with `sampling`, NSD = area within tolerance / total area),
   with the normals table taken from MONAI (monai.metrics.utils; the same numbers as DeepMind's).
   It runs on the arrays as nibabel returns them, axes (x, y, z) with get_zooms(), as FLARE's and
   U-Mamba's scripts do; umamba reads the same files in its [Z,Y,X] order.
2. MONAI's compute_surface_dice(use_subvoxels=True) (float32 areas and distances inside).
3. DeepMind's own package `surface_distance`, where it is installed.
Conventions as U-Mamba/FLARE: a label absent from both masks scores 1, from one 0.

Cases: TotalSegmentator's 41-label CT segmentation (3 mm) against shifted and eroded copies; the
go-nuclear 3D nuclei (0.284 x 0.127 x 0.127 um) against eroded and z-shifted copies; the DSB 2D
mask with anisotropic spacing; synthetic single voxels, border-touching and absent labels.
DSC and NSD must agree within 1e-6.

  metrics_nsd_test.py --umamba build/umamba [--write-fixtures]
"""

import argparse
import json
import os
import sys
import tempfile
import warnings

import nibabel as nib
import numpy as np
import tifffile
from scipy import ndimage as ndi

sys.path.insert(0, os.path.dirname(__file__))
from metrics_common import FIXTURES, ROOT, erode_labels, fail, read_csv, run_umamba, shift  # noqa

try:
    import torch
    from monai.metrics import compute_surface_dice
    from monai.metrics import utils as monai_utils
    HAVE_MONAI = True
except ImportError:
    HAVE_MONAI = False
try:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import surface_distance as deepmind
    HAVE_DEEPMIND = True
except ImportError:
    HAVE_DEEPMIND = False

TOL = 1e-6

# ---- DeepMind's definition, re-stated ---------------------------------------------------------


def normals_table():
    if HAVE_MONAI:
        return monai_utils._get_neighbour_code_to_normals_table().double().numpy()  # [256, 4, 3]
    # Without MONAI: parse umamba's copy (then only the geometry below is independent).
    rows = []
    for line in open(os.path.join(ROOT, "volumetric/surfel_normals.inc")):
        if line.startswith("{{{"):
            nums = [int(v) for v in line.split("//")[0].replace("{", " ").replace("}", " ")
                    .replace(",", " ").split()]
            rows.append(np.array(nums, dtype=np.float64).reshape(4, 3) / 8.0)
    return np.stack(rows)


NORMALS = normals_table()


def measure_table(spacing):
    if len(spacing) == 3:
        s0, s1, s2 = spacing
        scaled = NORMALS * np.array([s1 * s2, s0 * s2, s0 * s1])
        return np.linalg.norm(scaled, axis=-1).sum(axis=-1)
    v, h = spacing
    d = 0.5 * np.hypot(v, h)
    t = np.zeros(16)
    t[[1, 2, 4, 8, 7, 11, 13, 14]] = d
    t[[3, 12]] = h
    t[[5, 10]] = v
    t[[6, 9]] = 2 * d
    return t


def restated_nsd(gt, pred, spacing, tol):
    """DeepMind compute_surface_distances + compute_surface_dice_at_tolerance, re-stated."""
    both = gt | pred
    if not both.any():
        return np.nan
    idx = np.nonzero(both)
    lo = [int(i.min()) for i in idx]
    hi = [int(i.max()) for i in idx]
    box = tuple(slice(a, b + 1) for a, b in zip(lo, hi))

    def corner_codes(m):
        padded = np.zeros([b - a + 2 for a, b in zip(lo, hi)], dtype=np.uint8)
        padded[tuple(slice(0, -1) for _ in lo)] = m[box]
        kernel = (np.array([[[128, 64], [32, 16]], [[8, 4], [2, 1]]]) if gt.ndim == 3
                  else np.array([[8, 4], [2, 1]]))
        return ndi.correlate(padded, kernel, mode="constant", cval=0)

    full = 255 if gt.ndim == 3 else 15
    table = measure_table(spacing)
    cg, cp = corner_codes(gt), corner_codes(pred)
    bg, bp = (cg != 0) & (cg != full), (cp != 0) & (cp != full)
    dg = ndi.distance_transform_edt(~bg, sampling=spacing) if bg.any() else np.full(bg.shape, np.inf)
    dp = ndi.distance_transform_edt(~bp, sampling=spacing) if bp.any() else np.full(bp.shape, np.inf)
    ag, apr = table[cg[bg]], table[cp[bp]]
    d_g2p, d_p2g = dp[bg], dg[bp]
    return (ag[d_g2p <= tol].sum() + apr[d_p2g <= tol].sum()) / (ag.sum() + apr.sum())


def convention(gt, pred, value):
    if not gt.any() and not pred.any():
        return 1.0
    if not gt.any() or not pred.any():
        return 0.0
    return value()


def dsc(gt, pred):
    return convention(gt, pred, lambda: 2.0 * (gt & pred).sum() / (gt.sum() + pred.sum()))


def monai_nsd(gt, pred, spacing, tol):
    if not HAVE_MONAI:
        return None
    y = torch.from_numpy(np.stack([~gt, gt])[None].astype(np.float32))
    yp = torch.from_numpy(np.stack([~pred, pred])[None].astype(np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        v = compute_surface_dice(yp, y, [tol], include_background=False, spacing=list(spacing),
                                 use_subvoxels=True)
    return float(v[0, 0])


def deepmind_nsd(gt, pred, spacing, tol):
    if not HAVE_DEEPMIND:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = deepmind.compute_surface_distances(gt, pred, list(spacing))
        return float(deepmind.compute_surface_dice_at_tolerance(d, tol))


# ---- cases --------------------------------------------------------------------------------------


def save_nifti(path, arr_xyz, zooms):
    img = nib.Nifti1Image(arr_xyz, np.diag(list(zooms) + [1.0] * (4 - len(zooms))))
    img.header.set_zooms(zooms)
    nib.save(img, path)


def build_cases():
    """name -> (gt, pred) in nibabel order (x, y, z) or (x, y), and zooms."""
    cases = {}
    seg = nib.load(os.path.join(ROOT, "examples/data/totalsegmentator/example_seg.nii.gz"))
    s = np.asarray(seg.dataobj).astype(np.uint8)
    z3 = tuple(float(v) for v in seg.header.get_zooms())
    cases["ct_shift"] = (s, np.roll(s, (1, -1), axis=(0, 1)), z3)
    cases["ct_erode"] = (s, erode_labels(s, 1).astype(np.uint8), z3)
    zyx = tifffile.imread(os.path.join(ROOT, "examples/data/go-nuclear/1135_mini_label.tif"))
    nuc = np.ascontiguousarray(zyx.transpose(2, 1, 0)).astype(np.uint16)  # (x, y, z)
    zn = (0.127, 0.127, 0.284)
    cases["nuclei_erode"] = (nuc, erode_labels(nuc, 1).astype(np.uint16), zn)
    cases["nuclei_zshift"] = (nuc, np.roll(nuc, 1, axis=2), zn)
    dsb = tifffile.imread(os.path.join(ROOT, "examples/data/dsb2018/mask2d.tif"))
    fg = (dsb > 0).astype(np.uint8).T.copy()  # (x, y)
    fg2 = (shift(dsb, 2, -1) > 0).astype(np.uint8).T.copy()
    cases["dsb2d_fg"] = (fg, fg2, (0.25, 0.5))
    syn_g = np.zeros((20, 18, 9), dtype=np.uint8)
    syn_p = np.zeros_like(syn_g)
    syn_g[5, 5, 4] = 1                  # single voxel vs a 2-voxel object
    syn_p[5, 5:7, 4] = 1
    syn_g[0:6, 10:18, 0:3] = 2          # touches three faces of the volume
    syn_p[0:5, 11:18, 0:4] = 2
    syn_g[12:16, 2:6, 6:8] = 3          # only in the ground truth
    syn_p[14:19, 12:16, 5:9] = 4        # only in the prediction
    cases["synthetic"] = (syn_g, syn_p, (0.8, 0.6, 2.5))
    return cases


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--umamba", required=True)
    ap.add_argument("--write-fixtures", action="store_true")
    args = ap.parse_args()
    print(f"references: re-stated DeepMind (normals from {'MONAI' if HAVE_MONAI else 'umamba'}),"
          f" MONAI {'yes' if HAVE_MONAI else 'not installed'},"
          f" DeepMind package {'yes' if HAVE_DEEPMIND else 'not installed'}")
    cases = build_cases()
    fixture_path = os.path.join(FIXTURES, "nsd_reference.json")
    fixture = json.load(open(fixture_path)) if os.path.exists(fixture_path) else None
    reference, failures, worst = {}, 0, {"dsc": 0.0, "nsd": 0.0, "monai": 0.0, "deepmind": 0.0}
    with tempfile.TemporaryDirectory() as tmp:
        groups = {}
        for name, (g, p, zooms) in cases.items():
            groups.setdefault(name.split("_")[0], []).append(name)  # one label set per dataset
        for tol in (0.3, 1.0, 3.0):
            for ndim, names in groups.items():
                gdir, pdir = (os.path.join(tmp, f"{x}{ndim}_{tol}") for x in ("gt", "pred"))
                os.makedirs(gdir)
                os.makedirs(pdir)
                for name in names:
                    g, p, zooms = cases[name]
                    save_nifti(os.path.join(gdir, name + ".nii.gz"), g, zooms)
                    save_nifti(os.path.join(pdir, name + ".nii.gz"), p, zooms)
                    # As FLARE and U-Mamba: the spacing is the file's (float32 pixdim) zooms.
                    stored = nib.load(os.path.join(gdir, name + ".nii.gz")).header.get_zooms()
                    cases[name] = (g, p, tuple(float(v) for v in stored))
                out = os.path.join(tmp, f"out{ndim}_{tol}")
                rc, log = run_umamba(args.umamba, ["evaluate", "--gt", gdir, "--pred", pdir,
                                                   "--metric", "nsd", "--tolerance", str(tol),
                                                   "-o", out])
                if rc != 0:
                    fail(f"umamba evaluate failed ({rc}):\n{log}")
                rows = read_csv(os.path.join(out, "nsd_per_case.csv"))
                labels = sorted({int(r["label"]) for r in rows})
                ours = {(r["name"], int(r["label"])): r for r in rows}
                for name in names:
                    g, p, zooms = cases[name]
                    key = f"{name}@{tol}"
                    reference[key] = {}
                    for lab in labels:
                        gm, pm = g == lab, p == lab
                        want_d = dsc(gm, pm)
                        want_n = convention(gm, pm, lambda: restated_nsd(gm, pm, zooms, tol))
                        reference[key][str(lab)] = {"dsc": want_d, "nsd": want_n}
                        got = ours[(name, lab)]
                        dd = abs(float(got["dsc"]) - want_d)
                        dn = abs(float(got["nsd"]) - want_n)
                        worst["dsc"], worst["nsd"] = max(worst["dsc"], dd), max(worst["nsd"], dn)
                        if dd > TOL or dn > TOL:
                            print(f"MISMATCH {key} label {lab}: ours dsc {got['dsc']} nsd "
                                  f"{got['nsd']}, reference dsc {want_d} nsd {want_n}")
                            failures += 1
                        if gm.any() and pm.any() and tol == 1.0:
                            m = monai_nsd(gm, pm, zooms, tol)
                            if m is not None:
                                worst["monai"] = max(worst["monai"], abs(m - want_n))
                            d = deepmind_nsd(gm, pm, zooms, tol)
                            if d is not None:
                                worst["deepmind"] = max(worst["deepmind"], abs(d - want_n))
                                if abs(d - want_n) > TOL:
                                    print(f"DEEPMIND DIFFERS {key} label {lab}: {d} vs {want_n}")
                                    failures += 1
                        if fixture and key in fixture["results"]:
                            f = fixture["results"][key].get(str(lab))
                            if f and (abs(f["dsc"] - want_d) > 1e-12 or abs(f["nsd"] - want_n) > 1e-9):
                                print(f"NOTE {key} label {lab}: reference differs from the fixture")
                                failures += 1
                    mean_n = np.mean([v["nsd"] for v in reference[key].values()])
                    print(f"{key:22s} {len(labels):3d} labels  mean NSD {mean_n:.6f}")
    print("largest |ours - re-stated DeepMind|: DSC %.3g, NSD %.3g" % (worst["dsc"], worst["nsd"]))
    if HAVE_MONAI:
        print("largest |MONAI subvoxel - re-stated DeepMind| NSD: %.3g (float32 inside MONAI)"
              % worst["monai"])
    if HAVE_DEEPMIND:
        print("largest |DeepMind package - re-stated| NSD: %.3g" % worst["deepmind"])
    if args.write_fixtures:
        os.makedirs(FIXTURES, exist_ok=True)
        with open(fixture_path, "w") as f:
            json.dump({"command": "tests/python/metrics_nsd_test.py --umamba build/umamba "
                                  "--write-fixtures (.venv: numpy, scipy, nibabel, tifffile, "
                                  "monai for the normals table)",
                       "definition": "DeepMind surface-distance NSD re-stated with SciPy; "
                                     "U-Mamba/FLARE conventions for absent labels",
                       "results": reference}, f, indent=1)
            f.write("\n")
    if failures:
        fail(f"{failures} mismatches")
    print("OK: DSC and NSD within", TOL, "of the re-stated DeepMind definition")


if __name__ == "__main__":
    main()
