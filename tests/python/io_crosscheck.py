#!/usr/bin/env python3
"""Cross-checks of umamba's image I/O against independent readers and writers.

tifffile, nibabel and scikit-image (with imagecodecs) read what we write and write what we read;
our side is driven through tests/tools/umamba_io_tool, which dumps any image as .npy + .json.
Every check asserts equality of pixels (exact, except JPEG), shape, dtype and geometry.

    io_crosscheck.py --tool build/tests/tools/umamba_io_tool --mode MODE [--shared DIR]

MODE: real      the real files (bundled DSB, go-nuclear, TotalSegmentator; NeurIPS pair if present)
      tifffile  files written by tifffile in many variants read by us, incl. region reads
      writes    files we write read by tifffile (ImageJ / shaped metadata, compression, tiles)
      nifti     nibabel-written variants read by us, and our NIfTI writes read by nibabel
      opencv    PNG/JPEG/BMP written by scikit-image/Pillow read by us, and our PNGs read back
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

TOOL = None
TMP = None
CHECKS = 0


def check(cond, message):
    global CHECKS
    CHECKS += 1
    if not cond:
        raise AssertionError(message)


def run_tool(*args, expect_ok=True):
    proc = subprocess.run([TOOL, *map(str, args)], capture_output=True, text=True)
    if expect_ok and proc.returncode != 0:
        raise AssertionError(f"umamba_io_tool {' '.join(map(str, args))} failed "
                             f"({proc.returncode}): {proc.stderr}{proc.stdout}")
    return proc


def ours(path, region=None):
    """Reads `path` with our reader: (array [C,Z,Y,X], info dict)."""
    prefix = os.path.join(TMP, "dump")
    args = ["read", path, prefix]
    if region is not None:
        args += ["--region", ",".join(map(str, region))]
    run_tool(*args)
    with open(prefix + ".json") as f:
        info = json.load(f)
    return np.load(prefix + ".npy"), info


def to_czyx(a, axes):
    """tifffile's series array with axes string -> [C,Z,Y,X]."""
    order = []
    shape = []
    src_axes = list(axes)
    # Fold every axis that is not Y/X into Z (before) or C (samples/channels).
    c_axes = [i for i, ax in enumerate(src_axes) if ax in "CS"]
    z_axes = [i for i, ax in enumerate(src_axes) if ax in "ZTQI"]
    y = src_axes.index("Y")
    x = src_axes.index("X")
    order = c_axes + z_axes + [y, x]
    a = np.transpose(a, order)
    c = int(np.prod([a.shape[i] for i in range(len(c_axes))])) if c_axes else 1
    z = int(np.prod([a.shape[len(c_axes) + i] for i in range(len(z_axes))])) if z_axes else 1
    return a.reshape(c, z, a.shape[-2], a.shape[-1])


def compare(name, got, want, tol=0):
    check(got.shape == want.shape, f"{name}: shape {got.shape} != {want.shape}")
    check(got.dtype == want.dtype, f"{name}: dtype {got.dtype} != {want.dtype}")
    if tol == 0:
        same = np.array_equal(got, want, equal_nan=got.dtype.kind == "f")
        if not same:
            bad = np.argwhere(got != want)
            raise AssertionError(f"{name}: {len(bad)} elements differ, first at {bad[0].tolist()}: "
                                 f"{got[tuple(bad[0])]} != {want[tuple(bad[0])]}")
        check(same, name)
    else:
        diff = np.abs(got.astype(np.float64) - want.astype(np.float64)).max()
        check(diff <= tol, f"{name}: max difference {diff} > {tol}")


def tifffile_czyx(path):
    import tifffile
    with tifffile.TiffFile(path) as tif:
        s = tif.series[0]
        return to_czyx(s.asarray(), s.axes)


def random_array(rng, dtype, shape):
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        a = rng.normal(100, 50, size=shape).astype(dtype)
        return a
    info = np.iinfo(dtype)
    # Smooth plus noise, so that predictors and compressors have something to do.
    base = rng.integers(max(info.min, -1000), min(info.max, 1000) + 1, size=shape)
    return base.astype(dtype)


