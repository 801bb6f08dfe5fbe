#!/usr/bin/env bash
# The whole AMC results plan, in the order that answers the main question first. Resumable:
# every finished run is a file under benchmarks/results/amc/, skipped when run again.
set -euo pipefail
cd "$(dirname "$0")"
py=../.venv/bin/python
for split in seed0 seed1 seed2; do
  $py amc_results.py --hub cgcnn --splits $split --only backbone-ft,amc-full
  $py amc_results.py --hub cgcnn --splits $split --only scratch,select-average,all-average,random
  $py amc_hub.py --family cgcnn-adapter --profile full
  $py amc_results.py --hub cgcnn --splits $split --only amc-adapter
  $py amc_results.py --hub moe18 --splits $split
  if [ $split = seed0 ]; then
    $py amc_results.py --hub fewshot --train-size 100 --splits seed0
    $py amc_results.py --hub fewshot --train-size 10 --splits seed0
    $py amc_hub.py --family chgnet-full --family chgnet-adapter --profile full
    $py amc_results.py --hub chgnet --splits seed0
  fi
done
for split in seed3 seed4; do
  $py amc_results.py --hub cgcnn --splits $split
  $py amc_results.py --hub moe18 --splits $split
done
$py amc_results.py --hub fewshot --train-size 100 --splits seed1,seed2
$py amc_results.py --hub fewshot --train-size 10 --splits seed1,seed2
