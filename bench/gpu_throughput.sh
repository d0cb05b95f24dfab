#!/usr/bin/env bash
# The GPU check of bench/throughput.py, as one prepared run on a lent H100/H200 (the device
# tool): the wheels the GPU image lacks travel in .whl/ (see README, Performance).
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
out=${OUT:-/tmp}
python3 bench/throughput.py --model random-7b --pages "${PAGES:-96}" --baseline-pages 6 \
  --documents 24 --batch-size "${BATCH:-32}" --max-new-tokens 128 --tiling anyres,auto 2>&1 \
  | grep -v -i "warning" | tee "$out/throughput.txt"
