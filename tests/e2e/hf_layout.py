#!/usr/bin/env python3
"""Lay out a flat model repository as huggingface_hub lays out a download.

    python hf_layout.py cache SRC CACHE REPO_ID COMMIT [--revision main] [--shared] [--trees]
    python hf_layout.py local-dir SRC DEST COMMIT [--trees]

`cache`: CACHE/models--ORG--NAME/{refs/REVISION, blobs/<etag>,
snapshots/COMMIT/<path> -> ../../blobs/<etag> (one more ../ per subfolder)},
as `hf_hub_download(..., cache_dir=CACHE)` leaves it for each file of SRC.
The etag, and so the blob name, is the sha256 of the content for LFS files
(the patterns of the repository's .gitattributes with filter=lfs) and the
git blob SHA-1 (`sha1(b"blob %d\\0" % len + content)`) for the others.
`--shared`: LFS blobs go to the Xet shared store, as huggingface_hub >=
1.32.0 does: CACHE/blobs/<xx>/<xet hash> (read-only), CACHE/blobs/
.huggingface-shared-blobs holding "1\\n", <xet hash>.refs and .lock beside
the payload, and the repository's blobs/<sha256> a relative link
../../blobs/<xx>/<xet hash>. `--trees`: also trees/COMMIT.json (the tree
listing huggingface_hub >= 1.30 caches).

`local-dir`: DEST as `hf download REPO --local-dir DEST` leaves it: real
files, plus DEST/.cache/huggingface/ (.gitignore, download/<path>.metadata
holding "commit\\netag\\ntimestamp\\n", .lock files; CACHEDIR.TAG and
trees/ with newer huggingface_hub).

Wherever the installed huggingface_hub has the function, the layout is
made by huggingface_hub's own code, offline (file_download._create_symlink,
_cache_commit_hash_for_specific_revision, _chmod_and_move, WeakFileLock,
_local_folder.get_local_download_paths / write_download_metadata /
_create_cachedir_tag, utils._shared_blobs.publish_blob_to_shared_store,
_tree_cache.write_tree_cache). Where it has not (huggingface_hub < 1.32
has no shared store, < 1.30 no tree cache), a copy of huggingface_hub
2.4.0's code below does it. The Xet hash comes from hf_xet.hash_files
(the hash the Hub names the file by) when hf_xet is installed, else a
stand-in of the same form. Prints one JSON line saying which was used.

Standard library plus huggingface_hub (any version >= 0.23) and optionally
hf_xet: run it with a python that has huggingface_hub 2.x to get every
part from huggingface_hub itself (tests/e2e/README.md).
"""

import argparse
import fnmatch
import hashlib
import json
import os
import re
import secrets
import shutil
import stat
import sys
import tempfile
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

import huggingface_hub  # noqa: E402
from huggingface_hub import file_download as _fd  # noqa: E402

try:
    from huggingface_hub import _local_folder as _lf
except ImportError:  # pragma: no cover - very old huggingface_hub
    _lf = None
try:
    from huggingface_hub.utils import _shared_blobs as _sb
except ImportError:
    _sb = None
try:
    from huggingface_hub import _tree_cache as _tc
except ImportError:
    _tc = None
try:
    import hf_xet
except ImportError:
    hf_xet = None

USED = {"huggingface_hub": huggingface_hub.__version__}


# ---------------------------------------------------------------------------
# Names
# ---------------------------------------------------------------------------

def lfs_patterns(src):
    """filter=lfs patterns of SRC/.gitattributes (the Hub's default if absent)."""
    ga = Path(src) / ".gitattributes"
    pats = []
    if ga.is_file():
        for line in ga.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2 and not line.lstrip().startswith("#") and "filter=lfs" in parts[1:]:
                pats.append(parts[0])
    return pats


def is_lfs(rel, patterns):
    name = rel.rsplit("/", 1)[-1]
    for p in patterns:
        if "/" in p:
            if fnmatch.fnmatchcase(rel, p.replace("**/", "*")):
                return True
        elif fnmatch.fnmatchcase(name, p):
            return True
    return False


def git_blob_sha1(data):
    """huggingface_hub utils/sha.py git_hash: the git blob id."""
    return hashlib.sha1(b"blob " + str(len(data)).encode() + b"\0" + data).hexdigest()


def lfs_pointer(data):
    return (f"version https://git-lfs.github.com/spec/v1\noid sha256:"
            f"{hashlib.sha256(data).hexdigest()}\nsize {len(data)}\n").encode()


