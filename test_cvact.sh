#!/usr/bin/env bash
# Evaluate the published CVACT weights (put them at ./weight/cvact.pth). Extra arguments pass through and win:
#   bash test_cvact.sh --data_root_cvact /data/CVACT/ --checkpoint RESULTS/run/best.ckpt
exec python "$(dirname "$0")/test.py" \
--data_root_cvact ./data/CVACT/ \
--gpu 0 \
--batch_size_val 32 \
--checkpoint ./weight/cvact.pth \
--CVACT \
"$@"