def random_boxes(rng, shape, n):
    _, z, y, x = shape
    for _ in range(n):
        dz = int(rng.integers(1, z + 1))
        dy = int(rng.integers(1, y + 1))
        dx = int(rng.integers(1, x + 1))
        yield (int(rng.integers(0, z - dz + 1)), int(rng.integers(0, y - dy + 1)),
               int(rng.integers(0, x - dx + 1)), dz, dy, dx)


# ---- real files ------------------------------------------------------------------------------

def mode_real(args):
    import tifffile
    import nibabel as nib
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples", "data")
    tiffs = [os.path.join(root, "dsb2018", n) for n in ("img2d.tif", "mask2d.tif")]
    tiffs += [os.path.join(root, "go-nuclear", f"{c}_mini_{k}.tif")
              for c in (1135, 1136) for k in ("raw", "label")]
    neurips = os.path.join(args.shared, "cells2d", "neurips-cellseg")
    if os.path.isdir(neurips):
        tiffs.append(os.path.join(neurips, "labels", "cell_00225_label.tiff"))
    else:
        print(f"note: {neurips} absent, NeurIPS pair skipped")
    for path in tiffs:
        got, info = ours(path)
        want = tifffile_czyx(path)
        compare(path, got, want)
        with tifffile.TiffFile(path) as tif:
            meta = tif.shaped_metadata[0] if tif.shaped_metadata else {}
        if "element_size_um_zyx" in meta:
            check(np.allclose(info["spacing"], meta["element_size_um_zyx"], rtol=1e-12),
                  f"{path}: spacing {info['spacing']} != {meta['element_size_um_zyx']}")
            check(info["unit"] == "um", f"{path}: unit {info['unit']}")
        print(f"ok {path} {list(got.shape)} {got.dtype} spacing {info['spacing']} {info['unit']}")
        # A few region reads against crops of the full array.
        rng = np.random.default_rng(len(path))
        for box in random_boxes(rng, got.shape, 5):
            region, rinfo = ours(path, box)
            z0, y0, x0, dz, dy, dx = box
            compare(f"{path} region {box}", region, got[:, z0:z0 + dz, y0:y0 + dy, x0:x0 + dx])
    niftis = [os.path.join(root, "totalsegmentator", n)
              for n in ("example_ct_sm.nii.gz", "example_seg.nii.gz")]
    for path in niftis:
        got, info = ours(path)
        img = nib.load(path)
        want = np.asanyarray(img.dataobj)
        want = want.T.reshape(1, *want.shape[::-1])  # (x,y,z) -> [1,Z,Y,X]
        compare(path, got, want)
        check_affine(path, info, img.affine)
        print(f"ok {path} {list(got.shape)} {got.dtype} affine matches nibabel")
    png = os.path.join(neurips, "images", "cell_00225.png")
    if os.path.exists(png) and args.opencv:
        import skimage.io
        got, _ = ours(png)
        want = skimage.io.imread(png)
        want = np.transpose(want, (2, 0, 1))[:, None] if want.ndim == 3 else want[None, None]
        compare(png, got, want)
        print(f"ok {png} {list(got.shape)} {got.dtype} (RGB order as scikit-image)")


def affine_of(info):
    sp = info["spacing"]  # [z,y,x]
    d = np.array(info["direction"]).reshape(3, 3)
    a = np.eye(4)
    a[:3, :3] = d @ np.diag([sp[2], sp[1], sp[0]])
    a[:3, 3] = info["origin"]
    return a


def check_affine(name, info, want):
    got = affine_of(info)
    check(np.allclose(got, want, atol=1e-4), f"{name}: affine\n{got}\n!= nibabel's\n{want}")


# ---- tifffile writes, we read ---------------------------------------------------------------

