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
py=${PYTHON:-../.venv/bin/python}
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
# Tuned CHGNet comparison (amc_tuning.py), two lanes, one per core:
#   OMP_NUM_THREADS=1 nice -n 10 bash benchmarks/run_plan.sh chgnet-tuned-a &
#   OMP_NUM_THREADS=1 nice -n 10 bash benchmarks/run_plan.sh chgnet-tuned-b &
# Each lane commits the result files it finished (only benchmarks/results/amc) as they land.
commit_results() (
  cd .. || exit 0
  git add benchmarks/results/amc 2>/dev/null || exit 0
  git diff --cached --quiet -- benchmarks/results/amc && exit 0
  git commit -q -m "AMC results: CHGNet tuned runs landed" -- benchmarks/results/amc || true
)
choose_lr() {  # once every grid run of both lanes exists
  until $py amc_tuning.py --stage choose; do commit_results; sleep 600; done
  commit_results
}
tuned() {  # strategy by strategy, task by task, split by split, committing as runs land
  for split in seed0 seed1 seed2; do
    for task in $($py -c 'from amc_hub import DOWNSTREAM; print(" ".join(DOWNSTREAM))'); do
      $py amc_tuning.py --stage tuned --strategies "$1" --splits $split --tasks "$task" \
        || echo "run failed: $1 $task $split (see the log above); continuing"
      commit_results
    done
  done
}
if [ "$part" = chgnet-tuned-a ]; then
  $py amc_hub.py --family chgnet-adapter --profile full
  for task in $($py -c 'from amc_tuning import TUNING_TASKS; print(" ".join(TUNING_TASKS))'); do
    $py amc_tuning.py --stage grid --strategies amc-adapter --tasks "$task"
    commit_results
  done
  $py amc_hub.py --family chgnet-full --profile full
  for task in $($py -c 'from amc_tuning import TUNING_TASKS; print(" ".join(TUNING_TASKS))'); do
    $py amc_tuning.py --stage grid --strategies amc-full --tasks "$task"
    commit_results
  done
  commit_results; choose_lr
  tuned amc-adapter
  tuned amc-full
fi
if [ "$part" = chgnet-tuned-b ]; then
  for task in $($py -c 'from amc_tuning import TUNING_TASKS; print(" ".join(TUNING_TASKS))'); do
    $py amc_tuning.py --stage grid --strategies backbone-ft,adapter-ft --tasks "$task"
    commit_results
  done
  choose_lr
  tuned backbone-ft
  tuned adapter-ft
fi
if [ "$part" = all ] || [ "$part" = cgcnn ] || [ "$part" = chgnet ]; then
  $py results_table.py
fi
