"""Cross-check of volumetric/resample.h against scikit-image and SciPy.

Our resampler (through resample_tool) against skimage.transform.resize(mode="edge",
anti_aliasing=False, clip=True), and against nnU-Net v2's rules written here with SciPy:
separate-Z (in-plane resize per slice, then map_coordinates order 0 along the axis),
resize_segmentation (one-hot per label, order 1, >= 0.5, later labels win), compute_new_shape
(np.round) and the anisotropy rule. Random volumes and the bundled real CT
(examples/data/totalsegmentator, read with nibabel). Exit 77 when a module is missing.
"""
import argparse
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import nibabel as nib
    from scipy.ndimage import map_coordinates
    from skimage.transform import resize
except ImportError as e:  # pragma: no cover
    print(f"skipped: {e}")
    sys.exit(77)


def sk_resize(x, shape, order):
    return resize(x.astype(np.float64), shape, order=order, mode="edge", cval=0, clip=True,
                  anti_aliasing=False)


def along_axis_nearest(x, axis, m):
    """map_coordinates(order=0, mode='nearest') along one axis, nnU-Net's coordinate rule."""
    n = x.shape[axis]
    shape = list(x.shape)
    shape[axis] = m
    grids = list(np.meshgrid(*[np.arange(s, dtype=np.float64) for s in shape], indexing="ij"))
    grids[axis] = (float(n) / m) * (grids[axis] + 0.5) - 0.5
    return map_coordinates(x, np.array(grids), order=0, mode="nearest")


def nnunet_data(x, shape, order, axis):
    """x [C,Z,Y,X]: nnU-Net's resample_data_or_seg(is_seg=False, order_z=0)."""
    out = []
    for c in range(x.shape[0]):
        if axis < 0:
            out.append(sk_resize(x[c], shape, order))
            continue
        plane = [s for i, s in enumerate(shape) if i != axis]
        slices = [sk_resize(np.take(x[c], k, axis=axis), plane, order)
                  for k in range(x.shape[axis + 1])]
        mid = np.stack(slices, axis)
        out.append(mid if mid.shape[axis] == shape[axis] else along_axis_nearest(mid, axis, shape[axis]))
    return np.stack(out)


def nnunet_seg(lab, shape, axis):
    """lab [Z,Y,X]: nnU-Net's resize_segmentation(order 1) (per slice when separate). Also
    returns where some label's one-hot value lies within 1e-9 of the 0.5 threshold (a tie that
    rounding may decide either way)."""
    def resize_seg(s, new_shape):
        out = np.zeros(new_shape, dtype=s.dtype)
        tie = np.zeros(new_shape, dtype=bool)
        for v in np.unique(s):
            hot = sk_resize((s == v).astype(float), new_shape, 1)
            out[hot >= 0.5] = v
            tie |= np.abs(hot - 0.5) < 1e-9
        return out, tie
    if axis < 0:
        return resize_seg(lab, shape)
    plane = [s for i, s in enumerate(shape) if i != axis]
    parts = [resize_seg(np.take(lab, k, axis=axis), plane) for k in range(lab.shape[axis])]
    mid = np.stack([p[0] for p in parts], axis)
    tie = np.stack([p[1] for p in parts], axis).astype(np.int32)
    if mid.shape[axis] == shape[axis]:
        return mid, tie.astype(bool)
    return (along_axis_nearest(mid, axis, shape[axis]),
            along_axis_nearest(tie, axis, shape[axis]).astype(bool))


def run(tool, args):
    subprocess.run([tool] + [str(a) for a in args], check=True)