def mode_tifffile(args):
    import tifffile
    rng = np.random.default_rng(7)
    cases = []
    dtypes = ["u1", "i1", "u2", "i2", "u4", "i4", "f4", "f8", "u8", "i8"]
    for dt in dtypes:
        cases.append((f"{dt}-strips-none", dt, (37, 53), {}))
        cases.append((f"{dt}-tiles-zlib", dt, (70, 90), dict(tile=(32, 48), compression="zlib")))
        pred = "floatingpoint" if np.dtype(dt).kind == "f" else "horizontal"
        if dt not in ("u8", "i8"):
            cases.append((f"{dt}-strips-zlib-pred", dt, (41, 67),
                          dict(compression="zlib", predictor=pred, rowsperstrip=7)))
    for comp in ["lzw", "zstd", "packbits", "lzma", "zlib"]:
        cases.append((f"u2-{comp}-strips", "u2", (50, 60), dict(compression=comp, rowsperstrip=9)))
        cases.append((f"u1-{comp}-tiles", "u1", (50, 60), dict(compression=comp, tile=(16, 32))))
    cases += [
        ("rgb-contig-u1", "u1", (40, 50, 3), dict(photometric="rgb")),
        ("rgb-planar-u1", "u1", (3, 40, 50), dict(photometric="rgb", planarconfig="separate")),
        ("rgb-planar-tiles-u2", "u2", (3, 70, 50),
         dict(photometric="rgb", planarconfig="separate", tile=(32, 32), compression="zlib")),
        ("rgba-contig-u1", "u1", (40, 50, 4), dict(photometric="rgb", extrasamples=["unassalpha"])),
        ("two-samples-u2", "u2", (40, 50, 2),
         dict(photometric="minisblack", planarconfig="contig")),
        ("stack-u2-zlib", "u2", (6, 40, 50), dict(compression="zlib")),
        ("stack-tiles-f4", "f4", (7, 40, 50), dict(tile=(16, 16), compression="zstd")),
        ("bigtiff-u2", "u2", (6, 40, 50), dict(bigtiff=True, compression="zlib")),
        ("bigtiff-tiles-u1", "u1", (70, 90), dict(bigtiff=True, tile=(32, 32))),
        ("big-endian-u2", "u2", (40, 50), dict(byteorder=">")),
        ("big-endian-f4-zlib", "f4", (5, 40, 50), dict(byteorder=">", compression="zlib",
                                                         predictor="floatingpoint")),
        ("big-endian-i4-tiles", "i4", (70, 90), dict(byteorder=">", tile=(32, 32))),
    ]
    for name, dt, shape, kw in cases:
        a = random_array(rng, dt, shape)
        path = os.path.join(TMP, name + ".tif")
        tifffile.imwrite(path, a, **kw)
        got, info = ours(path)
        compare(name, got, tifffile_czyx(path))
        for box in random_boxes(rng, got.shape, 2):
            region, _ = ours(path, box)
            z0, y0, x0, dz, dy, dx = box
            compare(f"{name} region {box}", region, got[:, z0:z0 + dz, y0:y0 + dy, x0:x0 + dx])
        print(f"ok {name}: {list(got.shape)} {got.dtype} {info['metadata'].get('tiff.layout')}")

    # Lossy codecs: we must decode exactly what tifffile/imagecodecs decode from the same file
    # (both use libjpeg(-turbo) / libwebp; a difference of 1 is allowed for IDCT rounding).
    smooth = (np.add.outer(np.arange(64), np.arange(80)) % 256).astype(np.uint8)
    rgb = np.stack([smooth, smooth[::-1], 255 - smooth], axis=-1)
    for name, a, kw in [
        ("jpeg-grey-strips", smooth, dict(compression="jpeg", rowsperstrip=16)),
        ("jpeg-rgb-tiles", rgb, dict(compression="jpeg", photometric="rgb", tile=(32, 32))),
        ("jpeg-ycbcr-strips", rgb, dict(compression="jpeg", photometric="ycbcr",
                                        rowsperstrip=16)),
        ("webp-rgb-tiles", rgb, dict(compression="webp", photometric="rgb", tile=(32, 32))),
    ]:
        path = os.path.join(TMP, name + ".tif")
        tifffile.imwrite(path, a, **kw)
        got, _ = ours(path)
        compare(name, got, tifffile_czyx(path), tol=1)
        if "ycbcr" not in name:  # tifffile's YCbCr JPEG does not decode near the input anywhere
            compare(name + " vs original", got, to_czyx(a, "YXS" if a.ndim == 3 else "YX"),
                    tol=40)
        print(f"ok {name}: {list(got.shape)}")

    # ImageJ hyperstack with channels: one page per (channel, slice).
    a = random_array(rng, "u2", (5, 3, 30, 40))  # Z, C, Y, X
    path = os.path.join(TMP, "imagej-hyperstack.tif")
    tifffile.imwrite(path, a, imagej=True, resolution=(1 / 0.25, 1 / 0.25),
                     metadata={"axes": "ZCYX", "spacing": 1.5, "unit": "um"})
    got, info = ours(path)
    compare("imagej hyperstack", got, np.transpose(a, (1, 0, 2, 3)))
    check(np.allclose(info["spacing"], [1.5, 0.25, 0.25], rtol=1e-6), f"spacing {info['spacing']}")
    check(info["unit"] == "um", f"unit {info['unit']}")
    for box in random_boxes(rng, got.shape, 4):
        region, _ = ours(path, box)
        z0, y0, x0, dz, dy, dx = box
        compare(f"hyperstack region {box}", region, got[:, z0:z0 + dz, y0:y0 + dy, x0:x0 + dx])
    print("ok imagej hyperstack ZCYX: channels and spacing")

    # OME-TIFF: planes in DimensionOrder, physical sizes in micrometres (or converted).
    for axes, shape, kw in [
        ("CZYX", (3, 4, 30, 40), dict(PhysicalSizeZ=2.0)),
        ("TCZYX", (2, 3, 4, 30, 40), dict(PhysicalSizeZ=2.0)),
        ("ZYXS", (5, 30, 40, 3), dict(PhysicalSizeZ=1.5)),
        ("CYX", (2, 30, 40), dict(PhysicalSizeXUnit="nm", PhysicalSizeYUnit="nm")),
    ]:
        a = random_array(rng, "u1" if axes.endswith("S") else "u2", shape)
        path = os.path.join(TMP, f"ome-{axes}.ome.tif")
        meta = {"axes": axes, "PhysicalSizeX": 0.25, "PhysicalSizeY": 0.5, **kw}
        tifffile.imwrite(path, a, ome=True, photometric="rgb" if axes.endswith("S") else None,
                         metadata=meta)
        got, info = ours(path)
        with tifffile.TiffFile(path) as tif:
            s = tif.series[0]
            want = to_czyx(s.asarray(), s.axes)
        compare(f"ome {axes}", got, want)
        scale = 1e-3 if kw.get("PhysicalSizeXUnit") == "nm" else 1.0
        check(info["unit"] == "um", f"ome {axes}: unit {info['unit']}")
        check(np.allclose(info["spacing"][1:], [0.5 * scale, 0.25 * scale]),
              f"ome {axes}: spacing {info['spacing']}")
        if "PhysicalSizeZ" in kw:
            check(abs(info["spacing"][0] - kw["PhysicalSizeZ"]) < 1e-12, f"{info['spacing']}")
        for box in random_boxes(rng, got.shape, 2):
            region, _ = ours(path, box)
            z0, y0, x0, dz, dy, dx = box
            compare(f"ome {axes} region {box}", region, got[:, z0:z0 + dz, y0:y0 + dy, x0:x0 + dx])
    print("ok OME-TIFF: CZYX, TCZYX, RGB stack, nm units")

    # Pyramid: level 0 only, whether levels are SubIFDs or reduced-resolution pages.
    base = random_array(rng, "u1", (128, 96))
    path = os.path.join(TMP, "pyramid-subifds.tif")
    with tifffile.TiffWriter(path) as tw:
        tw.write(base, subifds=2, tile=(32, 32))
        tw.write(base[::2, ::2], subfiletype=1, tile=(32, 32))
        tw.write(base[::4, ::4], subfiletype=1, tile=(32, 32))
    got, info = ours(path)
    compare("pyramid subifds level 0", got, base[None, None])
    path = os.path.join(TMP, "pyramid-pages.tif")
    with tifffile.TiffWriter(path) as tw:
        tw.write(base, tile=(32, 32))
        tw.write(base[::2, ::2], subfiletype=1, tile=(32, 32))
    got, info = ours(path)
    compare("pyramid pages level 0", got, base[None, None])
    check(info["metadata"].get("tiff.reduced_pages_skipped") == "1", "reduced page not counted")
    print("ok pyramids: level 0 read, reduced levels skipped")


