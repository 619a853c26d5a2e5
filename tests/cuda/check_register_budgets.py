#!/usr/bin/env python3
# The register budgets the launch plan assumes, checked against the compiled kernels (sm_90).
#
# plan_scan (cuda/selective_scan.cpp) counts on a number of resident blocks per SM for the kernels
# without a minimum-blocks launch bound: the forward's long-row kernel (kFwdLongBlocksPerSm), the
# two summary kernels (kFwdSummaryBlocksPerSm, kBwdSummaryBlocksPerSm) and the forward's one-tile
# kernel at 8 steps a lane (kFwdShortWarpsPerSm8 / 4). Blocks have 4 warps of 32 threads and
# registers are allocated 8 per thread at a time, so b resident blocks need at most
# floor(65536 / (128 b) / 8) * 8 registers a thread. A kernel change that adds registers silently
# costs occupancy and breaks the plan's wave arithmetic: the select-form lane scan took the bf16
# long forward kernel from 80 to 110 registers (4 blocks per SM instead of 6, 40 % slower on an
# H200) without failing any other test. This compiles the dtype files with ptxas's resource usage
# and fails when a kernel needs more registers than its budget.
#
#   check_register_budgets.py --nvcc NVCC --source REPO_ROOT [--work DIR]
import argparse
import os
import re
import subprocess
import sys
import tempfile

THREADS_PER_BLOCK = 128  # kFwdWarps * 32 (cuda/selective_scan_launch.h)


def constant(text, name):
    m = re.search(rf"constexpr std::int64_t {name} = (\d+);", text)
    if not m:
        sys.exit(f"check_register_budgets: {name} not found in cuda/selective_scan.cpp")
    return int(m.group(1))


def budget(blocks_per_sm):
    return (65536 // (THREADS_PER_BLOCK * blocks_per_sm)) // 8 * 8


def registers(nvcc, source, dtype_file, work):
    out = os.path.join(work, os.path.basename(dtype_file) + ".cubin")
    cmd = [nvcc, "-arch=sm_90", "-O3", "-std=c++17", "-I", source, "-cubin", "-o", out,
           "--resource-usage", os.path.join(source, dtype_file)]
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"check_register_budgets: {' '.join(cmd)} failed:\n{run.stderr}")
    used, current = {}, None
    for line in (run.stdout + run.stderr).splitlines():
        m = re.search(r"Function properties for (\S+)", line)
        if m:
            current = m.group(1)
        m = re.search(r"Used (\d+) registers", line)
        if m and current:
            used[current] = int(m.group(1))
    return used


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nvcc", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--work")
    args = ap.parse_args()
    plan = open(os.path.join(args.source, "cuda", "selective_scan.cpp")).read()
    budgets = {  # mangled-name fragment -> (what, registers allowed)
        "scan_fwd_long_kernel": ("forward long rows", budget(constant(plan, "kFwdLongBlocksPerSm"))),
        "scan_fwd_summary_kernel": ("forward summaries",
                                    budget(constant(plan, "kFwdSummaryBlocksPerSm"))),
        "scan_bwd_summary_kernel": ("backward summaries",
                                    budget(constant(plan, "kBwdSummaryBlocksPerSm"))),
    }
    short8 = budget(constant(plan, "kFwdShortWarpsPerSm8") // 4)
    failures, checked = [], 0
    with tempfile.TemporaryDirectory(dir=args.work) as work:
        for dtype_file in ("cuda/selective_scan_fp32.cu", "cuda/selective_scan_bf16.cu"):
            for kernel, regs in registers(args.nvcc, args.source, dtype_file, work).items():
                if "scan_fwd_short_kernel" in kernel:  # only the 8-steps-a-lane instantiations
                    if "Li8E" not in kernel.split("EEEv")[0]:  # <T, 8, kWhole>
                        continue
                    what, allowed = "forward one-tile, 8 steps a lane", short8
                else:
                    hit = [v for k, v in budgets.items() if k in kernel]
                    if not hit:
                        continue
                    what, allowed = hit[0]
                checked += 1
                status = "ok" if regs <= allowed else "OVER"
                print(f"{status}: {what} ({dtype_file}): {regs} registers, budget {allowed}")
                if regs > allowed:
                    failures.append(kernel)
    if checked < 8:
        sys.exit(f"check_register_budgets: only {checked} of the 8 kernels found in ptxas's output")
    if failures:
        sys.exit("check_register_budgets: over budget (the plan's resident blocks would not fit): " +
                 ", ".join(failures))


if __name__ == "__main__":
    main()
