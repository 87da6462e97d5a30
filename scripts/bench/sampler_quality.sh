#!/usr/bin/env bash
# Sample quality of every sampler at 10, 20 and 50 model evaluations, scored by `eval`
# (FD-classifier and, for class-conditional runs, conditional accuracy) on one trained run.
# Prints a Markdown table for BENCHMARKS.md. Heun evaluates the model 2n - 1 times for n steps,
# so it gets n = 5, 10, 25 (9, 19, 49 evaluations).
#
#   scripts/bench/sampler_quality.sh RUN_DIR [N] [SEED]     (defaults: N = 1000, SEED = 0)
#
# Set DIFFUSION_CLI to a built binary to skip `cargo run`.
set -euo pipefail
run=${1:?usage: scripts/bench/sampler_quality.sh RUN_DIR [N] [SEED]}
n=${2:-1000}
seed=${3:-0}
cli=${DIFFUSION_CLI:-"cargo run -q -p diffusion-cli --"}
out=$(mktemp -d)

samplers=("ddpm" "ddim" "dpm++" "dpm++ --karras" "dpm++-sde" "euler" "euler-a" "heun" "unipc")
echo "| sampler | 10 evaluations | 20 | 50 |"
echo "| --- | --- | --- | --- |"
for spec in "${samplers[@]}"; do
    read -r name flags <<<"$spec"
    row="| \`$spec\` |"
    for nfe in 10 20 50; do
        steps=$nfe
        [ "$name" = heun ] && steps=$(( (nfe + 1) / 2 ))
        json="$out/${name}-${flags// /}-$nfe.json"
        # shellcheck disable=SC2086
        $cli eval --run "$run" --sampler "$name" $flags --steps "$steps" -n "$n" --seed "$seed" \
            --no-floor --json "$json" >/dev/null 2>"$out/stderr.txt" || {
            row="$row failed: $(tail -1 "$out/stderr.txt") |"
            continue
        }
        row="$row $(python3 - "$json" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
cell = "%.2f" % report["fd_classifier"]
if report.get("accuracy") is not None:
    cell += ", %.1f%%" % (100 * report["accuracy"])
print(cell)
PY
) |"
    done
    echo "$row"
done
echo
echo "n = $n, seed $seed, FD-classifier against the test split (accuracy for conditional runs)."
