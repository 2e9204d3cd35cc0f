#!/usr/bin/env python3
"""Differential testing of decant against torch.load(weights_only=True).

From the repository root, in a throwaway venv:

    python3 -m venv /tmp/decant-torch
    /tmp/decant-torch/bin/pip install torch==2.15.0 safetensors==0.8.0 numpy
    cargo build -p decant-diff-runner
    /tmp/decant-torch/bin/python fuzz/differential/harness.py --seed 1 --minutes 30
    /tmp/decant-torch/bin/python fuzz/differential/harness.py --seed 1 --cases 2000 --save /tmp/diff

A pool of torch worker processes (this file with --worker) generates each case
(gen.py) and computes torch's reference (ref.py); one decant-diff-runner
process converts the same files; the main process compares them. See README.md
for the verdicts and the reference rules.
"""

import argparse
import collections
import json
import os
import re
import resource
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
DEFAULT_RUNNER = os.path.join(REPO, "target", "debug", "decant-diff-runner")

DIVERGENCE_DIFFERS = "DIVERGENCE (differs)"
DIVERGENCE_ACCEPTS = "DIVERGENCE (accepts what torch refuses)"
DIVERGENCE_DESIGN = "DIVERGENCE (converts what decant must refuse by design)"
DIVERGENCES = (DIVERGENCE_DIFFERS, DIVERGENCE_ACCEPTS, DIVERGENCE_DESIGN)
DECANT_CRASH = "decant crashed"
DECANT_TIMEOUT = "decant timeout"
FINDINGS = DIVERGENCES + (DECANT_CRASH, DECANT_TIMEOUT)
VERDICT_ORDER = ["agree", "agree-refuse", "design refusal", "gap", *DIVERGENCES, DECANT_CRASH,
                 DECANT_TIMEOUT, "capped", "torch crashed", "torch timeout", "generator error",
                 "reference error", "no runner"]


# ---------------------------------------------------------------------------
# Worker (a separate process: torch crashes, hangs and huge allocations stay here)
# ---------------------------------------------------------------------------

def worker_main(args):
    proto_out = os.fdopen(os.dup(1), "w", buffering=1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)            # stray prints must not corrupt the protocol

    def send(obj):
        proto_out.write(json.dumps(obj) + "\n")

    import torch
    torch.set_num_threads(1)
    sys.path.insert(0, HERE)
    import gen
    import ref

    def vm_size():
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
        return 0

    if args.rlimit_gib > 0:
        lim = vm_size() + (args.rlimit_gib << 30)
        resource.setrlimit(resource.RLIMIT_AS, (lim, lim))
    sys.setrecursionlimit(10000)
    send({"t": "ready", "pid": os.getpid()})
    for line in sys.stdin:
        req = json.loads(line)
        idx = req["idx"]
        if "path" in req:
            path, tags = req["path"], req.get("constructs", ["replay"])
        else:
            try:
                path, tags = gen.generate_case(args.seed, idx, args.outdir)
            except Exception:  # noqa: BLE001 - a generator bug, reported by the harness
                send({"t": "generr", "idx": idx, "error": traceback.format_exc(limit=6)[-2000:]})
                continue
        send({"t": "gen", "idx": idx, "path": path, "constructs": tags})
        t0 = time.perf_counter()
        if args.self_test and "__selftest_hang__" in path:
            time.sleep(3600)
        if args.self_test and "__selftest_crash__" in path:
            os.abort()
        # The generator flags files whose extended reference asks CPython for
        # more memory than the machine has (a memo index of 2**32); they get a
        # MemoryError under the worker's RLIMIT_AS. Without one (--rlimit-gib 0)
        # a soft limit is set for the duration of the load.
        guard = gen.HUGE_ALLOC_TAG in tags and resource.getrlimit(resource.RLIMIT_AS)[0] == resource.RLIM_INFINITY
        if guard:
            soft, hard = resource.getrlimit(resource.RLIMIT_AS)
            resource.setrlimit(resource.RLIMIT_AS, (vm_size() + (1 << 30), hard))
        try:
            r = ref.reference(path)
        finally:
            if guard:
                resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
        intact = not r.get("state_changed")
        if not intact:
            r["warning"] = "the load changed allowlisted objects in the torch worker; worker restarted"
        send({"t": "ref", "idx": idx, "ref": r, "ms": round((time.perf_counter() - t0) * 1000, 2)})
        if not intact:
            return


