"""Timing one child process, the way every bench/ script measures.

`sync` first, so no run pays for an earlier run's writeback; then the
child's wall time, its peak resident memory and, from `child_usage`, its
CPU time (user + system, all threads). A child that fails stops the
benchmark.

Peak memory comes from GNU time (`/usr/bin/time -f %M`) where it is
installed: the kernel's ru_maxrss of a child started from this script
begins at this script's own resident size at fork time (Linux carries the
high-water mark across fork and exec), so for a small child it reports the
benchmark, not the child. Without GNU time that upper bound is what is
printed, marked with "<=".
"""
import os
import subprocess
import sys
import tempfile
import time

GNU_TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None


def child(cmd):
    """Wall time (s) and peak RSS (bytes) of `cmd`, run to completion."""
    wall, rss, _ = child_usage(cmd)
    return wall, rss


def child_usage(cmd):
    """Wall time (s), peak RSS (bytes) and CPU time (s) of `cmd`, run to
    completion."""
    with tempfile.NamedTemporaryFile("r", prefix="decant-bench-rss-") as peak:
        run = [GNU_TIME, "-q", "-f", "%M", "-o", peak.name, *cmd] if GNU_TIME else cmd
        subprocess.run(["sync"], check=True)
        t = time.perf_counter()
        proc = subprocess.Popen(run, stdout=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            sys.exit(f"{' '.join(cmd)} failed with exit status {code}")
        # wait4 reports the child with the children it reaped (GNU time's
        # command), so the CPU time is the command's either way.
        cpu = usage.ru_utime + usage.ru_stime
        rss = int(peak.read().split()[-1]) * 1024 if GNU_TIME else usage.ru_maxrss * 1024
    return wall, rss, cpu


def peak_label():
    """How printed peaks are to be read."""
    return "peak" if GNU_TIME else "peak <="
