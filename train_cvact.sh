#!/usr/bin/env bash
# Train on CVACT with the authors' settings. Extra arguments pass through and win:
#   bash train_cvact.sh --data_root_cvact /data/CVACT/ --gpu 0,1
exec python "$(dirname "$0")/train.py" \
--data_root_cvact ./data/CVACT/ \
--gpu 0 \
--batch_size 32 \
--batch_size_val 32 \
--n_epochs 300 \
--CVACT \
"$@"
