"""Cross-check of `umamba import` with PyTorch itself.

usage: model_import_check.py IMPORT_TOOL FIXTURE_CASE_DIR OUT_DIR

Runs our importer on the fixture's nnU-Net results folder, then reads what it wrote with
torch.load(weights_only=True) and json, and compares with the checkpoint as PyTorch reads it:
the weights must hold exactly the checkpoint's state_dict keys with identical tensors, and the
recorded SHA-256 must be the file's.
"""
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys

import torch


def main():
    tool, case_dir, out = sys.argv[1:4]
    results = [d for d in glob.glob(os.path.join(case_dir, '*__*__*')) if os.path.isdir(d)]
    assert len(results) == 1, results
    shutil.rmtree(out, ignore_errors=True)
    subprocess.run([tool, results[0], out], check=True, stdout=subprocess.DEVNULL)

    meta = json.load(open(os.path.join(out, 'metadata.json')))
    ckpt = torch.load(os.path.join(results[0], 'fold_0', 'checkpoint_final.pth'),
                      map_location='cpu', weights_only=False)
    ours_path = os.path.join(out, 'fold_0', 'weights.pt')
    ours = torch.load(ours_path, map_location='cpu', weights_only=True)
    official = ckpt['network_weights']
    assert set(ours) == set(official), (sorted(set(ours) ^ set(official)))[:10]
    for k, v in official.items():
        assert ours[k].dtype == v.dtype and ours[k].shape == v.shape, k
        assert torch.equal(ours[k], v), k
    digest = hashlib.sha256(open(ours_path, 'rb').read()).hexdigest()
    assert meta['folds']['0']['sha256'] == digest
    assert meta['folds']['0']['parameters'] == sum(
        v.numel() for k, v in official.items()
        if not k.startswith('decoder.encoder.') and '.all_modules.' not in k)
    assert meta['trainer'] == ckpt['trainer_name']
    assert meta['configuration'] == ckpt['init_args']['configuration']
    print(f'ok: {len(ours)} keys equal to the checkpoint, sha256 {digest[:12]}…')
    shutil.rmtree(out)


if __name__ == '__main__':
    main()