# ---- we write, tifffile reads --------------------------------------------------------------

def write_npy(a):
    path = os.path.join(TMP, "in.npy")
    np.save(path, np.ascontiguousarray(a))
    return path


def mode_writes(args):
    import tifffile
    rng = np.random.default_rng(11)
    layouts = [[], ["--tile", "32"], ["--planar"], ["--planar", "--tile", "16"]]
    for i, dt in enumerate(["u1", "i1", "u2", "i2", "u4", "i4", "u8", "i8", "f4", "f8"]):
        for j, comp in enumerate(["none", "deflate", "zstd", "lzw"]):
            # Every dtype meets every compression, and every layout twice or more per compression
            # (all combinations run in the GoogleTest round trip, tests/io/tiff_test.cpp).
            for layout in (layouts[(i + j) % 4], layouts[(i + j + 2) % 4]):
                c = 3 if "--planar" in layout else 1
                a = random_array(rng, dt, (c, 2, 45, 70))
                out = os.path.join(TMP, f"w-{dt}-{comp}-{'-'.join(layout) or 'strips'}.tif")
                run_tool("write", write_npy(a), out, "--compression", comp, *layout)
                compare(out, tifffile_czyx(out), a)
                with tifffile.TiffFile(out) as tif:
                    page = tif.pages[0]
                    want_comp = {"none": 1, "deflate": 8, "zstd": 50000, "lzw": 5}[comp]
                    check(page.compression == want_comp, f"{out}: compression {page.compression}")
                    check(page.is_tiled == ("--tile" in layout), f"{out}: tiled {page.is_tiled}")
        print(f"ok writes {dt}: every compression, strips/tiles, contiguous/planar")

    # ImageJ description for u8/u16/f32 stacks; spacing readable by tifffile.
    for dt in ["u1", "u2", "f4"]:
        a = random_array(rng, dt, (1, 7, 30, 40))
        out = os.path.join(TMP, f"imagej-{dt}.tif")
        run_tool("write", write_npy(a), out, "--spacing", "2.5,0.5,0.25", "--unit", "um")
        with tifffile.TiffFile(out) as tif:
            check(tif.is_imagej, f"{out}: not ImageJ")
            ij = tif.imagej_metadata
            check(ij["slices"] == 7 and abs(ij["spacing"] - 2.5) < 1e-9, f"{out}: {ij}")
            check(ij.get("unit") in ("micron", "um", "\\u00B5m"), f"{out}: unit {ij.get('unit')}")
            xres = tif.pages[0].tags["XResolution"].value
            check(abs(xres[1] / xres[0] - 0.25) < 1e-6, f"{out}: XResolution {xres}")
            yres = tif.pages[0].tags["YResolution"].value
            check(abs(yres[1] / yres[0] - 0.5) < 1e-6, f"{out}: YResolution {yres}")
            compare(out, to_czyx(tif.series[0].asarray(), tif.series[0].axes), a)
        got, info = ours(out)
        check(np.allclose(info["spacing"], [2.5, 0.5, 0.25], rtol=1e-6), f"{info['spacing']}")
        print(f"ok ImageJ stack {dt}: tifffile sees imagej, spacing 2.5/0.5/0.25 um")
    # Other stacks: tifffile's shaped JSON description with our spacing.
    a = random_array(rng, "i2", (1, 4, 20, 30))
    out = os.path.join(TMP, "shaped-i2.tif")
    run_tool("write", write_npy(a), out, "--spacing", "3,2,1", "--unit", "mm")
    with tifffile.TiffFile(out) as tif:
        check(not tif.is_imagej and tif.is_shaped, f"{out}: expected shaped, not ImageJ")
        meta = tif.shaped_metadata[0]
        check(meta["spacing"] == [3, 2, 1] and meta["unit"] == "mm", f"{out}: {meta}")
        compare(out, to_czyx(tif.series[0].asarray(), tif.series[0].axes), a)
    print("ok i16 stack: shaped description with spacing")
    # BigTIFF on request; labels as u16/u32; band writer.
    a = random_array(rng, "u2", (1, 3, 40, 50))
    out = os.path.join(TMP, "big.tif")
    run_tool("write", write_npy(a), out, "--bigtiff", "--tile", "16")
    with tifffile.TiffFile(out) as tif:
        check(tif.is_bigtiff, "not BigTIFF")
        compare(out, to_czyx(tif.series[0].asarray(), tif.series[0].axes), a)
    lab = rng.integers(0, 70000, size=(1, 1, 40, 50)).astype(np.int32)
    out = os.path.join(TMP, "labels32.tif")
    run_tool("write", write_npy(lab), out, "--labels")
    check(tifffile.imread(out).dtype == np.uint32, "labels beyond 65535 not u32")
    compare(out, tifffile_czyx(out), lab.astype(np.uint32))
    lab16 = (lab % 60000).astype(np.int64)
    out = os.path.join(TMP, "labels16.tif")
    run_tool("write", write_npy(lab16), out, "--labels")
    compare(out, tifffile_czyx(out), lab16.astype(np.uint16))
    a = random_array(rng, "u1", (2, 3, 100, 70))
    out = os.path.join(TMP, "bands.tif")
    run_tool("write", write_npy(a), out, "--band-rows", "13", "--tile", "32")
    compare(out, tifffile_czyx(out), a)
    print("ok BigTIFF, labels u16/u32, band writer with 13-row bands into 32x32 tiles")


