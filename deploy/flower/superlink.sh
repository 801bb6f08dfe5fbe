#!/usr/bin/env bash
# The coordinator's Flower SuperLink, over TLS (DESIGN.md section 8).
#
#   deploy/flower/superlink.sh CERT_DIR [HOST] [PORT] [STATE_DIR]
#
# CERT_DIR holds ca.pem, superlink.pem and superlink.key, made by
#   deploy/make-certs.sh -o CERT_DIR -n superlink superlink.example.org
# (the name(s) the labs' SuperNodes dial must be in the certificate). HOST defaults to 0.0.0.0
# (every interface: the labs connect from elsewhere), PORT to 8000 (Fleet, Control and Runtime
# APIs share it in Flower 1.42). STATE_DIR keeps the SuperLink's database (default: in memory).
# The ServerApp and ClientApp are this project's installed package, so runtime dependency
# installation (which needs the internet) is disabled.
set -euo pipefail
certs=${1:?usage: superlink.sh CERT_DIR [HOST] [PORT] [STATE_DIR]}
host=${2:-0.0.0.0}
port=${3:-8000}
state=${4:-}
venv_bin=$(dirname "$(command -v flower-superlink)")
export PATH="$venv_bin:$PATH"   # Flower starts flower-superexec / flwr-serverapp by name
args=(--host "$host" --port "$port"
      --ssl-certfile "$certs/superlink.pem" --ssl-keyfile "$certs/superlink.key"
      --ssl-ca-certfile "$certs/ca.pem"
      --disable-runtime-dependency-installation)
if [ -n "$state" ]; then
  mkdir -p "$state"
  args+=(--database "$state/superlink.db")
fi
exec flower-superlink "${args[@]}"
