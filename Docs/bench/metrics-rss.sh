#!/usr/bin/env bash
# Baton's peak RSS (VmHWM) without and with its /metrics endpoint, scraped every 20 ms
# all along 50 reloads under load (curl, one request at a time): each run prints the
# figure in KiB. Build first with the Swift runtime linked statically, as deployed:
#   swift build -c release --static-swift-stdlib --product baton
#   for product in batonctl baton-demo; do swift build --product $product; done
# Usage: bash Docs/bench/metrics-rss.sh
set -u
cd "$(dirname "$0")/../.."
release=${BATON_RELEASE:-.build/release}   # another build of baton to compare with
debug=.build/debug
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

measure() {
    local socket="$scratch/baton-$RANDOM.sock"
    "$release/baton" --control "$socket" --listen http=tcp://127.0.0.1:19090 --workers 2 "$@" \
        -- "$debug/baton-demo" >"$scratch/log" 2>&1 &
    local baton=$!
    for _ in $(seq 100); do "$debug/batonctl" status -s "$socket" >/dev/null 2>&1 && break; sleep 0.05; done
    (for _ in $(seq 4000); do curl -s -o /dev/null http://127.0.0.1:19090/ || true; done) &
    local load=$!
    (while kill -0 "$baton" 2>/dev/null; do curl -s -o /dev/null http://127.0.0.1:19104/metrics; sleep 0.02; done) &
    local scraper=$!
    for _ in $(seq 50); do "$debug/batonctl" reload --wait -s "$socket" >/dev/null; done
    kill "$load" 2>/dev/null; wait "$load" 2>/dev/null
    echo "baton ${*:-(no /metrics)}: $(grep VmHWM "/proc/$baton/status")"
    "$debug/batonctl" stop -s "$socket" >/dev/null
    wait "$baton"
    kill "$scraper" 2>/dev/null; wait "$scraper" 2>/dev/null
}

for _ in 1 2 3; do
    measure
    measure --metrics tcp://127.0.0.1:19104
done
