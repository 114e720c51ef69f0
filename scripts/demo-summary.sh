#!/usr/bin/env bash
# demo-summary.sh RUN_DIR — what `make demo` leaves, in a few lines: the loss
# at the start and at the end (means over the first and last tenth of the
# logged steps), throughput and data wait, and where to look.
set -euo pipefail
run="${1:?usage: demo-summary.sh RUN_DIR}"
m="$run/metrics.jsonl"
[[ -s "$m" ]] || { echo "demo-summary: $m is empty: the run logged no step" >&2; exit 1; }
grep '"step"' "$m" | sed -E 's/.*"step": ?([0-9]+).*"loss": ?([-0-9.e+]+).*"ce": ?([-0-9.e+]+).*"mse": ?([-0-9.e+]+).*"tokens_per_s": ?([-0-9.e+]+).*"data_wait": ?([-0-9.e+]+).*/\1 \2 \3 \4 \5 \6/' \
  | awk -v run="$run" '
    { step[NR] = $1; loss[NR] = $2; ce[NR] = $3; mse[NR] = $4; tps += $5; wait += $6 }
    END {
        k = int(NR / 10); if (k < 1) k = 1
        for (i = 1; i <= k; i++) { a += loss[i]; ac += ce[i]; am += mse[i] }
        for (i = NR - k + 1; i <= NR; i++) { b += loss[i]; bc += ce[i]; bm += mse[i] }
        printf "demo: %d steps logged (last step %d)\n", NR, step[NR]
        printf "demo: loss %.3f -> %.3f   (ce %.3f -> %.3f, mse %.3f -> %.3f; means of the first and last %d logged steps)\n", a / k, b / k, ac / k, bc / k, am / k, bm / k, k
        printf "demo: %.0f tokens/s on the CPU, data wait %.1f%% of step time\n", tps / NR, 100 * wait / NR
        printf "demo: open %s/report.html: the loss curves and what the model generated from held-out prompts as it trained\n", run
        printf "demo: also %s/metrics.jsonl, %s/samples/, %s/checkpoints/, and TensorBoard: tensorboard --logdir %s/tb\n", run, run, run, run
    }'
