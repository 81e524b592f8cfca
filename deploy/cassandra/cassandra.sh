#!/usr/bin/env bash
# Apache Cassandra 5.0 for smogwatch's CQL backend on one machine: one node, or a cluster of up
# to three on 127.0.0.1, .2, .3 (same ports, one seed, num_tokens 1 with spread tokens).
# Everything comes from Maven Central through deploy/cassandra/pom.xml (first run downloads into
# the local Maven repository, later runs reuse it). Java 11 or 17 only: Cassandra 5.0 calls
# System.setSecurityManager, which Java 18+ refuses.
#
#   deploy/cassandra/cassandra.sh start [N]      start N nodes (default 1), wait until CQL answers
#   deploy/cassandra/cassandra.sh stop           stop every node of this directory (SIGTERM, then SIGKILL)
#   deploy/cassandra/cassandra.sh kill I         kill -9 node I (failure tests)
#   deploy/cassandra/cassandra.sh start-node I   (re)start node I of an existing cluster
#   deploy/cassandra/cassandra.sh status         which nodes run
#
# Environment: SMOGWATCH_CASSANDRA_DIR (default target/cassandra: data, logs, pids),
# CASSANDRA_HEAP (default 1G per node), CASSANDRA_START_TIMEOUT_S (default 300), JAVA_HOME.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
dir="${SMOGWATCH_CASSANDRA_DIR:-$repo/target/cassandra}"
heap="${CASSANDRA_HEAP:-1G}"
timeout_s="${CASSANDRA_START_TIMEOUT_S:-300}"
# Murmur3 tokens spreading three nodes evenly; one node owns everything whatever its token.
tokens=(-9223372036854775808 -3074457345618258603 3074457345618258602)

log() { echo "cassandra.sh: $*" >&2; }
die() { log "$*"; exit 1; }

java_bin() {
  local j="${JAVA_HOME:+$JAVA_HOME/bin/}java"
  command -v "$j" >/dev/null 2>&1 || die "no java found (Java 11 or 17 needed)"
  local v
  v=$("$j" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)
  case "$v" in
    11|17) ;;
    *) for cand in /usr/lib/jvm/java-17-openjdk-amd64 /usr/lib/jvm/java-17-openjdk* /usr/lib/jvm/java-11-openjdk*; do
         if [ -x "$cand/bin/java" ]; then echo "$cand/bin/java"; return; fi
       done
       die "java $v found; Cassandra 5.0 needs Java 11 or 17 (set JAVA_HOME)";;
  esac
  echo "$j"
}

classpath() {
  local cp="$dir/classpath.txt"
  if [ ! -s "$cp" ] || [ "$here/pom.xml" -nt "$cp" ]; then
    mkdir -p "$dir"
    log "resolving Cassandra from Maven Central (first run downloads ~60 MB)"
    mvn -q -B -f "$here/pom.xml" dependency:build-classpath -Dmdep.outputFile="$cp" >"$dir/mvn.log" 2>&1 \
      || { cat "$dir/mvn.log" >&2; die "maven could not resolve cassandra-all"; }
  fi
  cat "$cp"
}

node_yaml() { # $1 = node index (1-based)
  local i=$1 nd="$dir/node$1"
  cat >"$nd/cassandra.yaml" <<YAML
cluster_name: smogwatch-dev
num_tokens: 1
initial_token: ${tokens[$((i - 1))]}
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
# A fresh development cluster: every node owns its token from the start, nothing to stream.
auto_bootstrap: false
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "127.0.0.1:7000"
listen_address: 127.0.0.$i
rpc_address: 127.0.0.$i
storage_port: 7000
native_transport_port: 9042
start_native_transport: true
endpoint_snitch: SimpleSnitch
data_file_directories: [ "$nd/data" ]
commitlog_directory: "$nd/commitlog"
saved_caches_directory: "$nd/saved_caches"
hints_directory: "$nd/hints"
cdc_raw_directory: "$nd/cdc_raw"
# Periodic commitlog sync (Cassandra's default): a killed process loses nothing (the segment is
# mmapped), a power loss up to 10 s on one replica; acks are at LOCAL_QUORUM. Use "batch" for
# fsync-per-write.
commitlog_sync: periodic
commitlog_sync_period: 10000ms
# Hinted handoff lets a node that was down catch up on writes it missed.
hinted_handoff_enabled: true
max_hint_window: 3h
# Small machines: keep the node's own thread pools modest.
concurrent_reads: 8
concurrent_writes: 16
concurrent_counter_writes: 8
# Room for the conformance suite's throw-away keyspaces.
auto_snapshot: false
YAML
}

is_up() { # $1 = node index: the CQL port answers
  (exec 3<>"/dev/tcp/127.0.0.$1/9042") 2>/dev/null
}

pid_of() { # $1 = node index: the running pid, or nothing
  local pf="$dir/node$1/pid"
  [ -s "$pf" ] || return 0
  local p; p=$(cat "$pf")
  if kill -0 "$p" 2>/dev/null; then echo "$p"; fi
}

