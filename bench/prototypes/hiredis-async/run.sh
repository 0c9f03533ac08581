#!/bin/bash
# Runs every configuration 3 times, order reversed on the middle round, against one redis-server.
set -u
cd "$(dirname "$0")"
BIN=.build/release/bench
OUT=results/runs-$(date +%H%M).txt
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port $PORT --bind 127.0.0.1 --save "" --appendonly no --daemonize no --logfile results/redis-$PORT.log &
RPID=$!
echo $RPID > results/redis.pid
trap 'kill $RPID 2>/dev/null' EXIT
for i in $(seq 50); do redis-cli -p $PORT ping >/dev/null 2>&1 && break; sleep 0.1; done
echo "redis-server $(redis-server --version | awk '{print $3}') pid=$RPID port=$PORT" | tee -a $OUT
CONFIGS=("clapper-singleton" "hiredis" "clapper-default" "hiredis --nio-executor" "clapper-singleton --nio-executor" "nio-minimal" "clapper-default --nio-executor" "nio-minimal --nio-executor" "clapper-singleton-pool1")
for round in 1 2 3; do
  if [ $round = 2 ]; then order=(8 7 6 5 4 3 2 1 0); else order=(0 1 2 3 4 5 6 7 8); fi
  for idx in "${order[@]}"; do
    cfg=${CONFIGS[$idx]}
    load=$(cut -d' ' -f1-3 /proc/loadavg)
    line=$($BIN $cfg --port $PORT --redis-pid $RPID 2>&1 | tail -1)
    echo "round=$round load=\"$load\" $line" | tee -a $OUT
    sleep 1
  done
done
redis-cli -p $PORT info commandstats | grep -E 'cmdstat_(set|publish)' | tee -a $OUT
kill $RPID; wait $RPID 2>/dev/null
echo done | tee -a $OUT
