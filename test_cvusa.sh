#!/usr/bin/env bash
# Evaluate the published CVUSA weights (put them at ./weight/cvusa.pth). Extra arguments pass through and win:
#   bash test_cvusa.sh --data_root_cvusa /data/CVUSA/ --checkpoint RESULTS/run/best.ckpt
exec python "$(dirname "$0")/test.py" \
--data_root_cvusa ./data/CVUSA/ \
--gpu 0 \
--batch_size_val 32 \
--checkpoint ./weight/cvusa.pth \
--CVUSA \
"$@"
