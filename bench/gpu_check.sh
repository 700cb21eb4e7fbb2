#!/usr/bin/env bash
# Issue 15's device checks as one prepared run, for a session that is lent a GPU machine (one H100/H200 or more).
#
#   OUT=/some/folder bash bench/gpu_check.sh      # writes gpu.txt, train_step.md and scaling.md there
#
# What it measures (each step bounded by `timeout`, so the whole run fits a 10-minute command):
# - the card, driver and torch build;
# - bench/train_step.py --device cuda: ViT-L/16 at 16x224^2 in bf16 autocast (SDPA picks flash attention), the
#   pretraining step and the fine-tuning steps: clips/s, TFLOP/s, MFU against the card's dense bf16 peak, peak memory;
# - bench/scaling.py --device cuda: DDP vs FSDP2 with 1 process, and with every GPU of the machine when it has more
#   than one;
# - bench/kernel_share.py is CPU-only (torch.profiler CPU self times) and is not run here.
# The GPU image has torch but not this package: the source tree is put on PYTHONPATH.
set -uo pipefail
OUT=${OUT:-runs/gpu_check}
PY=${PY:-python3}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(), 'x', torch.cuda.device_count())"
} 2>&1 | tee "$OUT/gpu.txt"
timeout 330 "$PY" bench/train_step.py --device cuda --repeats 3 --steps 3 2>&1 | tee "$OUT/train_step.md"
ngpu=$("$PY" -c "import torch; print(torch.cuda.device_count())" 2>/dev/null || echo 1)
nproc=1; [ "${ngpu:-1}" -gt 1 ] && nproc="1,$ngpu"
timeout 200 "$PY" bench/scaling.py --device cuda --nproc "$nproc" --steps 6 --warmup 2 2>&1 | tee "$OUT/scaling.md"
echo "done: $OUT"
