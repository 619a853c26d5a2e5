#!/usr/bin/env python3
"""Runs nnU-Net v2's own DatasetFingerprintExtractor (PyPI `nnunetv2`) on datasets built from the
bundled examples/data, for the fingerprint fixtures of tests/plan (see
tests/fixtures/plan/README.md for the scratch environment). Builds nothing in the project.

    scratch/nnunet-venv221/bin/python tests/python/plan_nnunet_fingerprint.py tests/fixtures/plan/examples

Datasets (nnU-Net raw layout, made in a temporary folder; tests/plan makes the same ones):
  Dataset020_TotalSegCT  examples/data/totalsegmentator: ct_0000.nii.gz + ct.nii.gz (SimpleITKIO)
  Dataset022_DSB         examples/data/dsb2018: dsb_0000.tif + dsb.tif (NaturalImage2DIO)
"""
import json
import os
import shutil
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(ROOT, 'examples', 'data')

DATASETS = {
    'Dataset020_TotalSegCT': {
        'files': {'imagesTr/ct_0000.nii.gz': 'totalsegmentator/example_ct_sm.nii.gz',
                  'labelsTr/ct.nii.gz': 'totalsegmentator/example_seg.nii.gz'},
        'json': {'channel_names': {'0': 'CT'}, 'labels': {'background': 0, 'foreground': 1},
                 'numTraining': 1, 'file_ending': '.nii.gz'},
    },
    'Dataset022_DSB': {
        'files': {'imagesTr/dsb_0000.tif': 'dsb2018/img2d.tif',
                  'labelsTr/dsb.tif': 'dsb2018/mask2d.tif'},
        'json': {'channel_names': {'0': 'grey'}, 'labels': {'background': 0, 'nucleus': 1},
                 'numTraining': 1, 'file_ending': '.tif'},
    },
}


def main(out_root):
    tmp = tempfile.mkdtemp(prefix='nnunet_fp_')
    try:
        os.environ['nnUNet_raw'] = os.path.join(tmp, 'raw')
        os.environ['nnUNet_preprocessed'] = os.path.join(tmp, 'pre')
        os.environ['nnUNet_results'] = os.path.join(tmp, 'res')
        for name, spec in DATASETS.items():
            folder = os.path.join(tmp, 'raw', name)
            for dst, src in spec['files'].items():
                os.makedirs(os.path.dirname(os.path.join(folder, dst)), exist_ok=True)
                shutil.copy(os.path.join(DATA, src), os.path.join(folder, dst))
            with open(os.path.join(folder, 'dataset.json'), 'w') as f:
                json.dump(dict(spec['json'], name=name), f)
        import nnunetv2
        from nnunetv2.experiment_planning.dataset_fingerprint.fingerprint_extractor import \
            DatasetFingerprintExtractor
        from importlib.metadata import version
        for name, spec in DATASETS.items():
            fp = DatasetFingerprintExtractor(name, 1, verbose=True).run(overwrite_existing=True)
            target = os.path.join(out_root, name)
            os.makedirs(target, exist_ok=True)
            fp['_made_by'] = {'nnunetv2': version('nnunetv2'),
                              'command': 'python tests/python/plan_nnunet_fingerprint.py ' + out_root}
            with open(os.path.join(target, 'nnunet_2.2.1_fingerprint.json'), 'w') as f:
                json.dump(fp, f, indent=4, sort_keys=True)
                f.write('\n')
            with open(os.path.join(target, 'dataset.json'), 'w') as f:
                json.dump(dict(spec['json'], name=name), f, indent=4)
                f.write('\n')
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    main(sys.argv[1])
