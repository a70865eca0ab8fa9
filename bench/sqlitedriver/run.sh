#!/usr/bin/env bash
# Runs the driver benchmark 3 times into results/run{1,2,3}.txt, one driver
# at a time (never two at once on 2 cores), rotating the driver order each
# run so a drift in the shared machine's load does not always hit the same
# driver. Each run takes ~45 s. Then: benchstat -col pkg results/run*.txt
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p results
orders=("mattn modernc ncruces" "modernc ncruces mattn" "ncruces mattn modernc")
for i in 1 2 3; do
	out=results/run$i.txt
	{
		echo "# run $i start $(date -u +%FT%TZ) loadavg $(cut -d' ' -f1-3 /proc/loadavg)"
		for pkg in ${orders[$((i - 1))]}; do
			go test -count 1 -run '^$' -bench . -benchtime 3s -benchmem "./$pkg"
		done
		echo "# run $i end $(date -u +%FT%TZ) loadavg $(cut -d' ' -f1-3 /proc/loadavg)"
	} >"$out" 2>&1
done