# ---------------------------------------------------------------------------
# Process plumbing
# ---------------------------------------------------------------------------

class LineProc:
    """A subprocess spoken to in JSON lines."""

    def __init__(self, argv, errpath, rlimit_as=None):
        self.argv = argv
        self.errpath = errpath
        self.rlimit_as = rlimit_as
        self.proc = None
        self.buf = b""

    def start(self):
        err = open(self.errpath, "ab")

        def pre():
            os.setsid()
            if self.rlimit_as:
                resource.setrlimit(resource.RLIMIT_AS, (self.rlimit_as, self.rlimit_as))

        self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                     preexec_fn=pre, bufsize=0)
        err.close()
        self.buf = b""
        self.last = time.monotonic()

    def fileno(self):
        return self.proc.stdout.fileno()

    def write(self, obj_or_line):
        line = obj_or_line if isinstance(obj_or_line, str) else json.dumps(obj_or_line)
        try:
            self.proc.stdin.write(line.encode("utf-8", "surrogateescape") + b"\n")
            return True
        except (BrokenPipeError, OSError):
            return False

    def read_lines(self):
        """-> (lines, eof)"""
        try:
            chunk = os.read(self.fileno(), 1 << 20)
        except OSError:
            chunk = b""
        if not chunk:
            return [], True
        self.buf += chunk
        *lines, self.buf = self.buf.split(b"\n")
        self.last = time.monotonic()
        return lines, False

    def kill(self):
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
        if self.proc:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            for f in (self.proc.stdin, self.proc.stdout):
                try:
                    f.close()
                except OSError:
                    pass

    def stderr_tail(self, n=600):
        try:
            with open(self.errpath, "rb") as f:
                f.seek(0, 2)
                size = f.tell()
                f.seek(max(0, size - n))
                return f.read().decode("utf-8", "replace").strip()
        except OSError:
            return ""


# ---------------------------------------------------------------------------
# Comparison and verdicts
# ---------------------------------------------------------------------------

def short(x, n=120):
    s = x if isinstance(x, str) else json.dumps(x, ensure_ascii=False)
    return s if len(s) <= n else s[:n] + "…"


def compare(ref, dec):
    diffs = []
    if "output_error" in dec:
        diffs.append(("output", f"decant wrote invalid safetensors: {dec['output_error']}"))
    rt, dt = ref["tensors"], dec.get("tensors") or {}
    only_ref = sorted(set(rt) - set(dt))
    only_dec = sorted(set(dt) - set(rt))
    if only_ref:
        diffs.append(("names", f"tensors only in torch: {short(only_ref)}"))
    if only_dec:
        diffs.append(("names", f"tensors only in decant: {short(only_dec)}"))
    big_endian = dec.get("byteorder") == "big"
    for n in sorted(set(rt) & set(dt)):
        for f in ("dtype", "shape", "sha256"):
            if f == "sha256" and big_endian and dt[n].get(f) == rt[n].get("sha256_swapped"):
                continue  # the documented big-endian untyped-storage difference
            if rt[n][f] != dt[n].get(f):
                a, b = rt[n][f], dt[n].get(f)
                if f == "sha256":
                    a, b = a[:12], (b or "")[:12]
                diffs.append((f, f"tensor {short(n, 60)!r} {f}: torch {a} decant {b}"))
    ra, da = ref["aliases"], dec.get("aliases") or {}
    if ra != da:
        keys = sorted(set(ra) | set(da))
        bad = [(k, ra.get(k), da.get(k)) for k in keys if ra.get(k) != da.get(k)]
        diffs.append(("aliases", "aliases differ (name: torch vs decant): " +
                      short("; ".join(f"{k}: {a} vs {b}" for k, a, b in bad), 200)))
    rd = collections.Counter(ref["dropped"])
    dd = collections.Counter(dec.get("dropped") or [])
    total = dec.get("dropped_total", sum(dd.values()))
    if total == sum(dd.values()):
        if rd != dd:
            diffs.append(("dropped", f"dropped differ: only torch {short(sorted(rd - dd))}, "
                                     f"only decant {short(sorted(dd - rd))}"))
    elif total != sum(rd.values()) or dd - rd:
        diffs.append(("dropped", f"dropped differ: torch {sum(rd.values())}, decant total {total}, "
                                 f"only decant {short(sorted(dd - rd))}"))
    ri = sorted(ref["ignored"])
    di = sorted(dec.get("ignored") or [])
    if ri != di:
        diffs.append(("ignored", f"ignored differ: torch {short(ri)} decant {short(di)}"))
    return diffs


