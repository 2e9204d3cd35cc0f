//! Batch conversion across machines: one work list, split into shards.
//!
//! A migration of thousands of checkpoints runs on the machines people
//! already have: a CI matrix, a Kubernetes Indexed Job. Each machine runs
//! `decant convert SRC... --shard I/N` with the same sources and computes
//! the same plan, so no plan file has to travel between jobs. The plan is
//! a pure function of the sources' listings:
//!
//! - Each source is a model directory, named by its last path component
//!   (so the plan is the same wherever the directory is mounted; two
//!   sources with one name are refused).
//! - A unit of work is what must be done on one machine: a sharded
//!   checkpoint's index with every checkpoint it names (the rewritten
//!   index needs all their outputs' sizes), any other checkpoint, and each
//!   copied or excluded file.
//! - Units are dealt to shards largest first, each to the shard with the
//!   fewest bytes so far (the lowest-numbered on a tie), so every unit is
//!   in exactly one shard and shards are balanced by bytes.
//! - The plan's sha256 covers the shard count and every unit's files and
//!   sizes. Each shard receipt records it, its shard, and which shards
//!   write into its directory, so `decant verify` can require the whole
//!   set: every shard that had work present, and all from one plan.

use crate::error::{Error, Kind, Result};
use crate::model_dir::{self, Plan};
use crate::source_tree::SourceTree;
use crate::trust::statement::{Sha256Hex, ShardParameters};
use serde::Serialize;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Most shards a plan may have.
pub const MAX_SHARDS: u32 = 10_000;

/// One shard of N, numbered from 1 (`--shard 1/4` .. `--shard 4/4`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = || {
            format!(
                "{s:?} is not I/N with 1 <= I <= N <= {MAX_SHARDS} (shards are numbered from 1; a Kubernetes Indexed Job's JOB_COMPLETION_INDEX counts from 0, so pass $((JOB_COMPLETION_INDEX + 1)))"
            )
        };
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        if !digits(i) || !digits(n) {
            return Err(bad());
        }
        let (index, count) = (
            i.parse::<u32>().map_err(|_| bad())?,
            n.parse::<u32>().map_err(|_| bad())?,
        );
        if index == 0 || index > count || count > MAX_SHARDS {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The receipt a shard writes into each output directory it has work in.
pub fn receipt_name(shard: Shard) -> String {
    format!(
        "decant.shard-{}-of-{}.intoto.jsonl",
        shard.index, shard.count
    )
}

/// Whether `name` is a shard receipt's name: such files in a source
/// directory are another shard's output, not part of the model.
pub fn is_shard_receipt(name: &str) -> bool {
    name.strip_prefix("decant.shard-")
        .and_then(|r| r.strip_suffix(".intoto.jsonl"))
        .and_then(|r| r.split_once("-of-"))
        .is_some_and(|(i, n)| {
            !i.is_empty()
                && !n.is_empty()
                && i.bytes().all(|b| b.is_ascii_digit())
                && n.bytes().all(|b| b.is_ascii_digit())
        })
}

/// One unit of work: files of one source that go to one machine together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unit {
    /// Paths in the source, `/`-separated; the first names the unit.
    pub files: Vec<String>,
    pub bytes: u64,
    /// The sha256 of each index in the unit (read while planning anyway):
    /// machines that read different indexes plan differently.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub indexes: Vec<Sha256Hex>,
    #[serde(skip)]
    pub kind: UnitKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitKind {
    /// A sharded checkpoint: its index and every checkpoint it names.
    Index,
    Checkpoint,
    Copied,
    Excluded,
}

impl UnitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            UnitKind::Index => "sharded checkpoint",
            UnitKind::Checkpoint => "checkpoint",
            UnitKind::Copied => "copied",
            UnitKind::Excluded => "excluded",
        }
    }
}

/// One model directory of the batch.
#[derive(Debug)]
pub struct PlannedSource {
    /// Its last path component: the name the plan and the output use.
    pub name: String,
    pub path: PathBuf,
    pub units: Vec<Unit>,
}

