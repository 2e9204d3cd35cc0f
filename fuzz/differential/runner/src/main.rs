//! The decant side of the differential harness (`fuzz/differential/`).
//!
//! Converting one case per `decant` process would spend most of its time
//! starting the sandbox; the harness needs hundreds of cases a second. This
//! runner links the converter guest natively (the same code the wasm build
//! runs, as the fuzz targets do), reads one checkpoint path per line on stdin
//! and answers one JSON line per path on stdout, in order:
//!
//! - `{"path", "result": "converted", "format", "protocol", "tensors": {name:
//!   {"dtype", "shape", "sha256"}}, "aliases", "dropped", "ignored"}`
//! - `{"path", "result": "refused", "kind", "message", "hint"}`
//! - `{"path", "result": "capped"}` when the output passes [`OUTPUT_CAP`]
//!   (the host's `max_output_bytes` would stop it too).
//! - `{"path", "result": "unreadable", "message"}` when the file cannot be read.
#![forbid(unsafe_code)]

use converter_guest::error::Result as GuestResult;
use converter_guest::safetensors::Sink;
use converter_guest::source::Chunked;
use decant_abi::Outcome;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::io::{BufRead, Write};

/// Output kept before a case is reported as `capped`: a few hundred bytes of
/// input can legitimately ask for gigabytes (stride-0 views).
const OUTPUT_CAP: u64 = 64 << 20;

#[derive(Default)]
struct CappedSink {
    out: Vec<u8>,
    hit_cap: bool,
}

impl Sink for CappedSink {
    fn write(&mut self, bytes: &[u8]) -> GuestResult<()> {
        if self.out.len() as u64 + bytes.len() as u64 > OUTPUT_CAP {
            self.hit_cap = true;
            return Err(converter_guest::error::limit(
                "differential runner output cap",
            ));
        }
        self.out.extend_from_slice(bytes);
        Ok(())
    }
}

fn main() {
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let Ok(path) = line else { break };
        let answer = run_case(&path);
        if writeln!(stdout, "{answer}")
            .and_then(|_| stdout.flush())
            .is_err()
        {
            break;
        }
    }
}

fn run_case(path: &str) -> Value {
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) => return json!({"path": path, "result": "unreadable", "message": e.to_string()}),
    };
    let mut sink = CappedSink::default();
    match converter_guest::convert(&Chunked(&data), &mut sink) {
        Outcome::Refused(_) if sink.hit_cap => json!({"path": path, "result": "capped"}),
        Outcome::Refused(r) => json!({
            "path": path,
            "result": "refused",
            "kind": r.kind,
            "message": r.message,
            "hint": r.hint,
        }),
        Outcome::Done(report) => {
            let mut v = describe_output(&sink.out);
            if let Some(obj) = v.as_object_mut() {
                obj.insert("path".into(), json!(path));
                obj.insert("result".into(), json!("converted"));
                obj.insert("format".into(), json!(report.format));
                obj.insert("byteorder".into(), json!(report.byteorder));
                obj.insert("protocol".into(), json!(report.pickle_protocol));
                obj.insert(
                    "dropped".into(),
                    json!(report.dropped.iter().map(|d| &d.name).collect::<Vec<_>>()),
                );
                obj.insert("dropped_total".into(), json!(report.dropped_total));
                obj.insert("ignored".into(), json!(report.ignored));
            }
            v
        }
    }
}

/// Names, dtypes, shapes and byte digests of a safetensors file, and its
/// alias metadata (every `__metadata__` entry but `format`).
fn describe_output(file: &[u8]) -> Value {
    let st = match safetensors::SafeTensors::deserialize(file) {
        Ok(st) => st,
        Err(e) => return json!({"output_error": e.to_string()}),
    };
    let mut tensors = Map::new();
    for (name, view) in st.tensors() {
        tensors.insert(
            name,
            json!({
                "dtype": view.dtype().to_string(),
                "shape": view.shape(),
                "sha256": hex::encode(Sha256::digest(view.data())),
            }),
        );
    }
    let mut aliases = Map::new();
    if let Ok((_, meta)) = safetensors::SafeTensors::read_metadata(file) {
        for (k, v) in meta.metadata().iter().flatten() {
            if k != "format" {
                aliases.insert(k.clone(), json!(v));
            }
        }
    }
    json!({"tensors": tensors, "aliases": aliases})
}
