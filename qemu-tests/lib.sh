# shellcheck shell=bash
# The harness's vocabulary: the verbs qemu-tests/cases/NNN-name are written
# in.  Sourced by qemu-tests/run, which owns the rest (case selection, the
# per-case subshell, $T, $PORT, $SSH_PORT, tear-down, the summary).
#
# Every verb that talks to rescued reaches "the daemon under test" through a
# few variables: run points them at the case's own rescued on loopback
# (daemon_loopback); lab_up points them at the lab's, inside its network
# namespace (daemon_lab).  So `ctl`, `api`, `wait_state`, `kill9_rescued`...
# serve both, and there is one verb per thing a case does.
#
# Nothing here blocks for long without a bound: waits go through wait_for
# (a deadline in seconds), curl calls carry -m.
#
# Cases run with errexit and pipefail (run).  So a verb either tests (a
# predicate: healthy, alive_rescued, ours; its status is the answer) or
# does and fails loudly: a verb that fetches (server_field, events_total,
# metric, qmp_status) ends the case when curl, jq or QMP fail, rather
# than print nothing for a check to compare.  fail and the expect_* verbs
# work from inside $(...) too.

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
RESCUED=${RESCUED:-$ROOT/build/rescued}
RESCUECTL=${RESCUECTL:-$ROOT/build/rescuectl}
ADMIN_TOKEN=admin-secret-0123456789
ACME_TOKEN=acme-secret-0123456789
OTHER_TOKEN=other-secret-0123456789

# ---- plumbing ----

# fail MSG: end the case, failed.  From a subshell ($(...), a pipeline) it
# signals the case's shell (run traps USR1), so the failure is not lost
# with the subshell's status.
fail()
{
    echo "FAIL: $*" >&2
    [ -e "$T/.fail" ] || echo "$*" >"$T/.fail"
    if [ -n "${CASE_PID:-}" ] && [ "$BASHPID" != "$CASE_PID" ]; then
        kill -USR1 "$CASE_PID" 2>/dev/null
    fi
    exit 1
}

note()
{
    echo "# $*"
}

# skip MSG: this case cannot run here (counted apart from passes).  Under
# STRICT=1 (make integration) a skip is a failure: what is missing
# (an image, a tool) is for setup to provide.
skip()
{
    echo "SKIP: $*"
    [ -e "$T/.skip" ] || echo "$*" >"$T/.skip"
    if [ -n "${CASE_PID:-}" ] && [ "$BASHPID" != "$CASE_PID" ]; then
        kill -USR2 "$CASE_PID" 2>/dev/null
    fi
    exit 77
}

# skip_unless_machine WHAT: skip the case unless this machine has WHAT,
# something no setup step can give it; the only skips STRICT=1 accepts.
# WHAT is one of: kvm (a usable /dev/kvm).
skip_unless_machine()
{
    local why
    case $1 in
    kvm) [ -r /dev/kvm ] && [ -w /dev/kvm ] && return 0
        why="no usable /dev/kvm" ;;
    *) fail "skip_unless_machine: '$1' is not a machine property (kvm)" ;;
    esac
    echo "$1" >"$T/.skip_machine"
    skip "$why"
}

# Record a child we started: "PID NAME", checked against /proc before kill.
track()
{
    echo "$1 $2" >>"$T/.pids"
}

# Is PID still the process we started (not a reused PID)?
ours()
{
    local cmd
    cmd=$({ tr '\0' ' ' <"/proc/$1/cmdline"; } 2>/dev/null) || return 1
    case $cmd in *"$2"*) return 0 ;; esac
    return 1
}

# wait_for 'COMMAND' SECONDS: poll every 0.2 s until COMMAND succeeds.
wait_for()
{
    local deadline=$((SECONDS + $2))
    while :; do
        eval "$1" >/dev/null 2>&1 && return 0
        [ $SECONDS -ge "$deadline" ] && return 1
        sleep 0.2
    done
}

free_port()
{
    /usr/bin/python3 "$HERE/freeport.py"
}

# ---- the daemon under test ----
#
#   NS_EXEC      command prefix that reaches it ("" or "ip netns exec NS")
#   RESCUED_URL  its base URL (rescuectl's variable; exported by lab_up)
#   ADMIN_TOKEN  its admin token
#   RESCUED_DIR  where its rescued.ini, rescued.log and rescued.pid are, and
#                the test QMP sockets of its servers (NAME.test.qmp)
#   RESCUED_CWD  the directory it runs in

daemon_loopback()
{
    NS_EXEC=
    RESCUED_URL=http://127.0.0.1:$PORT
    RESCUED_DIR=$T
    RESCUED_CWD=.
}

# After scripts/lab env: the lab's rescued, started by scripts/lab from the
# top of the tree.
daemon_lab()
{
    NS_EXEC="ip netns exec $LAB_NETNS"
    ADMIN_TOKEN=$RESCUED_TOKEN
    RESCUED_DIR=$LAB_DIR
    RESCUED_CWD=$ROOT
}

# in_ns CMD...: CMD where the daemon under test is reachable.
in_ns()
{
    # shellcheck disable=SC2086 # a command prefix, split into its words
    ${NS_EXEC:-} "$@"
}

# ---- config and the daemon ----

# The [rescued] section every case starts from.
base_config()
{
    cat <<EOF
[rescued]
listen      = 127.0.0.1:$PORT
boot_url    = http://127.0.0.1:$PORT
data_dir    = $T/data
admin_token = $ADMIN_TOKEN
log_level   = debug

[console]
listen = 127.0.0.1:$SSH_PORT
readonly_grace = ${SOS_GRACE:-30}

[image]
kernel = $T/vmlinuz
initrd = $T/initrd.gz
overlay = $ROOT/alpine-overlay

[project:acme]
token = $ACME_TOKEN

[project:other]
token = $OTHER_TOKEN
EOF
}

# config <<EOF ... EOF: the case's config file, $T/rescued.ini.
config()
{
    mkdir -p "$T/data"
    # Stand-in image files for the pre-flight check, unless a case made some.
    [ -e "$T/vmlinuz" ] || : >"$T/vmlinuz"
    [ -e "$T/initrd.gz" ] || : >"$T/initrd.gz"
    cat >"$T/rescued.ini"
}

# user_key: a fresh ed25519 key pair; prints the .pub file's path.
user_key()
{
    [ -f "$T/user_key.pub" ] ||
        ssh-keygen -q -t ed25519 -N '' -C user@test -f "$T/user_key" ||
        fail "ssh-keygen failed"
    echo "$T/user_key.pub"
}

