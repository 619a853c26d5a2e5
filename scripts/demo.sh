#!/usr/bin/env bash
# `make demo`: the main job on the bundled examples, on the CPU, in a few minutes.
#
#   1. the example set: a real fluorescence image with its hand-made instance labels
#      (examples/data/dsb2018, CC0) and synthetic cells from `umamba synth`, in the NeurIPS layout;
#   2. segmentation with the model shipped in examples/models (trained by `umamba train`; its
#      command and data are in that folder's README): label TIFFs, overlays, measurements, GeoJSON
#      and a run manifest, then the challenge's F1 against the ground truth;
#   3. what the three-class representation (background / interior / boundary) costs on its own:
#      the ground truth converted to three classes and back, with the paper's rule (plain) and ours
#      (reclaim), scored by the same F1.
# Outputs go to demo-out/ (UMAMBA_DEMO_OUT); the model folder can be swapped (UMAMBA_DEMO_MODEL).
set -euo pipefail
build=${1:-build}
cd "$(dirname "$0")/.."
umamba="$build/umamba"
out=${UMAMBA_DEMO_OUT:-demo-out}
model=${UMAMBA_DEMO_MODEL:-examples/models/cells-bot2d}
started=$(date +%s)

step() { printf '\n== %s\n' "$*"; }
f1_of() {  # the mean F1 from an evaluate summary
  sed -n 's/^  F1 *\([0-9.]*\).*/\1/p' "$1"
}

rm -rf "$out"
mkdir -p "$out/data/images" "$out/data/labels"

step "umamba: $("$umamba" --version)"

step "1. example images (real + synthetic) -> $out/data"
cp examples/data/dsb2018/img2d.tif "$out/data/images/dsb2018_nuclei.tif"
cp examples/data/dsb2018/mask2d.tif "$out/data/labels/dsb2018_nuclei_label.tif"
"$umamba" --log-level warn synth -o "$out/synth" --count 3 --size 320x320 --seed 5001 \
  --cell-diameter 16 --prefix synth
cp "$out"/synth/images/* "$out/data/images/"
cp "$out"/synth/labels/* "$out/data/labels/"
ls "$out/data/images"

if [[ -f "$model/network.json" ]]; then
  step "2. segment with the bundled model ($model) -> $out/predictions"
  "$umamba" predict "$out/data/images" -m "$model" -o "$out/predictions" --device cpu \
    --overlay --measurements --geojson --progress lines
  "$umamba" evaluate --gt "$out/data/labels" --pred "$out/predictions" --metric f1 \
    -o "$out/evaluation" | tee "$out/evaluation.txt"
  model_f1=$(f1_of "$out/evaluation.txt")
else
  step "2. no model folder at $model: segmentation skipped"
  model_f1="(no model)"
fi

step "3. the three-class round trip: ground truth -> classes -> instances"
"$umamba" --log-level warn convert to-classes "$out/data/labels" -o "$out/roundtrip/classes"
for mode in plain reclaim; do
  "$umamba" --log-level warn convert to-instances "$out/roundtrip/classes" \
    -o "$out/roundtrip/$mode" --mode "$mode" --ext .tiff --suffix ""
  "$umamba" --log-level warn evaluate --gt "$out/data/labels" --pred "$out/roundtrip/$mode" \
    --metric f1 -o "$out/roundtrip/eval-$mode" > "$out/roundtrip/$mode.txt"
done

step "summary ($(($(date +%s) - started)) s)"
echo "  F1 of the bundled model on the example images:        $model_f1"
echo "  F1 of the ground truth through three classes, plain:   $(f1_of "$out/roundtrip/plain.txt")"
echo "  F1 of the ground truth through three classes, reclaim: $(f1_of "$out/roundtrip/reclaim.txt")"
echo "  outputs: $out/predictions (labels, overlays, CSV, GeoJSON, manifest), $out/evaluation"
