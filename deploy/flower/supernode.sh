#!/usr/bin/env bash
# One lab's Flower SuperNode, connecting to the coordinator's SuperLink over TLS.
#
#   deploy/flower/supernode.sh CA_PEM SUPERLINK_HOST:PORT DATA_FILE LAB_KEY [BASE_MODULE_DIR]
#
# CA_PEM is the coordinator's ca.pem (from deploy/make-certs.sh; public, copy it to the lab).
# DATA_FILE is the lab's dataset (it never leaves this machine: only the module's trainable
# tensors and MAEs do), LAB_KEY the lab's Ed25519 private key (moma-client keys init, 0600),
# BASE_MODULE_DIR the base module folder the federation trains from (required for adapter runs).
# SUPERNODE_PORT (default 9094) is this node's local Runtime API port (loopback only).
set -euo pipefail
ca=${1:?usage: supernode.sh CA_PEM SUPERLINK_HOST:PORT DATA_FILE LAB_KEY [BASE_MODULE_DIR]}
superlink=${2:?SUPERLINK_HOST:PORT}
data=${3:?DATA_FILE}
key=${4:?LAB_KEY}
base=${5:-}
venv_bin=$(dirname "$(command -v flower-supernode)")
export PATH="$venv_bin:$PATH"   # Flower starts flwr-clientapp by name
config="data=\"$data\" key=\"$key\""
[ -n "$base" ] && config="$config base=\"$base\""
exec flower-supernode --superlink "$superlink" --root-certificates "$ca" \
  --host 127.0.0.1 --port "${SUPERNODE_PORT:-9094}" --node-config "$config"