# check_config [FILE]: rescued -n; sets EXIT and OUT.
check_config()
{
    EXIT=0
    "$RESCUED" -n -c "${1:-$T/rescued.ini}" >"$T/last.out" 2>&1 || EXIT=$?
    OUT=$(cat "$T/last.out")
}

healthy()
{
    in_ns curl -s -o /dev/null -m 1 "$RESCUED_URL/healthz"
}

# start_rescued: the daemon under test, from RESCUED_DIR/rescued.ini, its
# output appended to RESCUED_DIR/rescued.log; returns once /healthz answers.
start_rescued()
{
    local log=$RESCUED_DIR/rescued.log
    echo "--- start $(date +%T.%N)" >>"$log"
    # shellcheck disable=SC2086 # a command prefix, split into its words
    (cd "$RESCUED_CWD" && exec $NS_EXEC "$RESCUED" \
        -c "$RESCUED_DIR/rescued.ini" >>"$log" 2>&1) &
    RESCUED_PID=$!
    track "$RESCUED_PID" "$RESCUED"
    echo "$RESCUED_PID" >"$RESCUED_DIR/rescued.pid"
    wait_for healthy 10 ||
        fail "rescued did not answer /healthz within 10 s: $(tail -3 "$log")"
}

rescued_pid()
{
    cat "$RESCUED_DIR/rescued.pid"
}

alive_rescued()
{
    ours "$(rescued_pid)" "$RESCUED"
}

# signal_rescued SIG STATUS SECONDS: send SIG; rescued exits with STATUS
# (checked where it is our child; the lab's, started by scripts/lab, is
# not) and is gone within SECONDS.  Gone is "no longer ours": a zombie
# still answers kill -0.
signal_rescued()
{
    local sig=$1 want=$2 secs=$3 pid rc=0
    pid=$(rescued_pid)
    ours "$pid" "$RESCUED" || fail "rescued is not running"
    kill -"$sig" "$pid"
    if [ "$pid" = "${RESCUED_PID:-}" ]; then
        wait "$pid" 2>/dev/null || rc=$?
        [ $rc = "$want" ] || fail "rescued exited $rc on SIG$sig, not $want"
    fi
    wait_for "! ours $pid $RESCUED" "$secs" || fail "rescued survived SIG$sig"
}

# stop_rescued: SIGTERM, a clean exit 0.  kill9_rescued: SIGKILL.
stop_rescued() { signal_rescued TERM 0 10; }
kill9_rescued() { signal_rescued KILL 137 5; }

restart_rescued()
{
    start_rescued
}

reload_rescued()
{
    kill -HUP "$(rescued_pid)"
}

