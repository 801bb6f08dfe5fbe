#!/usr/bin/env bash
# The whole AMC results plan, in the order that answers the main question first. Resumable:
# every finished run is a file under benchmarks/results/amc/, skipped when run again; hub
# modules are kept under $MOMA_RUNS/hub/ (default ~/.cache/moma/runs, outside the work tree;
# not committed: rebuilt by amc_hub.py on a new machine).
# Two processes with one thread each use 2 cores better than one with two threads:
#   OMP_NUM_THREADS=1 bash benchmarks/run_plan.sh cgcnn &
#   OMP_NUM_THREADS=1 bash benchmarks/run_plan.sh chgnet &
set -euo pipefail
cd "$(dirname "$0")"
py=../.venv/bin/python
part=${1:-all}
if [ "$part" = cgcnn ] || [ "$part" = all ]; then
  $py amc_hub.py --family cgcnn-full --family cgcnn-adapter --profile full
  $py amc_results.py --hub cgcnn --splits seed0,seed1,seed2
  $py amc_results.py --hub moe18 --splits seed0,seed1,seed2
  $py amc_results.py --hub fewshot --train-size 100 --splits seed0
  $py amc_results.py --hub fewshot --train-size 10 --splits seed0
  $py amc_results.py --hub remedies2 --splits seed0
  $py amc_results.py --hub fewshot --train-size 100 --splits seed1,seed2
  $py amc_results.py --hub fewshot --train-size 10 --splits seed1,seed2
  $py amc_results.py --hub remedies --splits seed1,seed2
  $py amc_results.py --hub adapter-control --splits seed0,seed1,seed2
  $py amc_results.py --hub cgcnn --splits seed3,seed4
  $py amc_results.py --hub moe18 --splits seed3,seed4
fi
if [ "$part" = chgnet ] || [ "$part" = all ]; then
  $py amc_results.py --hub chgnet --splits seed0 --only backbone-ft
  $py amc_hub.py --family chgnet-full --profile full
  $py amc_results.py --hub chgnet --splits seed0 --only amc-full
  $py amc_hub.py --family chgnet-adapter --profile full
  $py amc_results.py --hub chgnet --splits seed0 --only amc-adapter
  $py amc_results.py --hub chgnet --splits seed0 --only adapter-ft
  $py amc_results.py --hub chgnet-lr --splits seed0
fi
$py results_table.py