def verdict(ref, dec):
    """-> (verdict, [diff kind, text] list)"""
    rs = ref.get("status")
    if rs == "crashed":
        return "torch crashed", []
    if rs == "timeout":
        return "torch timeout", []
    if dec is None:
        return "no runner", []
    ds = dec.get("result")
    if ds == "crashed":
        return DECANT_CRASH, [("crash", dec.get("message", ""))]
    if ds == "timeout":
        return DECANT_TIMEOUT, []
    if ds == "capped" or rs == "too_big":
        return "capped", []
    if rs == "ref_error" or ds not in ("converted", "refused"):
        return "reference error", [("error", ref.get("error") or dec.get("message") or str(dec))]
    if rs == "loaded":
        if ds == "converted":
            d = compare(ref, dec)
            return (DIVERGENCE_DIFFERS, d) if d else ("agree", [])
        return "gap", []
    if rs == "refused":
        if ds == "converted":
            return DIVERGENCE_ACCEPTS, [("torch", ref.get("error", ""))]
        return "agree-refuse", []
    if rs == "design":
        if ds == "converted":
            return DIVERGENCE_DESIGN, [("design", ref.get("reason", ""))]
        return "design refusal", []
    return "reference error", [("error", str(ref))]


NUM_RE = re.compile(r"\b(0x[0-9a-fA-F]+|\d+)\b")
QUOTE_RE = re.compile(r"'[^']*'|\"[^\"]*\"|`[^`]*`")
PATH_RE = re.compile(r"(?<![\w/])[^\s/'\"()]+/(?=(?i:data|version|byteorder|\.data|\.format_version|"
                     r"\.storage_alignment|\.data/serialization_id)\b)")


def normalize(msg):
    """Group key for a refusal message: quoted text, numbers and archive
    root names stripped."""
    msg = QUOTE_RE.sub("'…'", msg or "")
    msg = PATH_RE.sub("…/", msg)
    msg = NUM_RE.sub("N", msg)
    return msg[:200]


def norm_torch_error(err):
    err = err or ""
    typ, sep, msg = err.partition(": ")
    if "Unsupported global" in msg:
        msg = re.sub(r" was not an allowed global.*", "", msg)
    else:
        for cut in (": (", ": {", ": [", ": tensor"):
            if cut in msg[10:]:
                msg = msg[:10 + msg[10:].index(cut)]
    return normalize(typ + sep + msg)[:120]


# ---------------------------------------------------------------------------
# Harness
# ---------------------------------------------------------------------------

class Case:
    __slots__ = ("idx", "path", "constructs", "ref", "dec", "ms", "done", "gen")

    def __init__(self, idx):
        self.idx = idx
        self.path = None
        self.constructs = []
        self.ref = None
        self.dec = None
        self.ms = None
        self.done = False
        self.gen = False