# rescued_child PATTERN: the pid of rescued's child whose command matches
# (nothing if none).
rescued_child()
{
    local pid c
    pid=$(rescued_pid)
    ours "$pid" "$RESCUED" || fail "rescued is not running"
    for c in $(cat /proc/"$pid"/task/*/children); do
        if ours "$c" "$1"; then echo "$c"; fi
    done
}

# ---- the HTTP API and rescuectl ----

# api METHOD PATH [BODY] [TOKEN]: BODY "-" for none, "@FILE" for a file;
# TOKEN "-" for no Authorization header (default: the admin token).
# Sets STATUS; the body is in $T/last.body (see expect_json, body).
api()
{
    local method=$1 path=$2 body=${3:--} token=${4:-$ADMIN_TOKEN}
    local args=(-s -m 10 --path-as-is -o "$T/last.body" -w '%{http_code}'
        -X "$method")
    [ "$token" != - ] && args+=(-H "Authorization: Bearer $token")
    if [ "$body" != - ]; then
        args+=(-H 'Content-Type: application/json')
        case $body in
        @*) args+=(--data-binary "$body") ;;
        *) args+=(--data-binary "@-") ;;
        esac
    fi
    # Only a body is piped: a curl that reads no stdin may be gone before
    # printf writes, and the SIGPIPE would fail the call under pipefail.
    if [ "$body" = - ] || [ "${body#@}" != "$body" ]; then
        STATUS=$(in_ns curl "${args[@]}" "$RESCUED_URL$path" </dev/null) ||
            fail "api $method $path: no answer from rescued (curl: $?)"
    else
        STATUS=$(printf '%s' "$body" |
            in_ns curl "${args[@]}" "$RESCUED_URL$path") ||
            fail "api $method $path: no answer from rescued (curl: $?)"
    fi
}

body()
{
    cat "$T/last.body"
}

expect_status()
{
    [ "$STATUS" = "$1" ] ||
        fail "expected HTTP $1, got $STATUS: $(head -c 300 "$T/last.body")"
}

# expect_json JQ-EXPR VALUE: the last body's value (jq -r) equals VALUE.
expect_json()
{
    local got
    got=$(jq -r "$1" <"$T/last.body" 2>/dev/null) ||
        fail "not JSON: $(head -c 300 "$T/last.body")"
    [ "$got" = "$2" ] || fail "expected $1 = '$2', got '$got'"
}

# A JSON error object: {"error": "...", "code": CODE}.
expect_error()
{
    jq -e '(.error|type) == "string" and (.error|length) > 0
           and (.code|type) == "string"' <"$T/last.body" >/dev/null 2>&1 ||
        fail "expected a JSON error, got: $(head -c 300 "$T/last.body")"
    [ -z "${1:-}" ] || expect_json .code "$1"
}

# ctl ARGS...: rescuectl against the daemon under test; sets EXIT and OUT.
# Environment prefixes work: RESCUED_TOKEN=x ctl list.
ctl()
{
    EXIT=0
    RESCUED_URL=${RESCUED_URL:-http://127.0.0.1:$PORT} \
        RESCUED_TOKEN=${RESCUED_TOKEN-$ADMIN_TOKEN} \
        in_ns "$RESCUECTL" "$@" >"$T/last.out" 2>&1 || EXIT=$?
    OUT=$(cat "$T/last.out")
    echo "\$ rescuectl $* -> $EXIT"
    sed 's/^/  | /' "$T/last.out"
}

expect_exit()
{
    [ "$EXIT" = "$1" ] || fail "expected exit $1, got $EXIT: $OUT"
}

# expect_output REGEX: some line of the last output matches (grep -E).
expect_output()
{
    grep -qE -- "$1" "$T/last.out" ||
        fail "expected output matching /$1/, got: $OUT"
}

expect_no_output()
{
    ! grep -qE -- "$1" "$T/last.out" ||
        fail "expected no output matching /$1/, got: $OUT"
}

# admin_get PATH: the body of a GET as admin, which must answer 2xx: a
# broken endpoint fails the case instead of reading as "nothing".
admin_get()
{
    local out
    out=$(in_ns curl -sS -f -m 5 -H "Authorization: Bearer $ADMIN_TOKEN" \
        "$RESCUED_URL$1" 2>&1) || fail "GET $1: ${out:-no answer}"
    printf '%s\n' "$out"
}

# server_field SERVER FIELD: .FIELD (a jq path) of the server, as admin.
server_field()
{
    local j
    j=$(admin_get "/v1/servers/$1")
    jq -r ".$2" <<<"$j" || fail "$1: no .$2 in $(head -c 300 <<<"$j")"
}

server_state()
{
    server_field "$1" state
}

expect_state()
{
    local got
    got=$(server_state "$1")
    [ "$got" = "$2" ] || fail "$1: expected state $2, got $got"
}

# wait_state SERVER STATE SECONDS
wait_state()
{
    wait_for "[ \"\$(server_state $1)\" = $2 ]" "$3" ||
        fail "$1: not $2 within $3 s (state: $(server_state "$1"), last_error: $(server_field "$1" last_error))"
}

# Every server's events, one a line, for "nothing changed" checks; the
# case fails if the list or an event log cannot be read.
events_total()
{
    local j ids id
    j=$(admin_get /v1/servers)
    ids=$(jq -r '(.servers // .)[].id' <<<"$j") ||
        fail "events_total: not a server list: $(head -c 300 <<<"$j")"
    [ -n "$ids" ] || fail "events_total: no servers"
    for id in $ids; do
        j=$(admin_get "/v1/servers/$id/events")
        jq -c '.events[] | [.id, .kind, .to]' <<<"$j" ||
            fail "events_total: $id: not an event list: $(head -c 300 <<<"$j")"
    done
}

# metric NAME{LABELS}: a value from the daemon's /metrics (nothing if the
# daemon has no such series; the case fails if /metrics does not answer).
metric()
{
    local m
    m=$(admin_get /metrics)
    awk -v m="$1" '$1 == m {print $2}' <<<"$m"
}

# ---- Serial over SSH: interactive sessions through sosview.py ----

# ssh_args KEY: the OpenSSH client options every session uses.
ssh_args()
{
    echo -p "$SSH_PORT" -i "$1" -o StrictHostKeyChecking=no \
        -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR
}

# sos_open NAME USER [KEY]: `ssh USER@127.0.0.1` on a pty; what it prints
# goes to $T/NAME.out, what sos_send writes is typed.  Lives <= 300 s.
sos_open()
{
    local name=$1 user=$2 key=${3:-$T/user_key}
    rm -f "$T/$name.fifo" "$T/$name.out.status"
    mkfifo "$T/$name.fifo"
    : >"$T/$name.out"
    # shellcheck disable=SC2046
    python3 "$HERE/sosview.py" "$T/$name.out" "$T/$name.fifo" 300 -- \
        ssh $(ssh_args "$key") "$user@127.0.0.1" &
    track $! "$HERE/sosview.py"
    echo $! >"$T/$name.viewpid"
    printf '0' >"$T/$name.mark"
}

# sos_send NAME TEXT: type TEXT (printf %b escapes: '\x1d' is Ctrl-]).
sos_send()
{
    printf '%b' "$2" >"$T/$1.fifo"
}

# sos_mark NAME: later sos_expect calls look only at output after this.
sos_mark()
{
    stat -c %s "$T/$1.out" >"$T/$1.mark"
}

# sos_since NAME: the output since the mark.
sos_since()
{
    local m
    m=$(cat "$T/$1.mark") || fail "no session $1"
    [ -f "$T/$1.out" ] || fail "$1: no output file"
    # (Not tail || fail: a reader that stops early is no failure.)
    tail -c +$((m + 1)) "$T/$1.out"
}

# sos_expect NAME REGEX SECS: the output since the mark matches (grep -aE).
# (grep reads it all: with -q it could end first, and under pipefail the
# writer's SIGPIPE would read as "no match".)
sos_expect()
{
    wait_for "sos_since $1 | grep -aE -- '$2' >/dev/null" "${3:-10}" ||
        fail "$1: no /$2/ within ${3:-10} s; got: $(sos_since "$1" |
            tail -c 600 | tr -d '\r')"
}

# sos_expect_not NAME REGEX: the output since the mark does not match.
# Only after a marker that follows what must not show: see the cases.
sos_expect_not()
{
    sos_since "$1" >"$T/$1.since"
    if grep -aqE -- "$2" "$T/$1.since"; then
        fail "$1: unexpected /$2/: $(tail -c 600 "$T/$1.since")"
    fi
}

# sos_wait_exit NAME SECS: the session ended; prints its exit status.
sos_wait_exit()
{
    wait_for "[ -s $T/$1.out.status ]" "${2:-10}" ||
        fail "$1: ssh still running after ${2:-10} s"
    cat "$T/$1.out.status"
}

# sos_ssh_pid NAME: the ssh client under the session's helper.
sos_ssh_pid()
{
    local pid
    pid=$(ps -o pid= --ppid "$(cat "$T/$1.viewpid")") ||
        fail "$1: no ssh under its session"
    echo "${pid##* }"
}

# sos_batch USER [KEY]: a non-interactive ssh (no pty, stdin closed),
# bounded to 10 s; sets EXIT and OUT (stdout and stderr).
sos_batch()
{
    local key=${2:-$T/user_key}
    # shellcheck disable=SC2046
    EXIT=0
    timeout 10 ssh $(ssh_args "$key") -T "$1@127.0.0.1" </dev/null \
        >"$T/last.out" 2>&1 || EXIT=$?
    OUT=$(cat "$T/last.out")
}

# ---- QEMU ----

# The rescue image a guest boots straight into (make image), or
# GUEST_KERNEL/GUEST_INITRD from the environment.
guest_kernel()
{
    GUEST_KERNEL=${GUEST_KERNEL:-$ROOT/build/image/vmlinuz}
    GUEST_INITRD=${GUEST_INITRD:-$ROOT/build/image/initramfs}
    [ -f "$GUEST_KERNEL" ] && [ -f "$GUEST_INITRD" ] ||
        skip "no guest kernel: $GUEST_KERNEL (run make image)"
}

# qemu_start_guest NAME [QEMU-ARGS...]: like qemu_start, but paused (-S),
# 256 MB, booting the rescue image's kernel with console=ttyS0 on a serial
# socket $T/NAME.serial (server; rescued connects to it), its chardev named
# serial0 like the lab's, which rescued's break goes to.  The PC's i8042
# keyboard stays (not a -device, so -nodefaults keeps it): SysRq by QMP
# send-key reaches the guest.
qemu_start_guest()
{
    local name=$1
    shift
    guest_kernel
    rm -f "$T/$name.qmp" "$T/$name.test.qmp" "$T/$name.log.qmp"
    qemu-system-x86_64 -accel tcg -nodefaults -display none -m 256 -S \
        -name "$name" -nic none \
        -kernel "$GUEST_KERNEL" -initrd "$GUEST_INITRD" \
        -append "console=ttyS0 loglevel=7 panic=-1" \
        -chardev "socket,id=serial0,path=$T/$name.serial,server=on,wait=off" \
        -serial chardev:serial0 \
        -qmp "unix:$T/$name.qmp,server=on,wait=off" \
        -qmp "unix:$T/$name.test.qmp,server=on,wait=off" \
        -qmp "unix:$T/$name.log.qmp,server=on,wait=off" \
        "$@" >>"$T/$name.qemu.log" 2>&1 &
    track $! qemu-system-x86_64
    echo $! >"$T/$name.qemupid"
    qmp_logger "$name"
}

# qemu_start NAME: a tiny guest (no disk, no NIC) with two QMP sockets:
# $T/NAME.qmp for rescued's driver, $T/NAME.test.qmp for the harness, and
# a third held open by a logger that writes QMP events to $T/NAME.events.
qemu_start()
{
    local name=$1
    rm -f "$T/$name.qmp" "$T/$name.test.qmp" "$T/$name.log.qmp"
    qemu-system-x86_64 -accel tcg -nodefaults -display none -m 64 \
        -name "$name" -nic none \
        -qmp "unix:$T/$name.qmp,server=on,wait=off" \
        -qmp "unix:$T/$name.test.qmp,server=on,wait=off" \
        -qmp "unix:$T/$name.log.qmp,server=on,wait=off" \
        >"$T/$name.qemu.log" 2>&1 &
    track $! qemu-system-x86_64
    echo $! >"$T/$name.qemupid"
    qmp_logger "$name"
}

# qmp_logger NAME: once QEMU NAME listens, log its QMP events to
# $T/NAME.events (held open on NAME.log.qmp).
qmp_logger()
{
    wait_for "[ -S $T/$1.log.qmp ]" 10 || fail "qemu $1 did not start"
    python3 "$HERE/qmp.py" --events "$T/$1.log.qmp" >"$T/$1.events" &
    track $! "$HERE/qmp.py"
    wait_for "grep -q '^ready' $T/$1.events" 5 ||
        fail "qmp event logger for $1 did not connect"
}

# qmp NAME COMMAND [ARGS-JSON]: one command on the socket kept for tests
# (RESCUED_DIR/NAME.test.qmp: the case's QEMU, or the lab's).
qmp()
{
    python3 "$HERE/qmp.py" "$RESCUED_DIR/$1.test.qmp" "$2" "${3:-}"
}

qmp_status()
{
    local j
    j=$(qmp "$1" query-status) || fail "qemu $1: query-status failed"
    jq -r .status <<<"$j" || fail "qemu $1: query-status said $j"
}

# expect_qmp_status NAME STATUS [SECONDS]
expect_qmp_status()
{
    wait_for "[ \"\$(qmp_status $1)\" = $2 ]" "${3:-5}" ||
        fail "qemu $1: expected status $2, got $(qmp_status "$1")"
}

# qmp_events NAME: the QMP event names seen so far, one a line.
qmp_events()
{
    sed '/^ready/d' "$T/$1.events" | jq -r .event
}

qmp_mark()
{
    QMP_MARK=$(wc -l <"$T/$1.events")
}

# expect_qmp_event NAME EVENT [SECONDS]: EVENT arrived since qmp_mark.
expect_qmp_event()
{
    wait_for "tail -n +$((QMP_MARK + 1)) $T/$1.events |
        grep '\"$2\"' >/dev/null" "${3:-5}" || fail "qemu $1: no QMP $2 event (saw: $(qmp_events "$1" |
        tr '\n' ' '))"
}

# ---- the lab: real servers booting through dnsmasq, iPXE and rescued ----

# scripts/lab's dir and namespace: LAB_DIR and LAB_NETNS from the
# environment (a lab per worktree or per helper), else build/lab and
# rescue-lab; exported, so scripts/lab, lab-serial and the tear-down agree.
LAB_DIR=${LAB_DIR:-$ROOT/build/lab}
LAB_NETNS=${LAB_NETNS:-rescue-lab}
export LAB_DIR LAB_NETNS
# shellcheck disable=SC2034 # the cases log in with it
LAB_PASSWORD=labroot

# lab_up N [I...]: scripts/lab up N, starting only QEMUs I... if given, then
# the lab's exports (RESCUED_URL, RESCUED_TOKEN, LAB_SSH_KEY, SERVERS...);
# from here on the daemon under test is the lab's (daemon_lab).  run's
# tear-down takes the lab down ($T/.lab).
lab_up()
{
    local n=$1
    shift
    local env
    touch "$T/.lab"
    # A fresh store: no server carries a state over from another case.
    "$ROOT/scripts/lab" down >>"$T/lab.log" 2>&1 ||
        fail "lab down: $(tail -5 "$T/lab.log")"
    rm -rf "$LAB_DIR/data"
    LAB_ONLY="$*" "$ROOT/scripts/lab" up "$n" >>"$T/lab.log" 2>&1 ||
        fail "lab up: $(tail -5 "$T/lab.log")"
    env=$("$ROOT/scripts/lab" env) || fail "lab env failed"
    eval "$env"
    export RESCUED_URL RESCUED_TOKEN LAB_SSH_KEY
    ln -sf "$LAB_DIR/rescued.log" "$T/rescued.log"
    daemon_lab
}

# ---- PostgreSQL (scripts/test-pg) ----

# pg_up: a PostgreSQL 15 of the case's own (initdb in a fresh dir, a unix
# socket of its own, no TCP); sets PG_DIR and PG_URL (a store URL).  run's
# tear-down stops and removes it, pass or fail ($T/.pg).  pg_stop and
# pg_start: an outage of the same server, its data kept.  pg_down: gone.
pg_up()
{
    PG_DIR=$("$ROOT/scripts/test-pg" up 2>>"$T/pg.log") ||
        fail "test-pg up: $(tail -5 "$T/pg.log")"
    echo "$PG_DIR" >>"$T/.pg"
    PG_URL=$("$ROOT/scripts/test-pg" url "$PG_DIR")
}
# pg_verb VERB [LOG]: scripts/test-pg VERB on the case's PostgreSQL; a
# failure fails the case with LOG's tail (default the case's pg.log).
pg_verb()
{
    "$ROOT/scripts/test-pg" "$1" "$PG_DIR" 2>>"$T/pg.log" ||
        fail "test-pg $1: $(tail -5 "${2:-$T/pg.log}")"
}
# pg_hang / pg_resume: PostgreSQL's processes stopped where they stand
# (SIGSTOP: a hung database host, which answers nothing and closes
# nothing), and let go on.  Tear-down lets a hung one go before it stops.
pg_hang() { pg_verb hang; }
pg_resume() { pg_verb resume; }
pg_stop() { pg_verb stop; }
pg_start() { pg_verb start "$PG_DIR/server.log"; }
pg_down()
{
    "$ROOT/scripts/test-pg" down "$PG_DIR"
}

# trust_rescue_host SERVER: scan the rescue OS's host keys, check that their
# fingerprints are the ones rescued shows, and trust exactly those.
trust_rescue_host()
{
    local ip want got
    ip=$(server_field "$1" rescue.ip)
    [ -n "$ip" ] && [ "$ip" != null ] || fail "$1: no rescue ip"
    in_ns ssh-keyscan -T 10 "$ip" 2>/dev/null >"$T/$1.keyscan"
    [ -s "$T/$1.keyscan" ] || fail "$1: no host key from $ip"
    got=$(ssh-keygen -lf "$T/$1.keyscan" | awk '{print $2}' | sort -u)
    want=$(server_field "$1" 'rescue.ssh_host_keys[].fingerprint' | sort -u)
    [ -n "$want" ] && [ "$got" = "$want" ] ||
        fail "$1: host keys $got are not the ones rescued shows: $want"
    cp "$T/$1.keyscan" "$T/$1.known_hosts"
    echo "$ip"
}

# rescue_ssh SERVER COMMAND: root on the rescue OS with the lab's key, the
# host key checked against what rescued showed.
rescue_ssh()
{
    local ip
    ip=$(server_field "$1" rescue.ip)
    in_ns ssh -i "$LAB_SSH_KEY" -o BatchMode=yes -o ConnectTimeout=20 \
        -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$T/$1.known_hosts" \
        "root@$ip" "$2"
}

# rescue_scp SERVER REMOTE LOCAL: scp -r from the rescue OS.
rescue_scp()
{
    local ip
    ip=$(server_field "$1" rescue.ip)
    in_ns scp -r -q -i "$LAB_SSH_KEY" -o BatchMode=yes \
        -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$T/$1.known_hosts" \
        "root@$ip:$2" "$3"
}

# serial_run SERVER PASSWORD COMMAND: log in on the server's serial console
# through Serial over SSH and run COMMAND; prints its output.
serial_run()
{
    "$ROOT/scripts/lab-serial" "ssh:$1" run "$2" "$3" --timeout "${4:-120}"
}

# ---- verbs added for issue 10 cases ----

# qmp_proxy NAME [HOLD]: qmpproxy.py on $T/NAME.proxy.qmp in front of QEMU
# NAME's $T/NAME.qmp (give rescued power = qmp:$T/NAME.proxy.qmp); its log
# of what passed, in $T/NAME.proxy.log.  HOLD: the first command of that
# name is never passed on (qmpproxy.py).
qmp_proxy()
{
    qmpproxy_up "$1" "$T/$1.qmp" ${2:+"$2"}
}

# qmpproxy_up NAME UPSTREAM [ARG]: qmpproxy.py on $T/NAME.proxy.qmp in
# front of UPSTREAM, its log in $T/NAME.proxy.log; returns once it listens
# ("ready" comes after listen).  The last proxy's log and socket go first:
# `>LOG &` truncates in the child, later, so a stale "ready" passed for
# this one while rescued met the dead proxy's socket (connection refused,
# case 067 once).  Sets PROXY to its pid.
qmpproxy_up()
{
    rm -f "$T/$1.proxy.log" "$T/$1.proxy.qmp"
    python3 "$HERE/qmpproxy.py" "$T/$1.proxy.qmp" "$2" ${3:+"$3"} \
        >"$T/$1.proxy.log" 2>&1 &
    PROXY=$!
    track "$PROXY" "$HERE/qmpproxy.py"
    wait_for "grep -q '^ready' $T/$1.proxy.log" 5 ||
        fail "qmp proxy for $1 did not start: $(cat "$T/$1.proxy.log" 2>&1)"
}

# expect_proxy NAME REGEX [SECS]: a line of NAME's proxy log matches.
expect_proxy()
{
    wait_for "grep -qE -- '$2' $T/$1.proxy.log" "${3:-10}" ||
        fail "qmp proxy $1: no /$2/ within ${3:-10} s; log: $(tail -n 8 \
            "$T/$1.proxy.log" | tr '\n' ';')"
}

# proxy_count NAME REGEX: how many lines of NAME's proxy log match.
proxy_count()
{
    awk -v re="$2" '$0 ~ re {n++} END {print n + 0}' "$T/$1.proxy.log"
}

# qmp_count NAME JQ-CONDITION: how many of QEMU NAME's QMP events so far
# meet it, e.g. '.event == "RESET" and .data.guest == false'.
qmp_count()
{
    jq -Rn "[inputs | fromjson? | select($2)] | length" "$T/$1.events" ||
        fail "qmp_count $1: cannot read $T/$1.events"
}

# pty_open NAME CMD...: CMD on a pty through sosview.py, as sos_open runs
# ssh: its output in $T/NAME.out, and sos_send, sos_mark, sos_expect and
# sos_wait_exit work on NAME.  sos_send NAME '\x03' is a Ctrl-C at the
# terminal.
pty_open()
{
    local name=$1
    shift
    rm -f "$T/$name.fifo" "$T/$name.out.status"
    mkfifo "$T/$name.fifo"
    : >"$T/$name.out"
    printf '0' >"$T/$name.mark"
    python3 "$HERE/sosview.py" "$T/$name.out" "$T/$name.fifo" 300 -- "$@" &
    track $! "$HERE/sosview.py"
    echo $! >"$T/$name.viewpid"
}

# sos_writable NAME [SECS]: NAME, a writer session, may type now: it was
# not told "read-only" when it attached, or it has been told "console
# writable again" since.
sos_writable()
{
    sos_expect "$1" 'as writer' 10
    if grep -aq 'read-only' "$T/$1.out"; then
        wait_for "grep -aq 'console writable again' $T/$1.out" "${2:-60}" ||
            fail "$1: still read-only after ${2:-60} s"
    fi
}

# head_request PATH [TOKEN]: HEAD PATH on the daemon (admin token by
# default, "-" for none) over a plain socket, so that bytes sent after the
# headers would show.  Sets STATUS; the headers go to $T/last.head, the
# bytes after them to $T/last.body.
head_request()
{
    local token=${2:-$ADMIN_TOKEN} hostport=${RESCUED_URL#http://}
    in_ns python3 - "${hostport%%/*}" "$1" "$token" "$T" <<'PY' ||
import socket, sys
hostport, path, token, t = sys.argv[1:5]
host, port = hostport.rsplit(":", 1)
req = "HEAD %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n" % (path, hostport)
if token != "-":
    req += "Authorization: Bearer %s\r\n" % token
s = socket.create_connection((host, int(port)), timeout=10)
s.sendall((req + "\r\n").encode())
data = b""
while True:
    d = s.recv(65536)
    if not d:
        break
    data += d
head, _, body = data.partition(b"\r\n\r\n")
open(t + "/last.head", "wb").write(head + b"\r\n")
open(t + "/last.body", "wb").write(body)
PY
        fail "HEAD $1: no answer from rescued"
    STATUS=$(head -1 "$T/last.head" | awk '{print $2}')
    echo "HEAD $1 -> $STATUS"
}

# expect_header NAME REGEX: the last head_request's NAME header matches.
expect_header()
{
    grep -iqE "^$1: $2"$'\r'"?\$" "$T/last.head" ||
        fail "expected header $1: /$2/, got: $(tr -d '\r' <"$T/last.head")"
}

# netns_new NAME: a network namespace of the case's own, with lo up, held
# by a tracked process: it goes away with that process at tear-down, with
# whatever the case built inside it (bridges, taps, veths).
netns_new()
{
    unshare --net -- sleep 3600 &
    track $! "sleep 3600"
    echo $! >"$T/$1.nspid"
    wait_for "[ \"\$(readlink /proc/$!/ns/net)\" != \"\$(readlink /proc/self/ns/net)\" ]" 5 ||
        fail "netns $1: no namespace"
    netns_exec "$1" ip link set lo up || fail "netns $1: lo"
}

# netns_exec NAME CMD...: CMD inside namespace NAME.
netns_exec()
{
    local pid
    pid=$(cat "$T/$1.nspid") || fail "no netns $1"
    shift
    nsenter -t "$pid" -n -- "$@"
}

# netns_bg NAME OUT CMD...: CMD in the background inside namespace NAME,
# its output to OUT, tracked by its own PID and name (nsenter execs it).
netns_bg()
{
    local pid out=$2
    pid=$(cat "$T/$1.nspid") || fail "no netns $1"
    shift 2
    nsenter -t "$pid" -n -- "$@" >"$out" 2>&1 &
    track $! "$1"
}

# netns_daemon NAME URL: from here on the daemon under test runs in
# namespace NAME and answers at URL (as lab_up does for the lab).
netns_daemon()
{
    NS_EXEC="nsenter -t $(cat "$T/$1.nspid") -n --"
    RESCUED_URL=$2
}

# ---- verbs added for issue 18 ----

# ipmi_sim_up PORT: ipmi_sim (Debian's openipmi) on 127.0.0.1:PORT, user
# admin / s3cret, whose chassis_control program $T/chassis logs each
# command to $T/chassis.log and keeps the power and the boot device (read
# back by `chassis bootparam get 5`), unless $T/boot.ignored exists: then
# it accepts a boot device and keeps none, as a BMC that drops it.
ipmi_sim_up()
{
    command -v ipmi_sim >/dev/null || fail "ipmi_sim missing (scripts/setup)"
    command -v ipmitool >/dev/null || fail "ipmitool missing (scripts/setup)"
    cat >"$T/chassis" <<EOF2
#!/bin/sh
echo "\$*" >>"$T/chassis.log"
case "\$1" in
get) shift
     for p in "\$@"; do
         case \$p in
         power) echo "power:\$(cat "$T/power" 2>/dev/null || echo 1)" ;;
         boot) echo "boot:\$(cat "$T/boot" 2>/dev/null || echo none)" ;;
         *) echo "\$p:0" ;;
         esac
     done ;;
set) [ "\$2" = power ] && echo "\$3" >"$T/power"
     [ "\$2" = boot ] && [ ! -e "$T/boot.ignored" ] && echo "\$3" >"$T/boot" ;;
esac
exit 0
EOF2
    chmod +x "$T/chassis"
    mkdir -p "$T/ipmi-state"
    cat >"$T/lan.conf" <<EOF2
name "issue18"
set_working_mc 0x20
  startlan 1
    addr 127.0.0.1 $1
    priv_limit admin
    allowed_auths_callback none md2 md5 straight
    allowed_auths_user none md2 md5 straight
    allowed_auths_operator none md2 md5 straight
    allowed_auths_admin none md2 md5 straight
    guid a123456789abcdefa123456789abcdef
  endlan
  chassis_control "$T/chassis"
  user 2 true "admin" "s3cret" admin 10 none md2 md5 straight
EOF2
    printf '%s\n' 'mc_setbmc 0x20' \
        'mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr' \
        'mc_enable 0x20' >"$T/sim.emu"
    ipmi_sim -c "$T/lan.conf" -f "$T/sim.emu" -s "$T/ipmi-state" -n \
        >"$T/ipmi_sim.log" 2>&1 &
    track $! ipmi_sim
    wait_for "ss -Hlun | grep -q 127.0.0.1:$1" 5 || fail "ipmi_sim did not listen"
}

# chassis_line REGEX: the number of the first line of $T/chassis.log that
# matches, or nothing.
chassis_line()
{
    grep -nE -- "$1" "$T/chassis.log" | head -1 | cut -d: -f1
}

# boot_as_server ID: what a server's iPXE does, by curl: fetch its script
# (GET /boot/MAC.ipxe); prints the script.
boot_as_server()
{
    local mac
    mac=$(server_field "$1" mac)
    in_ns curl -s -m 10 "$RESCUED_URL/boot/$mac.ipxe"
}

# rescue_as_server ID [IP]: what a server and its rescue OS do, by curl:
# the iPXE script, the kernel with the script's boot token (which binds the
# token to this address), then the phone-home with IP (default 192.0.2.7);
# waits for rescue.  Sets TOKEN.
rescue_as_server()
{
    TOKEN=$(boot_as_server "$1" | grep -o 'overlay/[0-9a-f]*' | head -1 |
        cut -d/ -f2)
    [ -n "$TOKEN" ] || fail "$1: no token in the rescue script"
    in_ns curl -s -f -o /dev/null "$RESCUED_URL/images/vmlinuz?token=$TOKEN" ||
        fail "$1: kernel fetch failed"
    wait_state "$1" rescue_booting 5
    api POST "/v1/phone-home/$TOKEN" "{\"ip\": \"${2:-192.0.2.7}\"}" -
    expect_status 200
    wait_state "$1" rescue 5
}

# lab_proxy ID FAKE: qmpproxy.py in front of lab server ID's QMP socket
# on $T/ID.proxy.qmp, answering FAKE commands itself (qmpproxy.py
# fake:FAKE), its log in $T/ID.proxy.log; then the lab's rescued drives
# ID through it (the ini's power line, and a reload).
lab_proxy()
{
    qmpproxy_up "$1" "$LAB_DIR/$1.qmp" "fake:$2"
    sed -i "s|^power *= *qmp:$LAB_DIR/$1.qmp|power    = qmp:$T/$1.proxy.qmp|" \
        "$LAB_DIR/rescued.ini"
    grep -q "qmp:$T/$1.proxy.qmp" "$LAB_DIR/rescued.ini" ||
        fail "lab_proxy: no power line of $1 in $LAB_DIR/rescued.ini"
    reload_rescued
    wait_for "grep -q '^1 open' $T/$1.proxy.log || grep -q 'inventory reloaded' $LAB_DIR/rescued.log" 10 ||
        fail "lab_proxy: the lab's rescued did not reload"
}

# ---- verbs added for issue 11 ----

# The LUKS server's passphrase (srv4, srv9...: scripts/lab-disks).
# shellcheck disable=SC2034 # the cases use it
LAB_LUKS_PASSPHRASE=$(sed -n 's/^LUKS_PASSPHRASE=//p' "$ROOT/scripts/lab-disks")

# rescue_mount_root SERVER: run, in the rescue OS, the mount command of the
# inventory's root guess (rescue.root_guess.mount), with the LUKS
# passphrase on its stdin (cryptsetup reads it there); the installed
# system's root is then on /mnt.  Prints what the command printed.
rescue_mount_root()
{
    local cmd
    cmd=$(server_field "$1" rescue.root_guess.mount)
    [ -n "$cmd" ] && [ "$cmd" != null ] || fail "$1: no root guess"
    note "$1: $cmd"
    printf '%s' "$LAB_LUKS_PASSPHRASE" | rescue_ssh "$1" "$cmd" 2>&1 ||
        fail "$1: $cmd failed"
}

# ---- verbs added for issue 16 (TLS) ----

# tls_ca NAME: a CA made with openssl, $T/NAME.pem and $T/NAME.key.
tls_ca()
{
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$T/$1.key" -out "$T/$1.pem" -days 2 -subj "/CN=$1" \
        >>"$T/openssl.log" 2>&1 || fail "openssl: no CA $1"
}

# tls_cert NAME CA: a server certificate for 127.0.0.1 and localhost signed
# by CA (tls_ca), $T/NAME.pem and $T/NAME.key.
tls_cert()
{
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$T/$1.key" -out "$T/$1.csr" -subj "/CN=$1" \
        >>"$T/openssl.log" 2>&1 || fail "openssl: no request for $1"
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$T/$1.ext"
    openssl x509 -req -in "$T/$1.csr" -CA "$T/$2.pem" -CAkey "$T/$2.key" \
        -CAcreateserial -days 1 -extfile "$T/$1.ext" -out "$T/$1.pem" \
        >>"$T/openssl.log" 2>&1 || fail "openssl: cannot sign $1"
}

# served_cert HOST:PORT: the subject of the certificate served there.
served_cert()
{
    openssl s_client -connect "$1" </dev/null 2>/dev/null |
        openssl x509 -noout -subject 2>/dev/null
}

# ---- verbs added for issue 14 (Redfish) ----

# redfish_cert: a self-signed certificate for 127.0.0.1 (and localhost),
# $T/bmc.pem and $T/bmc.key, made once per case; give rescued ?ca=$T/bmc.pem.
redfish_cert()
{
    [ -s "$T/bmc.pem" ] && return 0
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -days 2 -subj /CN=bmc.test -addext subjectAltName=IP:127.0.0.1,DNS:localhost \
        -keyout "$T/bmc.key" -out "$T/bmc.pem" >"$T/openssl.log" 2>&1 ||
        fail "openssl: $(cat "$T/openssl.log")"
}

# redfish_bmc NAME PORT [ARGS...]: qemu-tests/redfish_bmc.py on
# 127.0.0.1:PORT with $T/bmc.pem (where the daemon under test runs: in_ns),
# user admin / s3cret unless ARGS say otherwise, its log in $T/NAME.bmc.log;
# its PID in $T/NAME.bmc.pid.  The log is appended to (O_APPEND), so a
# case may empty it with : >FILE between steps.
redfish_bmc()
{
    local name=$1 port=$2
    shift 2
    redfish_cert
    # shellcheck disable=SC2086 # a command prefix, split into its words
    ${NS_EXEC:-} python3 "$HERE/redfish_bmc.py" --listen "127.0.0.1:$port" \
        --cert "$T/bmc.pem" --key "$T/bmc.key" "$@" >>"$T/$name.bmc.log" 2>&1 &
    track $! "$HERE/redfish_bmc.py"
    echo $! >"$T/$name.bmc.pid"
    wait_for "grep -q '^ready' $T/$name.bmc.log" 5 ||
        fail "redfish_bmc $name did not start: $(cat "$T/$name.bmc.log")"
}

# expect_bmc NAME REGEX [SECS]: a line of BMC NAME's log matches.
expect_bmc()
{
    wait_for "grep -qE -- '$2' $T/$1.bmc.log" "${3:-10}" ||
        fail "redfish_bmc $1: no /$2/ within ${3:-10} s; log: $(tail -n 12 \
            "$T/$1.bmc.log" | tr '\n' ';')"
}

# bmc_line NAME REGEX: the number of the first line of BMC NAME's log
# that matches, or nothing.
bmc_line()
{
    grep -nE -- "$2" "$T/$1.bmc.log" | head -1 | cut -d: -f1
}

# redfish_ready ID PORT: rescued's driver for ID has its first pre-flight
# answer from the BMC on PORT (it answers, or why not).  The port tells
# this start's lines from an older one's (the lab's log is appended to).
redfish_ready()
{
    wait_for "grep -qE '$1: pre-flight: redfish [^ ]*:$2[: ]' $RESCUED_DIR/rescued.log" 10 ||
        fail "$1: the redfish driver said nothing: $(tail -n 5 "$RESCUED_DIR/rescued.log")"
}

# rescue_iso: the generic virtual-media CD make image builds
# (build/image/rescue.iso, with its .slots); where the image has none yet,
# or an older one than its initramfs, scripts/mkiso makes one in $T.
rescue_iso()
{
    local img=$ROOT/build/image
    if [ -s "$img/rescue.iso.slots" ] && [ "$img/rescue.iso" -nt "$img/initramfs" ]; then
        echo "$img/rescue.iso"
        return
    fi
    mkdir -p "$T/iso"
    ln -sf "$img/vmlinuz" "$img/initramfs" "$T/iso/"
    "$ROOT/scripts/mkiso" "$T/iso" >"$T/mkiso.log" 2>&1 ||
        fail "scripts/mkiso: $(tail -3 "$T/mkiso.log")"
    echo "$T/iso/rescue.iso"
}

# ---- the browser console: WebSocket sessions through wsview.py ----
# (Debian's python3-websockets: /usr/bin/python3, whatever python3 is first
# on PATH.)  A session's bytes go to $T/NAME.out and its control messages
# to $T/NAME.ctl.out, so sos_mark, sos_since and sos_expect work on NAME
# and on NAME.ctl alike.

WSVIEW="/usr/bin/python3 $HERE/wsview.py"

# ws_open NAME SERVER TOKEN [--watch]: a ticket, then the WebSocket.
ws_open()
{
    local name=$1 srv=$2 tok=$3
    shift 3
    rm -f "$T/$name.cmds" "$T/$name.out.status"
    mkfifo "$T/$name.cmds"
    : >"$T/$name.out"
    : >"$T/$name.ctl.out"
    printf '0' >"$T/$name.mark"
    printf '0' >"$T/$name.ctl.mark"
    # shellcheck disable=SC2086 # WSVIEW is a command and its script
    $WSVIEW session "$RESCUED_URL/v1/servers/$srv" "$tok" "$T/$name.out" \
        "$T/$name.ctl.out" "$T/$name.cmds" 300 "$@" >>"$T/$name.err" 2>&1 &
    track $! /usr/bin/python3
    wait_for "grep -q ready $T/$name.ctl.out" 10 ||
        fail "$name: no WebSocket: $(tail -3 "$T/$name.err")"
}

# ws_send NAME TEXT: TEXT (printf %b escapes) as a binary frame.
ws_send()
{
    printf 'B %s\n' "$(printf '%b' "$2" | od -An -v -tx1 | tr -d ' \n')" \
        >"$T/$1.cmds"
}

# ws_ctl NAME JSON: a control message (a text frame).
ws_ctl()
{
    printf 'T %s\n' "$2" >"$T/$1.cmds"
}

# ws_close NAME: close with 1000; returns when the session has ended.
ws_close()
{
    printf 'C\n' >"$T/$1.cmds"
    wait_for "[ -s $T/$1.out.status ]" 10 || fail "$1: still open"
}

# ws_probe SERVER TICKET ORIGIN: one handshake; sets STATUS (101, 404...).
ws_probe()
{
    # shellcheck disable=SC2086
    STATUS=$($WSVIEW probe "$RESCUED_URL/v1/servers/$1" "$2" "$3") ||
        fail "ws_probe failed"
}

# ws_ticket SERVER TOKEN: prints a ticket.
ws_ticket()
{
    # shellcheck disable=SC2086
    $WSVIEW ticket "$RESCUED_URL/v1/servers/$1" "$2" || fail "no ticket"
}

# ---- several nodes on one store (issue 15, cases 105-109) ----
#
# node_config NAME FACILITY <<EOF ... EOF: node NAME of FACILITY in
# $T/NAME (its rescued.ini, data dir, log, pid; its API port in
# $T/NAME/port), on the store $STORE (default: a SQLite file all the
# case's nodes share); base_config's sections with the node's own ports,
# then stdin (the servers, the same on every node).
node_config()
{
    local dir=$T/$1 port ssh
    mkdir -p "$dir/data"
    port=$(free_port)
    ssh=$(free_port)
    echo "$port" >"$dir/port"
    [ -e "$T/vmlinuz" ] || : >"$T/vmlinuz"
    [ -e "$T/initrd.gz" ] || : >"$T/initrd.gz"
    {
        PORT=$port SSH_PORT=$ssh base_config |
            sed -e "s,^data_dir .*,data_dir    = $dir/data," \
                -e "/^log_level/a node        = $1\\
facility    = $2\\
store       = ${STORE:-sqlite:$T/shared.db}"
        cat
    } >"$dir/rescued.ini"
}

# use_node NAME: from now on the verbs (api, ctl, server_*, start_rescued,
# kill9_rescued, metric...) talk to node NAME.
use_node()
{
    RESCUED_DIR=$T/$1
    RESCUED_URL=http://127.0.0.1:$(cat "$T/$1/port")
    PORT=$(cat "$T/$1/port")
}

# log_ms NAME REGEX: the time (ms since the epoch) of node NAME's first log
# line matching REGEX.
log_ms()
{
    local line
    line=$(grep -m1 -E "$2" "$T/$1/rescued.log") ||
        fail "$1: no log line matches $2"
    date -d "${line%% *}" +%s%3N
}
