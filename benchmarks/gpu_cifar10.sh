#!/usr/bin/env bash
# The paper-scale CIFAR-10 recipe on a GPU, briefly, plus the realistic step-cost suite: time per epoch (the stages'
# wall seconds in report.json over their epochs), SAM / SGD and Sharp MinMax / NegGrad+SAM step-time ratios and peak
# GPU memory (gpu_check.json). Copy the data along first (train.parquet + test.parquet, 55 MB), e.g. into
# runs/cifar10-data, then:
#
#   bash benchmarks/gpu_cifar10.sh runs/cifar10-data runs/gpu-cifar10
#
# It writes OUT/cifar10-resnet18/ (a 3-epoch original, its reference, the recipe's runs at 1 epoch each) and
# OUT/gpu_check/{gpu_check.json,gpu_check.md}; copy both JSON files to benchmarks/results/ with the date.
set -euo pipefail
DATA=${1:?the CIFAR-10 parquet folder}
OUT=${2:-runs/gpu-cifar10}
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU visible')"
hf-unlearn run cifar10-resnet18 --set "data.source=$DATA" --set pretrain.epochs=3 --set unlearn.defaults.epochs=1 \
    --output-dir "$OUT/cifar10-resnet18"
python benchmarks/gpu_check.py --suite realistic --out "$OUT/gpu_check"
python - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
reports = sorted((out / "cifar10-resnet18").rglob("report.json"))
for path in reports:
    models = json.loads(path.read_text())["models"]
    for name, entry in models.items():
        epochs = 3 if name in ("original", "retrain") else 1
        print(f"{path.parent.name:8s} {name:18s} {entry['wall_seconds'] / epochs:8.1f} s per epoch (incl. scoring)")
PY