def xet_hash(path):
    if hf_xet is not None:
        from importlib.metadata import version
        USED["xet_hash"] = f"hf_xet {version('hf-xet')} hash_files"
        return hf_xet.hash_files([str(path)])[0].hash
    USED["xet_hash"] = "stand-in sha256(b'xet:' + content) (hf_xet not installed)"
    return hashlib.sha256(b"xet:" + Path(path).read_bytes()).hexdigest()


def repo_files(src):
    out = []
    for p in sorted(Path(src).rglob("*")):
        if p.is_symlink():
            raise SystemExit(f"{p}: a symlink; SRC must hold real files")
        if p.is_file():
            out.append(p.relative_to(src).as_posix())
    return out


def file_entries(src):
    """{rel: (etag, size, lfs, tree entry json)}: what the Hub reports per file."""
    pats = lfs_patterns(src)
    entries = {}
    for rel in repo_files(src):
        data = (Path(src) / rel).read_bytes()
        lfs = is_lfs(rel, pats)
        tree = {"size": len(data)}
        if lfs:
            etag = hashlib.sha256(data).hexdigest()
            tree.update(blob_id=git_blob_sha1(lfs_pointer(data)), lfs_sha256=etag,
                        lfs_size=len(data), xet_hash=xet_hash(Path(src) / rel))
        else:
            etag = git_blob_sha1(data)
            tree.update(blob_id=etag)
        entries[rel] = (etag, len(data), lfs, tree)
    return entries


# ---------------------------------------------------------------------------
# huggingface_hub 2.4.0's code, for what the installed version lacks
# ---------------------------------------------------------------------------

def _copy_publish_blob_to_shared_store(*, blob_path, xet_hash, cache_dir, expected_size):
    """huggingface_hub 2.4.0 utils/_shared_blobs.py publish_blob_to_shared_store
    (with _ensure_shared_blobs_dir, _ensure_prefix_dir, _shared_blob_lock,
    _append_manifest_reference, _make_temporary_symlink), single-process."""
    cache_dir = Path(cache_dir)
    cache_mode = stat.S_IMODE(cache_dir.stat().st_mode)
    dir_mode = cache_mode & (0o777 | stat.S_ISGID | stat.S_ISVTX)
    blob_mode = 0o400 | (0o040 if cache_mode & stat.S_IXGRP else 0) | \
        (0o004 if cache_mode & stat.S_IXOTH else 0)
    store_dir = cache_dir / "blobs"
    marker = store_dir / ".huggingface-shared-blobs"
    store_dir.mkdir(exist_ok=True)
    if not marker.is_file():
        store_dir.chmod(dir_mode)
        tmp = marker.with_name(f"{marker.name}.{secrets.token_hex(4)}.tmp")
        tmp.write_text("1\n")
        tmp.chmod(blob_mode)
        os.replace(tmp, marker)
    prefix = store_dir / xet_hash[:2]
    prefix.mkdir(exist_ok=True)
    prefix.chmod(dir_mode)
    store_path = prefix / xet_hash
    lock = prefix / f"{xet_hash}.lock"
    fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o666)
    os.fchmod(fd, 0o666)
    os.close(fd)
    blob_path = Path(blob_path)
    rel_blob = blob_path.relative_to(cache_dir).as_posix()
    tmp_link = blob_path.with_name(f".{blob_path.name}.{secrets.token_hex(4)}.shared")
    os.symlink(os.path.relpath(store_path, blob_path.parent), tmp_link)
    refs = prefix / f"{xet_hash}.refs"
    with open(refs, "a") as f:
        f.write(rel_blob + "\n")
    refs.chmod(0o666)
    if not (store_path.is_file() and store_path.stat().st_size == expected_size):
        os.chmod(blob_path, blob_mode)
        os.replace(blob_path, store_path)
    os.replace(tmp_link, blob_path)
    return True


def _copy_write_tree_cache(folder, commit, files):
    """huggingface_hub 2.4.0 _tree_cache.py write_tree_cache."""
    path = Path(folder) / "trees" / f"{commit}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"format_version": 1, "files": {k: files[k] for k in sorted(files)}}
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")  # mode 0600, as there
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)


def write_trees(folder, commit, entries):
    files = {rel: e[3] for rel, e in entries.items()}
    if _tc is not None and hasattr(_tc, "write_tree_cache"):
        USED["trees"] = "huggingface_hub _tree_cache.write_tree_cache"
        _tc.write_tree_cache(str(folder), commit,
                             {k: _tc.TreeCacheEntry.from_json(v) for k, v in files.items()})
    else:
        USED["trees"] = "copy of huggingface_hub 2.4.0 write_tree_cache"
        _copy_write_tree_cache(folder, commit, files)


def cachedir_tag(d):
    if _lf is not None and hasattr(_lf, "_create_cachedir_tag"):
        _lf._create_cachedir_tag(Path(d))


