#!/usr/bin/env bash
# ct3d-gpu.sh: a tiny 3D U-Mamba_Bot trained briefly on the one CT volume of
# ../shared/data/ct3d/totalsegmentator (TotalSegmentator's example: 122x101x30 voxels, 3 mm, 41
# organ labels that are TotalSegmentator's own prediction), predicted back with `umamba predict`
# (resampling to the plans' spacing on, as nnU-Net), and scored per organ with `umamba evaluate`.
#
#   scripts/ct3d-gpu.sh UMAMBA_BINARY DATA_DIR [WORK_DIR]
#
# DATA_DIR holds example_ct_sm.nii.gz and example_seg.nii.gz (the device machine receives only
# the repository: copy the folder into an ignored folder of the checkout and pass that path).
# WORK_DIR (default: a new temporary folder) receives the nnU-Net raw dataset, plans, the model
# folder, the prediction and the evaluation.
#
# The single volume is both the training and the validation case (--fold all). Environment:
#   CT3D_DEVICE          auto            device for train and predict (auto, cpu, cuda, cuda:N)
#   CT3D_EPOCHS          40              epochs
#   CT3D_ITERATIONS      25              iterations per epoch
#   CT3D_STAGES          4               encoder stages (the plans' topology truncated)
#   CT3D_BASE_FEATURES   16              features of the first stage
#   CT3D_MAX_FEATURES    128             cap of the features per stage
#   CT3D_ARCH            bot             bot, enc or plain
#   CT3D_PRECISION       auto            train precision (auto: bf16 on a GPU, fp32 on the CPU)
#   CT3D_TARGET_SPACING  2.5,1.5,1.5     z,y,x mm written into the plans' 3d_fullres spacing so
#                                        that training and prediction resample (the planner keeps
#                                        this isotropic 3 mm volume at 3 mm); "plans" keeps the
#                                        planner's. Needs python3 (any; no modules) to edit JSON.
#   CT3D_AUGMENT         1               nnU-Net's augmentation (0: off)
# A CPU smoke run: CT3D_DEVICE=cpu CT3D_EPOCHS=1 CT3D_ITERATIONS=2 scripts/ct3d-gpu.sh ...
set -euo pipefail

if [[ $# -lt 2 ]]; then
  sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'
  exit 64
fi
UMAMBA=$(realpath "$1")
DATA=$(realpath "$2")
WORK=${3:-$(mktemp -d "${TMPDIR:-/tmp}/ct3d-gpu.XXXXXX")}
mkdir -p "$WORK"
WORK=$(realpath "$WORK")

DEVICE=${CT3D_DEVICE:-auto}
EPOCHS=${CT3D_EPOCHS:-40}
ITERATIONS=${CT3D_ITERATIONS:-25}
STAGES=${CT3D_STAGES:-4}
BASE=${CT3D_BASE_FEATURES:-16}
MAXF=${CT3D_MAX_FEATURES:-128}
ARCH=${CT3D_ARCH:-bot}
PRECISION=${CT3D_PRECISION:-auto}
TARGET=${CT3D_TARGET_SPACING:-2.5,1.5,1.5}
AUGMENT=${CT3D_AUGMENT:-1}

[[ -x "$UMAMBA" ]] || { echo "ct3d-gpu: $UMAMBA is not an executable" >&2; exit 64; }
for f in example_ct_sm.nii.gz example_seg.nii.gz; do
  [[ -f "$DATA/$f" ]] || { echo "ct3d-gpu: $DATA/$f is missing" >&2; exit 64; }
done

echo "== ct3d-gpu: $(date -u +%FT%TZ) on $(hostname); work folder $WORK"
"$UMAMBA" --version 2>/dev/null || true
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true

# ---- nnU-Net raw dataset: one case, labels 0..117 declared (TotalSegmentator's ids, 41 present;
# nnU-Net wants every value up to the largest declared).
RAW="$WORK/Dataset990_CT3D"
rm -rf "$RAW"
mkdir -p "$RAW/imagesTr" "$RAW/labelsTr"
cp "$DATA/example_ct_sm.nii.gz" "$RAW/imagesTr/ct_0000.nii.gz"
cp "$DATA/example_seg.nii.gz" "$RAW/labelsTr/ct.nii.gz"
{
  echo '{'
  echo '  "name": "CT3D", "description": "TotalSegmentator example CT, one case",'
  echo '  "channel_names": {"0": "CT"},'
  echo '  "labels": {'
  for i in $(seq 0 117); do
    case $i in
      0) n=background ;; 1) n=spleen ;; 2) n=kidney_right ;; 3) n=kidney_left ;;
      4) n=gallbladder ;; 5) n=liver ;; 6) n=stomach ;; 7) n=pancreas ;; 52) n=aorta ;;
      63) n=inferior_vena_cava ;; *) n=label_$i ;;
    esac
    sep=","; [[ $i -eq 117 ]] && sep=""
    echo "    \"$n\": $i$sep"
  done
  echo '  },'
  echo '  "numTraining": 1, "file_ending": ".nii.gz"'
  echo '}'
} >"$RAW/dataset.json"

