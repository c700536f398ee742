#!/usr/bin/env bash
# Train on CVUSA with the authors' settings. Extra arguments pass through and win:
#   bash train_cvusa.sh --data_root_cvusa /data/CVUSA/ --gpu 0,1
exec python "$(dirname "$0")/train.py" \
--data_root_cvusa ./data/CVUSA/ \
--gpu 0 \
--batch_size 32 \
--batch_size_val 32 \
--n_epochs 300 \
--CVUSA \
"$@"
