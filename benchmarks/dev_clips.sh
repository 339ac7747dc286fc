#!/usr/bin/env bash
# The development-clip table in benchmarks/README.md: vcodec against x264, x265 and SVT-AV1 on three short clips.
#
#   bash benchmarks/dev_clips.sh                   # CLIPS=../shared/data/clips FRAMES=16 DEVICE=cpu by default
#   THREADS=1 bash benchmarks/dev_clips.sh         # torch on one thread (a machine whose other core is busy)
#   FRAMES=32 DEVICE=cuda bash benchmarks/dev_clips.sh
#
# Writes benchmarks/results/dev_clips.{txt,json,png}: the printed tables, the CompressAI-format results, the RD plot.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
CLIPS=${CLIPS:-../shared/data/clips}
FRAMES=${FRAMES:-16}
DEVICE=${DEVICE:-cpu}
mkdir -p benchmarks/results
if [ -n "${THREADS:-}" ]; then export OMP_NUM_THREADS="$THREADS"; fi
"$PY" -m vcodec bench "$CLIPS/bikes.mp4" "$CLIPS/realshort.mp4" "$CLIPS/single_face.mp4" \
    --frames "$FRAMES" --gop "$FRAMES" --qualities 0,2,4,6 --baselines x264,x265,svtav1 --device "$DEVICE" \
    --json benchmarks/results/dev_clips.json --plot benchmarks/results/dev_clips.png -y "$@" \
    | tee benchmarks/results/dev_clips.txt