/// The whole batch, split.
#[derive(Debug)]
pub struct BatchPlan {
    pub count: u32,
    /// Sorted by name.
    pub sources: Vec<PlannedSource>,
    /// For each source, for each unit: its shard (1-based).
    pub assignment: Vec<Vec<u32>>,
    pub sha256: Sha256Hex,
}

/// The units of one directory's plan, sorted by their first file.
/// Indexes that name a common checkpoint (`model.bin.index.json` and a
/// variant's index over the same shards) are one unit: each rewritten
/// index needs that checkpoint's output, and it must be made once.
pub fn units(plan: &Plan) -> Vec<Unit> {
    // (index paths with their sha256 and size, checkpoint paths)
    type Group = (Vec<(String, Sha256Hex, u64)>, BTreeSet<String>);
    let mut groups: Vec<Group> = Vec::new();
    for ix in &plan.indexes {
        let checkpoints: BTreeSet<String> = ix
            .shards
            .iter()
            .map(|shard| match ix.source.dir() {
                "" => shard.clone(),
                dir => format!("{dir}/{shard}"),
            })
            .collect();
        let mut merged: Group = (
            vec![(ix.source.path.clone(), ix.sha256.clone(), ix.source.bytes)],
            checkpoints,
        );
        let (overlapping, rest): (Vec<Group>, Vec<Group>) = groups
            .into_iter()
            .partition(|g| !g.1.is_disjoint(&merged.1));
        for g in overlapping {
            merged.0.extend(g.0);
            merged.1.extend(g.1);
        }
        groups = rest;
        groups.push(merged);
    }
    let mut in_index: BTreeSet<String> = BTreeSet::new();
    let mut units = Vec::new();
    for (mut indexes, checkpoints) in groups {
        indexes.sort();
        let mut bytes = indexes.iter().fold(0u64, |b, i| b.saturating_add(i.2));
        for path in &checkpoints {
            if let Some(f) = plan.files.iter().find(|f| f.source.path == *path) {
                bytes = bytes.saturating_add(f.source.bytes);
            }
        }
        in_index.extend(checkpoints.iter().cloned());
        units.push(Unit {
            files: indexes
                .iter()
                .map(|i| i.0.clone())
                .chain(checkpoints)
                .collect(),
            bytes,
            indexes: indexes.into_iter().map(|i| i.1).collect(),
            kind: UnitKind::Index,
        });
    }
    let single = |path: &str, bytes: u64, kind| Unit {
        files: vec![path.to_string()],
        bytes,
        indexes: Vec::new(),
        kind,
    };
    for f in plan
        .files
        .iter()
        .filter(|f| !in_index.contains(&f.source.path))
    {
        units.push(single(&f.source.path, f.source.bytes, UnitKind::Checkpoint));
    }
    for f in &plan.copied {
        units.push(single(&f.path, f.bytes, UnitKind::Copied));
    }
    for (f, _) in &plan.excluded {
        units.push(single(&f.path, f.bytes, UnitKind::Excluded));
    }
    units.sort_by(|a, b| a.files.cmp(&b.files));
    units
}

/// The last component of a source's canonical path.
fn source_name(path: &Path) -> Result<String> {
    let canonical = path
        .canonicalize()
        .map_err(|e| Error::io(format!("cannot open directory {}", path.display()), &e))?;
    canonical
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .ok_or_else(|| {
            Error::new(
                Kind::Usage,
                format!("{} has no UTF-8 directory name", path.display()),
                "give each source as a model directory with a plain name",
            )
        })
}

/// Lists and plans one source the way `convert` will.
fn plan_source(path: &Path) -> Result<Vec<Unit>> {
    if !path.is_dir() {
        return Err(Error::new(
            Kind::Usage,
            format!("{} is not a directory", path.display()),
            "a batch is made of model directories; put loose checkpoints in a directory and give that",
        ));
    }
    let tree = SourceTree::open(path, None)?;
    let plan = model_dir::plan(&tree, tree.list(None)?)?;
    Ok(units(&plan))
}

