#!/usr/bin/env bash
# The built-in job, no download needed: generate a synthetic world, train the paper's model on it
# from scratch on the CPU, test the best checkpoint, print the recall table, draw the figures and place three
# held-out panoramas on the world's orthophoto (a map page).
# Training stops after $DEMO_MINUTES (default 11) whatever the machine, so the whole demo ends within
# about 14 minutes on 2 cores (a minute of it places the three panoramas). Everything goes under $DEMO_DIR (default ./demo).
#
# The images are smaller than the paper's and the learning rate is 10x the paper's, so that training
# from scratch gets somewhere in minutes on a CPU; the network and the loss are the paper's, and there
# is no augmentation, as in the paper. The size follows the CPU ($DEMO_SIZE): 64x64 aerial / 32x128
# ground (8x8 and 4x16 attention cells) where it has bf16 instructions, 32x32 / 16x64 elsewhere, where
# float32 runs at about a third of the speed and bf16 is slower still.
set -euo pipefail
mkdir -p "${DEMO_DIR:-./demo}"
out=$(cd "${DEMO_DIR:-./demo}" && pwd)
cd "$(dirname "$0")"
epochs=${DEMO_EPOCHS:-100}  # the time box ends training first
pairs=${DEMO_PAIRS:-6000}  # more pairs beat more epochs over fewer (README: the demo)
schedule=${DEMO_SCHEDULE:-constant}  # cosine: warm-up, then cosine decay to 0 at the end of the time box
size=${DEMO_SIZE:-$(python -c "from engine.build import cpu_has_fast_bf16; print(64 if cpu_has_fast_bf16() else 32)")}
world="$out/world_${size}_${pairs}"
sizes=(--sat_size_h "$size" --sat_size_w "$size" --grd_size_h $((size / 2)) --grd_size_w $((size * 2)))
data=(--CVUSA --data_root_cvusa "$world/CVUSA")
stamp=$(date +%Y%m%d-%H%M%S)
echo "demo: ${size}x${size} aerial, $((size / 2))x$((size * 2)) ground, $pairs training pairs, ${DEMO_MINUTES:-11} minutes," \
  "$schedule learning rate"

if [ ! -f "$world/CVUSA/splits/val-19zl.csv" ] || [ ! -f "$world/orthophoto/map.tif" ]; then  # older worlds lack the orthophoto
  python -m dataset.synthetic --out "$world" --num_train "$pairs" --num_val 500 --seed 0 \
    --sat_size "$size" "$size" --grd_size $((size / 2)) $((size * 2)) --vigor_per_city 0 \
    --plot "$out/synthetic_pairs.png"
fi
python train.py "${data[@]}" "${sizes[@]}" --gpu -1 --no_pretrained --lr 1e-3 \
  --precision "${DEMO_PRECISION:-auto}" --n_epochs "$epochs" --max_time "${DEMO_MINUTES:-11}" --batch_size 32 \
  --lr_schedule "$schedule" --cache_dir "$out/cache" --results_dir "$out/runs" --name "train_$stamp"
# The checkpoint carries its sizes: testing and drawing need no size flag.
python test.py "${data[@]}" --gpu -1 --cache_dir "$out/cache" \
  --checkpoint "$out/runs/train_$stamp/best.ckpt" --results_dir "$out/runs" --name "test_$stamp"
python visualize.py "${data[@]}" --gpu -1 \
  --checkpoint "$out/runs/train_$stamp/best.ckpt" --num_samples 3 --out "$out/runs/test_$stamp/attention_maps.png"
# Three held-out panoramas placed on the world's orthophoto, with their true positions for the errors.
python localize.py --checkpoint "$out/runs/train_$stamp/best.ckpt" --gpu -1 \
  --orthophoto "$world/orthophoto/map.tif" --tile_m synthetic --index "$out/runs/localize_$stamp/index" \
  --truth "$world/orthophoto/panoramas.csv" --out "$out/runs/localize_$stamp" \
  "$world/CVUSA/grd/$(printf %07d $((pairs + 1))).png" "$world/CVUSA/grd/$(printf %07d $((pairs + 2))).png" \
  "$world/CVUSA/grd/$(printf %07d $((pairs + 3))).png"
echo "checkpoint: $out/runs/train_$stamp/best.ckpt"
echo "figures: $out/runs/test_$stamp/{recall_curve,retrievals,attention_maps}.png"
echo "map: $out/runs/localize_$stamp/map.html"
