#!/usr/bin/env bash
# Create the venv of the scgen 2.1.0 peer (outside the repository), as in /work/shared/PEERS.md.
# Usage: benchmarks/peers/setup_scgen_venv.sh [VENV]   (default /tmp/scgen_peer_venv)
set -euo pipefail
VENV="${1:-/tmp/scgen_peer_venv}"
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import scgen" 2>/dev/null; then
  echo "scgen venv ready at $VENV"; exit 0
fi
python3.11 -m venv "$VENV"
"$VENV/bin/pip" install -q "pip<24.1" "setuptools<81" wheel
"$VENV/bin/pip" install -q torch==2.13.0
cat > "$VENV/constraints.txt" <<'PINS'
scvi-tools==0.19.0
scgen==2.1.0
numpy==1.23.5
pandas==1.5.3
anndata==0.8.0
scanpy==1.9.3
scipy==1.10.1
pytorch-lightning==1.7.7
torchmetrics==0.10.3
jax==0.4.13
jaxlib==0.4.13
flax==0.7.0
optax==0.1.5
chex==0.1.7
numpyro==0.12.1
matplotlib==3.6.3
scikit-learn==1.2.2
numba==0.57.1
h5py==3.8.0
setuptools<81
PINS
"$VENV/bin/pip" install -q -c "$VENV/constraints.txt" scvi-tools==0.19.0 scgen==2.1.0 \
  numpy==1.23.5 pandas==1.5.3 anndata==0.8.0 scanpy==1.9.3 scipy==1.10.1 \
  pytorch-lightning==1.7.7 torchmetrics==0.10.3 "setuptools<81"
"$VENV/bin/python" -c "import scgen, scvi; print('scgen', scgen.__version__, 'scvi', scvi.__version__)"
