#!/usr/bin/env python3
"""One interactive SSH session on a pty, for the harness.

    sosview.py OUT FIFO LIFETIME -- ssh ARGS...

Runs the command on a pty; appends everything it prints to OUT (raw
bytes); copies whatever is written into the named pipe FIFO to it as
keystrokes.  Ends when the command ends (its exit status goes to
OUT.status) or after LIFETIME seconds (then the command is killed).
"""
import os
import pty
import select
import signal
import sys
import time


def main():
    out_path, fifo_path, lifetime = sys.argv[1], sys.argv[2], float(sys.argv[3])
    cmd = sys.argv[sys.argv.index("--") + 1:]
    pid, master = pty.fork()
    if pid == 0:
        # A background job of a script ignores SIGINT and SIGQUIT; the
        # command gets a terminal's defaults, so Ctrl-C works as for a user.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGQUIT, signal.SIG_DFL)
        os.execvp(cmd[0], cmd)
    # O_RDWR: the pipe never reports EOF between the harness's writes.
    fifo = os.open(fifo_path, os.O_RDWR | os.O_NONBLOCK)
    out = open(out_path, "ab", buffering=0)
    deadline = time.monotonic() + lifetime
    status = None
    while time.monotonic() < deadline:
        r, _, _ = select.select([master, fifo], [], [], 0.2)
        if master in r:
            try:
                data = os.read(master, 65536)
            except OSError:
                data = b""
            if not data:
                break
            out.write(data)
        if fifo in r:
            data = os.read(fifo, 65536)
            if data:
                os.write(master, data)
    else:
        os.kill(pid, signal.SIGKILL)
    _, st = os.waitpid(pid, 0)
    status = os.waitstatus_to_exitcode(st)
    with open(out_path + ".status", "w") as f:
        f.write("%d\n" % status)


main()
