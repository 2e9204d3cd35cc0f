//! The caps on what a scan lists, and the size of the answer.
//!
//! The ABI caps each list (streams, globals per stream), but the caps
//! multiply: 100 streams of 2,000 names of 256 bytes each, every byte a
//! control character JSON escapes as `\u00XX`, would be hundreds of
//! megabytes, and the host refuses a `finish` payload over
//! `MAX_OUTCOME_BYTES`. A file crafted that way would get no answer at all.
//! So the kept streams prefer those with findings, and [`fit`] trims listed
//! names (allowlisted ones first, the last streams' first) until the JSON
//! fits; every count stays exact.

use decant_abi::{FileScan, PickleScan, PickleStream, MAX_LISTED_STREAMS};

/// The JSON a scan may take: the host's limit, less room to spare.
const BUDGET: usize = decant_abi::MAX_OUTCOME_BYTES as usize - 64 * 1024;

/// Whether a stream says something an auditor must see.
fn has_findings(s: &PickleStream) -> bool {
    s.outside_total > 0 || s.unresolved > 0 || s.damaged.is_some()
}

/// The streams of one file, at most [`MAX_LISTED_STREAMS`] kept, in file
/// order.
#[derive(Debug, Default)]
pub(super) struct Listing {
    kept: Vec<PickleStream>,
    total: u64,
}

impl Listing {
    pub fn push(&mut self, s: PickleStream) {
        self.total += 1;
        if self.kept.len() < MAX_LISTED_STREAMS {
            self.kept.push(s);
            return;
        }
        // Full: a stream with findings takes the place of the latest one
        // without (a flood of clean pickles cannot hide a bad one).
        if has_findings(&s) {
            if let Some(i) = self.kept.iter().rposition(|k| !has_findings(k)) {
                self.kept.remove(i);
                self.kept.push(s);
            }
        }
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn into_scan(self) -> PickleScan {
        PickleScan {
            streams: self.kept,
            streams_total: self.total,
        }
    }
}

fn json_len<T: serde::Serialize>(v: &T) -> usize {
    // Strings, integers and booleans: serialising cannot fail. A failure
    // would count as too big, which only trims more.
    serde_json::to_vec(v).map_or(usize::MAX / 4, |j| j.len())
}

/// Trims listed globals until `scan` serialises within the host's limit.
pub(super) fn fit(scan: &mut FileScan) {
    fit_to(scan, BUDGET)
}

fn fit_to(scan: &mut FileScan, budget: usize) {
    let Some(pickle) = scan.pickle.as_mut() else {
        return;
    };
    // Everything but the names, then each name with its comma.
    let lists: Vec<_> = pickle
        .streams
        .iter_mut()
        .map(|s| std::mem::take(&mut s.globals))
        .collect();
    let base = json_len(&*scan);
    let Some(pickle) = scan.pickle.as_mut() else {
        return;
    };
    let mut sizes: Vec<Vec<usize>> = lists
        .iter()
        .map(|l| l.iter().map(|g| json_len(g) + 1).collect())
        .collect();
    for (s, l) in pickle.streams.iter_mut().zip(lists) {
        s.globals = l;
    }
    let mut total = sizes
        .iter()
        .flatten()
        .fold(base, |t, &n| t.saturating_add(n));
    // Allowlisted names sit at the end of each list; the last streams'
    // go first.
    for pass_allowlisted in [true, false] {
        for (s, sz) in pickle.streams.iter_mut().zip(sizes.iter_mut()).rev() {
            while total > budget
                && s.globals
                    .last()
                    .is_some_and(|g| g.allowlisted == pass_allowlisted)
            {
                s.globals.pop();
                total = total.saturating_sub(sz.pop().unwrap_or(0));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use decant_abi::{GlobalRef, ScanFormat};

    /// A stream listing outside names first, as the scanner lists them.
    fn stream(i: usize, names: usize, outside: bool) -> PickleStream {
        let mut s = PickleStream {
            location: format!("byte {i}"),
            protocol: 2,
            globals: (0..names)
                .map(|n| GlobalRef {
                    name: format!("{}{n}", "\u{1}".repeat(200)),
                    allowlisted: !outside || n % 2 == 1,
                    possible: false,
                })
                .collect(),
            outside_total: if outside { names as u64 } else { 0 },
            globals_total: names as u64,
            unresolved: 0,
            calls: 0,
            damaged: None,
        };
        s.globals.sort_by_key(|g| g.allowlisted);
        s
    }

    #[test]
    fn the_worst_listing_is_trimmed_to_fit_the_hosts_limit() {
        // 100 streams x 2,000 names of control characters: far over 16 MiB
        // as JSON before trimming.
        let mut l = Listing::default();
        for i in 0..100 {
            l.push(stream(i, 2000, true));
        }
        let mut scan = FileScan {
            format: ScanFormat::Pickle,
            pickle: Some(l.into_scan()),
            safetensors: None,
            gguf: None,
            damaged: None,
        };
        fit(&mut scan);
        let json = serde_json::to_vec(&scan).unwrap();
        assert!(
            json.len() <= decant_abi::MAX_OUTCOME_BYTES as usize,
            "{}",
            json.len()
        );
        let p = scan.pickle.unwrap();
        // Allowlisted names went first, and from the last streams.
        assert!(p.streams[0].globals.iter().any(|g| !g.allowlisted));
        assert!(p.streams[99].globals.iter().all(|g| !g.allowlisted));
        assert_eq!(p.streams[99].outside_total, 2000, "counts stay exact");
    }

    #[test]
    fn a_small_listing_is_untouched() {
        let mut l = Listing::default();
        l.push(stream(0, 3, true));
        let mut scan = FileScan {
            format: ScanFormat::Pickle,
            pickle: Some(l.into_scan()),
            safetensors: None,
            gguf: None,
            damaged: None,
        };
        let before = scan.clone();
        fit(&mut scan);
        assert_eq!(scan, before);
        fit_to(&mut scan, 0);
        assert!(scan.pickle.unwrap().streams[0].globals.is_empty());
    }

    #[test]
    fn a_flood_of_clean_streams_cannot_hide_a_bad_one() {
        let mut l = Listing::default();
        for i in 0..150 {
            l.push(stream(i, 1, false));
        }
        let mut bad = stream(150, 1, true);
        bad.location = "the bad one".into();
        l.push(bad);
        let p = l.into_scan();
        assert_eq!(p.streams_total, 151);
        assert_eq!(p.streams.len(), MAX_LISTED_STREAMS);
        assert_eq!(p.streams.last().unwrap().location, "the bad one");
        assert_eq!(p.streams[0].location, "byte 0", "file order, earliest kept");
    }
}
