"""Timing one child process, the way every bench/ script measures.

`sync` first, so no run pays for an earlier run's writeback; then the
child's wall time and its peak resident memory (ru_maxrss). A child that
fails stops the benchmark.
"""
import os
import subprocess
import sys
import time


def child(cmd):
    """Wall time (s) and peak RSS (bytes) of `cmd`, run to completion."""
    subprocess.run(["sync"], check=True)
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(f"{' '.join(cmd)} failed with exit status {code}")
    return wall, usage.ru_maxrss * 1024
