#!/bin/sh
# Fill the git-ignored carry folder of a table with what scripts/gpu_run.py needs on a GPU machine
# that has torch but no hydra-core/omegaconf and no package index: their wheels (antlr4-python3-runtime
# ships only as source, so pip builds its wheel here), a PyYAML wheel for Python 3.12 (used only where
# yaml is missing), and the table's data:
#   Table 2, .carry/:        the full CIFAR-10 as JPEG copies and the lossless first 1,000 test images
#   Table 4, .carry-table4/: MNIST's four .gz files (mnist/)
#   scripts/gpu_carry.sh 2|4 [PYTHON] [SHARED_DATA]      (make wheels, make wheels-table4)
set -eu
TABLE=${1:-}
PY=${2:-python3}
SHARED=${3:-${FRX_SHARED_DATA:-../shared/data}}
MNIST="train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz"
case "$TABLE" in
    2) CARRY=.carry; NEED="$SHARED/cifar10/cifar10-jpeg.npz $SHARED/cifar10/cifar10-subset.npz" ;;
    4) CARRY=.carry-table4; NEED=$(for f in $MNIST; do printf '%s ' "$SHARED/mnist/$f"; done) ;;
    *) echo "gpu_carry: error: the first argument is the table, 2 or 4 (got '$TABLE')" >&2; exit 1 ;;
esac
for f in $NEED; do
    [ -f "$f" ] || { echo "gpu_carry: error: $f is missing (set FRX_SHARED_DATA)" >&2; exit 1; }
done
mkdir -p $CARRY/wheels
# versions: those frx is developed and tested with
"$PY" -m pip wheel -q --no-deps -w $CARRY/wheels hydra-core==1.3.8 omegaconf==2.3.1 antlr4-python3-runtime==4.9.3
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d $CARRY/wheels PyYAML==6.0.4
copy() {  # copy $1 into folder $2 unless an identical copy is there
    cmp -s "$1" "$2/$(basename "$1")" 2>/dev/null || { cp "$1" "$2/" && chmod u+w "$2/$(basename "$1")"; }
}
if [ "$TABLE" = 2 ]; then
    copy "$SHARED/cifar10/cifar10-jpeg.npz" $CARRY
    "$PY" - "$SHARED/cifar10/cifar10-subset.npz" $CARRY/cifar10-lossless-test1k.npz <<'PYEOF'
import sys
import numpy as np
z = np.load(sys.argv[1])
np.savez_compressed(sys.argv[2], x_test=z["x_test"], y_test=z["y_test"])
PYEOF
    ls -l $CARRY/wheels $CARRY/*.npz
else
    mkdir -p $CARRY/mnist
    for f in $MNIST; do copy "$SHARED/mnist/$f" $CARRY/mnist; done
    ls -l $CARRY/wheels $CARRY/mnist
fi
total=$(du -sb $CARRY --exclude=$CARRY/venv | cut -f1)
echo "carry: $total bytes in $CARRY"
[ "$total" -le $((60 * 1024 * 1024)) ] || { echo "gpu_carry: error: $CARRY is over 60 MiB" >&2; exit 1; }
