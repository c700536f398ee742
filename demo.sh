#!/usr/bin/env bash
# The built-in job, no download needed: generate a synthetic world, train the paper's model on it
# from scratch on the CPU, test the best checkpoint and print the recall table.
# About 15 minutes on 2 cores. Everything goes under $DEMO_DIR (default ./demo).
set -euo pipefail
mkdir -p "${DEMO_DIR:-./demo}"
out=$(cd "${DEMO_DIR:-./demo}" && pwd)
cd "$(dirname "$0")"
epochs=${DEMO_EPOCHS:-2}
sizes=(--sat_size_h 64 --sat_size_w 64 --grd_size_h 32 --grd_size_w 128)
stamp=$(date +%Y%m%d-%H%M%S)

if [ ! -f "$out/world/CVUSA/splits/val-19zl.csv" ]; then
  python -m dataset.synthetic --out "$out/world" --num_train 2000 --num_val 500 --seed 0 \
    --sat_size 64 64 --grd_size 32 128 --plot "$out/synthetic_pairs.png"
fi
python train.py --CVUSA --data_root_cvusa "$out/world/CVUSA" "${sizes[@]}" --gpu -1 --no_pretrained \
  --precision "${DEMO_PRECISION:-32}" --n_epochs "$epochs" --batch_size 32 \
  --results_dir "$out/runs" --name "train_$stamp"
python test.py --CVUSA --data_root_cvusa "$out/world/CVUSA" "${sizes[@]}" --gpu -1 \
  --checkpoint "$out/runs/train_$stamp/best.ckpt" --results_dir "$out/runs" --name "test_$stamp"
