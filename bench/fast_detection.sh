#!/bin/sh
# The long fast-detection measurements in the tunnel lab (issue #17), run by hand as root;
# the suite runs the same tests short. Prints the rows BENCHMARKS.md records:
#   - detection: BREAKS (default 25) blackholes of tunnel A at random phases of the probe
#     schedule, break -> /health DEGRADED as p50, p99, max (a few minutes);
#   - false downs: LOSS_SECONDS (default 600) of 2 % random loss (nftables `numgen random`)
#     on both tunnels, failing at the first false down.
#
#   sudo sh bench/fast_detection.sh            # both, about 15 minutes
#   sudo BREAKS=40 LOSS_SECONDS=0 sh bench/fast_detection.sh
set -eu
cd "$(dirname "$0")/.."
BREAKS=${BREAKS:-25}
LOSS_SECONDS=${LOSS_SECONDS:-600}
OUT=${OUT:-/tmp/tk-fast-detection}
mkdir -p "$OUT"
cargo test --locked --test lab_fast_detection --no-run
if [ "$BREAKS" -gt 0 ]; then
    TK_LAB_BREAKS=$BREAKS TK_LAB_DETECTION_OUT="$OUT/detection.md" \
        cargo test --locked --test lab_fast_detection a_blackholed -- --include-ignored --nocapture
    cat "$OUT/detection.md"
fi
if [ "$LOSS_SECONDS" -gt 0 ]; then
    TK_LAB_LOSS_SECONDS=$LOSS_SECONDS TK_LAB_LOSS_OUT="$OUT/loss.md" \
        cargo test --locked --test lab_fast_detection two_percent -- --include-ignored --nocapture
    cat "$OUT/loss.md"
fi
