#!/usr/bin/env bash
# Regenerates Docs/benchmark-results-*.md and Docs/benchmark-timeline-*.svg (and the
# JSON in .build/): every scenario side by side on this machine, in a mirrored order so
# that a machine drifting during the run does not favour one; then reload time as the
# workers grow. Takes about fifteen minutes. Usage: bash Docs/benchmarks.sh [SECONDS_PER_SCENARIO]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-20}"
status=0

# A deployed Baton links the Swift runtime statically; its RSS is measured that way.
swift build -c release --static-swift-stdlib

for mode in new-connection keep-alive; do
    .build/release/baton-bench \
        --scenarios direct control baton naive naive-paused stop-start control direct haproxy nginx server-starter \
        --workers 2 --clients 16 --mode "$mode" --reload-every 200 --duration "$seconds" --idle 10 \
        $([ "$mode" = new-connection ] && echo --scaling 1 4 8 16 32 64) \
        --markdown "Docs/benchmark-results-$mode.md" \
        --json ".build/benchmark-results-$mode.json" \
        --svg "Docs/benchmark-timeline-$mode.svg" || status=1
done
exit "$status"