/// The digest a plan is known by.
fn digest(count: u32, sources: &[PlannedSource]) -> Sha256Hex {
    #[derive(Serialize)]
    struct Canonical<'a> {
        count: u32,
        sources: Vec<(&'a str, &'a [Unit])>,
    }
    let c = Canonical {
        count,
        sources: sources
            .iter()
            .map(|s| (s.name.as_str(), s.units.as_slice()))
            .collect(),
    };
    // Serializing plain structs of strings and integers cannot fail.
    Sha256Hex::of(&serde_json::to_vec(&c).unwrap_or_default())
}

/// Deals units to shards: largest first, each to the lightest shard.
fn assign(count: u32, sources: &[PlannedSource]) -> Vec<Vec<u32>> {
    let mut order: Vec<(usize, usize)> = sources
        .iter()
        .enumerate()
        .flat_map(|(s, src)| (0..src.units.len()).map(move |u| (s, u)))
        .collect();
    let unit = |(s, u): (usize, usize)| sources.get(s).and_then(|src| src.units.get(u));
    order.sort_by(|&a, &b| {
        let (ua, ub) = (unit(a), unit(b));
        let bytes = |x: Option<&Unit>| x.map_or(0, |u| u.bytes);
        bytes(ub).cmp(&bytes(ua)).then(a.cmp(&b))
    });
    // The lightest shard (the lowest-numbered on a tie) is the heap's
    // smallest (load, index): planning costs O(units log shards).
    let mut loads: BinaryHeap<Reverse<(u64, u32)>> = (0..count).map(|i| Reverse((0, i))).collect();
    let mut assignment: Vec<Vec<u32>> = sources.iter().map(|s| vec![0; s.units.len()]).collect();
    for (s, u) in order {
        let Some(Reverse((load, lightest))) = loads.pop() else {
            break;
        };
        loads.push(Reverse((
            load.saturating_add(unit((s, u)).map_or(0, |x| x.bytes)),
            lightest,
        )));
        if let Some(slot) = assignment.get_mut(s).and_then(|a| a.get_mut(u)) {
            *slot = lightest + 1;
        }
    }
    assignment
}

/// Plans a batch of model directories in `count` shards.
pub fn plan(paths: &[PathBuf], count: u32) -> Result<BatchPlan> {
    let mut by_name: BTreeMap<String, PathBuf> = BTreeMap::new();
    for path in paths {
        let name = source_name(path)?;
        if let Some(other) = by_name.insert(name.clone(), path.clone()) {
            if other.canonicalize().ok() == path.canonicalize().ok() {
                return Err(Error::new(
                    Kind::Usage,
                    format!("{} is given twice", path.display()),
                    "give each model directory once",
                ));
            }
            return Err(Error::new(
                Kind::Usage,
                format!(
                    "{} and {} are both named {name}",
                    other.display(),
                    path.display()
                ),
                "a plan names each source by its directory name: give sources with different names",
            ));
        }
    }
    let mut sources = Vec::new();
    for (name, path) in by_name {
        let units = plan_source(&path)?;
        sources.push(PlannedSource { name, path, units });
    }
    let assignment = assign(count, &sources);
    let sha256 = digest(count, &sources);
    Ok(BatchPlan {
        count,
        sources,
        assignment,
        sha256,
    })
}

impl BatchPlan {
    /// The units of `source` (an index into `sources`) in `shard`.
    pub fn units_in(&self, source: usize, shard: u32) -> impl Iterator<Item = &Unit> {
        let units = self.sources.get(source).map_or(&[][..], |s| &s.units);
        let assigned = self.assignment.get(source).map_or(&[][..], |a| a);
        units
            .iter()
            .zip(assigned)
            .filter(move |(_, s)| **s == shard)
            .map(|(u, _)| u)
    }

    /// The shards with work in `source`, ascending.
    pub fn shards_of(&self, source: usize) -> Vec<u32> {
        let set: BTreeSet<u32> = self
            .assignment
            .get(source)
            .into_iter()
            .flatten()
            .copied()
            .collect();
        set.into_iter().collect()
    }

    /// Bytes and units in each shard (index 0 is shard 1).
    pub fn loads(&self) -> Vec<(u64, usize)> {
        let mut loads = vec![(0u64, 0usize); self.count as usize];
        for (s, src) in self.sources.iter().enumerate() {
            for (u, unit) in src.units.iter().enumerate() {
                let shard = self
                    .assignment
                    .get(s)
                    .and_then(|a| a.get(u))
                    .copied()
                    .unwrap_or(1);
                if let Some(l) = loads.get_mut(shard.saturating_sub(1) as usize) {
                    l.0 = l.0.saturating_add(unit.bytes);
                    l.1 += 1;
                }
            }
        }
        loads
    }

