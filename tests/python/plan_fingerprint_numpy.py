#!/usr/bin/env python3
"""Independent NumPy implementation of nnU-Net v2's fingerprint statistics, for tests/plan.

Reads cases written by test_plan_python (raw little-endian arrays + case.json with their shapes),
and computes what nnU-Net's DatasetFingerprintExtractor (v2.2.1) computes from them: crop to the
non-zero box of all channels, foreground = label > 0 inside the box, per case a fresh
np.random.RandomState(1234) and rs.choice(foreground, n, replace=True) per channel, pooled
np.mean / np.median / np.std / np.min / np.max / np.percentile(99.5, 0.5) over float32 samples.
Also prints RandomState(1234).choice indices for the bounded-integer check.

    python plan_fingerprint_numpy.py FOLDER       -> FOLDER/numpy_fingerprint.json
"""
import json
import os
import sys

import numpy as np


def bbox_slices(image):
    mask = np.any(image != 0, axis=0)
    if not mask.any():
        return tuple(slice(0, s) for s in mask.shape)
    out = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        nz = np.where(mask.any(axis=other))[0]
        out.append(slice(nz[0], nz[-1] + 1))
    return tuple(out)


def main(folder):
    with open(os.path.join(folder, 'cases.json')) as f:
        spec = json.load(f)
    per_channel = None
    shapes, rel = [], []
    for case in spec['cases']:
        c, z, y, x = case['shape']
        image = np.fromfile(os.path.join(folder, case['image']), dtype=np.float32).reshape(c, z, y, x)
        labels = np.fromfile(os.path.join(folder, case['labels']), dtype=np.int32).reshape(z, y, x)
        sl = bbox_slices(image)
        crop = image[(slice(None),) + sl]
        fg_mask = labels[sl] > 0
        shapes.append(list(crop.shape[1:]))
        rel.append(float(np.prod(crop.shape[1:]) / np.prod(image.shape[1:])))
        rs = np.random.RandomState(1234)
        if per_channel is None:
            per_channel = [[] for _ in range(c)]
        for ch in range(c):
            values = crop[ch][fg_mask]
            if len(values):
                per_channel[ch].append(rs.choice(values, spec['num_samples'], replace=True))
    stats = {}
    for ch, parts in enumerate(per_channel):
        v = np.concatenate(parts)
        stats[str(ch)] = {
            'mean': float(np.mean(v)), 'median': float(np.median(v)), 'std': float(np.std(v)),
            'min': float(np.min(v)), 'max': float(np.max(v)),
            'percentile_99_5': float(np.percentile(v, 99.5)),
            'percentile_00_5': float(np.percentile(v, 0.5)),
        }
    choices = {}
    for n in spec.get('choice_sizes', []):
        rs = np.random.RandomState(1234)
        choices[str(n)] = [int(i) for i in rs.choice(n, 50, replace=True)]
    out = {
        'shapes_after_crop': shapes,
        'median_relative_size_after_cropping': float(np.median(rel)),
        'foreground_intensity_properties_per_channel': stats,
        'choices': choices,
        'percentiles': {str(q): float(np.percentile(np.array(spec['values']), q))
                        for q in spec.get('percentiles', [])},
        'median': float(np.median(np.array(spec['values']))) if spec.get('values') else None,
    }
    with open(os.path.join(folder, 'numpy_fingerprint.json'), 'w') as f:
        json.dump(out, f)


if __name__ == '__main__':
    main(sys.argv[1])