def weak_lock(path):
    from huggingface_hub.utils import WeakFileLock
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return WeakFileLock(path)


# ---------------------------------------------------------------------------
# Layouts
# ---------------------------------------------------------------------------

def layout_cache(src, cache, repo_id, commit, revision="main", shared=False, trees=False):
    """As _hf_hub_download_to_cache_dir does per file (huggingface_hub 2.4.0
    file_download.py), the download replaced by a copy of SRC's file."""
    src, cache = Path(src), Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    storage = cache / _fd.repo_folder_name(repo_id=repo_id, repo_type="model")
    entries = file_entries(src)
    if trees:
        write_trees(storage, commit, entries)
    shared_fn = None
    if shared:
        if _sb is not None and hasattr(_sb, "publish_blob_to_shared_store"):
            shared_fn = _sb.publish_blob_to_shared_store
            USED["shared_store"] = "huggingface_hub utils._shared_blobs.publish_blob_to_shared_store"
        else:
            shared_fn = _copy_publish_blob_to_shared_store
            USED["shared_store"] = "copy of huggingface_hub 2.4.0 publish_blob_to_shared_store"
    USED["symlinks"] = "huggingface_hub file_download._create_symlink"
    for rel, (etag, size, lfs, tree) in entries.items():
        blob_path = storage / "blobs" / etag
        pointer_path = Path(_fd._get_pointer_path(str(storage), commit, rel))
        blob_path.parent.mkdir(parents=True, exist_ok=True)
        pointer_path.parent.mkdir(parents=True, exist_ok=True)
        cachedir_tag(cache)
        _fd._cache_commit_hash_for_specific_revision(str(storage), revision, commit)
        lock_path = cache / ".locks" / storage.name / f"{etag}.lock"
        with weak_lock(lock_path):
            blob_is_shared = False
            if not blob_path.exists() and not blob_path.is_symlink():
                incomplete = Path(str(blob_path) + ".incomplete")
                shutil.copyfile(src / rel, incomplete)
                _fd._chmod_and_move(incomplete, blob_path)
                if shared_fn is not None and lfs:
                    blob_is_shared = shared_fn(blob_path=str(blob_path), xet_hash=tree["xet_hash"],
                                               cache_dir=str(cache), expected_size=size)
                    assert blob_is_shared, f"could not publish {rel} to the shared store"
            else:
                blob_is_shared = blob_path.is_symlink()
            if not pointer_path.exists():
                _fd._create_symlink(str(blob_path), str(pointer_path), new_blob=not blob_is_shared)
    return storage


def layout_local_dir(src, dest, commit, trees=False):
    """As _hf_hub_download_to_local_dir does per file: the file, then its
    download metadata."""
    if _lf is None:
        raise SystemExit("this huggingface_hub has no _local_folder (local_dir metadata)")
    src, dest = Path(src), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    entries = file_entries(src)
    if trees:
        write_trees(dest / ".cache" / "huggingface", commit, entries)
    USED["local_dir"] = "huggingface_hub _local_folder.get_local_download_paths/write_download_metadata"
    for rel, (etag, size, lfs, tree) in entries.items():
        paths = _lf.get_local_download_paths(dest, rel)
        with weak_lock(paths.lock_path):
            incomplete = paths.incomplete_path(etag)
            shutil.copyfile(src / rel, incomplete)
            _fd._chmod_and_move(incomplete, paths.file_path)
        _lf.write_download_metadata(local_dir=dest, filename=rel, commit_hash=commit, etag=etag)
    return dest


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="mode", required=True)
    c = sub.add_parser("cache")
    c.add_argument("src")
    c.add_argument("cache")
    c.add_argument("repo_id")
    c.add_argument("commit")
    c.add_argument("--revision", default="main")
    c.add_argument("--shared", action="store_true")
    c.add_argument("--trees", action="store_true")
    ld = sub.add_parser("local-dir")
    ld.add_argument("src")
    ld.add_argument("dest")
    ld.add_argument("commit")
    ld.add_argument("--trees", action="store_true")
    a = ap.parse_args()
    if not re.fullmatch(r"[0-9a-f]{40}", a.commit):
        raise SystemExit("COMMIT must be 40 hex digits")
    if a.mode == "cache":
        storage = layout_cache(a.src, a.cache, a.repo_id, a.commit, a.revision, a.shared, a.trees)
        USED["repo_dir"] = str(storage)
        USED["snapshot"] = str(storage / "snapshots" / a.commit)
    else:
        USED["local_dir_path"] = str(layout_local_dir(a.src, a.dest, a.commit, a.trees))
    print(json.dumps(USED, sort_keys=True))


if __name__ == "__main__":
    sys.exit(main())
