#!/usr/bin/env python3
"""Writes the small generated fuzz seeds in tests/fuzz/seeds (committed; rerun to refresh).

Each is a few KB and exercises one reader path: strips/tiles, planar, stacks, BigTIFF, big-endian,
compressions (deflate, LZW, zstd, PackBits, JPEG incl. YCbCr), predictors, ImageJ hyperstack,
OME-TIFF, pyramids, and NIfTI plain/gzip/big-endian/scaled/4D.
"""
import os

import nibabel as nib
import numpy as np
import tifffile

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds")
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(1)
u16 = (np.add.outer(np.arange(24), np.arange(40)) * 50).astype(np.uint16)
rgb = np.stack([u16 % 256, (u16 // 3) % 256, 255 - u16 % 256], axis=-1).astype(np.uint8)


def w(name, data, **kw):
    tifffile.imwrite(os.path.join(out, name), data, **kw)


w("strips-deflate-pred.tif", u16, compression="zlib", predictor=True, rowsperstrip=5)
w("tiles-lzw.tif", u16, compression="lzw", tile=(16, 16))
w("tiles-zstd-f4.tif", u16.astype(np.float32), compression="zstd", predictor=True, tile=(16, 16))
w("packbits-i1.tif", (u16 % 200 - 100).astype(np.int8), compression="packbits")
w("planar-rgb.tif", np.moveaxis(rgb, -1, 0), photometric="rgb", planarconfig="separate")
w("jpeg-ycbcr.tif", rgb, compression="jpeg", photometric="ycbcr", rowsperstrip=16)
w("jpeg-rgb-tiles.tif", rgb, compression="jpeg", photometric="rgb", tile=(16, 16))
w("stack-bigtiff.tif", np.stack([u16, u16[::-1]]), bigtiff=True, compression="zlib")
w("big-endian-i4.tif", u16.astype(np.int32), byteorder=">", tile=(16, 16))
w("imagej-hyperstack.tif", np.stack([u16[None], u16[None] + 1] * 2, axis=1).reshape(2, 2, 24, 40),
  imagej=True, metadata={"axes": "ZCYX", "spacing": 2.0, "unit": "um"}, compression="zlib")
w("ome-czyx.ome.tif", np.stack([u16[None]] * 3).reshape(3, 1, 24, 40)[:, :, :12, :20].copy(),
  ome=True, metadata={"axes": "CZYX", "PhysicalSizeX": 0.25, "PhysicalSizeY": 0.25},
  compression="zlib")
with tifffile.TiffWriter(os.path.join(out, "pyramid.tif")) as tw:
    tw.write(u16, subifds=1, tile=(16, 16), compression="zlib")
    tw.write(u16[::2, ::2], subfiletype=1, tile=(16, 16), compression="zlib")

a = (u16[:, :, None] + np.arange(3)[None, None]).astype(np.int16)  # 24 x 40 x 3 (x, y, z)
img = nib.Nifti1Image(a, np.diag([0.5, 0.5, 2.0, 1.0]))
nib.save(img, os.path.join(out, "plain.nii"))
img.header.set_slope_inter(0.5, 3)
nib.save(img, os.path.join(out, "scaled.nii.gz"))
be = nib.Nifti1Image(a[:10, :10].astype(">f4")[..., None].repeat(2, axis=3), np.eye(4))
be.set_sform(None, code=0)
be.set_qform(np.diag([1.0, 2.0, 3.0, 1.0]), code=1)
nib.save(be, os.path.join(out, "big-endian-4d.nii"))
for f in sorted(os.listdir(out)):
    print(f, os.path.getsize(os.path.join(out, f)))
