#!/usr/bin/env python3
"""Compare `decant audit` with picklescan and modelscan on the hostile corpus.

For every fixture in fixtures/hostile/manifest.json this script runs

  * picklescan (PyPI `picklescan`, its own `scan_file_path`, run by the venv's
    interpreter): the globals it rates dangerous or suspicious, and whether
    it errors;
  * modelscan (PyPI `modelscan`, `modelscan scan -p FILE -r json -o OUT`):
    the module.operator of every issue it reports, its errors, and whether it
    scanned the file at all;
  * `decant audit DIR --json`, DIR a temporary directory holding only that
    fixture (under its own file name): the globals its scan lists with
    `allowlisted: false`, whether it reports hidden (unresolved) globals,
    and the kinds of its findings;

and compares each against the manifest's ground truth (`globals`, and
`hidden_globals`, written by fixtures/hostile/generate.py from how it built
each file).  It prints a Markdown table (fixture | ground truth | picklescan |
modelscan | decant audit), a per-tool summary over the fixtures with
ground-truth globals (names all of them, some, none, errors), and the list
the project treats as decant bugs: every global picklescan or modelscan names
that decant's audit does not list outside its allowlist.

decant spells a dotted STACK_GLOBAL name `module:Qual.name`; the comparison
reads it as `module.Qual.name`, the manifest's spelling.

Run from anywhere (Python 3, standard library only; the scanners run in a
virtual environment this script creates on first use, which needs PyPI):

    cargo build
    python3 tests/external/compare_scanners.py
    python3 tests/external/compare_scanners.py --only g_os_system_reduce_p2 --json /tmp/r.json

Options: --decant PATH (default: target/debug/decant of this checkout),
--venv PATH (default /tmp/decant-scanners-venv; created with `python3 -m
venv` and `pip install picklescan modelscan` if it lacks them), --only NAME
(repeatable), --json OUT (also write the raw results), --jobs N,
--timeout SECONDS (per tool and fixture).

If the decant binary has no `audit` command, or its sandboxed guest cannot
scan yet, the script says so and still fills the picklescan and modelscan
columns.  The fixtures are hostile: the scanners only read them, nothing here
loads a pickle.

CI does not run this script (it needs the network for the venv, and third-
party tools whose verdicts change between releases); run it by hand.
"""

import argparse
import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HOSTILE = REPO / "fixtures" / "hostile"
MANIFEST = HOSTILE / "manifest.json"
DEFAULT_DECANT = REPO / "target" / "debug" / "decant"
DEFAULT_VENV = Path("/tmp/decant-scanners-venv")
SCANNERS = ("picklescan", "modelscan")

# Runs inside the venv: picklescan's scanner on one file, as JSON on stdout.
PICKLESCAN_HELPER = r"""
import json, logging, sys
records = []
class Keep(logging.Handler):
    def emit(self, record):
        records.append((record.levelname, record.getMessage()))
log = logging.getLogger("picklescan")
log.setLevel(logging.WARNING)
log.addHandler(Keep())
log.propagate = False
out = {}
try:
    from picklescan.scanner import scan_file_path
    r = scan_file_path(sys.argv[1])
    out["globals"] = [{"module": g.module, "name": g.name, "safety": g.safety.value}
                      for g in r.globals]
    out["scan_err"] = bool(r.scan_err)
    out["scanned_files"] = r.scanned_files
except BaseException as e:
    out["exception"] = "%s: %s" % (type(e).__name__, e)
out["log"] = [l + ": " + m for l, m in records if l in ("ERROR", "CRITICAL", "WARNING")]
print(json.dumps(out))
"""

VERSION_HELPER = r"""
import json
from importlib.metadata import version
print(json.dumps({p: version(p) for p in ("picklescan", "modelscan")}))
"""


# ---------------------------------------------------------------------------
# The venv with the scanners
# ---------------------------------------------------------------------------

def venv_python(venv):
    return venv / "bin" / "python"


def scanner_versions(venv):
    py = venv_python(venv)
    if not py.exists():
        return None
    r = subprocess.run([str(py), "-c", VERSION_HELPER], capture_output=True, text=True)
    if r.returncode != 0:
        return None
    return json.loads(r.stdout)


