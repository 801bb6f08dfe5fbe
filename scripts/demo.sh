#!/usr/bin/env bash
# The main job: train and evaluate one module on a real downstream task, then predict with it.
set -euo pipefail
cd "$(dirname "$0")/.."
shared="${MOMA_SHARED:-$(cd .. && pwd)/shared}"
data="$shared/data/downstream/jarvis_2d_eform.json.gz"
if [ ! -f "$data" ]; then
  cat >&2 <<MSG
No shared data at $shared (MOMA_SHARED).
Point MOMA_SHARED at the shared data folder, or use a matminer dataset by name (needs internet
once): .venv/bin/moma-client train --data matminer:jarvis_dft_2d --target exfoliation_energy ...
MSG
  exit 3
fi
out=runs/demo
bin=.venv/bin
echo "== Importing the 18 pretrained MoE-(18) CGCNN modules into $out/moe18"
rm -rf "$out"
$bin/moma-client modules import-moe18 --out "$out/moe18"
echo "== Training a CGCNN module from scratch on jarvis_2d_eform (published split seed0)"
$bin/moma-client train --data "$data" --backbone cgcnn --kind full --split seed0 \
  --epochs "${DEMO_EPOCHS:-150}" --patience 30 --lr 3e-3 --out "$out/jarvis_2d_eform-scratch"
echo "== Fine-tuning the imported mp_eform module on the same task"
$bin/moma-client train --data "$data" --backbone cgcnn --kind full --split seed0 \
  --init "$out/moe18/mp_eform" --epochs "${DEMO_EPOCHS:-150}" --patience 30 --lr 5e-4 \
  --out "$out/jarvis_2d_eform-from-mp_eform"
echo "== Predicting three structures with the fine-tuned module"
tmp=$(mktemp -d)
$bin/python - "$data" "$tmp" <<'PY'
import gzip, json, sys
from pymatgen.core import Structure
d = json.load(gzip.open(sys.argv[1]))
for r in d["records"][:3]:
    s = r["structure"]
    Structure(s["lattice"], s["species"], s["frac_coords"]).to(filename=f"{sys.argv[2]}/{r['id']}.cif")
    print(f"{r['id']}: reference {r['target']:.4f} eV/atom")
PY
$bin/moma-client predict --module "$out/jarvis_2d_eform-from-mp_eform" "$tmp"/*.cif
rm -rf "$tmp"
