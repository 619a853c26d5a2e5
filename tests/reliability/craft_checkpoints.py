#!/usr/bin/env python3
"""Writes hostile torch.save files for tests/reliability/checkpoint_safety_test.cpp.

Usage: craft_checkpoints.py OUT_DIR MARKER_PATH

Each file is a genuine PyTorch zip checkpoint (written by torch.save, so the zip layout, the
version record and the tensor storages are real) whose data.pkl calls or names a Python global
that would run code if unpickled by an unrestricted loader: os.system (REDUCE), builtins.eval,
subprocess.Popen through STACK_GLOBAL/NEWOBJ, the protocol-0 INST and OBJ opcodes, and BUILD on
an arbitrary class; or only names such a global without calling it (GLOBAL os.system and
STACK_GLOBAL subprocess.Popen as dict values). Every calling payload would create MARKER_PATH if
executed. As an independent check, each file is also given to PyTorch's own weights-only loader
(torch.load(weights_only=True)), which must refuse it; the script exits non-zero if PyTorch
accepts one or the marker appears.
Prints one line per file: "<name> <pytorch's verdict>".
"""
import io
import os
import pickle
import pickletools
import sys
import zipfile

import torch

out_dir, marker = sys.argv[1], sys.argv[2]
os.makedirs(out_dir, exist_ok=True)
cmd = f"touch {marker}"


class Evil:
    def __reduce__(self):
        return (os.system, (cmd,))


def save_with(payload_pickle: bytes, name: str) -> str:
    """torch.save of a real state dict, then data.pkl replaced by `payload_pickle`."""
    base = io.BytesIO()
    torch.save({"w": torch.arange(6, dtype=torch.float32).reshape(2, 3)}, base)
    base.seek(0)
    path = os.path.join(out_dir, name + ".pth")
    with zipfile.ZipFile(base) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename.endswith("/data.pkl"):
                data = payload_pickle
            dst.writestr(info, data)
    return path


paths = []
# 1. torch.save itself pickling an object whose reduce is os.system (REDUCE of posix.system).
p = os.path.join(out_dir, "reduce_os_system.pth")
torch.save({"w": torch.ones(2, 2), "evil": Evil()}, p)
paths.append(p)
# 2. GLOBAL builtins eval + REDUCE, protocol 2.
paths.append(save_with(b"\x80\x02cbuiltins\neval\nX" + len(f"__import__('os').system('{cmd}')").to_bytes(4, "little") +
                       f"__import__('os').system('{cmd}')".encode() + b"\x85R.", "reduce_eval"))
# 3. STACK_GLOBAL subprocess.Popen + NEWOBJ, protocol 4.
popen_args = pickle.dumps((["touch", marker],), protocol=4)[2:-1]  # the tuple's opcodes only
paths.append(save_with(b"\x80\x04\x8c\nsubprocess\x8c\x05Popen\x93" + popen_args + b"\x81.",
                       "newobj_popen"))
# 4. INST: "i" module\nname\n after a MARK with the arguments (a binary string, so the INST
#    opcode itself is what a restricted reader meets).
paths.append(save_with(b"\x80\x02(X" + len(cmd).to_bytes(4, "little") + cmd.encode() +
                       b"ios\nsystem\n.", "inst_os_system"))
# 5. OBJ: MARK, the class, its arguments, "o".
paths.append(save_with(b"\x80\x02(cos\nsystem\nX" + len(cmd).to_bytes(4, "little") + cmd.encode() +
                       b"o.", "obj_os_system"))
# 6. BUILD (setstate) on an instance of an arbitrary class made by REDUCE of copyreg.
paths.append(save_with(b"\x80\x02ccopyreg\n_reconstructor\nccollections\nUserDict\nc__builtin__\n"
                       b"object\nN\x87R}X\x04\x00\x00\x00data}sb.", "build_reconstructor"))
# 7. A bare reference to os.system (no call) in a dict value.
paths.append(save_with(b"\x80\x02}X\x01\x00\x00\x00fcos\nsystem\ns.", "bare_global"))
# 8. The same through STACK_GLOBAL (protocol 4): {"f": subprocess.Popen}, never called. (PyTorch's
#    weights-only loader refuses the STACK_GLOBAL opcode itself, whatever it names; ours reads it
#    and must refuse the name.)
paths.append(save_with(b"\x80\x04}X\x01\x00\x00\x00fX\n\x00\x00\x00subprocessX\x05\x00\x00\x00"
                       b"Popen\x93s.", "bare_stack_global"))

failed = False
for path in paths:
    # Each payload is a well-formed pickle (checked by disassembly, which executes nothing), so a
    # refusal below is about what it calls, not about broken bytes.
    with zipfile.ZipFile(path) as z:
        data = z.read(next(n for n in z.namelist() if n.endswith("/data.pkl")))
    pickletools.dis(data, out=io.StringIO())
    try:
        torch.load(path, weights_only=True)
        verdict = "ACCEPTED"
        failed = True
    except Exception as e:  # pickle.UnpicklingError or RuntimeError, depending on the payload
        verdict = "refused: " + type(e).__name__
    print(os.path.basename(path), verdict)
if os.path.exists(marker):
    print("marker created: a payload ran")
    failed = True
sys.exit(1 if failed else 0)