class Harness:
    def __init__(self, args):
        self.args = args
        self.tmp = tempfile.mkdtemp(prefix="decant-diff-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
        self.cases = {}
        self.retry = collections.deque()
        self.next_idx = args.start
        self.issued = 0
        self.finished = []     # (idx, verdict, diffs, constructs, path, ref, dec)
        self.counts = collections.Counter()
        self.generr = []
        self.sel = selectors.DefaultSelector()
        self.workers = []
        self.runner = None
        self.runner_inflight = collections.deque()
        self.runner_queue = collections.deque()
        self.runner_restarts = 0
        self.worker_restarts = 0
        self.saved_per_group = collections.Counter()
        self.replay = None
        self.state_resets = 0

    # -- processes ----------------------------------------------------------
    def start_worker(self, w=None):
        a = self.args
        argv = [sys.executable, os.path.abspath(__file__), "--worker", "--seed", str(a.seed),
                "--outdir", self.tmp, "--rlimit-gib", str(a.rlimit_gib)] + (["--self-test"] if a.self_test else [])
        if w is None:
            w = LineProc(argv, os.path.join(self.tmp, f"worker{len(self.workers)}.err"))
            w.assigned = collections.deque()
            self.workers.append(w)
        w.ready = False
        w.start()
        w.started = time.monotonic()
        self.sel.register(w.proc.stdout, selectors.EVENT_READ, ("worker", w))
        return w

    def restart_worker(self, w):
        try:
            self.sel.unregister(w.proc.stdout)
        except (KeyError, ValueError):
            pass
        w.kill()
        self.worker_restarts += 1
        requeue = list(w.assigned)
        w.assigned.clear()
        for idx in reversed(requeue):
            self.retry.appendleft(idx)
        self.start_worker(w)

    def start_runner(self):
        if not self.args.runner_ok:
            return
        self.runner = LineProc([self.args.runner], os.path.join(self.tmp, "runner.err"),
                               rlimit_as=self.args.runner_rlimit_gib << 30)
        self.runner.start()
        self.sel.register(self.runner.proc.stdout, selectors.EVENT_READ, ("runner", self.runner))

    def restart_runner(self):
        try:
            self.sel.unregister(self.runner.proc.stdout)
        except (KeyError, ValueError):
            pass
        self.runner.kill()
        self.runner_restarts += 1
        for idx in reversed(self.runner_inflight):
            self.runner_queue.appendleft(idx)
        self.runner_inflight.clear()
        self.start_runner()

    # -- scheduling ---------------------------------------------------------
    def more_cases(self):
        if self.retry:
            return True
        if self.replay is not None:
            return self.next_idx < len(self.replay)
        if self.args.only is not None:
            return self.issued < len(self.args.only)
        if self.args.cases is not None and self.issued >= self.args.cases:
            return False
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return False
        return True

    def take_case(self):
        if self.retry:
            return self.retry.popleft()
        if self.args.only is not None:
            idx = self.args.only[self.issued]
        else:
            idx = self.next_idx
            self.next_idx += 1
        self.issued += 1
        self.cases[idx] = Case(idx)
        return idx

    def request(self, idx):
        req = {"idx": idx}
        if self.replay is not None:
            req["path"], req["constructs"] = self.replay[idx]
        return req

    def pump(self):
        for w in self.workers:
            if not w.ready:
                continue
            while len(w.assigned) < self.args.inflight and self.more_cases():
                if not w.assigned:
                    w.last = time.monotonic()
                idx = self.take_case()
                w.assigned.append(idx)
                if not w.write(self.request(idx)):
                    break
        if self.runner:
            while self.runner_queue and len(self.runner_inflight) < 32:
                idx = self.runner_queue.popleft()
                c = self.cases[idx]
                self.runner_inflight.append(idx)
                if not self.runner.write(c.path):
                    break

    # -- events -------------------------------------------------------------
    def on_worker_msg(self, w, m):
        t = m.get("t")
        if t == "ready":
            w.ready = True
            return
        idx = m["idx"]
        c = self.cases[idx]
        if t == "gen":
            c.path = m["path"]
            c.constructs = m["constructs"]
            c.gen = True
            if self.runner:
                self.runner_queue.append(idx)
            else:
                c.dec = None
        elif t == "ref":
            if "warning" in m["ref"]:
                w.retiring = True      # the worker exits after this answer
                self.state_resets += 1
            c.ref = m["ref"]
            c.ms = m.get("ms")
            if w.assigned and w.assigned[0] == idx:
                w.assigned.popleft()
            self.maybe_finish(c)
        elif t == "generr":
            if w.assigned and w.assigned[0] == idx:
                w.assigned.popleft()
            self.generr.append((idx, m["error"]))
            self.record(c, "generator error", [("error", m["error"].strip().splitlines()[-1])])

    def on_worker_dead(self, w, why):
        if not w.assigned or getattr(w, "retiring", False):
            w.retiring = False
            self.restart_worker(w)
            return
        idx = w.assigned.popleft()
        c = self.cases[idx]
        tail = w.stderr_tail(300)
        if c.gen:
            c.ref = {"status": why, "error": tail[-300:]}
            self.maybe_finish(c)
        else:
            self.generr.append((idx, f"generator {why}: {tail}"))
            self.record(c, "generator error", [("error", f"generator {why}")])
        self.restart_worker(w)

    def on_runner_line(self, line):
        if not self.runner_inflight:
            return
        idx = self.runner_inflight.popleft()
        c = self.cases[idx]
        try:
            dec = json.loads(line)
        except ValueError:
            dec = {"result": "unreadable", "message": "bad JSON from runner: " + short(line.decode("utf-8", "replace"))}
        if dec.get("path") not in (None, c.path):
            dec = {"result": "unreadable", "message": f"runner answered for {dec.get('path')} not {c.path}"}
        c.dec = dec
        self.maybe_finish(c)

    def on_runner_dead(self, why):
        if self.runner_inflight:
            idx = self.runner_inflight.popleft()
            c = self.cases[idx]
            c.dec = {"result": why, "message": self.runner.stderr_tail(400)}
            self.maybe_finish(c)
        self.restart_runner()

    def maybe_finish(self, c):
        if c.done or c.ref is None:
            return
        if self.runner and c.gen and c.dec is None:
            return
        v, diffs = verdict(c.ref, c.dec if self.runner else None)
        self.record(c, v, diffs)

    def record(self, c, v, diffs):
        c.done = True
        self.counts[v] += 1
        keep = v not in ("agree", "agree-refuse", "design refusal") or self.args.verbose or \
            self.args.only is not None or self.replay is not None
        self.finished.append((c.idx, v, diffs, c.constructs, c.path,
                              c.ref if keep or v == "gap" else
                              {"status": (c.ref or {}).get("status"), "mode": (c.ref or {}).get("mode")},
                              c.dec if keep or v == "gap" else None))
        try:
            saved = self.maybe_save(c, v, diffs)
        except OSError as e:
            print(f"warning: could not save case {c.idx}: {e}", file=sys.stderr)
            saved = False
        if self.args.only is not None or self.replay is not None or self.args.verbose:
            print(f"case {c.idx}: {v} {c.path}\n  constructs: {' '.join(c.constructs)}\n"
                  f"  torch: {short(c.ref, 400)}\n  decant: {short(c.dec, 400)}", flush=True)
            for _, d in diffs:
                print("   ", d)
        if c.path and not saved and not self.args.keep and self.replay is None:
            try:
                os.unlink(c.path)
            except OSError:
                pass
        del self.cases[c.idx]

    def maybe_save(self, c, v, diffs):
        a = self.args
        if not a.save or not c.path or not os.path.exists(c.path):
            return False
        if v in FINDINGS:
            group = v
        elif v == "gap":
            group = "gap:" + normalize((c.dec or {}).get("message", ""))
            if self.saved_per_group[group] >= a.save_gaps:
                return False
        else:
            return False
        self.saved_per_group[group] += 1
        sub = {DIVERGENCE_DIFFERS: "divergence-differs", DIVERGENCE_ACCEPTS: "divergence-accepts",
               DIVERGENCE_DESIGN: "divergence-design", DECANT_CRASH: "decant-crash",
               DECANT_TIMEOUT: "decant-timeout"}.get(v, "gap")
        d = os.path.join(a.save, sub)
        os.makedirs(d, exist_ok=True)
        dst = os.path.join(d, os.path.basename(c.path))
        shutil.copyfile(c.path, dst)
        with open(dst + ".json", "w") as f:
            json.dump({"seed": a.seed, "idx": c.idx, "verdict": v, "diffs": [t for _, t in diffs],
                       "constructs": c.constructs, "torch": c.ref, "decant": c.dec,
                       "reproduce": f"{sys.executable} {os.path.relpath(__file__, REPO)} --seed {a.seed} "
                                    f"--only {c.idx} --runner {a.runner}"},
                      f, indent=1)
        return True

    # -- main loop ------------------------------------------------------------
    def run(self):
        a = self.args
        self.t0 = time.monotonic()
        self.deadline = time.monotonic() + a.minutes * 60 if a.minutes else None
        for _ in range(a.workers):
            self.start_worker()
        self.start_runner()
        t_ready = None
        last_progress = time.monotonic()
        try:
            while True:
                if t_ready is None and all(w.ready for w in self.workers):
                    t_ready = time.monotonic()
                    self.t0 = t_ready
                    if a.minutes:
                        self.deadline = t_ready + a.minutes * 60
                self.pump()
                busy = any(w.assigned for w in self.workers) or self.cases
                if not busy and not self.more_cases() and all(w.ready for w in self.workers):
                    break
                for key, _ in self.sel.select(timeout=0.5):
                    kind, proc = key.data
                    lines, eof = proc.read_lines()
                    if kind == "worker":
                        for ln in lines:
                            self.on_worker_msg(proc, json.loads(ln))
                        if eof:
                            self.on_worker_dead(proc, "crashed")
                    else:
                        for ln in lines:
                            self.on_runner_line(ln)
                        if eof:
                            self.on_runner_dead("crashed")
                now = time.monotonic()
                for w in self.workers:
                    if not w.ready and now - w.started > 120:
                        raise SystemExit("a torch worker did not start within 120 s: " + w.stderr_tail())
                    if w.ready and w.assigned and now - w.last > a.timeout:
                        self.on_worker_dead(w, "timeout")
                if self.runner and self.runner_inflight and now - self.runner.last > a.timeout:
                    self.on_runner_dead("timeout")
                if self.runner and not self.runner_inflight:
                    self.runner.last = now
                if now - last_progress > a.progress and t_ready:
                    last_progress = now
                    n = len(self.finished)
                    print(f"[{now - self.t0:6.0f}s] {n} cases, {n / max(1e-9, now - self.t0):.0f}/s, "
                          f"divergences {sum(self.counts[v] for v in FINDINGS)}, gaps {self.counts['gap']}",
                          file=sys.stderr, flush=True)
        except KeyboardInterrupt:
            print("interrupted; summarising what finished", file=sys.stderr)
        finally:
            self.elapsed = time.monotonic() - self.t0
        for w in self.workers:
            w.kill()
        if self.runner:
            self.runner.kill()

    def cleanup(self):
        if not self.args.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- report ---------------------------------------------------------------
    def summary(self):
        a = self.args
        n = len(self.finished)
        out = []
        p = out.append
        p("=" * 78)
        p(f"decant differential harness: seed {a.seed}, {n} cases in {self.elapsed:.1f} s = "
          f"{n / max(self.elapsed, 1e-9):.1f} cases/s ({a.workers} torch workers"
          f"{'' if self.runner else ', NO RUNNER: torch side only'})")
        if self.worker_restarts or self.runner_restarts:
            p(f"restarts: torch workers {self.worker_restarts} ({self.state_resets} because an extended load "
              f"changed allowlisted objects), runner {self.runner_restarts}")
        p("verdicts:")
        for v in VERDICT_ORDER + sorted(set(self.counts) - set(VERDICT_ORDER)):
            if self.counts[v]:
                p(f"  {v:<58} {self.counts[v]:>7}")
        ext = collections.Counter(v for _, v, _, _, _, r, _ in self.finished if (r or {}).get("mode") == "extended")
        if ext:
            p("  of which torch's reference came from the extended opcode fallback: " +
              ", ".join(f"{v} {ext[v]}" for v in VERDICT_ORDER if ext[v]))
        finds = [f for f in self.finished if f[1] in FINDINGS]
        if finds:
            p("")
            p(f"DIVERGENCES and decant crashes ({len(finds)}):")
            groups = collections.OrderedDict()
            for f in finds:
                idx, v, diffs, cons, path, ref, dec = f
                if v == DIVERGENCE_ACCEPTS:
                    sig = (v, "torch: " + norm_torch_error(ref.get("error", "")))
                elif v == DIVERGENCE_DESIGN:
                    sig = (v, "design: " + ref.get("reason", "").split(":")[0])
                else:
                    sig = (v, ", ".join(sorted({k for k, _ in diffs})))
                groups.setdefault(sig, []).append(f)
            full = len(finds) <= a.list_all
            for sig, fs in sorted(groups.items(), key=lambda kv: -len(kv[1])):
                common = set(fs[0][3])
                for f in fs[1:]:
                    common &= set(f[3])
                p(f"* {sig[0]} [{sig[1]}] x{len(fs)}; constructs common to all: "
                  f"{short(' '.join(sorted(common)), 300) or '-'}")
                for f in (fs if full else fs[:3]):
                    idx, v, diffs, cons, path, ref, dec = f
                    mode = (ref or {}).get("mode", "")
                    p(f"    case {idx} ({mode}) {self.where(path)}")
                    p(f"      constructs: {short(' '.join(cons), 400)}")
                    for _, d in diffs[:6]:
                        p(f"      - {short(d, 300)}")
                    if len(diffs) > 6:
                        p(f"      - ... {len(diffs) - 6} more")
                if not full and len(fs) > 3:
                    p(f"    ... {len(fs) - 3} more (all listed in {self.findings_file or 'the --save directory'})")
        gaps = [f for f in self.finished if f[1] == "gap"]
        if gaps:
            p("")
            p(f"GAPS: torch loads, decant refuses ({len(gaps)}), by decant's message:")
            loaded_cons = collections.Counter()
            loaded_n = 0
            for f in self.finished:
                if f[1] in ("agree", "gap", DIVERGENCE_DIFFERS):
                    loaded_n += 1
                    loaded_cons.update(set(f[3]))
            bymsg = collections.defaultdict(list)
            for f in gaps:
                dec = f[6] or {}
                bymsg[(dec.get("kind", "?"), normalize(dec.get("message", "")))].append(f)
            for (kind, msg), fs in sorted(bymsg.items(), key=lambda kv: -len(kv[1])):
                cc = collections.Counter()
                for f in fs:
                    cc.update(set(f[3]))
                # constructs most specific to this group (present in most members, rare elsewhere)
                lift = sorted(((cc[c] / len(fs)) * (cc[c] / loaded_cons[c]), c) for c in cc
                              if cc[c] / len(fs) >= 0.3)
                top = [c for _, c in sorted(lift, reverse=True)[:4]]
                ex = fs[0]
                p(f"* x{len(fs):<5} [{kind}] {msg}")
                p(f"      likely constructs: {' '.join(top)}")
                p(f"      e.g. case {ex[0]} {self.where(ex[4])}: {short((ex[6] or {}).get('message', ''), 200)}")
            p("")
            p("GAPS by construct (gap cases with it / torch-loaded cases with it):")
            gc = collections.Counter()
            example = {}
            for f in gaps:
                for c in set(f[3]):
                    gc[c] += 1
                    example.setdefault(c, f)
            rows = sorted(gc, key=lambda c: (-(gc[c] / loaded_cons[c]), -gc[c]))
            for c in rows[:a.construct_rows]:
                ex = example[c]
                p(f"  {c:<40} {gc[c]:>6} / {loaded_cons[c]:<6} e.g. case {ex[0]}: "
                  f"{short(normalize((ex[6] or {}).get('message', '')), 90)}")
            if len(rows) > a.construct_rows:
                p(f"  ... {len(rows) - a.construct_rows} more constructs")
        other = [f for f in self.finished if f[1] in ("torch crashed", "torch timeout", "generator error",
                                                      "reference error")]
        if other:
            p("")
            p("harness-side problems (not decant findings):")
            for f in other[:10]:
                p(f"  case {f[0]} {f[1]}: {short((f[2][0][1] if f[2] else (f[5] or {}).get('error', '')), 300)}")
        p("=" * 78)
        return "\n".join(out)

    def where(self, path):
        if self.args.save and path:
            for sub in ("divergence-differs", "divergence-accepts", "divergence-design", "decant-crash",
                        "decant-timeout", "gap"):
                cand = os.path.join(self.args.save, sub, os.path.basename(path))
                if os.path.exists(cand):
                    return cand
        return path or "-"

    def write_findings(self):
        self.findings_file = None
        finds = [f for f in self.finished if f[1] in FINDINGS]
        if not finds or not self.args.save:
            return
        self.findings_file = os.path.join(self.args.save, "findings.jsonl")
        with open(self.findings_file, "w") as fh:
            for idx, v, diffs, cons, path, ref, dec in finds:
                fh.write(json.dumps({"idx": idx, "verdict": v, "diffs": [t for _, t in diffs], "constructs": cons,
                                     "file": self.where(path), "torch": ref, "decant": dec}) + "\n")


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cases", type=int, help="number of cases (default 2000 unless --minutes)")
    ap.add_argument("--minutes", type=float, help="run for this long")
    ap.add_argument("--start", type=int, default=0, help="first case index")
    ap.add_argument("--only", help="comma-separated case indices to rerun (verbose)")
    ap.add_argument("--files", nargs="+", help="run these existing files instead of generating")
    ap.add_argument("--runner", default=DEFAULT_RUNNER)
    ap.add_argument("--save", help="copy every divergence and gap examples (checkpoint + JSON) here")
    ap.add_argument("--save-gaps", type=int, default=3, help="gap examples saved per decant message (default 3)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--inflight", type=int, default=8, help="cases queued per worker")
    ap.add_argument("--timeout", type=float, default=20.0, help="per-case timeout, seconds")
    ap.add_argument("--rlimit-gib", type=int, default=3, help="address space a torch worker may add (GiB)")
    ap.add_argument("--runner-rlimit-gib", type=int, default=8)
    ap.add_argument("--keep", action="store_true", help="keep the temp directory with every case file")
    ap.add_argument("--verbose", action="store_true", help="print every case")
    ap.add_argument("--progress", type=float, default=10.0, help="seconds between progress lines")
    ap.add_argument("--list-all", type=int, default=60,
                    help="list every divergence when there are at most this many (else 3 per group)")
    ap.add_argument("--construct-rows", type=int, default=40)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--self-test", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--outdir", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.only is not None:
        a.only = [int(x) for x in a.only.split(",") if x.strip()]
    if a.cases is None and a.minutes is None and a.only is None and a.files is None:
        a.cases = 2000
    return a


def main(argv=None):
    a = parse_args(sys.argv[1:] if argv is None else argv)
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(errors="backslashreplace")   # names may hold lone surrogates
    if a.worker:
        worker_main(a)
        return 0
    a.runner = os.path.abspath(a.runner)
    a.runner_ok = os.path.isfile(a.runner) and os.access(a.runner, os.X_OK)
    if not a.runner_ok:
        print(f"warning: runner {a.runner} not found: running the torch side only", file=sys.stderr)
    if a.save:
        a.save = os.path.abspath(a.save)
        os.makedirs(a.save, exist_ok=True)
    h = Harness(a)
    if a.files:
        h.replay = []
        h.next_idx = 0
        for i, f in enumerate(a.files):
            cons = ["replay"]
            side = f + ".json"
            if os.path.exists(side):
                try:
                    cons = json.load(open(side)).get("constructs", cons)
                except ValueError:
                    pass
            h.replay.append((os.path.abspath(f), cons))
        a.only = None
        a.cases = len(a.files)
    try:
        h.run()
    finally:
        h.write_findings()
        print(h.summary(), flush=True)
        h.cleanup()
    return 1 if any(h.counts[v] for v in FINDINGS) else 0


if __name__ == "__main__":
    sys.exit(main())