def ensure_venv(venv):
    versions = scanner_versions(venv)
    if versions:
        return versions
    print(f"setting up {venv} (python3 -m venv; pip install picklescan modelscan)",
          file=sys.stderr)
    if not venv_python(venv).exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "picklescan", "modelscan"],
                   check=True)
    versions = scanner_versions(venv)
    if not versions:
        sys.exit(f"error: picklescan and modelscan are not importable in {venv}")
    return versions


# ---------------------------------------------------------------------------
# One tool on one fixture
# ---------------------------------------------------------------------------

def run(cmd, timeout, cwd=None):
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd,
                           errors="replace")
        return r.returncode, r.stdout, r.stderr
    except subprocess.TimeoutExpired:
        return None, "", f"timed out after {timeout} s"


def tail(text, n=300):
    text = " ".join(text.split())
    return text if len(text) <= n else "..." + text[-n:]


def head(text, n):
    text = " ".join(text.split())
    return text if len(text) <= n else text[:n] + "..."


def run_picklescan(venv, path, timeout):
    code, out, err = run([str(venv_python(venv)), "-c", PICKLESCAN_HELPER, str(path)], timeout)
    res = {"flagged": [], "named": [], "levels": {}, "error": None, "notes": []}
    if code is None:
        res["error"] = err
        return res
    try:
        raw = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        res["error"] = f"exit {code}: {tail(err or out)}"
        return res
    res["raw"] = raw
    # Its messages name the temporary copy: keep the file name only.
    log = [m.replace(str(path.parent) + os.sep, "") for m in raw.get("log", [])]
    if "exception" in raw:
        res["error"] = raw["exception"]
    elif raw.get("scan_err"):
        logged = [m.split(": ", 1)[1] for m in log if m.startswith(("ERROR", "CRITICAL"))]
        res["error"] = "scan error: " + ("; ".join(logged) or "scan_err")
    for g in raw.get("globals", []):
        name = f"{g['module']}.{g['name']}"
        if g["safety"] != "innocuous":
            res["levels"][name] = g["safety"]
    # What picklescan flags (counts as an issue, exit status 1) is a dangerous
    # global; a suspicious one (not on its safe list) it only names.
    res["flagged"] = sorted(n for n, level in res["levels"].items() if level == "dangerous")
    res["named"] = sorted(res["levels"])
    res["notes"] = [m for m in log if m.startswith("WARNING") and "FOUND" not in m]
    return res


def run_modelscan(venv, path, timeout, work):
    out_json = work / "modelscan.json"
    code, out, err = run([str(venv / "bin" / "modelscan"), "scan", "-p", str(path), "-r", "json",
                          "-o", str(out_json), "--show-skipped"], timeout, cwd=work)
    res = {"flagged": [], "named": [], "levels": {}, "error": None, "scanned": None, "notes": [],
           "exit": code}
    if code is None:
        res["error"] = err
        return res
    try:
        raw = json.loads(out_json.read_text())
    except (OSError, ValueError):
        said = [line for line in (err + "\n" + out).splitlines()
                if line.strip() and not line.startswith("No settings file detected")]
        res["error"] = f"exit {code}, no JSON report: {tail(' '.join(said))}"
        return res
    res["raw"] = raw
    for issue in raw.get("issues", []):
        name = f"{issue.get('module')}.{issue.get('operator')}"
        res["levels"][name] = issue.get("severity", "?")
    res["flagged"] = res["named"] = sorted(res["levels"])
    errors = raw.get("errors") or []
    if errors:
        res["error"] = "; ".join(f"{e.get('category')}: {e.get('description')}" for e in errors)
    elif code == 2:
        res["error"] = f"exit 2: {tail(err or out)}"
    res["scanned"] = raw.get("summary", {}).get("scanned", {}).get("total_scanned", 0)
    skipped = raw.get("summary", {}).get("skipped", {}).get("skipped_files", [])
    res["notes"] = sorted({f"{s.get('category')}: {s.get('description')}" for s in skipped
                           if s.get("category") != "SCAN_NOT_SUPPORTED"
                           or s.get("source") == path.name})
    return res