# ---- plans
"$UMAMBA" plan "$RAW" -o "$WORK/plans.json" --configurations 3d_fullres
if [[ "$TARGET" != "plans" ]]; then
  command -v python3 >/dev/null || { echo "ct3d-gpu: CT3D_TARGET_SPACING needs python3 (or set it to 'plans')" >&2; exit 64; }
  python3 - "$WORK/plans.json" "$TARGET" <<'PY'
import json, sys
path, target = sys.argv[1], [float(v) for v in sys.argv[2].split(",")]
assert len(target) == 3, "CT3D_TARGET_SPACING: three values z,y,x"
plans = json.load(open(path))
c = plans["configurations"]["3d_fullres"]
print(f"plans 3d_fullres spacing {c['spacing']} -> {target} (transpose_forward "
      f"{plans.get('transpose_forward')})")
c["spacing"] = target
json.dump(plans, open(path, "w"), indent=2)
PY
fi

# ---- train (one fold on the only case, validated on it)
MODEL="$WORK/model"
AUG_FLAG=--augment; [[ "$AUGMENT" == 0 ]] && AUG_FLAG=--no-augment
T0=$(date +%s)
"$UMAMBA" train "$RAW" -o "$MODEL" --plans "$WORK/plans.json" -c 3d_fullres -a "$ARCH" \
  --fold all --epochs "$EPOCHS" --iterations "$ITERATIONS" --stages "$STAGES" \
  --base-features "$BASE" --max-features "$MAXF" --device "$DEVICE" --precision "$PRECISION" \
  --val-every "$(( EPOCHS > 10 ? EPOCHS / 4 : 1 ))" "$AUG_FLAG" --progress lines
T1=$(date +%s)

# ---- predict the volume back (resampling on: the default) and score it per organ
PRED="$WORK/pred"
GT="$WORK/gt"
rm -rf "$PRED" "$GT"
mkdir -p "$GT"
cp "$DATA/example_seg.nii.gz" "$GT/ct_0000.nii.gz"
"$UMAMBA" predict "$RAW/imagesTr/ct_0000.nii.gz" -m "$MODEL" -o "$PRED" --device "$DEVICE" \
  --suffix "" --progress lines
T2=$(date +%s)
"$UMAMBA" evaluate --gt "$GT" --pred "$PRED" --metric dsc -o "$WORK/eval"
T3=$(date +%s)

echo "== resampling recorded by predict:"
sed -n '/"resampling"/,/}/p' "$PRED/umamba_predict.json" | grep . || echo "(none recorded: resampling off or not applicable)"
echo "== per-organ DSC ($WORK/eval):"
for f in "$WORK"/eval/*.csv; do echo "-- $f"; cat "$f"; done
echo "== times: train $((T1 - T0)) s, predict $((T2 - T1)) s, evaluate $((T3 - T2)) s"
echo "== settings: arch $ARCH, epochs $EPOCHS x $ITERATIONS iterations, stages $STAGES, features $BASE..$MAXF, device $DEVICE, precision $PRECISION, target spacing $TARGET, augmentation $AUGMENT"