# ---- NIfTI -------------------------------------------------------------------------------------

def mode_nifti(args):
    import nibabel as nib
    rng = np.random.default_rng(5)
    affine = np.array([[-0.8, 0.1, 0.0, 12.5], [0.05, 0.9, 0.2, -30.0], [0.0, -0.15, 2.0, 7.25],
                       [0, 0, 0, 1]])
    for dt in ["u1", "i1", "u2", "i2", "u4", "i4", "u8", "i8", "f4", "f8"]:
        a = random_array(rng, dt, (13, 11, 7))  # x, y, z
        for gz in (False, True):
            path = os.path.join(TMP, f"n-{dt}.nii" + (".gz" if gz else ""))
            img = nib.Nifti1Image(a, affine, dtype=a.dtype)
            img.header.set_xyzt_units("mm")
            nib.save(img, path)
            got, info = ours(path)
            compare(path, got, a.T[None])
            check_affine(path, info, nib.load(path).affine)
        print(f"ok nibabel {dt} .nii and .nii.gz with a sheared/rotated sform")
    # Scaling: nibabel applies slope/inter; so do we (float output).
    a = rng.integers(-300, 300, size=(9, 8, 5)).astype(np.int16)
    img = nib.Nifti1Image(a, np.diag([2.0, 2.0, 3.0, 1.0]))
    img.header.set_slope_inter(0.5, -10.0)
    path = os.path.join(TMP, "scaled.nii.gz")
    nib.save(img, path)
    got, info = ours(path)
    want = nib.load(path).get_fdata().astype(np.float32)
    compare("scaled", got, want.T[None])
    print("ok scl_slope/scl_inter applied like nibabel (float32 out)")
    # qform only, big-endian, 4D (channels), micrometre units.
    a = random_array(rng, "f4", (10, 9, 4, 3))
    img = nib.Nifti1Image(a.astype(">f4"), None)
    q = np.array([[0.0, -1.2, 0, 5], [1.2, 0, 0, -3], [0, 0, 2.5, 1], [0, 0, 0, 1]])
    img.set_qform(q, code=1)
    img.set_sform(None, code=0)
    img.header.set_xyzt_units("micron")
    path = os.path.join(TMP, "qform-be-4d.nii")
    nib.save(img, path)
    got, info = ours(path)
    compare("qform big-endian 4D", got, np.transpose(a, (3, 2, 1, 0)))
    check(info["unit"] == "um", f"unit {info['unit']}")
    check_affine("qform", info, nib.load(path).affine)
    print("ok qform-only, big-endian, 4D as channels, micrometres")

    # Our writes read by nibabel: with a reference header (kept) and from geometry.
    ref = os.path.join(TMP, "ref.nii.gz")
    ct = rng.integers(-1000, 1000, size=(13, 11, 7)).astype(np.int16)
    refimg = nib.Nifti1Image(ct, affine)
    refimg.header.set_xyzt_units("mm")
    refimg.header.set_qform(affine, code=1)
    nib.save(refimg, ref)
    lab = rng.integers(0, 300, size=(1, 7, 11, 13)).astype(np.int32)
    out = os.path.join(TMP, "labels.nii.gz")
    run_tool("write", write_npy(lab), out, "--labels", "--reference", ref)
    o = nib.load(out)
    r = nib.load(ref)
    check(o.get_data_dtype() == np.uint16, f"labels dtype {o.get_data_dtype()}")
    compare("labels with reference", np.asanyarray(o.dataobj).T[None], lab.astype(np.uint16))
    check(np.allclose(o.affine, r.affine), "reference affine not kept")
    check(np.allclose(o.header.get_qform(), r.header.get_qform()), "qform not kept")
    check(o.header["sform_code"] == r.header["sform_code"], "sform_code not kept")
    check(o.header["qform_code"] == r.header["qform_code"], "qform_code not kept")
    check(np.allclose(o.header.get_zooms(), r.header.get_zooms()), "pixdim not kept")
    check(o.header.get_xyzt_units() == r.header.get_xyzt_units(), "units not kept")
    print("ok labels written with the reference header: affine, qform/sform codes, pixdim, units")
    src = os.path.join(TMP, "src.nii")
    nib.save(nib.Nifti1Image(ct.astype(np.float32), affine), src)
    a, info = ours(src)
    out = os.path.join(TMP, "geometry.nii")
    spacing = info["spacing"]
    run_tool("write", write_npy(a), out, "--spacing", ",".join(map(str, spacing)), "--unit", "mm",
             "--origin", ",".join(map(str, info["origin"])))
    o = nib.load(out)
    compare("float from geometry", np.asanyarray(o.dataobj).T[None], a)
    check(np.allclose(np.diag(o.affine)[:3], [spacing[2], spacing[1], spacing[0]]),
          f"zooms {o.affine}")
    check(np.allclose(o.affine[:3, 3], info["origin"]), "origin")
    print("ok NIfTI from geometry: spacing and origin as nibabel reads them")