def decant_name(name):
    """decant's `module:Qual.name` (dotted STACK_GLOBAL) as `module.Qual.name`."""
    return name.replace(":", ".", 1)


GUEST_LACKS_AUDIT = "export `audit`"


def run_decant(decant, work, timeout):
    code, out, err = run([str(decant), "audit", str(work), "--json"], timeout)
    res = {"flagged": [], "named": [], "names": [], "hidden": False, "kinds": [], "error": None,
           "unsupported": None, "exit": code}
    if code is None:
        res["error"] = err
        return res
    try:
        raw = json.loads(out)
    except ValueError:
        res["error"] = f"exit {code}, no JSON: {tail(err or out)}"
        return res
    res["raw"] = raw
    audit = raw.get("audit") or {}
    findings = audit.get("findings") or []
    res["kinds"] = sorted({f.get("kind") for f in findings})
    names = []
    scanned = False
    for f in audit.get("files") or []:
        pickle = (f.get("scan") or {}).get("pickle")
        if f.get("scan") is not None:
            scanned = True
        for st in (pickle or {}).get("streams") or []:
            names += [g["name"] for g in st.get("globals") or [] if g.get("allowlisted") is False]
            if st.get("unresolved"):
                res["hidden"] = True
    if any(f.get("kind") == "pickle_hidden_global" for f in findings):
        res["hidden"] = True
    res["names"] = sorted(set(names))
    res["flagged"] = res["named"] = sorted({decant_name(n) for n in names})
    if not scanned:
        msgs = [f.get("message", "") for f in findings if f.get("kind") == "unscannable"]
        if any(GUEST_LACKS_AUDIT in m for m in msgs):
            res["unsupported"] = "the sandboxed guest has no `audit` export"
        elif msgs:
            res["error"] = "not scanned: " + "; ".join(msgs)
    return res


def probe_decant(decant, timeout):
    """None if `decant audit` scans pickles, else why not."""
    if not Path(decant).exists():
        return f"no decant binary at {decant} (run `cargo build`)"
    code, out, err = run([str(decant), "audit", "--help"], timeout)
    if code != 0:
        return f"`{decant} audit --help` exits {code}: no audit command ({tail(err or out)})"
    with tempfile.TemporaryDirectory(prefix="decant-probe-") as d:
        # A benign protocol 2 pickle: {} (PROTO 2, EMPTY_DICT, STOP).
        Path(d, "probe.pkl").write_bytes(b"\x80\x02}.")
        res = run_decant(decant, Path(d), timeout)
    if res["unsupported"]:
        return res["unsupported"]
    if "raw" not in res:
        return f"`decant audit --json` gives no JSON: {res['error']}"
    return None


def check_fixture(name, entry, args, decant_reason):
    path = HOSTILE / entry["file"]
    with tempfile.TemporaryDirectory(prefix="decant-cmp-") as tmp:
        tmp = Path(tmp)
        bundle = tmp / "bundle"
        bundle.mkdir()
        work = tmp / "work"
        work.mkdir()
        copy = bundle / entry["file"]
        shutil.copyfile(path, copy)
        result = {"file": entry["file"], "globals": entry.get("globals"),
                  "hidden_globals": bool(entry.get("hidden_globals"))}
        result["picklescan"] = run_picklescan(args.venv, copy, args.timeout)
        result["modelscan"] = run_modelscan(args.venv, copy, args.timeout, work)
        if decant_reason is None:
            result["decant"] = run_decant(args.decant, bundle, args.timeout)
        else:
            result["decant"] = {"flagged": [], "named": [], "unsupported": decant_reason}
    return name, result


# ---------------------------------------------------------------------------
# Comparison and report
# ---------------------------------------------------------------------------

def verdict(truth, res, key="flagged"):
    """all | some | none of the ground-truth names in res[key]."""
    hit = set(truth) & set(res.get(key, []))
    if hit == set(truth):
        return "all"
    return "some" if hit else "none"


