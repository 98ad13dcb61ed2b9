#!/usr/bin/env bash
# The CPU study, v2 (the recipe issue): every run of it, in parts, into results/cpu-study-v2.
#
#   bash scripts/cpu_study_v2.sh            # every part, in order
#   bash scripts/cpu_study_v2.sh main       # one part: main | seeds | ablations
#
# `bench sweep` skips runs that already finished (same config hash and seed), so the script resumes
# where it stopped: run it again after an interruption. Two runs at a time (Ray, one CPU each, one
# thread each) on a 2-core machine; the per-run times in reports/cpu-study-v2-notes.md say which.
# How the cpu presets were calibrated (learning finished, ≤ 10 min a run): docs/presets.md.
set -euo pipefail
OUT=${OUT:-results/cpu-study-v2}
PART=${1:-all}
MODELS=hrm,trm,transformer,looped,unrolled,mamba,deq,dtnet
TASKS=maze,addition,multiplication,prefix_sums
sweep() { python -m bench sweep --preset cpu --out "$OUT" --threads 1 "$@"; }

if [[ $PART == all || $PART == main ]]; then
  # every model on every learnable task, 3 seeds (v1's spread: ±10–12 points at 3 seeds on maze and
  # addition, so differences under ~15 points need the 5 seeds of the next part)
  sweep --models "$MODELS" --tasks "$TASKS" --seeds 3
fi

if [[ $PART == all || $PART == seeds ]]; then
  # the headline contrasts (question 1's ranking, question 3's TRM vs HRM) get 5 seeds
  sweep --models hrm,trm,transformer,looped --tasks maze,addition --seeds 5
fi

if [[ $PART == all || $PART == ablations ]]; then
  # in the order of the report's questions (2, 3, 4), then ACT and tied weights, then the DEQ's term
  # question 2 — the outer loop at matched examples: 1 vs 2 segments, each drawing the same number of
  # fresh examples: on addition 25,600, both sides at an examples budget; on maze 76,800, what the
  # preset's 2-segment run of part main draws (2400 steps of 64 rows, each example two segments), so
  # that run is the 2-segment side (the report pairs it at matched examples; a 2-segment rerun at an
  # examples budget trains the same steps: in the 1200-step study such a rerun matched it bit for bit on
  # the same host)
  for segments in 1 2; do
    sweep --models hrm,transformer --tasks addition --seeds 3 --set train.budget=examples \
          --set train.max_examples=25600 --set train.segments=$segments
  done
  sweep --models hrm,transformer --tasks maze --seeds 3 --set train.budget=examples \
        --set train.max_examples=76800 --set train.segments=1
  # ... and at matched training FLOPs on maze: one segment given the FLOPs of the main part's
  # 2-segment run (its summary's train.flops_total), so it sees twice the examples
  sweep --models hrm --tasks maze --seeds 3 --set train.segments=1 --set train.budget=flops --set train.max_flops=1.3301907456e13
  sweep --models transformer --tasks maze --seeds 3 --set train.segments=1 --set train.budget=flops --set train.max_flops=8.0292347904e12
  # question 3 — HRM's one-step gradient vs TRM's last-cycle rule on HRM's own network, at matched
  # training FLOPs: the one-step run of the main part spends 2400 × 5,542,461,440 FLOPs on maze
  # (its summary's train.flops_total)
  sweep --models hrm --tasks maze --seeds 3 --set model.gradient=last_cycle --set train.budget=flops \
        --set train.max_flops=1.3301907456e13
  # question 4 — how the looped model's loop count is trained: fixed, random, progressive loss,
  # best of k with a stop selector (each with one segment: the rules vary the model's own loops)
  sweep --models looped --tasks addition,prefix_sums --seeds 3 --set train.segments=1
  sweep --models looped --tasks addition,prefix_sums --seeds 3 --set train.segments=1 --set train.iteration_rule=random
  sweep --models looped --tasks addition,prefix_sums --seeds 3 --set train.segments=1 \
        --set train.iteration_rule=best_of_k --set train.stop_selector_steps=5000
  sweep --models looped --tasks addition,prefix_sums --seeds 3 --set train.segments=1 --set train.progressive_alpha=0.5
  # ACT on (off in the cpu presets) for the models with a Q head
  sweep --models hrm,trm --tasks maze --seeds 3 --set train.act=true
  # tied vs untied unrolled (untied is the default)
  sweep --models unrolled --tasks maze,addition --seeds 3 --set model.tied=true
  # question 5 — the DEQ's Jacobian term against its default (0.5 with 50-iteration solvers;
  # docs/models/deq.md): off, lower, the default weight and Bai et al.'s DEQ-Transformer weight, each
  # with 30-iteration solvers
  for weight in 0 0.2 0.5 2.0; do
    sweep --models deq --tasks addition --seeds 1 --set model.jacobian_weight=$weight \
          --set model.max_iter=30 --set model.backward_max_iter=30
  done
  # ... and on prefix sums, whose cpu preset sets 2.0 (the DEQ's default 0.5 leaves 15% of the strings
  # short of the forward tolerance after training): 0.5 and 1.0 there, at the default 50-iteration solvers
  for weight in 0.5 1.0; do
    sweep --models deq --tasks prefix_sums --seeds 1 --set model.jacobian_weight=$weight
  done
  # learning finished? maze's two leaders at twice the preset's 2400 steps (the cosine schedule
  # stretched with them): do their accuracies and their order still move? (docs/presets.md: the
  # preset was 1200 steps until the same check at 2400 showed them mid-learning)
  sweep --models transformer,looped --tasks maze --seeds 1 --set train.steps=4800
  # ... and multiplication's two leaders at four times the steps, one seed (a Mamba run is ≈ 16 min)
  sweep --models transformer,mamba --tasks multiplication --seeds 1 --set train.steps=4000
fi