# ---- PNG / JPEG / BMP -----------------------------------------------------------------------

def png_write(path, a):
    """Minimal PNG encoder (filter 0) for 8/16-bit grey/RGB/RGBA, independent of OpenCV."""
    import struct
    import zlib
    colour = {1: 0, 3: 2, 4: 6}[a.shape[2] if a.ndim == 3 else 1]
    depth = a.dtype.itemsize * 8
    rows = a.astype(a.dtype.newbyteorder(">")).reshape(a.shape[0], -1).view(np.uint8)
    raw = b"".join(b"\x00" + r.tobytes() for r in rows)

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))
    ihdr = struct.pack(">IIBBBBB", a.shape[1], a.shape[0], depth, colour, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw))
                + chunk(b"IEND", b""))


def png_read(path):
    """Minimal PNG decoder (all five filters, no interlace, no palette), independent of OpenCV."""
    import struct
    import zlib
    data = open(path, "rb").read()
    pos, idat = 8, b""
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    assert interlace == 0 and colour in (0, 2, 4, 6)
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour]
    bpp = channels * depth // 8
    stride = w * bpp
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(h, stride + 1)
    out = np.zeros((h, stride), np.int32)
    prev = np.zeros(stride, np.int32)
    for y in range(h):
        f, line = raw[y, 0], raw[y, 1:].astype(np.int32)
        cur = np.zeros(stride, np.int32)
        for i in range(stride):
            a = cur[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 0:
                p = 0
            elif f == 1:
                p = a
            elif f == 2:
                p = b
            elif f == 3:
                p = (a + b) // 2
            else:
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                p = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            cur[i] = (line[i] + p) & 0xFF
        out[y], prev = cur, cur
    img = out.astype(np.uint8)
    if depth == 16:
        img = img.reshape(h, w * channels, 2).view(">u2")[..., 0].astype(np.uint16)
    return img.reshape(h, w, channels) if channels > 1 else img.reshape(h, w)


def mode_opencv(args):
    import skimage.io
    from PIL import Image
    rng = np.random.default_rng(3)
    cases = [("grey8", rng.integers(0, 256, (40, 60), dtype=np.uint8)),
             ("rgb8", rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)),
             ("rgba8", rng.integers(0, 256, (40, 60, 4), dtype=np.uint8)),
             ("grey16", rng.integers(0, 65536, (40, 60), dtype=np.uint16)),
             ("rgb16", rng.integers(0, 65536, (40, 60, 3), dtype=np.uint16))]
    for name, a in cases:
        path = os.path.join(TMP, name + ".png")
        # Pillow (behind scikit-image) cannot hold 16-bit colour: a plain PNG encoder here does.
        if name == "rgb16":
            png_write(path, a)
        else:
            skimage.io.imsave(path, a, check_contrast=False)
        got, info = ours(path)
        want = np.transpose(a, (2, 0, 1))[:, None] if a.ndim == 3 else a[None, None]
        compare(name, got, want)
        # And our PNG writer, read back by scikit-image (16-bit colour by the decoder here).
        out = os.path.join(TMP, name + "-ours.png")
        run_tool("write", write_npy(want), out)
        back = png_read(out) if name == "rgb16" else skimage.io.imread(out)
        compare(name + " written", back, a)
        print(f"ok PNG {name}: read matches the independent decoder, ours read back identical")
    rgb = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    path = os.path.join(TMP, "rgb.bmp")
    Image.fromarray(rgb).save(path)
    got, _ = ours(path)
    compare("bmp", got, np.transpose(rgb, (2, 0, 1))[:, None])
    smooth = (np.add.outer(np.arange(48), np.arange(64)) * 2 % 256).astype(np.uint8)
    img = np.stack([smooth, smooth[::-1], 255 - smooth], axis=-1)
    path = os.path.join(TMP, "rgb.jpg")
    Image.fromarray(img).save(path, quality=95)
    got, _ = ours(path)
    want = np.asarray(Image.open(path).convert("RGB"))
    compare("jpeg vs Pillow", got, np.transpose(want, (2, 0, 1))[:, None], tol=2)
    print("ok BMP exact, JPEG within 2 of Pillow's decode, channels in RGB order")


def main():
    global TOOL, TMP
    p = argparse.ArgumentParser()
    p.add_argument("--tool", required=True)
    p.add_argument("--mode", required=True,
                   choices=["real", "tifffile", "writes", "nifti", "opencv"])
    p.add_argument("--shared", default="")
    p.add_argument("--opencv", type=int, default=1)
    args = p.parse_args()
    TOOL = args.tool
    with tempfile.TemporaryDirectory(prefix="umamba-io-") as tmp:
        TMP = tmp
        {"real": mode_real, "tifffile": mode_tifffile, "writes": mode_writes,
         "nifti": mode_nifti, "opencv": mode_opencv}[args.mode](args)
    print(f"{args.mode}: {CHECKS} checks passed")


if __name__ == "__main__":
    try:
        import nibabel  # noqa: F401
        import skimage  # noqa: F401
        import tifffile  # noqa: F401
    except ImportError as e:
        print(f"skipped: {e} (install the test requirements into UMAMBA_PYTHON)")
        sys.exit(77)
    try:
        main()
    except AssertionError as e:
        print(f"FAIL: {e}")
        sys.exit(1)
