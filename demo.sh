#!/usr/bin/env bash
# The built-in job, no download needed: generate a synthetic world, train the paper's model on it
# from scratch on the CPU, test the best checkpoint, print the recall table and draw the figures.
# About 12 minutes on 2 cores; training stops after $DEMO_MINUTES (default 11) whatever the machine, so
# the whole demo ends within about 13. Everything goes under $DEMO_DIR (default ./demo).
#
# The images are smaller than the paper's (32x32 aerial, 16x64 ground: 16 positions per attention
# map) and the learning rate is 10x the paper's, so that training from scratch gets somewhere in
# minutes on a CPU; the network and the loss are the paper's.
set -euo pipefail
mkdir -p "${DEMO_DIR:-./demo}"
out=$(cd "${DEMO_DIR:-./demo}" && pwd)
cd "$(dirname "$0")"
epochs=${DEMO_EPOCHS:-100}  # the time box ends training first
sizes=(--sat_size_h 32 --sat_size_w 32 --grd_size_h 16 --grd_size_w 64)
data=(--CVUSA --data_root_cvusa "$out/world/CVUSA")
stamp=$(date +%Y%m%d-%H%M%S)

if [ ! -f "$out/world/CVUSA/splits/val-19zl.csv" ]; then
  python -m dataset.synthetic --out "$out/world" --num_train 2000 --num_val 500 --seed 0 \
    --sat_size 32 32 --grd_size 16 64 --vigor_per_city 0 --plot "$out/synthetic_pairs.png"
fi
python train.py "${data[@]}" "${sizes[@]}" --gpu -1 --no_pretrained --lr 1e-3 \
  --precision "${DEMO_PRECISION:-auto}" --n_epochs "$epochs" --max_time "${DEMO_MINUTES:-11}" --batch_size 32 \
  --results_dir "$out/runs" --name "train_$stamp"
# The checkpoint carries its sizes: testing and drawing need no size flag.
python test.py "${data[@]}" --gpu -1 \
  --checkpoint "$out/runs/train_$stamp/best.ckpt" --results_dir "$out/runs" --name "test_$stamp"
python visualize.py "${data[@]}" --gpu -1 \
  --checkpoint "$out/runs/train_$stamp/best.ckpt" --num_samples 3 --out "$out/runs/test_$stamp/attention_maps.png"
echo "checkpoint: $out/runs/train_$stamp/best.ckpt"
echo "figures: $out/runs/test_$stamp/{recall_curve,retrievals,attention_maps}.png"
