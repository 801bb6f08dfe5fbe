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
# Tuned CHGNet comparison (issue #12 items 1-4), two lanes, one per core; the order and the
# CPU estimates are in docs/results_notes.md ("Status and plan"):
#   OMP_NUM_THREADS=1 nice -n 10 bash benchmarks/run_plan.sh chgnet-tuned-a &   # AMC side
#   OMP_NUM_THREADS=1 nice -n 10 bash benchmarks/run_plan.sh chgnet-tuned-b &   # baselines
# Every run is a result file (skipped when it exists), so a lane restarts where it stopped. Each
# finished block answers one question: (1) the lr grid and choice per strategy, (2) the seed0
# tuned table (AMC adapter against both tuned baselines), (3) few-shot N = 10 (cheap), (4) seeds
# 1-2, (5) module scaling, (6) few-shot N = 100, (7) AMC full (its family, grid, tuned runs),
# (8) seeds 3-4.
# Lane b, lighter, also takes AMC full's seed2 at its end (python benchmarks/plan_estimate.py
# prints what is left per lane, in CPU-hours).
# A lane never waits for the other: a strategy's lr is chosen from its own grid
# (lr_grid.choose_one). Each lane commits what landed (benchmarks/results/amc and the figure).
commit_results() (
  cd .. || exit 0
  git add benchmarks/results/amc 2>/dev/null || exit 0
  if [ -f docs/figures/module_scaling.png ]; then git add docs/figures/module_scaling.png; fi
  git diff --cached --quiet && exit 0
  git commit -q -m "AMC results: CHGNet tuned runs landed" || true
)
# tasks from the cheapest to the dearest (training-split size), so a block cut short leaves
# whole rows
by_cost="jarvis_2d_gap_tbmbj jarvis_2d_dielectric_tbmbj jarvis_2d_dielectric_opt jarvis_2d_eform
  jarvis_2d_exfoliation mp_poly_electronic mp_poly_total mp_elastic_anisotropy mp_poisson_ratio
  mp_eps_electronic expt_eform"
tuning_tasks=$($py -c 'from lr_grid import TUNING_TASKS; print(" ".join(TUNING_TASKS))')
scaling_tasks=$($py -c 'from module_scaling import SCALING_TASKS as s; print(",".join(s))')
grid() {  # strategies (comma-separated), task by task
  for task in $tuning_tasks; do
    $py amc_tuning.py --stage grid --strategies "$1" --tasks "$task" \
      || echo "grid failed: $1 $task (see the log above); continuing"
    commit_results
  done
  $py amc_tuning.py --stage choose --strategies "$1" || true; commit_results
}
tuned() {  # strategies, splits, [train size]: split by split, task by task (few-shot runs
  # are short: one process per split, so that loading CHGNet is paid once per split)
  local groups=$by_cost
  [ -n "${3:-}" ] && groups=$(echo $by_cost | tr ' ' ,)
  for split in ${2//,/ }; do
    for tasks in $groups; do
      $py amc_tuning.py --stage tuned --strategies "$1" --splits "$split" --tasks "$tasks" \
        ${3:+--train-size "$3"} || echo "run failed: $1 $tasks $split ${3:-} ; continuing"
      commit_results
    done
  done
}
scaling() {  # tasks (comma-separated); the figure is redrawn with what exists at the end
  local tasks=$1
  [ "$tasks" = rest ] && tasks=$($py -c 'import module_scaling as m, amc_hub as h
print(",".join(t for t in h.DOWNSTREAM if t not in m.SCALING_TASKS))')
  for task in ${tasks//,/ }; do
    $py module_scaling.py --tasks "$task" --no-plot \
      || echo "module scaling failed: $task; continuing"
    commit_results
  done
  $py module_scaling.py --tasks "$scaling_tasks" --plot-only || true; commit_results
}
if [ "$part" = chgnet-tuned-a ]; then
  $py amc_hub.py --family chgnet-adapter --profile full
  grid amc-adapter
  tuned amc-adapter seed0
  tuned amc-adapter seed0,seed1,seed2 10  # cheap: the few-shot end of item 3 early
  tuned amc-adapter seed1,seed2
  scaling "$scaling_tasks"
  tuned amc-adapter seed0,seed1,seed2 100
  $py amc_hub.py --family chgnet-full --profile full
  grid amc-full
  tuned amc-full seed0,seed1  # seed2 is lane b's, once its own blocks are done
  scaling rest  # the full curve on the other six tasks, where the time allows
  tuned amc-full seed2  # whatever lane b has not done by then
  tuned amc-adapter,amc-full seed3,seed4
fi
if [ "$part" = chgnet-tuned-b ]; then
  grid backbone-ft,adapter-ft
  tuned backbone-ft,adapter-ft seed0
  $py module_scaling.py --tasks "$scaling_tasks" --plot-only || true; commit_results
  tuned backbone-ft,adapter-ft seed0,seed1,seed2 10
  tuned backbone-ft,adapter-ft seed1,seed2
  tuned backbone-ft,adapter-ft seed0,seed1,seed2 100
  $py module_scaling.py --tasks "$scaling_tasks" --plot-only || true; commit_results
  tuned backbone-ft,adapter-ft seed3,seed4
  tuned amc-full seed2  # needs the amc-full lr (lane a); a run that cannot start is skipped
fi
if [ "$part" = all ] || [ "$part" = cgcnn ] || [ "$part" = chgnet ]; then
  $py results_table.py
fi
