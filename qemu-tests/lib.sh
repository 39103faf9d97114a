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

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
RESCUED=${RESCUED:-$ROOT/build/rescued}
RESCUECTL=${RESCUECTL:-$ROOT/build/rescuectl}
ADMIN_TOKEN=admin-secret-0123456789
ACME_TOKEN=acme-secret-0123456789
OTHER_TOKEN=other-secret-0123456789

# ---- plumbing ----

fail()
{
    echo "FAIL: $*" >&2
    exit 1
}

note()
{
    echo "# $*"
}

# skip MSG: this case cannot run here (counted apart from passes).
skip()
{
    echo "SKIP: $*"
    exit 77
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
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0));
print(s.getsockname()[1])'
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
    "$RESCUED" -n -c "${1:-$T/rescued.ini}" >"$T/last.out" 2>&1
    EXIT=$?
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

stop_rescued()
{
    local pid
    pid=$(rescued_pid)
    kill -TERM "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
}

# kill9_rescued: SIGKILL, and wait until it is gone (ours is reaped by
# wait; the lab's, started by scripts/lab, is not our child).
kill9_rescued()
{
    local pid
    pid=$(rescued_pid)
    ours "$pid" "$RESCUED" || fail "rescued is not running"
    kill -KILL "$pid"
    wait "$pid" 2>/dev/null
    wait_for "! kill -0 $pid 2>/dev/null" 5 || fail "rescued survived kill -9"
}

restart_rescued()
{
    start_rescued
}

reload_rescued()
{
    kill -HUP "$(rescued_pid)"
}

# rescued_child PATTERN: the pid of rescued's child whose command matches.
rescued_child()
{
    local pid c
    pid=$(rescued_pid)
    for c in $(cat /proc/"$pid"/task/*/children 2>/dev/null); do
        ours "$c" "$1" && echo "$c"
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
    STATUS=$(printf '%s' "$body" |
        in_ns curl "${args[@]}" "$RESCUED_URL$path")
    [ "$STATUS" = 000 ] && fail "api $method $path: no answer from rescued"
    return 0
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
    RESCUED_URL=${RESCUED_URL:-http://127.0.0.1:$PORT} \
        RESCUED_TOKEN=${RESCUED_TOKEN-$ADMIN_TOKEN} \
        in_ns "$RESCUECTL" "$@" >"$T/last.out" 2>&1
    EXIT=$?
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

# server_field SERVER FIELD: .FIELD (a jq path) of the server, as admin.
server_field()
{
    in_ns curl -s -m 5 -H "Authorization: Bearer $ADMIN_TOKEN" \
        "$RESCUED_URL/v1/servers/$1" | jq -r ".$2"
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

# The number of events every server has, for "nothing changed" checks.
events_total()
{
    local ids id
    ids=$(in_ns curl -s -m 5 -H "Authorization: Bearer $ADMIN_TOKEN" \
        "$RESCUED_URL/v1/servers" | jq -r '(.servers // .)[].id')
    for id in $ids; do
        in_ns curl -s -m 5 -H "Authorization: Bearer $ADMIN_TOKEN" \
            "$RESCUED_URL/v1/servers/$id/events" |
            jq -c '.events[] | [.id, .kind, .to]'
    done
}

# metric NAME{LABELS}: a value from the daemon's /metrics.
metric()
{
    in_ns curl -s -m 5 "$RESCUED_URL/metrics" |
        awk -v m="$1" '$1 == m {print $2}'
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
    tail -c +$(($(cat "$T/$1.mark") + 1)) "$T/$1.out"
}

# sos_expect NAME REGEX SECS: the output since the mark matches (grep -aE).
sos_expect()
{
    wait_for "sos_since $1 | grep -aqE -- '$2'" "${3:-10}" ||
        fail "$1: no /$2/ within ${3:-10} s; got: $(sos_since "$1" |
            tail -c 600 | tr -d '\r')"
}

# sos_expect_not NAME REGEX: the output since the mark does not match.
sos_expect_not()
{
    ! sos_since "$1" | grep -aqE -- "$2" ||
        fail "$1: unexpected /$2/: $(sos_since "$1" | tail -c 600)"
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
    ps -o pid= --ppid "$(cat "$T/$1.viewpid")" | tr -d ' '
}

# sos_batch USER [KEY]: a non-interactive ssh (no pty, stdin closed),
# bounded to 10 s; sets EXIT and OUT (stdout and stderr).
sos_batch()
{
    local key=${2:-$T/user_key}
    # shellcheck disable=SC2046
    timeout 10 ssh $(ssh_args "$key") -T "$1@127.0.0.1" </dev/null \
        >"$T/last.out" 2>&1
    EXIT=$?
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
# socket $T/NAME.serial (server; rescued connects to it).  The PC's i8042
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
        -chardev "socket,id=ser0,path=$T/$name.serial,server=on,wait=off" \
        -serial chardev:ser0 \
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
    qmp "$1" query-status | jq -r .status
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
    grep -v '^ready' "$T/$1.events" | jq -r .event
}

qmp_mark()
{
    QMP_MARK=$(wc -l <"$T/$1.events")
}

# expect_qmp_event NAME EVENT [SECONDS]: EVENT arrived since qmp_mark.
expect_qmp_event()
{
    wait_for "tail -n +$((QMP_MARK + 1)) $T/$1.events | grep -q '\"$2\"'" \
        "${3:-5}" || fail "qemu $1: no QMP $2 event (saw: $(qmp_events "$1" |
        tr '\n' ' '))"
}

# ---- the lab: real servers booting through dnsmasq, iPXE and rescued ----

LAB_DIR=$ROOT/build/lab
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
    touch "$T/.lab"
    # A fresh store: no server carries a state over from another case.
    "$ROOT/scripts/lab" down >>"$T/lab.log" 2>&1
    rm -rf "$LAB_DIR/data"
    LAB_ONLY="$*" "$ROOT/scripts/lab" up "$n" >>"$T/lab.log" 2>&1 ||
        fail "lab up: $(tail -5 "$T/lab.log")"
    eval "$("$ROOT/scripts/lab" env)"
    export RESCUED_URL RESCUED_TOKEN LAB_SSH_KEY
    ln -sf "$LAB_DIR/rescued.log" "$T/rescued.log"
    daemon_lab
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
