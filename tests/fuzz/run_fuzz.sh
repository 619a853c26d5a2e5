#!/bin/sh
# Builds the reader fuzz targets with clang (libFuzzer + ASan + UBSan) and runs each for a fixed
# time on the seed files. Called by the CTest test Io_Fuzz.readers; also usable by hand:
#   tests/fuzz/run_fuzz.sh SOURCE_DIR FUZZ_BUILD_DIR [SECONDS [SHARED_DATA_DIR]]
# The corpus grows in FUZZ_BUILD_DIR/corpus-*; crashes are written there as crash-* files.
set -eu
src=$1
out=$2
seconds=${3:-20}
shared=${4:-}
flags="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
if [ ! -f "$out/build.ninja" ]; then
  CC=clang CXX=clang++ cmake -S "$src" -B "$out" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DUMAMBA_FUZZ=ON -DUMAMBA_TORCH=OFF -DUMAMBA_OPENCV=OFF -DUMAMBA_CUDA=OFF -DUMAMBA_TESTS=ON \
    "-DCMAKE_C_FLAGS=$flags" "-DCMAKE_CXX_FLAGS=$flags" >"$out.configure.log" 2>&1 ||
    { cat "$out.configure.log"; exit 1; }
fi
cmake --build "$out" --target fuzz_tiff fuzz_nifti -j 2

# Seeds: the real files, the small generated files in tests/fuzz/seeds, and past findings
# (tests/fuzz/regressions, each also a named GoogleTest case).
for kind in tiff nifti; do
  mkdir -p "$out/seeds-$kind" "$out/corpus-$kind"
done
cp -f "$src"/examples/data/dsb2018/*.tif "$src"/examples/data/go-nuclear/*.tif "$out/seeds-tiff/"
cp -f "$src"/tests/fuzz/seeds/*.tif "$src"/tests/fuzz/regressions/*.tif "$out/seeds-tiff/"
if [ -n "$shared" ] && [ -d "$shared/cells2d/neurips-cellseg/labels" ]; then
  cp -f "$shared"/cells2d/neurips-cellseg/labels/*.tif* "$out/seeds-tiff/"
fi
cp -f "$src"/examples/data/totalsegmentator/*.nii.gz "$src"/tests/fuzz/seeds/*.nii* \
  "$out/seeds-nifti/"

status=0
for kind in tiff nifti; do
  echo "== fuzz_$kind for $seconds s"
  (cd "$out" && ./tests/fuzz/fuzz_$kind -max_total_time="$seconds" -timeout=10 \
    -max_len=131072 -malloc_limit_mb=1024 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$out/" \
    "corpus-$kind" "seeds-$kind") || status=1
done
exit $status
