#!/usr/bin/env python3
# bench-scan-peer.py: times mamba-ssm's selective-scan CUDA op (`selective_scan_cuda.fwd` / `.bwd`,
# v1.2.0) on the shapes of `umamba bench scan --shapes all|umamba` with the same method (a CUDA
# graph of as many calls as last about 4 ms, 15 replays, median per call) and the same inputs, and
# first checks the op against a float64 loop of the scan's semantics. This is the baseline column
# of docs/cuda.md's table, run in the same call as our bench on the same GPU.
#
#   python3 scripts/bench-scan-peer.py PEER_DIR OUT.csv [all|umamba] [fp32,bf16]
#
# PEER_DIR holds the built extension (selective_scan_cuda*.so, directly or in PEER_DIR/build):
# mamba-ssm's csrc/selective_scan from its PyPI sdist or its v1.2.0 tag, compiled on the GPU
# machine (docs/cuda.md, "How measured"). The peer's code is never committed here.
import math, os, sys, time, importlib.util, glob
import torch
if len(sys.argv) < 3:
    sys.exit("usage: bench-scan-peer.py PEER_DIR OUT.csv [all|umamba] [fp32,bf16]")
found = glob.glob(os.path.join(sys.argv[1], "selective_scan_cuda*.so")) + glob.glob(
    os.path.join(sys.argv[1], "build", "selective_scan_cuda*.so"))
if not found:
    sys.exit(f"bench-scan-peer.py: no selective_scan_cuda*.so in {sys.argv[1]} or its build/")
so = found[0]
spec = importlib.util.spec_from_file_location("selective_scan_cuda", so)
ssc = importlib.util.module_from_spec(spec); spec.loader.exec_module(ssc)
csv_path = sys.argv[2]
which = sys.argv[3] if len(sys.argv) > 3 else "all"
dtypes = (sys.argv[4] if len(sys.argv) > 4 else "fp32").split(",")
UMAMBA = [("2D Enc s1 256^2 d64", 12, 128, 65536), ("2D Enc s3 64^2 d256", 12, 512, 4096),
          ("2D Enc s5 ch-tok 512 d256", 12, 512, 512), ("2D Enc s7 ch-tok 512 d16", 12, 32, 512),
          ("2D Bot 4^2 d512", 12, 1024, 16), ("3D Enc s0 40x224x192 d32", 2, 64, 1720320),
          ("3D Enc s1 40x112x96 d64", 2, 128, 430080), ("3D Enc s2 20x56x48 d128", 2, 256, 53760),
          ("3D Enc s3 10x28x24 d256", 2, 512, 6720), ("3D Enc s4 5x14x12 d320", 2, 640, 840),
          ("3D Enc s5 ch-tok 320 d210", 2, 420, 320), ("3D Bot 5x7x6 d320", 2, 640, 210)]
EXTRA = [("stress 2D s0-like", 12, 64, 262144), ("mid", 12, 256, 16384), ("mid", 2, 640, 4096)]
cases = UMAMBA + (EXTRA if which == "all" else [])
N = 16
dev = torch.device("cuda")
name = torch.cuda.get_device_name()

