#!/usr/bin/env bash
# The CQL backend beside the embedded store, in one sitting, with the same load:
#   1. embedded store;  2. CQL on one Cassandra node (RF 1);  3. CQL on three nodes (RF 3,
#   LOCAL_QUORUM), with per-vehicle leases on (the default) and 4. off.
# Each run spawns the release smogwatch binary (built with --features scylla) through the
# `standard` scenario and prints its report; Cassandra's CPU-seconds over each run are read from
# /proc. Everything on 127.0.0.1-3. Usage (from the repository root):
#   load-tests/scripts/cql-backends.sh [VEHICLES] [DURATION_S]
set -euo pipefail
cd "$(dirname "$0")/../.."
vehicles="${1:-2000}"
duration="${2:-30}"
export SMOGWATCH_CASSANDRA_DIR="${SMOGWATCH_CASSANDRA_DIR:-$PWD/target/cassandra-bench}"
# One invocation, so that the load generator and the server share one build of the library.
cargo build --release --features smogwatch/scylla -p smogwatch -p smogwatch-load-tests
bin="${CARGO_TARGET_DIR:-target}/release"
tick() { getconf CLK_TCK; }
cass_cpu() { # CPU-seconds of every running Cassandra node of this directory
  local total=0
  for pf in "$SMOGWATCH_CASSANDRA_DIR"/node*/pid; do
    [ -s "$pf" ] || continue
    local p; p=$(cat "$pf")
    [ -r "/proc/$p/stat" ] || continue
    local t; t=$(awk '{print $14 + $15}' "/proc/$p/stat")
    total=$((total + t))
  done
  awk -v t="$total" -v hz="$(tick)" 'BEGIN { printf "%.1f", t / hz }'
}
run() { # label, then environment assignments
  local label=$1; shift
  local before after
  before=$(cass_cpu)
  echo "=== $label: $vehicles vehicles, ${duration}s ($(date -u +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg))"
  env "$@" "$bin/smogwatch-load-tests" standard --vehicles "$vehicles" --duration "$duration" \
    --server-bin "$bin/smogwatch" 2>&1 | grep -vE "^\s*$" | tail -40
  sleep 5 # flushes and compactions right after the load count too
  after=$(cass_cpu)
  echo "=== $label: Cassandra CPU-seconds during the run and 5 s after: $(awk -v a="$after" -v b="$before" 'BEGIN { printf "%.1f", a - b }')"
}
deploy/cassandra/cassandra.sh stop >/dev/null 2>&1 || true
rm -rf "$SMOGWATCH_CASSANDRA_DIR"/node*

run "embedded store" SMOGWATCH_STORE__KIND=embedded

deploy/cassandra/cassandra.sh start 1
cql=(SMOGWATCH_STORE__KIND=cql SMOGWATCH_STORE__SCYLLA__REPLICATION__STRATEGY=simple)
run "CQL, 1 Cassandra node, RF 1" "${cql[@]}" SMOGWATCH_STORE__SCYLLA__KEYSPACE=bench1 \
  SMOGWATCH_STORE__SCYLLA__REPLICATION__FACTOR=1 SMOGWATCH_STORE__SCYLLA__URIS=127.0.0.1:9042
deploy/cassandra/cassandra.sh stop
rm -rf "$SMOGWATCH_CASSANDRA_DIR"/node*

deploy/cassandra/cassandra.sh start 3
three=(SMOGWATCH_STORE__SCYLLA__REPLICATION__FACTOR=3
       SMOGWATCH_STORE__SCYLLA__URIS=127.0.0.1:9042,127.0.0.2:9042,127.0.0.3:9042)
run "CQL, 3 Cassandra nodes, RF 3, LOCAL_QUORUM, leases on" "${cql[@]}" "${three[@]}" \
  SMOGWATCH_STORE__SCYLLA__KEYSPACE=bench3
run "CQL, 3 Cassandra nodes, RF 3, LOCAL_QUORUM, leases off" "${cql[@]}" "${three[@]}" \
  SMOGWATCH_STORE__SCYLLA__KEYSPACE=bench3off SMOGWATCH_STORE__SCYLLA__VEHICLE_LEASE_S=0
deploy/cassandra/cassandra.sh stop
