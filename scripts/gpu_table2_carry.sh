#!/bin/sh
# Fill .carry/ (git-ignored) with what scripts/gpu_table2.py needs on a GPU machine that has torch
# but no hydra-core/omegaconf and no package index: their wheels (antlr4-python3-runtime ships only
# as source, so pip builds its wheel here), a PyYAML wheel for Python 3.12 (used only where yaml is
# missing), the full CIFAR-10 as JPEG copies and the lossless first 1,000 test images.
#   scripts/gpu_table2_carry.sh [PYTHON] [SHARED_DATA]      (make wheels)
set -eu
PY=${1:-python3}
SHARED=${2:-${FRX_SHARED_DATA:-../shared/data}}
CARRY=.carry
for f in "$SHARED/cifar10/cifar10-jpeg.npz" "$SHARED/cifar10/cifar10-subset.npz"; do
    [ -f "$f" ] || { echo "gpu_table2_carry: error: $f is missing (set FRX_SHARED_DATA)" >&2; exit 1; }
done
mkdir -p $CARRY/wheels
# versions: those frx is developed and tested with
"$PY" -m pip wheel -q --no-deps -w $CARRY/wheels hydra-core==1.3.8 omegaconf==2.3.1 antlr4-python3-runtime==4.9.3
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d $CARRY/wheels PyYAML==6.0.4
cmp -s "$SHARED/cifar10/cifar10-jpeg.npz" $CARRY/cifar10-jpeg.npz 2>/dev/null || { cp "$SHARED/cifar10/cifar10-jpeg.npz" $CARRY/ && chmod u+w $CARRY/cifar10-jpeg.npz; }
"$PY" - "$SHARED/cifar10/cifar10-subset.npz" $CARRY/cifar10-lossless-test1k.npz <<'PYEOF'
import sys
import numpy as np
z = np.load(sys.argv[1])
np.savez_compressed(sys.argv[2], x_test=z["x_test"], y_test=z["y_test"])
PYEOF
ls -l $CARRY/wheels $CARRY/*.npz
total=$(du -sb $CARRY --exclude=$CARRY/venv | cut -f1)
echo "carry: $total bytes in $CARRY"
[ "$total" -le $((60 * 1024 * 1024)) ] || { echo "gpu_table2_carry: error: $CARRY is over 60 MiB" >&2; exit 1; }
