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
# tile's), and the instructions of one walk through it (see --take in main), with an opcode
# histogram. cuobjdump comes with the CUDA toolkit (or the PyPI wheel nvidia-cuda-cuobjdump).
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
    # Walk one iteration: unconditional branches are followed, "@P BRA Q, X" (a branch on two
    # predicates: the path choices) follow --take (1 taken, 0 not, in order of meeting them;
    # default 0,1: not the direct atomics, then the 4-float atomics of a whole aligned tile),
    # other predicated branches and BRA.DIV fall through; the walk ends at the loop's back edge.
    take = [int(c) for c in next((a.split("=")[1] for a in sys.argv if a.startswith("--take=")),
                                 "0,1").split(",")]
    index = {a: i for i, (a, _) in enumerate(ins)}
    i, path, met = s, [], 0
    while i <= e and len(path) < 10000:
        a, t = ins[i]
        path.append(t)
        if i == e:
            break
        target = re.search(r"BRA(?:\.\w+)? (?:P\d, )?0x([0-9a-f]+)", t)
        if target and ".DIV" not in t:
            x = index[int(target.group(1), 16)]
            if re.match(r"@!?P\d BRA P\d, ", t):
                choice = take[met] if met < len(take) else 0
                met += 1
                i = x if choice else i + 1
                continue
            if not t.startswith("@"):
                i = x
                continue
        i += 1
    h = collections.Counter(opcode(t) for t in path)
    print(f"state loop {ins[s][0]:05x}-{ins[e][0]:05x}: {e - s + 1} instructions, "
          f"path --take={','.join(map(str, take))}: {len(path)}")
    print(" ".join(f"{k} {v}" for k, v in h.most_common()))


if __name__ == "__main__":
    main()
