#!/usr/bin/env python3
"""Writes the checkpoint-reader fuzz seeds in tests/fuzz/seeds-torch (committed; rerun to refresh).

fuzz_torch_file reads its first byte as a mode: even = the rest is a whole torch.save file, odd =
the rest is data.pkl only (the target wraps it into a zip with storages "0".."3" of 256 bytes).
Each checkpoint below is written both ways: state dicts of several dtypes and shapes (views with
offsets and strides, shared storages), an nnU-Net-like checkpoint (OrderedDict, numpy scalars,
strings, nested lists, torch.device), and pickle protocols 2 and 4.
"""
import collections
import io
import os
import zipfile

import numpy as np
import torch

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds-torch")
os.makedirs(out, exist_ok=True)
torch.manual_seed(0)

base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
cases = {
    "state_f32": {"w": torch.randn(3, 4), "b": torch.zeros(3)},
    "dtypes": {
        "f16": torch.randn(5).half(), "bf16": torch.randn(5).bfloat16(),
        "f64": torch.randn(2, 2).double(), "i64": torch.arange(4), "u8": torch.ones(3, dtype=torch.uint8),
        "bool": torch.tensor([True, False]), "i32": torch.arange(3, dtype=torch.int32),
    },
    "views": {"base": base, "col": base[:, 1], "t": base.t(), "tail": base[2:], "scalar": torch.tensor(3.5)},
    "nnunet_like": {
        "network_weights": collections.OrderedDict(
            [("encoder.stages.0.0.convs.0.conv.weight", torch.randn(4, 1, 3, 3)),
             ("encoder.stages.0.0.convs.0.conv.bias", torch.randn(4))]),
        "optimizer_state": None,
        "logging": {"ema_fg_dice": [np.float64(0.5), np.float32(0.25)], "epoch": [np.int64(3)]},
        "_best_ema": np.float64(0.75),
        "current_epoch": 4,
        "init_args": {"plans": {"name": "p"}, "configuration": "2d", "fold": 0,
                      "device": torch.device("cpu")},
        "trainer_name": "nnUNetTrainerUMambaBot",
        "inference_allowed_mirroring_axes": (0, 1),
    },
}


def data_pkl(blob: bytes) -> bytes:
    with zipfile.ZipFile(io.BytesIO(blob)) as z:
        return z.read(next(n for n in z.namelist() if n.endswith("/data.pkl")))


for name, obj in cases.items():
    for proto in (2, 4):
        buf = io.BytesIO()
        torch.save(obj, buf, pickle_protocol=proto)
        blob = buf.getvalue()
        with open(os.path.join(out, f"{name}-p{proto}.file"), "wb") as f:
            f.write(b"\x00" + blob)
        with open(os.path.join(out, f"{name}-p{proto}.pkl"), "wb") as f:
            f.write(b"\x01" + data_pkl(blob))
print(len(os.listdir(out)), "seeds in", out)
