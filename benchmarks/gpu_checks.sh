#!/usr/bin/env bash
# The GPU checks, one command on a machine with CUDA and hybrid installed with the dev
# extra (CI never has a GPU, so these run only where one is lent):
#
#     bash benchmarks/gpu_checks.sh [OUT_DIR [STEP ...]]
#
# STEP is any of kfold, throughput, cuda, runs, suite, kills, profile (default: all
# seven, in that order). Every command in a step is bounded by `timeout`: a step takes at most 4, 2,
# 2.5, 3, 7 and 2.5 minutes; split the steps over commands where one command may run
# at most 10 minutes (the files are written as the lines land, so a command cut off
# still leaves what it reached). On the H200 (session 23) `cuda runs` took 160 s and
# the suite more than 340 s (cut at 98% by a 330 s limit twice): give the suite a
# command of its own, e.g. `cuda runs kills` then `suite`.
#
# In order of what matters most; each step's output in OUT_DIR (default gpu_checks/):
#   a_env.txt        the GPU, torch, and whether hybrid imports
#   b_kfold.txt      K-fold fitness per generation on the GPU (issue 20): full batch and
#                    64-row minibatches
#   c_throughput.txt batched engine vs per-member loop (population_throughput.py)
#   d_cuda.txt       the CUDA-only tests and the recurrent export round trips
#   e_runs.txt       spirals twice with one seed (is the champion the same file?) and
#                    digits for four generations
#   f_suite.txt      the whole suite as CI runs it; every search in it picks
#                    `run.device = "auto"`, i.e. the GPU
#   g_kills.txt      the SIGKILL battery, the search on the GPU
#   h_profile.txt    where a generation's time goes: digits, 4 generations, under
#                    cProfile on the GPU and on the CPU of the same machine (session 23:
#                    a search ran 2.5-3x slower per generation on the H200 than on the
#                    2-core CI VM, although the engine's train step is 4-7x faster there)
#
# Set HYBRID_GPU_WORKERS to change the test workers (default: the cores, at most 14).
# The machine this was written for had no registry: packages hybrid needs that its image
# lacked were installed from carried wheels first (deap needs moocore, cffi, pycparser and
# platformdirs; pydantic needs pydantic-core, annotated-types and typing-inspection;
# tomli-w). `a_env.txt` ends the run early when `import hybrid.search` fails.
set -u
cd "$(dirname "$0")/.."
OUT_DIR=${1:-gpu_checks}
shift || true
STEPS=${*:-kfold throughput cuda runs suite kills profile}
mkdir -p "$OUT_DIR"
export PYTHONUNBUFFERED=1 HYPOTHESIS_PROFILE=ci
PY=${PYTHON:-python3}
WORKERS=${HYBRID_GPU_WORKERS:-$(( $(nproc) < 14 ? $(nproc) : 14 ))}
T0=$(date +%s)
section() { echo; echo "=== $1 (t = $(( $(date +%s) - T0 )) s, load $(cut -d' ' -f1-3 /proc/loadavg))"; }

{
    section environment
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv
    $PY -c "import sys, torch; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.cuda.is_available())"
    echo "cores $(nproc), test workers $WORKERS"
    $PY -c "import hybrid.search, hybrid.cli; print('hybrid imports')"
} 2>&1 | tee "$OUT_DIR/a_env.txt"
grep -q "^hybrid imports" "$OUT_DIR/a_env.txt" || { echo "hybrid does not import: stopping"; exit 1; }

kfold() {
    section "kfold_cost.py --device cuda (full batch)"
    timeout 120 $PY benchmarks/kfold_cost.py --device cuda --generations 3 --threads 1
    section "kfold_cost.py --device cuda --batch-size 64"
    timeout 100 $PY benchmarks/kfold_cost.py --device cuda --generations 3 --threads 1 --batch-size 64
}

throughput() {
    section "population_throughput.py --device cuda"
    timeout 100 $PY benchmarks/population_throughput.py --device cuda --quick --threads 1 \
        --sizes 16,64,256,1024
}

