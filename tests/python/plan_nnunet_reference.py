#!/usr/bin/env python3
"""Runs nnU-Net v2's own ExperimentPlanner (PyPI `nnunetv2`) on a fingerprint fixture.

This script builds nothing and is not part of the test suite: it makes the reference plans that
tests/plan compares umamba's planner against. It needs a Python where `nnunetv2` is installed
(a scratch environment; nnunetv2 is NOT a project requirement), e.g.

    python -m venv scratch/nnunet-venv221
    scratch/nnunet-venv221/bin/pip install --no-deps nnunetv2==2.2.1 \
        dynamic-network-architectures==0.2 acvl-utils==0.2 batchgenerators==0.25
    scratch/nnunet-venv221/bin/pip install tqdm SimpleITK pandas threadpoolctl future
    (plus torch, numpy, scipy, scikit-image, nibabel, tifffile from the project's .venv)

    scratch/nnunet-venv221/bin/python tests/python/plan_nnunet_reference.py \
        tests/fixtures/plan/<case> --out nnunet_2.2.1_plans.json

A fixture folder holds dataset.json (channel_names, labels, numTraining, file_ending) and
dataset_fingerprint.json (nnU-Net's key names). The planner reads both from a temporary
nnUNet_raw / nnUNet_preprocessed tree. Two things are added to the temporary dataset.json only,
so that no image file is needed: a "dataset" map of placeholder case names (nnU-Net lists cases
from it instead of imagesTr/) and "overwrite_image_reader_writer" (nnU-Net would otherwise open
an example image to choose its reader); the planner uses neither for any planning decision.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile


def reader_for_ending(ending):
    e = ending.lower()
    if e in ('.png', '.bmp', '.tif', '.jpg', '.jpeg'):
        return 'NaturalImage2DIO'
    if e == '.tiff':
        return 'Tiff3DIO'
    return 'SimpleITKIO'


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('fixture', help='folder with dataset.json and dataset_fingerprint.json')
    ap.add_argument('--out', default='nnunet_plans.json', help='file name written into the fixture')
    ap.add_argument('--gpu-memory-target', type=float, default=8.0)
    args = ap.parse_args()

    with open(os.path.join(args.fixture, 'dataset.json')) as f:
        dataset_json = json.load(f)
    name = dataset_json.get('name', os.path.basename(os.path.abspath(args.fixture)))
    if not name.startswith('Dataset'):
        name = 'Dataset999_' + name

    tmp = tempfile.mkdtemp(prefix='nnunet_plan_')
    try:
        raw = os.path.join(tmp, 'nnUNet_raw', name)
        pre = os.path.join(tmp, 'nnUNet_preprocessed', name)
        os.makedirs(raw)
        os.makedirs(pre)
        ending = dataset_json['file_ending']
        staged = dict(dataset_json)
        staged['dataset'] = {
            f'case_{i:04d}': {'images': [f'imagesTr/case_{i:04d}_0000{ending}'],
                              'label': f'labelsTr/case_{i:04d}{ending}'}
            for i in range(dataset_json['numTraining'])}
        staged.setdefault('overwrite_image_reader_writer', reader_for_ending(ending))
        with open(os.path.join(raw, 'dataset.json'), 'w') as f:
            json.dump(staged, f)
        shutil.copy(os.path.join(args.fixture, 'dataset_fingerprint.json'),
                    os.path.join(pre, 'dataset_fingerprint.json'))
        os.environ['nnUNet_raw'] = os.path.join(tmp, 'nnUNet_raw')
        os.environ['nnUNet_preprocessed'] = os.path.join(tmp, 'nnUNet_preprocessed')
        os.environ['nnUNet_results'] = os.path.join(tmp, 'nnUNet_results')

        import nnunetv2
        from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import \
            ExperimentPlanner
        planner = ExperimentPlanner(name, gpu_memory_target_in_gb=args.gpu_memory_target)
        planner.plan_experiment()
        produced = os.path.join(pre, 'nnUNetPlans.json')
        with open(produced) as f:
            plans = json.load(f)
        plans['_made_by'] = {
            'nnunetv2': getattr(nnunetv2, '__version__', None) or _dist_version('nnunetv2'),
            'dynamic_network_architectures': _dist_version('dynamic_network_architectures'),
            'gpu_memory_target_in_gb': args.gpu_memory_target,
            'command': ' '.join(['python', 'tests/python/plan_nnunet_reference.py'] + sys.argv[1:]),
        }
        with open(os.path.join(args.fixture, args.out), 'w') as f:
            json.dump(plans, f, indent=4)
            f.write('\n')
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _dist_version(dist):
    try:
        from importlib.metadata import version
        return version(dist.replace('_', '-'))
    except Exception:  # noqa: BLE001 - informative only
        return None


if __name__ == '__main__':
    main()
