#!/usr/bin/env bash
# The main job: the whole MoMa Hub story on loopback, with the embedded defaults (SQLite
# metadata and a local blob store in runs/demo/hub, a `moma-hub serve` process on 127.0.0.1).
#
#   1. an operator creates a hub and starts it;
#   2. two labs create key pairs, and the operator enrolls their public keys;
#   3. lab A contributes the shared base (the pretrained MoE-(18) mp_eform CGCNN) and a module
#      fine-tuned from it on castelli perovskite formation energies; lab B contributes one
#      fine-tuned from the same base on castelli direct band gaps (real shared data, few epochs);
#   4. the operator approves them (the hub countersigns each);
#   5. a downstream owner composes for jarvis_2d_eform, a task none of them trained on: the
#      client lists approved candidates, downloads and verifies them (contributor and hub
#      signatures, sha256), and runs AMC and fine-tuning locally; its data never leaves.
#
# Knobs: DEMO_EPOCHS (lab training epochs, default 2), DEMO_MAX_TRAIN (lab training structures,
# default 500), DEMO_COMPOSE_EPOCHS (default 12), DEMO_OUT (default runs/demo), DEMO_BIN (the
# folder holding moma-hub and moma-client, default .venv/bin). The hub is stopped on exit, even on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
shared="${MOMA_SHARED:-$(cd .. && pwd)/shared}"
export MOMA_SHARED="$shared"
task="$shared/data/downstream/jarvis_2d_eform.json.gz"
castelli="$shared/data/hub/castelli_perovskites.json.gz"
for needed in "$task" "$castelli" "$shared/modules/moe18-cgcnn"; do
  if [ ! -e "$needed" ]; then
    cat >&2 <<MSG
No shared data at $shared (missing $needed).
Point MOMA_SHARED at the shared data folder (datasets and the MoE-(18) modules).
Without it, modules can still be trained on a matminer dataset by name (downloaded once, needs
internet), e.g.:
  .venv/bin/moma-client train --data matminer:jarvis_dft_2d --target exfoliation_en \
      --split random --out runs/exfoliation
MSG
    exit 3
  fi
done

out="${DEMO_OUT:-runs/demo}"
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac
bin="${DEMO_BIN:-.venv/bin}"
epochs="${DEMO_EPOCHS:-2}"
max_train="${DEMO_MAX_TRAIN:-500}"
compose_epochs="${DEMO_COMPOSE_EPOCHS:-12}"
# The demo's own trust store: its hub is new on every run, so it must not touch the user's.
export MOMA_KNOWN_HUBS="$out/known_hubs.json"
say() { printf '\n== %s\n' "$*"; }

rm -rf "$out"
mkdir -p "$out"

say "Operator: creating a hub (hub key, operator key, hub id) in $out/hub"
$bin/moma-hub init --store "$out/hub" --hub-id demo-hub --json > "$out/hub-init.json"
hub_key=$($bin/python -c 'import json,sys; print(json.load(open(sys.argv[1]))["hub_public_key"])' "$out/hub-init.json")
operator=(--operator-key "$out/hub/operator_key.pem" --insecure)
echo "hub public key (labs and owners pin it): $hub_key"

say "Operator: starting moma-hub serve on 127.0.0.1 (plaintext, loopback only; SQLite + local store)"
$bin/moma-hub serve --store "$out/hub" --listen 127.0.0.1:0 \
  --operator-key "$out/hub/operator_key.pub.pem" --insecure >"$out/hub.out" 2>"$out/hub.log" &
hub_pid=$!
trap 'kill "$hub_pid" 2>/dev/null && wait "$hub_pid" 2>/dev/null; echo "(hub stopped)"' EXIT
for _ in $(seq 240); do
  grep -q "listening on" "$out/hub.out" 2>/dev/null && break
  kill -0 "$hub_pid" 2>/dev/null || { cat "$out/hub.log" >&2; exit 1; }
  sleep 0.5
