#!/usr/bin/env bash
# The STEM ablation: the five variants of the STEM paper's table, each trained with the same budget and recipe
# (STEPS steps of 2 x 8 GOPs of 4 frames at 16x16 latents, rate + distortion, from the intra model), then measured by
# benchmarks/video_rd.py on the development clips against all-intra (BD-rate, bpp and PSNR-RGB at q = 4).
#
#   bash benchmarks/stem_ablation.sh                 # STEPS=800, two single-thread DDP processes (a 2-core CPU)
#   STEPS=3000 NPROC=1 bash benchmarks/stem_ablation.sh
#
# Checkpoints go to checkpoints/ablation-<variant>, exported models to .data/ablation-models (not shipped).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
D=${DATA:-../shared/data}
STEPS=${STEPS:-800}
NPROC=${NPROC:-2}
MODELS=.data/ablation-models
DATA_ARGS=(--data "$D/clips/vtest.avi" --data "$D/clips/WolfgangLanger_Pexels.mp4" --data "$D/clips/no_face.mp4"
           --data "$D/clips/face_noface.mov" --data "$D/clips/bigbuckbunny.mp4" --data "$D/clips/trailer_bbb.mp4"
           --data "$D/clips/Megamind.avi" --data "$D/clips/cube_384x288_gray.mkv" --data "$D/photos-1024")
mkdir -p "$MODELS"
VARIANT_ARGS=()
for v in full no-spm no-tpm no-spm-tpm residual; do
    if [ ! -f "$MODELS/stem-$v.safetensors" ]; then
        RESUME=()
        if [ -f "checkpoints/ablation-$v/state.json" ]; then RESUME=(--resume "checkpoints/ablation-$v"); fi
        OMP_NUM_THREADS=1 "$PY" -m torch.distributed.run --nproc_per_node="$NPROC" -m vcodec train stem "${DATA_ARGS[@]}" \
            --variant "$v" --out "checkpoints/ablation-$v" "${RESUME[@]}" --steps "$STEPS" --decay-from 0.7 \
            --batch-size 8 --crop 16 --frames 4 --lr 3e-4 --pretrained-lr-scale 0.1 --threads 1 --val-every 0 \
            --save-every 250 --name "ablation-$v" --device cpu
        "$PY" -m vcodec train export "checkpoints/ablation-$v" "stem-$v" --models "$MODELS" -y
    fi
    VARIANT_ARGS+=(--variant "$v=$MODELS/stem-$v.safetensors")
done
"$PY" benchmarks/video_rd.py --baselines none "${VARIANT_ARGS[@]}" --json benchmarks/results/stem_ablation.json "$@" \
    | tee benchmarks/results/stem_ablation.txt