cuda() {
    section "the CUDA-only tests"
    timeout 60 $PY -m pytest -q -rfEs -p no:cacheprovider -k cuda \
        tests/hybrid/test_net.py tests/hybrid/test_train.py tests/hybrid/test_net_adaptive.py \
        tests/hybrid/test_bottleneck_stats.py tests/hybrid/test_search.py tests/hybrid/test_population_training.py
    section "recurrent export round trips (failed on the GPU image's torch 2.11 in session 21, traceback wanted)"
    timeout 90 $PY -m pytest -q -rfE --tb=long -p no:cacheprovider -m "" tests/hybrid/test_export_recurrent.py \
        -k "every_torch_format or empty_state" 2>&1 | tail -80
}

suite() {
    section "the test suite as CI runs it, on the GPU"
    # the deselected five are the shipped configs' quality targets, as in .ci/run
    # -v: each test's verdict is in the file as it lands, so a run cut off by the
    # timeout still names its failures (the tracebacks come only at the end)
    timeout 420 $PY -m pytest -v -rfE --tb=short -m "" -n "$WORKERS" -p no:cacheprovider \
        --deselect tests/hybrid/test_shipped_configs.py::test_spirals_reaches_98_percent_test_accuracy \
        --deselect tests/hybrid/test_shipped_configs.py::test_digits_reaches_96_percent_test_accuracy \
        --deselect tests/hybrid/test_shipped_configs.py::test_digits_smallest_within_finds_small_accurate_nets_on_the_median_of_three_seeds \
        --deselect tests/hybrid/test_shipped_configs.py::test_other_configs_beat_a_coin \
        --deselect tests/hybrid/test_shipped_configs.py::test_brackets_hard_reaches_the_issue_target_from_one_neuron \
        | grep -v -i "benchmark" | grep -v " PASSED "
}

runs() {
    local runs name
    runs=$(mktemp -d)
    for name in first second; do
        section "spirals on the GPU, 12 generations, seed 0 ($name)"
        timeout 60 $PY -m hybrid run configs/spirals.toml --device cuda --generations 12 --plain \
            --runs-dir "$runs" --name "$name" --overwrite | tail -4
    done
    # the files differ in the run's name ("run": "first" / "second") and nowhere else
    diff <(grep -v '"run": ' "$runs/first/best/genome.json") \
        <(grep -v '"run": ' "$runs/second/best/genome.json") >/dev/null \
        && echo "same seed, same champion: best/genome.json identical but for the run's name" \
        || echo "same seed, DIFFERENT champions: best/genome.json differs beyond the run's name"
    section "digits on the GPU, 4 generations"
    timeout 60 $PY -m hybrid run configs/digits.toml --device cuda --generations 4 --plain \
        --runs-dir "$runs" --name digits --overwrite | tail -6
}

kills() {
    section "SIGKILL battery on the GPU"
    PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} timeout 150 $PY benchmarks/kill_battery.py --kills 10
}

profile() {
    local runs device
    runs=$(mktemp -d)
    for device in cuda cpu; do
        section "digits on $device, 4 generations, under cProfile (top 30 by cumulative time)"
        timeout 90 $PY -m cProfile -s cumulative -m hybrid run configs/digits.toml --device "$device" \
            --generations 4 --plain --runs-dir "$runs" --name "p-$device" --overwrite | head -75
    done
}

declare -A FILES=([kfold]=b_kfold [throughput]=c_throughput [cuda]=d_cuda [runs]=e_runs \
    [suite]=f_suite [kills]=g_kills [profile]=h_profile)
for step in $STEPS; do
    [ -n "${FILES[$step]:-}" ] || { echo "unknown step '$step': expected kfold, throughput, cuda, runs, suite, kills or profile"; exit 2; }
done
for step in $STEPS; do
    $step 2>&1 | tee "$OUT_DIR/${FILES[$step]}.txt"
done
section done