done
addr=$(sed -n 's/.*listening on \([^ ]*\).*/\1/p' "$out/hub.out")
[ -n "$addr" ] || { echo "the hub did not start; see $out/hub.log" >&2; exit 1; }
cat "$out/hub.out"
hub=(--hub "$addr" --insecure --hub-key "$hub_key")

for lab in lab-a lab-b; do
  say "$lab: creating its Ed25519 key pair (private key mode 0600)"
  $bin/moma-client keys init --out "$out/$lab/lab_key.pem"
  say "Operator: enrolling $lab's public key"
  $bin/moma-hub keys enroll "$lab" "$out/$lab/lab_key.pub.pem" --hub "$addr" "${operator[@]}"
done

say "lab-a: importing the pretrained MoE-(18) CGCNNs; mp_eform is the labs' shared base"
$bin/moma-client modules import-moe18 --out "$out/lab-a/moe18" > /dev/null
base="$out/lab-a/moe18/mp_eform"
say "lab-a: contributing the shared base (signed manifest, chunked upload)"
$bin/moma-client contribute "${hub[@]}" --key "$out/lab-a/lab_key.pem" --module "$base"

say "lab-a: fine-tuning the base on castelli perovskite formation energies ($max_train structures, $epochs epochs) and contributing it"
$bin/moma-client contribute "${hub[@]}" --key "$out/lab-a/lab_key.pem" \
  --data "$castelli" --target e_form --init "$base" --epochs "$epochs" --max-train "$max_train" \
  --lr 5e-4 --out "$out/lab-a/castelli_e_form"

say "lab-b: fine-tuning the same base on castelli direct band gaps and contributing it"
$bin/moma-client contribute "${hub[@]}" --key "$out/lab-b/lab_key.pem" \
  --data "$castelli" --target dir_gap --init "$base" --epochs "$epochs" --max-train "$max_train" \
  --lr 5e-4 --out "$out/lab-b/castelli_dir_gap"

say "Operator: reviewing pending modules and approving them (the hub countersigns each)"
$bin/moma-hub modules list --state pending --hub "$addr" --insecure
for id in $($bin/moma-client modules list "${hub[@]}" --state pending --json \
            | $bin/python -c 'import json,sys; print(" ".join(m["module_id"] for m in json.load(sys.stdin)))'); do
  $bin/moma-hub modules approve "$id" --note "demo review" --hub "$addr" "${operator[@]}"
done

say "Downstream owner: approved modules on the hub"
$bin/moma-client modules list "${hub[@]}"

say "Downstream owner: composing for jarvis_2d_eform (a task no lab trained on); only listings, cards and downloads go to the hub"
$bin/moma-client compose "${hub[@]}" --data "$task" --split seed0 --epochs "$compose_epochs" \
  --patience 5 --out "$out/owner/jarvis_2d_eform"

say "Downstream owner: the modules are cached by sha256 and verified; pulling again moves no bytes"
ids=$($bin/python -c 'import json,sys; print(" ".join(c["module_id"] for c in json.load(open(sys.argv[1]))["candidates"]))' \
        "$out/owner/jarvis_2d_eform/report.json")
# shellcheck disable=SC2086
$bin/moma-client modules pull $ids "${hub[@]}"

say "Operator: the hub's hash-chained audit log (every entry chains the previous one's hash)"
$bin/moma-hub audit --json --hub "$addr" "${operator[@]}" | $bin/python -c '
import json, sys
log = json.load(sys.stdin)
for e in log["entries"]:
    seq, time, action, subject, digest = (e[k] for k in ("seq", "time", "action", "subject", "entry_hash"))
    print(f"{seq:>3} {time} {action:15s} {subject[:16]:16s} entry hash {digest[:16]}")
print("chain verified:", log["verified"], log["problem"])
'
echo
echo "Done. Report: $out/owner/jarvis_2d_eform/report.json; hub store: $out/hub"
