#!/usr/bin/env bash
# Peak workers alive, peak memory of all workers (sum of their VmRSS) and duration of
# one reload of 8 baton-demo workers: all at once, against rolling with batch 1 and 2.
# A sampler reads Baton's children (/proc/PID/task/*/children) and their VmRSS over and
# over during each reload; light load (curl, one request at a time) keeps the workers busy.
# Build first (swift build takes one --product at a time):
#   for product in baton batonctl baton-demo; do swift build [-c release] --product $product; done
# Usage: bash Docs/bench/rollout.sh [.build/release]   (default .build/debug)
set -u
cd "$(dirname "$0")/../.."
build=${1:-.build/debug}
runs=${RUNS:-5}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# Prints "peak-workers peak-rss-kib" of baton $1's children until $2 exists.
sample() {
    local baton=$1 stop=$2 peak=0 peakRss=0
    while [ ! -e "$stop" ]; do
        local children rss=0 count=0
        children=$(cat /proc/"$baton"/task/*/children 2>/dev/null)
        for child in $children; do
            count=$((count + 1))
            local kib
            kib=$(awk '/^VmRSS/ { print $2 }' /proc/"$child"/status 2>/dev/null)
            rss=$((rss + ${kib:-0}))
        done
        [ "$count" -gt "$peak" ] && peak=$count
        [ "$rss" -gt "$peakRss" ] && peakRss=$rss
    done
    echo "$peak $peakRss"
}

measure() {
    local name=$1; shift
    local socket="$scratch/baton.sock"
    "$build/baton" --control "$socket" --listen http=tcp://127.0.0.1:19190 --workers 8 --drain-grace 1s \
        -- "$build/baton-demo" >"$scratch/log" 2>&1 &
    local baton=$!
    for _ in $(seq 200); do "$build/batonctl" status -s "$socket" 2>/dev/null | grep -q "running" && break; sleep 0.05; done
    (while kill -0 "$baton" 2>/dev/null; do curl -s -o /dev/null http://127.0.0.1:19190/ || true; done) &
    local load=$!
    # A first reload, so that every worker has served and grown to its steady size.
    "$build/batonctl" reload --wait -s "$socket" >/dev/null
    sleep 1
    for _ in $(seq "$runs"); do
        rm -f "$scratch/stop"
        sample "$baton" "$scratch/stop" >"$scratch/peak" &
        local sampler=$! start end
        start=$(date +%s.%N)
        "$build/batonctl" reload --wait -s "$socket" "$@" >/dev/null || echo "$name: reload failed"
        end=$(date +%s.%N)
        # The old workers of the last batch (or generation) drain after the reload is over.
        while [ "$(cat /proc/"$baton"/task/*/children 2>/dev/null | wc -w)" -gt 8 ]; do sleep 0.01; done
        touch "$scratch/stop"; wait "$sampler"
        read -r peak rss <"$scratch/peak"
        printf '%-12s peak workers %2d  peak workers RSS %7d KiB  reload %5.2f s\n' "$name" "$peak" "$rss" "$(echo "$end - $start" | bc)"
        sleep 0.5
    done
    "$build/batonctl" stop -s "$socket" >/dev/null
    wait "$baton"
    kill "$load" 2>/dev/null; wait "$load" 2>/dev/null
}

measure all-at-once
measure rolling-1 --strategy rolling --batch 1
measure rolling-2 --strategy rolling --batch 2