    /// What `shard` must do in `source`, for [`model_dir::convert_dir`];
    /// `None` if nothing.
    pub fn work(&self, source: usize, shard: Shard) -> Option<ShardWork> {
        let files: BTreeSet<String> = self
            .units_in(source, shard.index)
            .flat_map(|u| u.files.iter().cloned())
            .collect();
        if files.is_empty() {
            return None;
        }
        let units = self.sources.get(source).map(|s| s.units.clone())?;
        Some(ShardWork {
            parameters: ShardParameters {
                shard: shard.index,
                count: shard.count,
                plan: self.sha256.clone(),
                directory: self.sources.get(source).map(|s| s.name.clone())?,
                directory_units: Sha256Hex::of(&serde_json::to_vec(&units).unwrap_or_default()),
                directory_shards: self.shards_of(source),
            },
            files,
            units,
        })
    }
}

/// One shard's part of one directory.
#[derive(Debug, Clone)]
pub struct ShardWork {
    /// What the shard receipt records.
    pub parameters: ShardParameters,
    /// Source paths this shard converts, copies or excludes.
    pub files: BTreeSet<String>,
    /// Every unit of the directory, as planned: the conversion plans the
    /// directory again and refuses if it has changed since.
    pub units: Vec<Unit>,
}

impl ShardWork {
    pub fn receipt_name(&self) -> String {
        receipt_name(Shard {
            index: self.parameters.shard,
            count: self.parameters.count,
        })
    }
}

/// What `decant convert SRC... --shard I/N` was asked.
pub struct ShardOptions {
    pub sources: Vec<PathBuf>,
    /// One source: its output directory (default: the source itself).
    /// Several: the directory each source's output goes into, by name.
    pub output: Option<PathBuf>,
    pub shard: Shard,
    pub strict: bool,
    pub force: bool,
    pub jobs: usize,
    pub key: Option<ed25519_dalek::SigningKey>,
}

/// One shard's conversions.
#[derive(Debug, serde::Serialize)]
pub struct ShardConverted {
    #[serde(serialize_with = "crate::render::display")]
    pub shard: Shard,
    pub plan: Sha256Hex,
    /// Each directory the shard had work in, converted and published.
    pub directories: Vec<model_dir::DirConverted>,
}