def show(name):
    s = json.dumps(name, ensure_ascii=False)[1:-1].replace("|", "\\|").replace("`", "'")
    return f"`{s}`"


def names_cell(names, truth=(), marks=None, limit=6):
    truth = set(truth)
    out = []
    for n in names[:limit]:
        out.append(show(n) + (marks or {}).get(n, "") + ("⁺" if truth and n not in truth else ""))
    if len(names) > limit:
        out.append(f"+{len(names) - limit} more")
    return ", ".join(out)


def tool_cell(res, truth, tool):
    if res.get("unsupported"):
        return "n/a"
    parts = []
    if truth:
        parts.append({"all": "**all**", "some": "*some*", "none": "none"}[verdict(truth, res)])
    named = res.get("named", [])
    marks = {n: " (s)" for n, level in res.get("levels", {}).items()
             if tool == "picklescan" and level != "dangerous"}
    if named:
        parts.append(names_cell(named, truth, marks))
    elif not truth:
        parts.append("–")
    if tool == "decant" and res.get("hidden"):
        parts.append("hidden")
    if tool == "modelscan" and res.get("scanned") == 0 and not res.get("error"):
        parts.append("(not scanned)")
    if res.get("error"):
        parts.append("ERROR: " + head(res["error"], 90).replace("|", "\\|"))
    return " ".join(parts)


ROWS = [("picklescan", "picklescan (dangerous)", "flagged"),
        ("picklescan", "picklescan (dangerous or suspicious)", "named"),
        ("modelscan", "modelscan", "flagged"),
        ("decant", "decant audit", "flagged")]


def report(results, meta):
    tools = ("picklescan", "modelscan", "decant")
    unavailable = meta["decant_unavailable"]
    lines = ["# decant audit vs picklescan and modelscan on the hostile corpus", ""]
    lines.append(f"picklescan {meta['versions'].get('picklescan')}, modelscan "
                 f"{meta['versions'].get('modelscan')}, decant `{meta['decant']}`"
                 + (f": **decant audit unavailable: {unavailable}**" if unavailable else ""))
    lines += ["", "Cells: **all** / *some* / none of the ground-truth globals flagged "
              "(picklescan: rated dangerous; modelscan: any issue; decant: listed with "
              "`allowlisted: false`), then the names the tool gives: (s) picklescan rates it "
              "only suspicious, ⁺ not in the ground truth. `hidden`: decant reports "
              "unresolved globals. ERROR: the tool failed or gave up on part of the file.", ""]
    lines.append("| fixture | ground truth | picklescan | modelscan | decant audit |")
    lines.append("|---|---|---|---|---|")
    for name in sorted(results):
        r = results[name]
        truth = r["globals"] or []
        gt = names_cell(truth, limit=10) if r["globals"] is not None else "–"
        if r["hidden_globals"]:
            gt = (gt + " " if truth else "") + "+ hidden"
        cells = [tool_cell(r[t], truth, t) for t in tools]
        lines.append(f"| {name} | {gt} | " + " | ".join(cells) + " |")

    with_truth = [n for n in sorted(results) if results[n]["globals"]]
    lines += ["", "## Summary", "",
              f"{len(results)} fixtures, {len(with_truth)} with ground-truth globals (the "
              "counts below are over those). A fixture counts once in all / some / none; "
              "`errors on` counts those on which the tool failed, whatever it named.", "",
              "| tool | names all | names some | misses entirely | errors on |",
              "|---|---|---|---|---|"]
    for tool, label, key in ROWS:
        if tool == "decant" and unavailable:
            lines.append(f"| {label} | n/a | n/a | n/a | n/a ({unavailable}) |")
            continue
        counts = {"all": 0, "some": 0, "none": 0}
        errors = 0
        for n in with_truth:
            res = results[n][tool]
            counts[verdict(results[n]["globals"], res, key)] += 1
            errors += bool(res.get("error"))
        lines.append(f"| {label} | {counts['all']} | {counts['some']} | {counts['none']} | "
                     f"{errors} |")
    hidden = [n for n in sorted(results) if results[n]["hidden_globals"]]
    if hidden and not unavailable:
        said = [n for n in hidden if results[n]["decant"].get("hidden")]
        lines += ["", f"Hidden globals (ground truth `hidden_globals`): decant audit reports "
                  f"them for {len(said)} of {len(hidden)}"
                  + (f"; not for {', '.join(sorted(set(hidden) - set(said)))}"
                     if len(said) < len(hidden) else "") + "."]

    lines += ["", "## Flagged by picklescan or modelscan but not by decant audit", "",
              "Every global picklescan rates dangerous or modelscan reports as an issue that "
              "decant's audit of the same file does not list outside its allowlist. A name "
              "with an `unknown` part is the scanner's placeholder for an operand it could "
              "not resolve: it counts as listed when decant reports hidden globals.", ""]
    if unavailable:
        lines.append(f"Not computed: decant audit is unavailable ({unavailable}).")
    else:
        missed = bugs(results)
        if not missed:
            lines.append("None.")
        for name, items in missed:
            lines.append(f"- {name}: " + ", ".join(
                f"{show(g)} ({', '.join(who)})" for g, who in items))
    lines.append("")
    return "\n".join(lines)