class Checker:
    def __init__(self, tool, tmp):
        self.tool, self.tmp, self.failures, self.count = tool, tmp, 0, 0

    def check(self, ok, what):
        self.count += 1
        print(("ok    " if ok else "FAIL  ") + what)
        if not ok:
            self.failures += 1

    def ours_data(self, x, shape, order, axis, mode="data"):
        i, o = os.path.join(self.tmp, "in.raw"), os.path.join(self.tmp, "out.raw")
        x.astype("<f4").tofile(i)
        if mode == "resize":
            run(self.tool, ["resize", i, o, *x.shape, *shape, order])
        else:
            run(self.tool, ["data", i, o, *x.shape, *shape, order, 0, axis])
        return np.fromfile(o, dtype="<f4").reshape((x.shape[0],) + tuple(shape))

    def ours_seg(self, lab, shape, axis):
        i, o = os.path.join(self.tmp, "in.raw"), os.path.join(self.tmp, "out.raw")
        lab.astype("<i4").tofile(i)
        run(self.tool, ["seg", i, o, *lab.shape, *shape, 1, axis])
        return np.fromfile(o, dtype="<i4").reshape(shape)

    def compare_data(self, x, shape, order, axis, what, mode="data"):
        got = self.ours_data(x, shape, order, axis, mode)
        want = nnunet_data(x.astype(np.float64), shape, order, axis)
        scale = max(1.0, float(np.abs(x).max()))
        err = float(np.abs(got - want).max()) / scale
        self.check(err < 5e-6, f"{what}: max |ours - skimage| / max|x| = {err:.2e}")

    def compare_seg(self, lab, shape, axis, what):
        got = self.ours_seg(lab, shape, axis)
        want, tie = nnunet_seg(lab, shape, axis)
        differ = got != want
        diff = int(differ.sum())
        # A one-hot value of exactly 0.5 (e.g. halfway between two slices) may round to either
        # side of the threshold in a different summation order: differences are allowed there
        # only, and counted.
        outside = int((differ & ~tie).sum())
        self.check(outside == 0 and diff <= got.size // 10000,
                   f"{what}: {diff} of {got.size} labels differ, all at 0.5 ties "
                   f"({int(tie.sum())} tie voxels)" if outside == 0 else
                   f"{what}: {outside} labels differ away from a 0.5 tie")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tool", required=True)
    ap.add_argument("--source", required=True)
    a = ap.parse_args()
    rng = np.random.default_rng(1234)
    with tempfile.TemporaryDirectory() as tmp:
        ck = Checker(a.tool, tmp)
        # Random volumes: every order, up and down, 2 channels.
        for order in (0, 1, 3):
            for shape_in, shape_out in [((2, 7, 9, 11), (13, 5, 11)), ((1, 16, 12, 10), (7, 25, 30)),
                                        ((1, 1, 20, 15), (1, 33, 8))]:
                x = rng.normal(10, 4, size=shape_in)
                ck.compare_data(x, shape_out, order, -1, f"random resize order {order} "
                                f"{shape_in} -> {shape_out}", mode="resize")
        # Separate-Z (order 3 in-plane, nearest across).
        for axis in (0, 2):
            x = rng.normal(0, 1, size=(1, 6, 9, 8))
            out = [14, 17, 5]
            ck.compare_data(x, out, 3, axis, f"random separate axis {axis} (1,6,9,8) -> {out}")
        # Segmentations.
        lab = rng.integers(0, 4, size=(8, 9, 10))
        lab[2:6, 3:8, 1:9] = 5
        ck.compare_seg(lab, [13, 5, 21], -1, "random labels 8x9x10 -> 13x5x21")
        ck.compare_seg(lab, [3, 20, 15], 0, "random labels separate axis 0")
        # Shapes and the separate-Z rule.
        for shp, s0, s1 in [((30, 101, 122), (3, 3, 3), (2.5, 0.8, 0.8)),
                            ((5, 7, 9), (1, 1, 1), (2, 2, 2)),
                            ((40, 300, 300), (5, 0.7, 0.7), (3.1, 0.8, 0.8))]:
            out = subprocess.run([a.tool, "shape"] + [str(v) for v in (*shp, *s0, *s1)], check=True, capture_output=True,
                                 text=True).stdout.split()
            want = np.round((np.array(s0) / np.array(s1)).astype(float) * np.array(shp)).astype(int)
            aniso = lambda s: max(s) / min(s) > 3
            sp = s0 if aniso(s0) else s1 if aniso(s1) else None
            axis = -1
            if sp is not None:
                ax = np.where(max(sp) / np.array(sp) == 1)[0]
                axis = int(ax[0]) if len(ax) == 1 else -1
            ck.check([int(v) for v in out[:3]] == list(want) and int(out[3]) == axis,
                     f"target shape {shp} {s0} -> {s1}: ours {out}, numpy {list(want)} axis {axis}")
        # Real CT (3 mm, RAS): nibabel [X,Y,Z] -> our [Z,Y,X].
        base = os.path.join(a.source, "examples", "data", "totalsegmentator")
        ct = np.asarray(nib.load(os.path.join(base, "example_ct_sm.nii.gz")).dataobj,
                        dtype=np.float64).transpose(2, 1, 0)
        seg = np.asarray(nib.load(os.path.join(base, "example_seg.nii.gz")).dataobj).astype(
            np.int32).transpose(2, 1, 0)
        # FLARE-like target (2.5, 0.8, 0.8): separate Z; smaller in-plane target to keep it quick.
        ck.compare_data(ct[None], [36, 190, 229], 3, 0,
                        "real CT 30x101x122 order 3, separate Z -> 36x190x229")
        ck.compare_data(ct[None], [45, 67, 81], 3, -1, "real CT order 3 -> 45x67x81 (2 mm)")
        ck.compare_seg(seg, [45, 67, 81], -1, "real CT labels (41 organs) -> 45x67x81")
        ck.compare_seg(seg, [36, 190, 229], 0, "real CT labels separate Z -> 36x190x229")
        print(f"{ck.count - ck.failures} of {ck.count} checks agree")
        return 1 if ck.failures else 0


if __name__ == "__main__":
    sys.exit(main())
