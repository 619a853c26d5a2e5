#!/usr/bin/env python3
# scan-table.py: the Markdown table of docs/cuda.md from two CSVs of the same call - ours
# (`umamba bench scan --csv OURS`) and mamba-ssm's (`scripts/bench-scan-peer.py PEER_DIR PEER ...`).
#
#   python3 scripts/scan-table.py ours.csv peer.csv > table.md
#   python3 scripts/scan-table.py --compact ours.csv peer.csv   # the README's table
#
# Per shape and dtype: forward, backward and forward+backward milliseconds (ours / mamba-ssm), the
# ratio mamba / ours (above 1: ours faster) and the fraction of the card's peak bandwidth that the
# ideal bytes over each time make (the byte counts and the peak come from our CSV; the peer's CSV
# has the same shapes). Shapes missing from the peer's CSV get "-".
import csv
import sys


def load(path, columns):
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        sys.exit(f"scan-table.py: {path}: {e.strerror}")
    missing = [c for c in columns if rows and c not in rows[0]]
    if not rows or missing:
        sys.exit(f"scan-table.py: {path}: " +
                 (f"no column {', '.join(missing)}" if rows else "no rows") +
                 " (expected a CSV of `umamba bench scan --csv` or scripts/bench-scan-peer.py)")
    return {(r["B"], r["D"], r["L"], r["N"], r["dtype"]): r for r in rows}


def compact(ours, peer):
    """One row per shape: fp32 times, ratios and %peak, and the bf16 ratios."""
    print("| shape (B, D, L), N = 16 | fp32 forward ms, ours / mamba-ssm | × | %peak | "
          "fp32 backward ms, ours / mamba-ssm | × | %peak | bf16 forward × | bf16 backward × |")
    print("|---|---|---|---|---|---|---|---|---|")
    for key, r in ours.items():
        if r["dtype"] != "fp32" or key not in peer:
            continue
        p = peer[key]
        half = key[:4] + ("bf16",)
        peak = float(r["peak_gbps"]) * 1e9
        cells = [f"{r['label']} ({r['B']}, {r['D']}, {r['L']})"]
        for what in ("fwd", "bwd"):
            mine, theirs = float(r[f"{what}_ms"]), float(p[f"{what}_ms"])
            pct = 100.0 * float(r[f"{what}_bytes"]) / (mine * 1e-3) / peak
            cells += [f"{mine:.4g} / {theirs:.4g}", f"**{theirs / mine:.2f}**", f"{pct:.1f}"]
        for what in ("fwd", "bwd"):
            if half in ours and half in peer:
                cells.append(f"{float(peer[half][what + '_ms']) / float(ours[half][what + '_ms']):.2f}")
            else:
                cells.append("-")
        print("| " + " | ".join(cells) + " |")


def main():
    args = [a for a in sys.argv[1:] if a != "--compact"]
    if len(args) != 2:
        sys.exit("usage: scan-table.py [--compact] OURS.csv PEER.csv")
    times = ["B", "D", "L", "N", "dtype", "fwd_ms", "bwd_ms", "fb_ms"]
    ours = load(args[0], times + ["label", "fwd_bytes", "bwd_bytes", "peak_gbps"])
    peer = load(args[1], times)
    if "--compact" in sys.argv[1:]:
        compact(ours, peer)
        return
    print("| shape | B | D | L | dtype | fwd ms (ours / mamba) | fwd × | fwd %peak ours / mamba "
          "| bwd ms (ours / mamba) | bwd × | bwd %peak ours / mamba | fwd+bwd ms (ours / mamba) "
          "| fwd+bwd × |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for key, r in ours.items():
        p = peer.get(key)
        peak = float(r["peak_gbps"]) * 1e9
        cells = [r["label"], r["B"], r["D"], r["L"], r["dtype"]]
        for what, nbytes in (("fwd", r["fwd_bytes"]), ("bwd", r["bwd_bytes"]), ("fb", None)):
            mine = float(r[f"{what}_ms"])
            theirs = float(p[f"{what}_ms"]) if p else None
            cells.append(f"{mine:.4g} / {theirs:.4g}" if p else f"{mine:.4g} / -")
            cells.append(f"**{theirs / mine:.2f}**" if p and what != "fb" else
                         f"{theirs / mine:.2f}" if p else "-")
            if nbytes is not None:
                pct = lambda ms: 100.0 * float(nbytes) / (ms * 1e-3) / peak
                cells.append(f"{pct(mine):.1f} / {pct(theirs):.1f}" if p else f"{pct(mine):.1f} / -")
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