def placeholder(name):
    """picklescan and modelscan write `unknown` for a STACK_GLOBAL operand they
    could not resolve (module or name)."""
    return "unknown" in name.split(".")


def bugs(results):
    """[(fixture, [(global, [tool: level, ...]), ...])] that decant does not list."""
    out = []
    for name in sorted(results):
        r = results[name]
        if r["decant"].get("unsupported"):
            continue
        listed = set(r["decant"].get("flagged", []))
        items = {}
        for t in SCANNERS:
            for g in r[t].get("flagged", []):
                if g in listed or (placeholder(g) and r["decant"].get("hidden")):
                    continue
                items.setdefault(g, []).append(f"{t}: {r[t]['levels'][g]}")
        if items:
            out.append((name, sorted(items.items())))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--decant", type=Path, default=DEFAULT_DECANT,
                    help=f"decant binary (default {DEFAULT_DECANT})")
    ap.add_argument("--venv", type=Path, default=DEFAULT_VENV,
                    help=f"venv with picklescan and modelscan (default {DEFAULT_VENV}; "
                    "created if missing)")
    ap.add_argument("--only", action="append", default=[], metavar="NAME",
                    help="only this fixture (repeatable)")
    ap.add_argument("--json", type=Path, metavar="OUT", help="also write the raw results here")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--timeout", type=float, default=300.0,
                    help="seconds per tool and fixture (default 300)")
    args = ap.parse_args()
    args.venv = args.venv.absolute()
    args.decant = args.decant.absolute()

    manifest = json.loads(MANIFEST.read_text())
    unknown = [n for n in args.only if n not in manifest]
    if unknown:
        sys.exit(f"error: no such fixture: {', '.join(unknown)}")
    selected = {n: manifest[n] for n in (args.only or sorted(manifest))}

    versions = ensure_venv(args.venv)
    decant_reason = probe_decant(args.decant, args.timeout)
    if decant_reason:
        print(f"NOTE: decant audit is unavailable: {decant_reason}. The decant column is "
              "left empty; picklescan and modelscan still run.", file=sys.stderr)

    results = {}
    with concurrent.futures.ThreadPoolExecutor(max(1, args.jobs)) as pool:
        futures = [pool.submit(check_fixture, n, e, args, decant_reason)
                   for n, e in selected.items()]
        for i, fut in enumerate(concurrent.futures.as_completed(futures), 1):
            name, res = fut.result()
            results[name] = res
            print(f"[{i}/{len(futures)}] {name}", file=sys.stderr)

    # A guest that cannot audit shows up per file too (the probe may pass on
    # a binary whose guest fails on some inputs only).
    if not decant_reason and results and all(r["decant"].get("unsupported")
                                             for r in results.values()):
        decant_reason = next(iter(results.values()))["decant"]["unsupported"]
    meta = {"versions": versions, "decant": str(args.decant),
            "decant_unavailable": decant_reason}
    text = report(results, meta)
    print(text)
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=2,
                                        sort_keys=True, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
