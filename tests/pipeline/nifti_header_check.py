"""Compares the NIfTI header of a predicted label file with its input's, read by nibabel.

Usage: nifti_header_check.py INPUT.nii.gz LABELS.nii.gz
Exit 0 when the grid and every geometry field agree (affine, qform/sform with codes, pixdim,
units, qfac, description, intent, orientation), 1 otherwise, 77 when nibabel is missing.
"""
import sys

try:
    import numpy as np
    import nibabel as nib
except ImportError as e:  # pragma: no cover
    print(f"skipped: {e}")
    sys.exit(77)


def main():
    a, b = nib.load(sys.argv[1]), nib.load(sys.argv[2])
    ha, hb = a.header, b.header
    problems = []

    def same(name, x, y):
        if not np.array_equal(np.asarray(x), np.asarray(y)):
            problems.append(f"{name}: input {x!r}, labels {y!r}")

    same("shape", a.shape[:3], b.shape[:3])
    same("affine", a.affine, b.affine)
    same("qform", ha.get_qform(), hb.get_qform())
    same("sform", ha.get_sform(), hb.get_sform())
    same("qform_code", ha["qform_code"], hb["qform_code"])
    same("sform_code", ha["sform_code"], hb["sform_code"])
    same("pixdim[0:4]", ha["pixdim"][:4], hb["pixdim"][:4])
    same("xyzt_units", ha.get_xyzt_units(), hb.get_xyzt_units())
    same("descrip", ha["descrip"], hb["descrip"])
    same("intent", repr(ha.get_intent()), repr(hb.get_intent()))
    same("orientation", nib.aff2axcodes(a.affine), nib.aff2axcodes(b.affine))
    labels = np.asanyarray(b.dataobj)
    if not np.issubdtype(labels.dtype, np.integer):
        problems.append(f"labels dtype {labels.dtype} is not an integer type")
    for p in problems:
        print("FAIL " + p)
    print(f"header of {sys.argv[2]}: {'equal to' if not problems else 'differs from'} the input's "
          f"(affine {nib.aff2axcodes(b.affine)}, zooms {hb.get_zooms()[:3]}, dtype {labels.dtype})")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
