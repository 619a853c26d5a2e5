#!/usr/bin/env python3
# sass-loops.py: the loops of one kernel in a cubin's SASS (cuobjdump -sass), with their
# instruction counts, and for the selective-scan backward the instructions one state costs a warp
# on the full-tile path - a static count that needs no GPU (the figure docs/cuda.md quotes).
#
#   nvcc -arch=sm_90 -O3 -std=c++17 -I. -cubin cuda/selective_scan_fp32.cu -o /tmp/ss.cubin
#   python3 scripts/sass-loops.py /tmp/ss.cubin 'scan_bwd_long_kernelIfLb1ELi3ELi2E' --state-loop
#
# Without --state-loop: every loop (a backward branch) as "loop START-END: N instructions, M MUFU".
# With it: the innermost loop with 9 MUFU (the backward's loop over states: 8 steps' decays and the
# tile's), less the per-element atomic fallback (from the predicated branch to the 4-float atomics
# up to their target), with an opcode histogram. cuobjdump comes with the CUDA toolkit (or the PyPI
# wheel nvidia-cuda-cuobjdump).
import collections
import re
import subprocess
import sys


def instructions(cubin, kernel):
    sass = subprocess.run(["cuobjdump", "-sass", cubin], capture_output=True, text=True,
                          check=True).stdout
    for body in re.split(r"\n\s*Function : ", sass)[1:]:
        if kernel in body.split("\n")[0]:
            pat = re.compile(r"/\*([0-9a-f]{4,})\*/\s+([^;]*);")
            return body.split("\n")[0].strip(), [(int(m.group(1), 16), m.group(2).strip())
                                                 for m in map(pat.search, body.split("\n")) if m]
    sys.exit(f"no kernel matching {kernel!r} in {cubin}")


def loops(ins):
    index = {a: i for i, (a, _) in enumerate(ins)}
    out = []
    for i, (a, text) in enumerate(ins):
        m = re.search(r"\bBRA(?:\.\w+)? (?:P\d, )?0x([0-9a-f]+)", text)
        if m and int(m.group(1), 16) <= a and int(m.group(1), 16) in index:
            out.append((index[int(m.group(1), 16)], i))
    return sorted(out)


def opcode(text):
    return re.sub(r"^@!?U?P\w+ ", "", text).split(" ")[0].split(".")[0]


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__ if __doc__ else "usage: sass-loops.py CUBIN KERNEL [--state-loop]")
    name, ins = instructions(sys.argv[1], sys.argv[2])
    print(name)
    found = loops(ins)
    mufu = lambda s, e: sum(1 for _, t in ins[s:e + 1] if opcode(t) == "MUFU")
    if "--state-loop" not in sys.argv:
        for s, e in found:
            print(f"loop {ins[s][0]:05x}-{ins[e][0]:05x}: {e - s + 1} instructions, {mufu(s, e)} MUFU")
        return
    nine = [(e - s, s, e) for s, e in found if mufu(s, e) == 9]
    if not nine:
        sys.exit("no loop with 9 MUFU")
    _, s, e = min(nine)
    loop = ins[s:e + 1]
    branch = next((k for k, (_, t) in enumerate(loop) if re.search(r"BRA P\d, 0x", t)), None)
    path = loop
    if branch is not None:
        target = int(re.search(r"0x([0-9a-f]+)", loop[branch][1]).group(1), 16)
        resume = next(k for k, (a, _) in enumerate(loop) if a == target)
        path = loop[:branch + 1] + loop[resume:]
    h = collections.Counter(opcode(t) for _, t in path)
    print(f"state loop {ins[s][0]:05x}-{ins[e][0]:05x}: {len(loop)} instructions, "
          f"full-tile path {len(path)}")
    print(" ".join(f"{k} {v}" for k, v in h.most_common()))


if __name__ == "__main__":
    main()
