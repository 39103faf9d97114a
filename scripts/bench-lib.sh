# bench-lib.sh: what scripts/bench and scripts/bench-fleet share (sourced,
# not run): a temp dir and the PIDs to stop at exit, free ports, the
# generated config of N servers, starting rescued and nginx, RSS, wrk.
# Not a test harness (that is qemu-tests/lib.sh).  The caller sets TOKEN,
# RESCUED and NGINX first; everything started is stopped, by PID.

BENCH_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# bench_init NAME: D, a fresh temp dir, removed at exit with PIDS stopped.
bench_init()
{
    D=$(mktemp -d "/tmp/rescued-$1.XXXXXX")
    chmod 755 "$D" # nginx's worker runs as another user
    PIDS=()
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
}

# BENCH_ATEXIT: a command run first at exit (bench-fleet's pg_down).
bench_cleanup()
{
    local p
    ${BENCH_ATEXIT:-}
    for p in "${PIDS[@]}"; do
        kill -TERM "$p" 2>/dev/null
    done
    for p in "${PIDS[@]}"; do
        wait "$p" 2>/dev/null
    done
    rm -rf "$D"
}

free_port()
{
    /usr/bin/python3 "$BENCH_LIB_DIR/../qemu-tests/freeport.py"
}

# gen_config FILE PORT N: N servers srv1..srvN with manual: power, MACs
# 52:54:ii:ii:ii:ii (scripts/bootstorm.c gives them the same), and the
# image files $D/vmlinuz and $D/initrd.gz (made empty unless there).
# BENCH_EXTRA: more lines for [rescued].
gen_config()
{
    local file=$1 port=$2 n=$3 dir
    dir=$(dirname "$file")/data
    mkdir -p "$dir"
    [ -e "$D/vmlinuz" ] || : >"$D/vmlinuz"
    [ -e "$D/initrd.gz" ] || : >"$D/initrd.gz"
    {
        cat <<EOF
[rescued]
listen      = 127.0.0.1:$port
boot_url    = http://127.0.0.1:$port
data_dir    = $dir
admin_token = $TOKEN
log_level   = warn
; wrk's $CONNECTIONS all come from 127.0.0.1
max_connections_per_ip = 0
${BENCH_EXTRA:-}

[console]
listen = 127.0.0.1:$(free_port)

[image]
kernel = $D/vmlinuz
initrd = $D/initrd.gz
overlay = $BENCH_LIB_DIR/../alpine-overlay

[project:acme]
token = bench-acme-token-0123456789
${BENCH_PROJECT_EXTRA:-}
EOF
        awk -v n="$n" 'BEGIN {
            for (i = 1; i <= n; i++)
                printf "\n[server:srv%d]\nmac = 52:54:%02x:%02x:%02x:%02x\n" \
                       "project = acme\npower = manual:\n", i,
                       int(i / 16777216) % 256, int(i / 65536) % 256,
                       int(i / 256) % 256, i % 256
        }'
    } >"$file"
}

now_ns()
{
    date +%s%N
}

# start_rescued CONFIG PORT [ARGS...]: sets RPID and START_MS (until
# /healthz).
start_rescued()
{
    local t0 t1 cfg=$1 port=$2
    shift 2
    t0=$(now_ns)
    "$RESCUED" -c "$cfg" "$@" 2>>"$D/rescued.log" &
    RPID=$!
    PIDS+=("$RPID")
    while ! curl -s -o /dev/null -m 1 "http://127.0.0.1:$port/healthz"; do
        kill -0 "$RPID" 2>/dev/null || {
            echo "bench: rescued exited; its log:" >&2
            cat "$D/rescued.log" >&2
            exit 1
        }
        [ $((($(now_ns) - t0) / 1000000)) -gt 30000 ] && {
            echo "bench: rescued did not answer /healthz in 30 s" >&2
            exit 1
        }
        sleep 0.005
    done
    t1=$(now_ns)
    START_MS=$(((t1 - t0) / 1000000))
}

stop_pid()
{
    kill -TERM "$1" 2>/dev/null
    wait "$1" 2>/dev/null
}

rss_kb()
{
    awk '/^VmRSS:/ {print $2}' "/proc/$1/status"
}

# nginx_start ROOT PORT PROBE [SENDFILE]: nginx-light, 1 worker, serving
# ROOT on PORT; waits until PROBE (a path) answers.  SENDFILE: off (nginx's
# own default, what make bench has always compared with) or on (Debian's
# nginx.conf; for big files).  Sets NPID and NGINX_VERSION.
nginx_start()
{
    local root=$1 port=$2 probe=$3 sendfile=${4:-off}
    mkdir -p "$D/nginx/logs"
    cat >"$D/nginx/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 1;
pid $D/nginx/nginx.pid;
error_log $D/nginx/logs/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    default_type application/json;
    keepalive_requests 1000000;
    sendfile $sendfile;
    server {
        listen 127.0.0.1:$port;
        root $root;
    }
}
EOF
    "$NGINX" -p "$D/nginx" -c "$D/nginx/nginx.conf" \
        2>>"$D/nginx/logs/stderr" &
    NPID=$!
    PIDS+=("$NPID")
    for _ in $(seq 100); do
        curl -s -o /dev/null "http://127.0.0.1:$port$probe" && break
        sleep 0.05
    done
    NGINX_VERSION=$("$NGINX" -v 2>&1 | sed 's/.*nginx\///')
}

# wrk_rps URL: prints requests/s; non-2xx answers make it fail.
wrk_rps()
{
    local out
    out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" \
        -H "Authorization: Bearer $TOKEN" "$1" 2>&1)
    echo "$out" >>"$D/wrk.log"
    if echo "$out" | grep -q 'Non-2xx'; then
        echo "bench: non-2xx answers from $1:" >&2
        echo "$out" >&2
        exit 1
    fi
    echo "$out" | awk '/^Requests\/sec:/ {print $2}'
}

# cpu_ticks PID: user+system CPU ticks (CLK_TCK) of PID and its children
# (nginx's worker), from /proc/PID/stat fields 14 and 15.
cpu_ticks()
{
    local p t=0
    for p in "$1" $(pgrep -P "$1"); do
        t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
    done
    echo "$t"
}

# load_note: the machine's load, printed beside each figure (it is shared).
load_note()
{
    uptime | sed 's/.*load average/load average/'
}