def make(B, D, L, dt):
    g = torch.Generator(device=dev); g.manual_seed(1)
    U = lambda *s, dtype=dt: (torch.rand(*s, device=dev, generator=g) * 2 - 1).to(dtype)
    u, delta, z, dout = U(B, D, L), U(B, D, L), U(B, D, L), U(B, D, L)
    Bm, Cm = U(B, 1, N, L), U(B, 1, N, L)
    A = -torch.arange(1, N + 1, device=dev, dtype=torch.float32).repeat(D, 1).contiguous()
    Dv = torch.ones(D, device=dev)
    dts = torch.exp(torch.rand(D, device=dev, generator=g) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
    bias = dts + torch.log(-torch.expm1(-dts))
    return u, delta, A, Bm, Cm, Dv, z, bias, dout

def time_graph(fn, calls, repeats=15):
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        fn(); torch.cuda.synchronize()
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g, stream=s):
            for _ in range(calls): fn()
        g.replay(); torch.cuda.synchronize()
        ts = []
        for _ in range(repeats):
            a = torch.cuda.Event(enable_timing=True); b = torch.cuda.Event(enable_timing=True)
            a.record(s); g.replay(); b.record(s); b.synchronize()
            ts.append(a.elapsed_time(b) / calls)
    ts.sort()
    del g
    return ts[len(ts) // 2], ts[0], ts[-1]

def once_ms(fn):
    fn(); torch.cuda.synchronize()
    a = torch.cuda.Event(enable_timing=True); b = torch.cuda.Event(enable_timing=True)
    a.record(); fn(); b.record(); b.synchronize()
    return a.elapsed_time(b)

calls_for = lambda ms: max(1, min(200, math.ceil(4.0 / max(ms, 1e-4))))
# correctness of the build: against a float64 loop of the same semantics
def ref64(u, delta, A, Bm, Cm, Dv, z, bias):
    u, delta, A, Bm, Cm, z = [t.double() for t in (u, delta, A, Bm, Cm, z)]
    dt = torch.nn.functional.softplus(delta + bias.double()[:, None])
    Bb, Cc = Bm[:, 0], Cm[:, 0]
    h = torch.zeros(u.shape[0], u.shape[1], A.shape[1], dtype=torch.float64, device=u.device)
    ys = []
    for t in range(u.shape[2]):
        h = torch.exp(dt[:, :, t, None] * A) * h + dt[:, :, t, None] * Bb[:, None, :, t] * u[:, :, t, None]
        ys.append((h * Cc[:, None, :, t]).sum(-1))
    y = torch.stack(ys, -1) + Dv.double()[:, None] * u
    return y * torch.nn.functional.silu(z)
u, delta, A, Bm, Cm, Dv, z, bias, dout = make(2, 8, 700, torch.float32)
res = ssc.fwd(u, delta, A, Bm, Cm, Dv, z, bias, True)
r = ref64(u, delta, A, Bm, Cm, Dv, z, bias)
print(f"peer check vs float64 loop (2,8,700): max|d|/max|ref| = {((res[2].double()-r).abs().max()/r.abs().max()).item():.2e}")

rows = []
with open(csv_path, "w") as f:
    f.write("label,B,D,L,N,dtype,fwd_ms,fwd_min,fwd_max,bwd_ms,bwd_min,bwd_max,fb_ms,fb_min,fb_max,device\n")
    for dname in dtypes:
        dt = torch.float32 if dname == "fp32" else torch.bfloat16
        for (label, B, D, L) in cases:
            torch.cuda.empty_cache()
            u, delta, A, Bm, Cm, Dv, z, bias, dout = make(B, D, L, dt)
            res = ssc.fwd(u, delta, A, Bm, Cm, Dv, z, bias, True)
            out, x = res[0], res[1]
            fwd = lambda: ssc.fwd(u, delta, A, Bm, Cm, Dv, z, bias, True)
            bwd = lambda: ssc.bwd(u, delta, A, Bm, Cm, Dv, z, bias, dout, x, out, None, True, False)
            def both():
                r = ssc.fwd(u, delta, A, Bm, Cm, Dv, z, bias, True)
                ssc.bwd(u, delta, A, Bm, Cm, Dv, z, bias, dout, r[1], r[0], None, True, False)
            fo, bo = once_ms(fwd), once_ms(bwd)
            tf = time_graph(fwd, calls_for(fo)); tb = time_graph(bwd, calls_for(bo)); tfb = time_graph(both, calls_for(fo + bo))
            f.write(f'"{label}",{B},{D},{L},{N},{dname},{tf[0]},{tf[1]},{tf[2]},{tb[0]},{tb[1]},{tb[2]},{tfb[0]},{tfb[1]},{tfb[2]},"{name}"\n'); f.flush()
            print(f"{label:<27} {B:>3} {D:>5} {L:>8} {dname}  fwd {tf[0]:.4f}  bwd {tb[0]:.4f}  f+b {tfb[0]:.4f} ms", flush=True)
            del u, delta, z, dout, Bm, Cm, res, out, x