start_node() { # $1 = node index
  local i=$1 nd="$dir/node$1"
  [ -n "$(pid_of "$i")" ] && { log "node $i already runs (pid $(pid_of "$i"))"; return 0; }
  mkdir -p "$nd"/{data,commitlog,saved_caches,hints,cdc_raw,logs}
  node_yaml "$i"
  local java cp jamm
  java=$(java_bin)
  cp=$(classpath)
  jamm=$(tr ':' '\n' <<<"$cp" | grep '/jamm-' | head -1)
  [ -n "$jamm" ] || die "jamm not on the resolved classpath"
  # Flags from Cassandra 5.0's conf/jvm-server.options and conf/jvm17-server.options.
  local -a flags=(
    -javaagent:"$jamm" -Xms"$heap" -Xmx"$heap" -Xss256k
    -XX:+UseG1GC -XX:+ParallelRefProcEnabled -XX:MaxTenuringThreshold=1 -XX:G1HeapRegionSize=16m
    -XX:G1RSetUpdatingPauseTimePercent=5 -XX:MaxGCPauseMillis=300 -XX:InitiatingHeapOccupancyPercent=70
    -XX:+ExitOnOutOfMemoryError -XX:+HeapDumpOnOutOfMemoryError -XX:HeapDumpPath="$nd/logs" -XX:+PerfDisableSharedMem
    -Djava.net.preferIPv4Stack=true -Djdk.attach.allowAttachSelf=true
    --add-exports java.base/jdk.internal.misc=ALL-UNNAMED
    --add-exports java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED
    --add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED
    --add-exports java.rmi/sun.rmi.server=ALL-UNNAMED
    --add-exports java.sql/java.sql=ALL-UNNAMED
    --add-exports java.base/java.lang.ref=ALL-UNNAMED
    --add-exports jdk.unsupported/sun.misc=ALL-UNNAMED
    --add-exports jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED
    --add-exports jdk.attach/sun.tools.attach=ALL-UNNAMED
    --add-opens java.base/java.lang.module=ALL-UNNAMED
    --add-opens java.base/jdk.internal.loader=ALL-UNNAMED
    --add-opens java.base/jdk.internal.ref=ALL-UNNAMED
    --add-opens java.base/jdk.internal.reflect=ALL-UNNAMED
    --add-opens java.base/jdk.internal.math=ALL-UNNAMED
    --add-opens java.base/jdk.internal.module=ALL-UNNAMED
    --add-opens java.base/jdk.internal.util.jar=ALL-UNNAMED
    --add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED
    --add-opens java.base/sun.nio.ch=ALL-UNNAMED
    --add-opens java.base/java.io=ALL-UNNAMED
    --add-opens java.base/java.lang.reflect=ALL-UNNAMED
    --add-opens jdk.compiler/com.sun.tools.javac=ALL-UNNAMED
    --add-opens java.base/java.lang=ALL-UNNAMED
    --add-opens java.base/java.util=ALL-UNNAMED
    -Dio.netty.tryReflectionSetAccessible=true
    -Dio.netty.allocator.useCacheForAllThreads=true -Dio.netty.allocator.maxOrder=11
    -Dcassandra-foreground=yes
    -Dcassandra.config="file://$nd/cassandra.yaml"
    -Dcassandra.logdir="$nd/logs" -Dcassandra.storagedir="$nd"
    -Dlogback.configurationFile="file://$here/logback.xml"
    # A development cluster on loopback: no need to wait for gossip to settle for 30 s.
    -Dcassandra.skip_wait_for_gossip_to_settle=0 -Dcassandra.ring_delay_ms=2000
    -Dcassandra.superuser_setup_delay_ms=0
  )
  log "starting node $i on 127.0.0.$i:9042 (heap $heap, log $nd/logs/system.log)"
  nohup "$java" "${flags[@]}" -cp "$cp" org.apache.cassandra.service.CassandraDaemon \
    >"$nd/logs/stdout.log" 2>&1 </dev/null &
  echo $! >"$nd/pid"
  local waited=0
  until is_up "$i"; do
    if [ -z "$(pid_of "$i")" ]; then
      tail -40 "$nd/logs/stdout.log" >&2 || true
      tail -40 "$nd/logs/system.log" >&2 2>/dev/null || true
      die "node $i exited during start"
    fi
    [ "$waited" -ge "$timeout_s" ] && { tail -40 "$nd/logs/system.log" >&2 || true; die "node $i: CQL not up after ${timeout_s}s"; }
    sleep 2; waited=$((waited + 2))
  done
  log "node $i answers CQL on 127.0.0.$i:9042 after ${waited}s"
}

stop_node() { # $1 = node index
  local p; p=$(pid_of "$1")
  [ -n "$p" ] || return 0
  kill "$p" 2>/dev/null || true
  for _ in $(seq 1 60); do kill -0 "$p" 2>/dev/null || { rm -f "$dir/node$1/pid"; log "node $1 stopped"; return 0; }; sleep 0.5; done
  kill -9 "$p" 2>/dev/null || true
  rm -f "$dir/node$1/pid"
  log "node $1 killed after 30 s"
}

cmd="${1:-}"
case "$cmd" in
  start)
    n="${2:-1}"
    [[ "$n" =~ ^[1-3]$ ]] || die "start takes 1 to 3 nodes"
    for i in $(seq 1 "$n"); do start_node "$i"; done
    # Later nodes join through gossip; give the ring a moment to agree before clients connect.
    [ "$n" -gt 1 ] && sleep 5
    log "$n node(s) up; contact point 127.0.0.1:9042"
    ;;
  start-node) [[ "${2:-}" =~ ^[1-3]$ ]] || die "start-node takes 1 to 3"; start_node "$2" ;;
  kill)
    [[ "${2:-}" =~ ^[1-3]$ ]] || die "kill takes 1 to 3"
    p=$(pid_of "$2"); [ -n "$p" ] && kill -9 "$p" && rm -f "$dir/node$2/pid" && log "node $2 killed (-9)"
    ;;
  stop) for i in 3 2 1; do stop_node "$i"; done ;;
  status) for i in 1 2 3; do p=$(pid_of "$i"); [ -n "$p" ] && echo "node $i: pid $p, 127.0.0.$i:9042 $(is_up "$i" && echo up || echo down)"; done; true ;;
  *) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
