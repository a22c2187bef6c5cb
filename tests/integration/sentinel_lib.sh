# sentinel_lib.sh - a real replicated Redis with Redis Sentinel on loopback,
# for the Sentinel tests (source after lib.sh). Every process is tracked,
# so lib.sh's cleanup stops it.
#
#   start_primary PORT            a redis-server (start_redis)
#   start_replica PORT PRIMARY    a redis-server replicating 127.0.0.1:PRIMARY,
#                                 returns once the link is up
#   start_sentinel PORT PRIMARY NAME QUORUM DOWN_MS
#                                 a redis-sentinel monitoring NAME at
#                                 127.0.0.1:PRIMARY; returns once it answers
#                                 (env SENTINEL_EXTRA: more config lines)
#   sentinel_set NAME             one primary, one replica, three sentinels
#                                 (quorum 2, down-after $SENTINEL_DOWN_MS,
#                                 default 400 ms); sets RPRI RREP S1 S2 S3
#                                 and SENTINELS="127.0.0.1:S1,..."
#   sentinel_master PORT NAME     "host port" a sentinel names for NAME
#   redis_pid PORT                the pid of the redis-server on PORT
#   role PORT                     master|slave, from INFO replication
#   pid_file of each server: $T/redis-PORT.pid, of each sentinel
#   $T/sentinel-PORT.pid (kill -9 and SIGSTOP need the pid)

start_primary() { start_redis "$1" --pidfile "$T/redis-$1.pid"; }

start_replica() {
  start_redis "$1" --pidfile "$T/redis-$1.pid" --replicaof 127.0.0.1 "$2"
  wait_until 20 bash -c "redis-cli -p $1 info replication | grep -q 'master_link_status:up'" \
    || fail "replica $1 did not link to $2 within 20 s"
}

start_sentinel() {
  local port=$1 pri=$2 name=$3 quorum=$4 down=$5
  mkdir -p "$T/sentinel-$port"
  cat >"$T/sentinel-$port/sentinel.conf" <<EOF
port $port
bind 127.0.0.1
daemonize no
pidfile $T/sentinel-$port.pid
dir $T/sentinel-$port
sentinel monitor $name 127.0.0.1 $pri $quorum
sentinel down-after-milliseconds $name $down
sentinel failover-timeout $name 4000
sentinel parallel-syncs $name 1
${SENTINEL_EXTRA:-}
EOF
  redis-sentinel "$T/sentinel-$port/sentinel.conf" --loglevel notice \
    >"$T/sentinel-$port.log" 2>&1 &
  track $!
  wait_until 15 bash -c "redis-cli -p $port ping | grep -q -e PONG -e NOAUTH" \
    || fail "sentinel on $port did not start within 15 s"
}

sentinel_master() { redis-cli -p "$1" sentinel get-master-addr-by-name "$2" | tr '\n' ' ' | sed 's/ $//'; }
redis_pid() { cat "$T/redis-$1.pid"; }
role() { redis-cli -p "$1" info replication 2>/dev/null | tr -d '\r' | awk -F: '$1=="role"{print $2}'; }

sentinel_set() {
  local name=$1 down=${SENTINEL_DOWN_MS:-400}
  RPRI=$(free_port); start_primary "$RPRI"
  RREP=$(free_port); start_replica "$RREP" "$RPRI"
  S1=$(free_port); S2=$(free_port); S3=$(free_port)
  for s in "$S1" "$S2" "$S3"; do start_sentinel "$s" "$RPRI" "$name" 2 "$down"; done
  SENTINELS="127.0.0.1:$S1,127.0.0.1:$S2,127.0.0.1:$S3"
  # every sentinel knows the replica and the other two before a test fails anything over
  wait_until 30 bash -c "for s in $S1 $S2 $S3; do
      [ \"\$(redis-cli -p \$s sentinel master $name | awk 'p{print; exit} /^num-other-sentinels\$/{p=1}')\" = 2 ] || exit 1
      [ \"\$(redis-cli -p \$s sentinel master $name | awk 'p{print; exit} /^num-slaves\$/{p=1}')\" = 1 ] || exit 1
    done" || fail "the sentinels did not find each other and the replica within 30 s"
}
