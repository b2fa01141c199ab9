#!/bin/bash
# Server CPU per request, several builds side by side: the A/B that rates
# cannot give on a noisy 2-core machine (docs/performance.md, "Back to where
# the hardening started"). Each simulator is pinned to core 1, wrk to core 0;
# a round's CPU (utime + stime from /proc/<pid>/stat) is divided by the
# requests it answered. Rounds interleave the builds; prints each build's
# median and every round, in µs per request.
#
#   bench/cpu_ab.sh <dir>[:<extra args>] ...
#   W=stream ROUNDS=8 D=3 bench/cpu_ab.sh /tmp/old /work/main:--no-grpc /work/main
#
# A <dir> is a checkout (git worktree add /tmp/old <commit>). Needs wrk,
# taskset (util-linux) and python3; talks to 127.0.0.1 only.
set -eu
ROUNDS=${ROUNDS:-6}
W=${W:-chat}
D=${D:-3}
V8="--v8-flags=--no-allocation-site-pretenuring,--max-semi-space-size=2,--initial-old-space-size=128"
STREAM=false
[ "$W" = stream ] && STREAM=true
LUA=$(mktemp --suffix .lua)
RAW=$(mktemp)
cat > "$LUA" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"m","messages":[{"role":"user","content":"Hello, how are you today?"}],"max_tokens":100,"ignore_eos":true,"stream":$STREAM}'
LUA
PIDS=()
PORTS=()
i=0
for spec in "$@"; do
  dir=${spec%%:*}
  args=""
  [[ $spec == *:* ]] && args=${spec#*:}
  port=$((18100 + i))
  # shellcheck disable=SC2086
  (cd "$dir" && exec taskset -c 1 deno run -A $V8 main.ts --model m --port $port \
    --max-num-seqs 1024 $args >/dev/null 2>&1) &
  PIDS[i]=$!
  PORTS[i]=$port
  i=$((i + 1))
done
trap 'kill "${PIDS[@]}" 2>/dev/null; rm -f "$LUA" "$RAW"' EXIT
for port in "${PORTS[@]}"; do
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
done
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
round() {
  local t0 t1 n
  t0=$(ticks "$2")
  n=$(taskset -c 0 wrk -t1 -c64 -d"${D}s" -s "$LUA" "http://127.0.0.1:$1/v1/chat/completions" |
    awk '/requests in/{print $1}')
  t1=$(ticks "$2")
  # clock ticks are 10 ms: µs per request = ticks × 10 000 / n
  python3 -c "print(round(($t1 - $t0) * 10000 / $n, 2))"
}
for _ in 1 2; do for j in "${!PIDS[@]}"; do round "${PORTS[j]}" "${PIDS[j]}" >/dev/null; done; done
for _ in $(seq "$ROUNDS"); do
  for j in "${!PIDS[@]}"; do echo "$j $(round "${PORTS[j]}" "${PIDS[j]}")"; done
done >"$RAW"
python3 - "$RAW" "$@" <<'PY'
import collections, statistics, sys
rounds = collections.defaultdict(list)
for line in open(sys.argv[1]):
    j, v = line.split()
    rounds[int(j)].append(float(v))
for j, name in enumerate(sys.argv[2:]):
    print(f"{name:40s} median {statistics.median(rounds[j]):7.2f} µs/request  {sorted(rounds[j])}")
PY
