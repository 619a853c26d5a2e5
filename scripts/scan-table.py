#!/usr/bin/env python3
# scan-table.py: the Markdown table of docs/cuda.md from two CSVs of the same call - ours
# (`umamba bench scan --csv OURS`) and mamba-ssm's (`scripts/bench-scan-peer.py PEER_DIR PEER ...`).
#
#   python3 scripts/scan-table.py ours.csv peer.csv > table.md
#
# Per shape and dtype: forward, backward and forward+backward milliseconds (ours / mamba-ssm), the
# ratio mamba / ours (above 1: ours faster) and the fraction of the card's peak bandwidth that the
# ideal bytes over each time make (the byte counts and the peak come from our CSV; the peer's CSV
# has the same shapes). Shapes missing from the peer's CSV get "-".
import csv
import sys


def load(path):
    with open(path, newline="") as f:
        return {(r["B"], r["D"], r["L"], r["N"], r["dtype"]): r for r in csv.DictReader(f)}


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: scan-table.py OURS.csv PEER.csv")
    ours, peer = load(sys.argv[1]), load(sys.argv[2])
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