/// Converts one shard's part of every source.
pub fn convert_shard(
    sandbox: &crate::sandbox::Sandbox,
    opts: &ShardOptions,
    on_event: &(dyn Fn(model_dir::Event<'_>) + Sync),
) -> Result<ShardConverted> {
    if opts.sources.len() > 1 && opts.output.is_none() {
        return Err(Error::new(
            Kind::Usage,
            "several sources need an output directory",
            "give -o OUT: each source is converted into OUT/<its directory name>",
        ));
    }
    let plan = plan(&opts.sources, opts.shard.count)?;
    // Where each source goes; an output inside a source (other than the
    // source itself, in place) would be listed as part of it on the
    // machines that run later.
    let mut outputs = Vec::new();
    for src in &plan.sources {
        let out = match (&opts.output, opts.sources.len()) {
            (Some(out), 1) => out.clone(),
            (Some(out), _) => out.join(&src.name),
            (None, _) => src.path.clone(),
        };
        let (out_r, src_r) = (
            crate::output::resolved(&out)?,
            crate::output::resolved(&src.path)?,
        );
        if out_r != src_r && out_r.starts_with(&src_r) {
            return Err(Error::new(
                Kind::Usage,
                format!(
                    "the output {} is inside the source {}",
                    out.display(),
                    src.path.display()
                ),
                "with --shard, convert in place or into a directory outside every source, so every machine plans the same sources",
            ));
        }
        outputs.push(out);
    }
    let mut directories = Vec::new();
    for (i, (src, out)) in plan.sources.iter().zip(outputs).enumerate() {
        let Some(work) = plan.work(i, opts.shard) else {
            continue;
        };
        let dir_opts = model_dir::Options {
            source: src.path.clone(),
            revision: None,
            output: Some(out),
            strict: opts.strict,
            force: opts.force,
            jobs: opts.jobs,
            key: opts.key.clone(),
            shard: Some(work),
            cyclonedx: None,
            oms_key: None,
        };
        directories.push(model_dir::convert_dir(sandbox, &dir_opts, on_event)?);
    }
    Ok(ShardConverted {
        shard: opts.shard,
        plan: plan.sha256,
        directories,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(name: &str, sizes: &[u64]) -> PlannedSource {
        PlannedSource {
            name: name.into(),
            path: PathBuf::from(name),
            units: sizes
                .iter()
                .enumerate()
                .map(|(i, &bytes)| Unit {
                    files: vec![format!("f{i}")],
                    bytes,
                    indexes: Vec::new(),
                    kind: UnitKind::Checkpoint,
                })
                .collect(),
        }
    }

    /// `--shard` takes I/N numbered from 1; anything else is refused, not
    /// guessed (0/4 might mean the first shard or nothing).
    #[test]
    fn shard_argument_is_one_based_and_strict() {
        assert_eq!("1/4".parse(), Ok(Shard { index: 1, count: 4 }));
        assert_eq!("4/4".parse(), Ok(Shard { index: 4, count: 4 }));
        for bad in [
            "0/4", "5/4", "1/0", "", "1", "1/", "/4", "+1/4", "1/4/", " 1/4", "1/10001", "a/b",
        ] {
            assert!(bad.parse::<Shard>().is_err(), "{bad:?} accepted");
        }
    }

    /// Every unit lands in exactly one shard, largest first onto the
    /// lightest shard, and the result does not depend on listing order.
    #[test]
    fn units_are_dealt_largest_first_to_the_lightest_shard() {
        let sources = vec![source("a", &[100, 10, 60]), source("b", &[50, 40])];
        let a = assign(2, &sources);
        // 100 -> 1; 60 -> 2; 50 -> 2 (60 < 100); 40 -> 1 (100 < 110);
        // 10 -> 2 (110 < 140).
        assert_eq!(a, vec![vec![1, 2, 2], vec![2, 1]]);
        let plan = BatchPlan {
            count: 2,
            sha256: digest(2, &sources),
            sources,
            assignment: a,
        };
        assert_eq!(plan.loads(), vec![(140, 2), (120, 3)]);
        assert_eq!(plan.shards_of(0), vec![1, 2]);
    }

    /// More shards than units: the extra shards are empty, and a source's
    /// receipts are only expected from the shards with work in it.
    #[test]
    fn empty_shards_have_no_work() {
        let sources = vec![source("a", &[5])];
        let a = assign(3, &sources);
        assert_eq!(a, vec![vec![1]]);
        let plan = BatchPlan {
            count: 3,
            sha256: digest(3, &sources),
            sources,
            assignment: a,
        };
        assert!(plan.work(0, Shard { index: 2, count: 3 }).is_none());
        let w = plan.work(0, Shard { index: 1, count: 3 }).unwrap();
        assert_eq!(w.parameters.directory_shards, vec![1]);
    }

    /// The plan digest changes with the shard count and with any file's
    /// size, so shards of different plans never verify as one set.
    #[test]
    fn plan_digest_covers_count_and_sizes() {
        let s1 = vec![source("a", &[5, 6])];
        let s2 = vec![source("a", &[5, 7])];
        assert_ne!(digest(2, &s1), digest(3, &s1));
        assert_ne!(digest(2, &s1), digest(2, &s2));
        assert_eq!(digest(2, &s1), digest(2, &[source("a", &[5, 6])]));
    }

    #[test]
    fn shard_receipt_names() {
        let name = receipt_name(Shard { index: 2, count: 8 });
        assert_eq!(name, "decant.shard-2-of-8.intoto.jsonl");
        assert!(is_shard_receipt(&name));
        assert!(!is_shard_receipt("decant.intoto.jsonl"));
        assert!(!is_shard_receipt("decant.shard-x-of-8.intoto.jsonl"));
    }
}
