#!/usr/bin/env python3
"""End to end: repositories as transformers 4.x, diffusers, PEFT and
sentence-transformers write them, laid out where people have them (a
Hugging Face cache, with and without the Xet shared store, and an `hf
download --local-dir` directory), converted by the decant binary, verified,
and loaded back with the libraries' own `from_pretrained(...,
use_safetensors=True)`: every output must equal the original model's
exactly (torch.equal).

Not part of CI (it needs torch, transformers, diffusers, peft,
sentence-transformers): tests/e2e/README.md sets up the venv. From the
repository root:

    cargo build
    /tmp/decant-hf/bin/python tests/e2e/hf_load.py [--decant target/debug/decant]
        [--hub-python /tmp/decant-hub/bin/python] [--work DIR] [--only NAME ...]

Prints PASS/FAIL/SKIP per case and a closing "N passed, N failed" line;
exits 1 if any case failed. No network (HF_HUB_OFFLINE=1).
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import stat  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import traceback  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

sys.dont_write_bytecode = True
warnings.filterwarnings("ignore")
ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "fixtures" / "repos"))
import generate_repos as G  # noqa: E402  (the fixture generator: models, rules)

import torch  # noqa: E402

LAYOUTS = ["flat", "cache", "cache-revision", "cache-commit", "shared", "shared-revision", "local-dir"]
GPT2_TEXTS = ["The quick brown fox jumps over the lazy dog.",
              "decant converts pickle checkpoints",
              "unseen: zebra 1234 \u00fcml\u00e4ut!"]
ST_TEXTS = ["the quick brown fox runs", "a cat sat on the mat", "zebra"]
SD_PROMPT = "a photo of a cat"


def commit_of(name):
    """A fixed 40-hex commit id per repository."""
    return hashlib.sha1(f"decant e2e {name}".encode()).hexdigest()


# ---------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------

class Report:
    def __init__(self):
        self.counts = {"PASS": 0, "FAIL": 0, "SKIP": 0}
        self.failed = []

    def add(self, status, case, detail=""):
        self.counts[status] += 1
        if status == "FAIL":
            self.failed.append(case)
        line = f"{status} {case}"
        if detail:
            line += f": {detail}"
        print(line, flush=True)

    def check(self, case, fn):
        """Run fn(); PASS if it returns (a detail string or None), FAIL with
        the exception otherwise. Returns whether it passed."""
        try:
            detail = fn()
        except Exception as e:  # noqa: BLE001
            msg = str(e).strip().splitlines()
            first = msg[0] if msg else type(e).__name__
            if not isinstance(e, (Check, DecantFailed)):
                first = f"{type(e).__name__}: {first}"
                if os.environ.get("E2E_TRACEBACK"):
                    traceback.print_exc()
            self.add("FAIL", case, first + ("".join(f"\n    {m}" for m in msg[1:6])))
            return False
        self.add("PASS", case, detail or "")
        return True


class Check(Exception):
    pass


class DecantFailed(Exception):
    pass


def require(cond, msg):
    if not cond:
        raise Check(msg)


# ---------------------------------------------------------------------------
# decant
# ---------------------------------------------------------------------------

class Decant:
    def __init__(self, exe):
        self.exe = str(exe)

    def run(self, *args, json_out=True):
        cmd = [self.exe, *map(str, args)] + (["--json"] if json_out else [])
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if json_out:
            try:
                obj = json.loads(p.stdout)
            except ValueError:
                obj = None
            if p.returncode != 0:
                if obj and "message" in obj:
                    raise DecantFailed(f"exit {p.returncode}: {obj['message']}\nhint: {obj.get('hint')}")
                raise DecantFailed(f"exit {p.returncode}: {p.stderr.strip() or p.stdout.strip()}")
            return obj
        if p.returncode != 0:
            raise DecantFailed(f"exit {p.returncode}: {p.stderr.strip()}")
        return p.stdout


# ---------------------------------------------------------------------------
# Files and trees
# ---------------------------------------------------------------------------

def files_under(d):
    out = []
    for p in Path(d).rglob("*"):
        if p.is_file() and not p.is_symlink():
            out.append(p.relative_to(d).as_posix())
    return sorted(out)


def tree_state(root):
    """Every entry under root: links as their targets, files as digest and
    mode. Equal before and after: nothing was written or changed."""
    out = []
    for dp, dns, fns in os.walk(root):
        for n in sorted(dns + fns):
            p = os.path.join(dp, n)
            st = os.lstat(p)
            rel = os.path.relpath(p, root)
            if stat.S_ISLNK(st.st_mode):
                out.append(f"{rel} -> {os.readlink(p)}")
            elif stat.S_ISDIR(st.st_mode):
                out.append(f"{rel}/ {oct(st.st_mode)}")
            else:
                h = hashlib.sha256(Path(p).read_bytes()).hexdigest()
                out.append(f"{rel} {h} {oct(st.st_mode)} {st.st_mtime_ns}")
    return sorted(out)


def same_files(a, b):
    fa, fb = files_under(a), files_under(b)
    if fa != fb:
        return f"file lists differ: only in {a}: {sorted(set(fa) - set(fb))}, " \
               f"only in {b}: {sorted(set(fb) - set(fa))}"
    for rel in fa:
        if (Path(a) / rel).read_bytes() != (Path(b) / rel).read_bytes():
            return f"{rel} differs"
    return None


def check_bundle(out, src, expected_dir, entry):
    """OUT holds exactly the expected conversions, the copies and the receipt."""
    want = sorted(set(files_under(expected_dir)) | set(entry["copied"]) | {"decant.intoto.jsonl"})
    got = files_under(out)
    require(got == want, f"OUT files differ: missing {sorted(set(want) - set(got))}, "
                         f"unexpected {sorted(set(got) - set(want))}")
    for rel in files_under(expected_dir):
        require((Path(out) / rel).read_bytes() == (Path(expected_dir) / rel).read_bytes(),
                f"{rel} is not the reference conversion")
    for rel in entry["copied"]:
        require((Path(out) / rel).read_bytes() == (Path(src) / rel).read_bytes(),
                f"{rel} was not copied unchanged")
    for rel in got:
        require(not rel.endswith(G.CHECKPOINT_EXTS), f"a pickle in OUT: {rel}")
    return f"{len(files_under(expected_dir))} converted + {len(entry['copied'])} copied, " \
           f"byte-identical to the reference"


# ---------------------------------------------------------------------------
# What each library loads, and what the model computes
# ---------------------------------------------------------------------------

def equal_outputs(ref, got, what):
    require(ref.keys() == got.keys(), f"{what}: different outputs {sorted(ref)} vs {sorted(got)}")
    for k in ref:
        a, b = ref[k], got[k]
        require(a.shape == b.shape and a.dtype == b.dtype,
                f"{what}: {k} has shape/dtype {tuple(b.shape)} {b.dtype}, want {tuple(a.shape)} {a.dtype}")
        if not torch.equal(a, b):
            diff = (a.double() - b.double()).abs().max().item() if a.is_floating_point() else "n/a"
            raise Check(f"{what}: {k} differs (max abs diff {diff})")
    return f"{len(ref)} outputs torch.equal to the original"


def stored_aliases(path):
    """{removed: kept} from the __metadata__ of every .safetensors under path."""
    import safetensors
    out = {}
    if Path(path).is_dir():
        for p in sorted(Path(path).rglob("*.safetensors")):
            with safetensors.safe_open(str(p), "pt") as f:
                out.update({k: v for k, v in (f.metadata() or {}).items() if k != "format"})
    return out


def no_meta(model, what, path=None):
    """transformers can return a model whose parameters were never loaded
    (left on the meta device) without listing them as missing."""
    meta = [n for n, t in model.state_dict().items() if t.device.type == "meta"]
    if meta:
        aliases = {k: v for k, v in stored_aliases(path).items() if k in meta or v in meta} \
            if path else {}
        raise Check(f"{what}: parameters not loaded (left on the meta device): {meta}"
                    + (f"; the checkpoint stores the tied pair once, as removed -> kept {aliases}, "
                       f"and {type(model).__name__}._tied_weights_keys = "
                       f"{getattr(model, '_tied_weights_keys', None)}" if aliases else ""))


def no_loading_issues(info, what):
    bad = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys",
                                                         "mismatched_keys", "error_msgs")}
    require(not bad, f"{what}: loading info {bad}")


@torch.no_grad()
def gpt2_outputs(path, **kw):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    model, info = AutoModelForCausalLM.from_pretrained(path, output_loading_info=True, **kw)
    no_loading_issues(info, "AutoModelForCausalLM")
    no_meta(model, "AutoModelForCausalLM", path)
    require(model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr(),
            "lm_head is not tied to wte after loading")
    tok_kw = {k: v for k, v in kw.items() if k != "use_safetensors"}
    tok = AutoTokenizer.from_pretrained(path, **tok_kw)
    out = {}
    for i, t in enumerate(GPT2_TEXTS):
        ids = tok(t, return_tensors="pt").input_ids
        out[f"input_ids[{i}]"] = ids
        out[f"logits[{i}]"] = model.eval()(ids).logits
    return out


def sd_inputs():
    g = torch.Generator().manual_seed(7)
    return {"latents": torch.randn(2, 4, 8, 8, generator=g),
            "hidden": torch.randn(2, 16, 8, generator=g),
            "image": torch.randn(2, 3, 8, 8, generator=g),
            "ids": torch.randint(0, 500, (2, 16), generator=g)}


@torch.no_grad()
def diffusers_outputs(path, **kw):
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel
    x = sd_inputs()
    out = {}
    unet = UNet2DConditionModel.from_pretrained(path, subfolder="unet", **kw).eval()
    out["unet.sample"] = unet(x["latents"], torch.tensor([10, 90]), x["hidden"]).sample
    vae = AutoencoderKL.from_pretrained(path, subfolder="vae", **kw).eval()
    out["vae.sample"] = vae(x["image"], sample_posterior=False).sample
    te, info = CLIPTextModel.from_pretrained(path, subfolder="text_encoder",
                                             output_loading_info=True, **kw)
    no_loading_issues(info, "CLIPTextModel")
    te_out = te.eval()(x["ids"])
    out["text_encoder.last_hidden_state"] = te_out.last_hidden_state
    out["text_encoder.pooler_output"] = te_out.pooler_output
    pipe = StableDiffusionPipeline.from_pretrained(path, safety_checker=None, **kw)
    pipe.set_progress_bar_config(disable=True)
    img = pipe(SD_PROMPT, num_inference_steps=2, generator=torch.Generator().manual_seed(0),
               output_type="pt").images
    out["pipeline.images"] = img
    return out


@torch.no_grad()
def peft_outputs(adapter, base_path, base_kw, **kw):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    base = AutoModelForCausalLM.from_pretrained(base_path, **base_kw).eval()
    no_meta(base, "the base model", base_path)
    ids = torch.tensor([[5, 17, 230, 4, 299, 12, 64, 1]])
    base_logits = base(ids).logits
    model = PeftModel.from_pretrained(base, adapter, **kw).eval()
    logits = model(ids).logits
    require(not torch.equal(logits, base_logits), "the adapter does not change the logits")
    return {"logits": logits}


@torch.no_grad()
def st_outputs(path, **kw):
    from sentence_transformers import SentenceTransformer
    st = SentenceTransformer(str(path), device="cpu", **kw)
    return {"embeddings": st.encode(ST_TEXTS, convert_to_tensor=True)}


# ---------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------

def layout(hub_python, src, name, repo_id, kind, work):
    """Lay out src (flat) as layout `kind`; returns (convert args, source
    for verify, cache root or None, the repo's cache dir or None)."""
    commit = commit_of(name)
    script = str(HERE / "hf_layout.py")
    if kind == "flat":
        return [src], src, None, None, "flat directory"
    if kind == "local-dir":
        dest = work / "local-dir" / name
        p = subprocess.run([hub_python, script, "local-dir", str(src), str(dest), commit, "--trees"],
                           capture_output=True, text=True, check=True)
        return [dest], dest, None, None, p.stdout.strip()
    shared = kind.startswith("shared")
    cache = work / ("cache-shared" if shared else "cache")
    repo_dir = cache / ("models--" + repo_id.replace("/", "--"))
    if not repo_dir.exists():
        p = subprocess.run([hub_python, script, "cache", str(src), str(cache), repo_id, commit,
                            "--trees"] + (["--shared"] if shared else []),
                           capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError(f"hf_layout.py failed: {p.stderr.strip()}")
        made = p.stdout.strip()
    else:
        made = "(reused)"
    snapshot = repo_dir / "snapshots" / commit
    if kind.endswith("revision"):
        return [repo_dir, "--revision", "main"], snapshot, cache, repo_dir, made
    if kind.endswith("commit"):
        return [repo_dir, "--revision", commit], snapshot, cache, repo_dir, made
    return [snapshot], snapshot, cache, repo_dir, made


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--decant", default=os.environ.get("DECANT",
                    str(Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "debug" / "decant")))
    ap.add_argument("--hub-python", default=sys.executable,
                    help="python that runs tests/e2e/hf_layout.py (one with huggingface_hub "
                         ">= 1.32 makes the shared store with huggingface_hub's own code)")
    ap.add_argument("--work", help="work directory (default: a temp dir, removed at the end)")
    ap.add_argument("--keep", action="store_true", help="keep the temp work directory")
    ap.add_argument("--only", nargs="*", choices=list(G.MAKERS), help="repositories to run")
    ap.add_argument("--layouts", nargs="*", choices=LAYOUTS, default=LAYOUTS)
    args = ap.parse_args()

    import diffusers.utils.logging as dlog
    import transformers.utils.logging as tlog
    tlog.disable_progress_bar()
    dlog.disable_progress_bar()

    names = args.only or list(G.MAKERS)
    if "peft_adapter" in names and "gpt2_sharded" not in names:
        names.insert(0, "gpt2_sharded")  # the adapter's base
    decant = Decant(Path(args.decant).resolve())
    if not Path(decant.exe).is_file():
        raise SystemExit(f"no decant binary at {decant.exe}: run `cargo build` or pass --decant")
    if args.work:
        work = Path(args.work).resolve()
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
        cleanup = None
    else:
        cleanup = tempfile.TemporaryDirectory(prefix="decant-e2e-")
        work = Path(cleanup.name)
    print(f"decant: {decant.exe}\nwork: {work}")
    got = G.versions()
    print("versions: " + ", ".join(f"{k} {v}" for k, v in got.items()))
    pinned = all(got[k] == v for k, v in G.PINS.items())
    r = Report()

    # 1. The repositories, saved now by the libraries as the generator saves them.
    built, hub_src, expected, manifest = {}, {}, {}, {}
    for name in names:
        d = work / "built" / name
        G.build_repo(name, d)
        built[name] = d
        committed = ROOT / "fixtures" / "repos" / name
        if pinned and committed.is_dir():
            r.check(f"{name}: saved now == fixtures/repos/{name}",
                    lambda: require(same_files(d, committed) is None, same_files(d, committed))
                    or "byte-identical")
        else:
            r.add("SKIP", f"{name}: saved now == fixtures/repos/{name}",
                  "library versions differ from the pins" if not pinned else "no committed fixture")
        # What a Hub repository holds: the Hub's default .gitattributes (LFS patterns).
        h = work / "hub" / name
        shutil.copytree(d, h)
        (h / ".gitattributes").write_text(G.hf_gitattributes())
        hub_src[name] = h
        expected[name] = work / "expected" / name
        expected[name].mkdir(parents=True)
        manifest[name] = G.write_expected(h, expected[name])
        if pinned:
            committed_exp = ROOT / "fixtures" / "repos" / f"{name}.expected"
            if committed_exp.is_dir():
                r.check(f"{name}: reference conversion == fixtures/repos/{name}.expected",
                        lambda: require(same_files(expected[name], committed_exp) is None,
                                        same_files(expected[name], committed_exp)) or "byte-identical")

    # 2. The original models' outputs, loaded from the pickle repositories.
    refs = {}
    for name in names:
        src = built[name]
        try:
            if name.startswith("gpt2"):
                refs[name] = gpt2_outputs(src, use_safetensors=False)
            elif name == "diffusers_nested":
                refs[name] = diffusers_outputs(src, use_safetensors=False)
            elif name == "peft_adapter":
                refs[name] = peft_outputs(src, built["gpt2_sharded"], {"use_safetensors": False})
            elif name == "sentence_transformers":
                refs[name] = st_outputs(src)
        except Exception as e:  # noqa: BLE001
            r.add("FAIL", f"{name}: original loads from the pickle repository", f"{type(e).__name__}: {e}")
    if "gpt2_sharded" in refs and "gpt2_single" in refs:
        r.check("gpt2_single and gpt2_sharded are the same model",
                lambda: equal_outputs(refs["gpt2_sharded"], refs["gpt2_single"], "gpt2"))
    if "diffusers_nested" in refs:
        def in_memory():
            # The pipeline object the generator saved, before any save/load.
            pipe = G.build_sd_pipeline()
            pipe.set_progress_bar_config(disable=True)
            with torch.no_grad():
                img = pipe(SD_PROMPT, num_inference_steps=2,
                           generator=torch.Generator().manual_seed(0), output_type="pt").images
            return equal_outputs({"pipeline.images": refs["diffusers_nested"]["pipeline.images"]},
                                 {"pipeline.images": img}, "in-memory pipeline")
        r.check("diffusers_nested: saved pipeline == the pipeline before saving", in_memory)

    # 3. Convert, verify, compare, load: every repository in every layout.
    key = work / "release.key"
    decant.run("keygen", key, json_out=False)
    pub = f"{key}.pub"
    outs = {}
    for kind in args.layouts:
        for name in names:
            if name not in refs:
                r.add("SKIP", f"{name} [{kind}]", "no reference outputs")
                continue
            repo_id = G.REPO_IDS[name]
            case = f"{name} [{kind}]"
            try:
                conv_args, verify_src, cache, repo_dir, made = layout(
                    args.hub_python, hub_src[name], name, repo_id, kind, work)
            except Exception as e:  # noqa: BLE001
                r.add("FAIL", f"{case} layout", f"{type(e).__name__}: {e}")
                continue
            if kind in ("cache", "shared", "local-dir"):
                m = json.loads(made)
                print(f"     {case} laid out by huggingface_hub {m['huggingface_hub']}: "
                      + "; ".join(f"{k} by {m[k]}" for k in ("symlinks", "shared_store", "local_dir",
                                                            "trees", "xet_hash") if k in m))
            out = work / "out" / kind / name
            before = tree_state(cache) if cache else tree_state(verify_src)
            ok = r.check(f"{case} convert", lambda: decant.run(
                "convert", *conv_args, "-o", out, "--key", key) and None)
            if not ok:
                for step in ("verify", "files", "load"):
                    r.add("SKIP", f"{case} {step}", "convert failed")
                continue
            outs[(kind, name)] = out
            r.check(f"{case} source left unchanged",
                    lambda: require((tree_state(cache) if cache else tree_state(verify_src)) == before,
                                    "the source (or the cache) changed") or None)

            def verify():
                v = decant.run("verify", out, "--receipt", out / "decant.intoto.jsonl",
                               "--trusted-key", pub)
                require(v.get("status") == "verified", f"status {v.get('status')}")
                revs = v.get("source_revisions") or []
                if cache:
                    want = f"pkg:huggingface/{repo_id}@{commit_of(name)}"
                    require(revs == [want], f"source_revisions {revs}, want [{want}]")
                    return f"verified, converted from {want}"
                return "verified"
            r.check(f"{case} verify", verify)

            def verify_source():
                v = decant.run("verify", out, "--receipt", out / "decant.intoto.jsonl",
                               "--trusted-key", pub, "--source", verify_src, "--reproduce")
                require(v.get("status") == "verified", f"status {v.get('status')}")
                return "verified with --source and --reproduce"
            r.check(f"{case} verify --source --reproduce", verify_source)

            r.check(f"{case} files", lambda: check_bundle(out, hub_src[name], expected[name],
                                                          manifest[name]))
            if kind.endswith(("revision", "commit")):
                twin = outs.get((kind.replace("-revision", "").replace("-commit", ""), name))
                if twin is not None:
                    r.check(f"{case} == snapshot conversion", lambda: require(
                        same_files_but_receipt(out, twin) is None,
                        same_files_but_receipt(out, twin)) or "same files")

            def load():
                if name.startswith("gpt2"):
                    got = gpt2_outputs(out, use_safetensors=True)
                elif name == "diffusers_nested":
                    got = diffusers_outputs(out, use_safetensors=True)
                elif name == "peft_adapter":
                    base = outs.get((kind, "gpt2_sharded"))
                    require(base is not None, "gpt2_sharded (the base) did not convert")
                    got = peft_outputs(out, base, {"use_safetensors": True})
                    return "adapter and base both converted: " + equal_outputs(refs[name], got, name)
                else:
                    got = st_outputs(out)
                return equal_outputs(refs[name], got, name)
            r.check(f"{case} load", load)
            if name == "peft_adapter":
                r.check(f"{case} load on the original base", lambda: "converted adapter, pickle base: "
                        + equal_outputs(refs[name], peft_outputs(out, built["gpt2_sharded"],
                                                                 {"use_safetensors": False}), name))

            if kind in ("cache", "shared") and name != "peft_adapter":
                def from_cache():
                    kw = {"cache_dir": str(cache), "local_files_only": True}
                    if name.startswith("gpt2"):
                        got = gpt2_outputs(repo_id, use_safetensors=False, **kw)
                    elif name == "diffusers_nested":
                        got = diffusers_outputs(repo_id, use_safetensors=False, **kw)
                    else:
                        got = st_outputs(repo_id, cache_folder=str(cache), local_files_only=True)
                    return "the libraries read this cache layout: " + \
                        equal_outputs(refs[name], got, name)
                r.check(f"{case} original loads from the cache (offline)", from_cache)
            if kind == "local-dir":
                r.check(f"{case} .cache/huggingface not copied", lambda: require(
                    not (out / ".cache").exists(), "OUT has .cache/") or None)

    if kind_ran := [k for k in args.layouts if k in ("cache", "shared")]:
        for k in kind_ran:
            cache = work / ("cache-shared" if k == "shared" else "cache")
            if cache.exists():
                print(f"     [{k}] cache: {sum(1 for _ in cache.rglob('*'))} entries under {cache}")

    c = r.counts
    print(f"\n{c['PASS']} passed, {c['FAIL']} failed, {c['SKIP']} skipped")
    if r.failed:
        print("failed: " + "; ".join(r.failed))
    if cleanup is not None:
        if args.keep:
            print(f"kept {work}")
            cleanup._finalizer.detach()
        else:
            cleanup.cleanup()
    return 1 if r.failed else 0


def same_files_but_receipt(a, b):
    fa = [f for f in files_under(a) if f != "decant.intoto.jsonl"]
    fb = [f for f in files_under(b) if f != "decant.intoto.jsonl"]
    if fa != fb:
        return f"file lists differ: {sorted(set(fa) ^ set(fb))}"
    for rel in fa:
        if (Path(a) / rel).read_bytes() != (Path(b) / rel).read_bytes():
            return f"{rel} differs"
    return None


if __name__ == "__main__":
    sys.exit(main())
