//! Shared helpers for decant's fuzz targets (see README.md).
//!
//! Everything here is harness code: it drives the guest's public API exactly
//! as the wasm glue (`converter-guest/src/ffi.rs`) does, and checks what comes
//! out with the host's own validation (`decant::validate`).

use converter_guest::error::Result as GuestResult;
use converter_guest::pickle::{Machine, PidStyle};
use converter_guest::safetensors::{Sink, Tuning};
use converter_guest::torch::{plan, Parsed};
use decant_abi::{Outcome, Refusal, Report, MAX_LISTED_DROPPED};

/// `decant::validate`'s cap on the header (private there; same value).
const MAX_HEADER: u64 = 100_000_000;

/// Output the harness keeps before refusing further writes, standing in for
/// the host's `max_output_bytes` (which traps the guest). A tiny checkpoint
/// can legitimately expand (stride-0 views), so without a cap a few hundred
/// bytes of input could ask for terabytes of output.
pub const OUTPUT_CAP: u64 = 16 << 20;

/// Storage bytes the pickle target materialises when it wraps a pickle into
/// a torch zip.
const RECORD_CAP: u64 = 1 << 20;

/// Whether `DECANT_FUZZ_DEBUG` is set: then outcomes are printed to stderr
/// (useful with a single input: `target/.../pickle_vm seeds/pickle_vm/x.pkl`).
fn debug() -> bool {
    static DEBUG: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *DEBUG.get_or_init(|| std::env::var_os("DECANT_FUZZ_DEBUG").is_some())
}

/// The input as a guest [`Source`], read in the host's chunk size.
pub use converter_guest::source::Chunked as Bytes;

/// An in-memory sink that refuses past [`OUTPUT_CAP`].
#[derive(Default)]
pub struct CappedSink {
    pub out: Vec<u8>,
    pub hit_cap: bool,
}

impl Sink for CappedSink {
    fn write(&mut self, bytes: &[u8]) -> GuestResult<()> {
        if self.out.len() as u64 + bytes.len() as u64 > OUTPUT_CAP {
            self.hit_cap = true;
            return Err(converter_guest::error::limit("fuzz harness output cap"));
        }
        self.out.extend_from_slice(bytes);
        Ok(())
    }
}

/// The host's reading of a safetensors file (as `validate::safetensors_file`
/// does, but from memory): `None` if the length prefix does not fit, else
/// what `validate::header_bytes` says.
pub fn validate_file(file: &[u8]) -> Option<decant::error::Result<decant::validate::Summary>> {
    let len = file.len() as u64;
    let n = u64::from_le_bytes(file.get(..8)?.try_into().ok()?);
    if n > MAX_HEADER || n.checked_add(8).is_none_or(|end| end > len) {
        return None;
    }
    Some(decant::validate::header_bytes(&file[8..8 + n as usize], len))
}

/// The outcome must survive the trip to the host: `ffi::report` serialises
/// it with `expect`, and the host parses it back.
fn check_outcome_json(o: &Outcome) {
    let json = serde_json::to_vec(o).expect("outcome serialises");
    let back: Outcome = serde_json::from_slice(&json).expect("outcome parses back");
    assert_eq!(&back, o, "outcome changed through JSON");
}

fn check_refusal(r: &Refusal) {
    assert!(!r.message.is_empty(), "empty refusal message: {r:?}");
    assert!(!r.hint.is_empty(), "empty refusal hint: {r:?}");
    // error.rs: "a one-line message and a one-line hint"; attacker text goes
    // through `printable`.
    assert!(
        !r.message.chars().any(char::is_control),
        "control character in refusal message: {r:?}"
    );
}

fn check_report(r: &Report) {
    assert!(r.format == "zip" || r.format == "legacy", "{r:?}");
    assert!(r.byteorder == "little" || r.byteorder == "big", "{r:?}");
    assert!(r.pickle_protocol <= 5, "{r:?}");
    assert!(r.dropped.len() <= MAX_LISTED_DROPPED, "dropped list not capped");
    assert!(r.dropped_total >= r.dropped.len() as u64, "{r:?}");
    assert!(
        r.dropped.windows(2).all(|w| w[0].name < w[1].name),
        "dropped not sorted/unique"
    );
    assert!(
        r.globals.windows(2).all(|w| w[0] < w[1]),
        "globals not sorted/unique"
    );
}

/// Runs `convert` and `inspect` on a whole checkpoint and checks:
/// - neither panics; both outcomes round-trip through JSON;
/// - a refusal has a one-line message and a hint;
/// - `Done`: `output_bytes` equals the bytes written, the output passes the
///   host's validation (`decant::validate`) and agrees with the report, and
///   the reference `safetensors` reader accepts it with the same tensor count;
/// - `convert` and `inspect` agree on accepting the checkpoint (unless the
///   harness's output cap stopped `convert`) and on its tensor count.
///
/// Returns what `convert` wrote if it succeeded, and whether it hit the
/// output cap.
pub fn check_convert(data: &[u8]) -> (Option<Vec<u8>>, bool) {
    let src = Bytes(data);
    let mut sink = CappedSink::default();
    let converted = converter_guest::convert(&src, &mut sink);
    check_outcome_json(&converted);
    let inspected = converter_guest::inspect(&src);
    check_outcome_json(&inspected);
    if debug() {
        eprintln!("convert: {converted:?}\ninspect: {inspected:?}");
    }

    match &converted {
        Outcome::Done(report) => {
            assert!(!sink.hit_cap, "Done after the sink refused a write");
            let len = sink.out.len() as u64;
            assert_eq!(
                report.output_bytes, len,
                "report.output_bytes differs from the bytes written"
            );
            assert!(report.tensor_list.is_empty(), "convert listed tensors");
            check_report(report);
            let summary = match validate_file(&sink.out) {
                Some(Ok(s)) => s,
                Some(Err(e)) => panic!("host validation rejects the guest's output: {e}"),
                None => panic!("guest output header length does not fit the file"),
            };
            if let Err(e) = decant::validate::matches_report(&summary, report, len) {
                panic!("guest output disagrees with its report: {e}");
            }
            let st = safetensors::SafeTensors::deserialize(&sink.out)
                .unwrap_or_else(|e| panic!("safetensors rejects the guest's output: {e}"));
            assert_eq!(st.len() as u64, report.tensors);
        }
        Outcome::Refused(r) => check_refusal(r),
    }
    match &inspected {
        Outcome::Done(r) => {
            check_report(r);
            assert_eq!(r.output_bytes, 0, "inspect reports output bytes");
            assert_eq!(
                r.tensor_list.len() as u64,
                r.tensors,
                "inspect lists another number of tensors than it counts"
            );
        }
        Outcome::Refused(r) => check_refusal(r),
    }
    match (&converted, &inspected) {
        (Outcome::Done(c), Outcome::Done(i)) => {
            assert_eq!(c.tensors, i.tensors, "convert and inspect count differently");
            assert_eq!(c.format, i.format);
            assert_eq!(c.aliases, i.aliases);
            assert_eq!(c.dropped_total, i.dropped_total);
        }
        (Outcome::Refused(_), Outcome::Refused(_)) => {}
        (Outcome::Refused(_), Outcome::Done(_)) if sink.hit_cap => {}
        (c, i) => panic!("convert and inspect disagree:\nconvert: {c:?}\ninspect: {i:?}"),
    }
    let done = matches!(converted, Outcome::Done(_));
    (done.then_some(sink.out), sink.hit_cap)
}

/// A minimal torch zip: `<root>/<name>` records, STORED, correct CRC-32s,
/// classic (non-ZIP64) end records, nothing before or after the archive.
pub fn torch_zip(root: &str, records: &[(String, Vec<u8>)]) -> Vec<u8> {
    const DOS_DATE: u16 = 0x0021; // 1980-01-01
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in records {
        let name = format!("{root}/{name}");
        let crc = crc32fast::hash(data);
        let offset = out.len() as u32;
        let size = data.len() as u32;
        out.extend_from_slice(b"PK\x03\x04");
        for v in [20u16, 0, 0, 0, DOS_DATE] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for v in [crc, size, size] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);

        central.extend_from_slice(b"PK\x01\x02");
        for v in [20u16, 20, 0, 0, 0, DOS_DATE] {
            central.extend_from_slice(&v.to_le_bytes());
        }
        for v in [crc, size, size] {
            central.extend_from_slice(&v.to_le_bytes());
        }
        for v in [name.len() as u16, 0, 0, 0, 0] {
            central.extend_from_slice(&v.to_le_bytes());
        }
        central.extend_from_slice(&0u32.to_le_bytes()); // external attributes
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let cd_start = out.len() as u32;
    let cd_size = central.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(b"PK\x05\x06");
    let count = records.len() as u16;
    for v in [0u16, 0, count, count] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&cd_size.to_le_bytes());
    out.extend_from_slice(&cd_start.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

/// The `pickle_vm` target: `data` is a data.pkl.
///
/// 1. Runs the VM (legacy persistent-id style too, for its view code).
/// 2. On success, runs the plan on the VM's object graph and checks that the
///    safetensors header the guest would write passes the host's validation.
/// 3. Wraps the pickle into a valid torch zip, with a record of the declared
///    size for every storage it references, and runs [`check_convert`]; when
///    the plan succeeded, the conversion must succeed too.
pub fn fuzz_pickle(data: &[u8]) {
    let src = Bytes(data);
    let len = data.len() as u64;

    let _ = Machine::new(PidStyle::Legacy).load(&src, 0, len, "");

    let mut machine = Machine::new(PidStyle::Zip);
    let Ok(loaded) = machine.load(&src, 0, len, "data.pkl") else {
        return;
    };
    assert!(loaded.end >= 1 && loaded.end <= len, "end {} of {len}", loaded.end);
    assert!(loaded.protocol <= 5);
    let pkl = data[..loaded.end as usize].to_vec();
    let decls: Vec<(String, u64)> = machine
        .storages
        .decls
        .iter()
        .map(|d| (d.key.clone(), d.nbytes))
        .collect();

    let parsed = Parsed {
        format: "zip",
        protocol: loaded.protocol,
        big_endian: false,
        machine,
        root: loaded.value,
        data: Vec::new(),
    };
    let planned = plan::plan(&parsed);
    if debug() {
        eprintln!("plan: {:?}", planned.as_ref().map(|p| p.tensors.len()));
    }
    if let Ok(p) = &planned {
        let head = converter_guest::safetensors::header(p);
        let n = u64::from_le_bytes(head[..8].try_into().unwrap());
        assert_eq!(n + 8, head.len() as u64, "header length prefix");
        assert_eq!(n % 8, 0, "header not padded to 8 bytes");
        // plan() checked that the data adds up within u64.
        let data_len: u64 = p
            .tensors
            .iter()
            .map(|e| e.tensor.numel() * e.tensor.dtype.size())
            .sum();
        if let Some(file_len) = data_len.checked_add(head.len() as u64) {
            if let Err(e) = decant::validate::header_bytes(&head[8..], file_len) {
                panic!("host validation rejects the header the guest would write: {e}");
            }
        }
    }

    let total = decls
        .iter()
        .try_fold(0u64, |t, (_, n)| t.checked_add(*n))
        .filter(|&t| t <= RECORD_CAP);
    if total.is_none() {
        return;
    }
    // A hash of the input picks the byte order and the writer's tuning, so
    // each pickle gets one deterministic variant.
    let h = crc32fast::hash(data);
    let big_endian = h & 1 != 0;
    let mut records = vec![
        ("version".to_string(), b"3\n".to_vec()),
        ("data.pkl".to_string(), pkl),
    ];
    if big_endian {
        records.push(("byteorder".to_string(), b"big".to_vec()));
    }
    for (i, (key, n)) in decls.iter().enumerate() {
        let bytes = (0..*n)
            .map(|j| (j as u8).wrapping_mul(31).wrapping_add(i as u8))
            .collect();
        records.push((format!("data/{key}"), bytes));
    }
    let zip = torch_zip("archive", &records);
    let (out, hit_cap) = check_convert(&zip);
    if planned.is_ok() && !hit_cap {
        assert!(
            out.is_some(),
            "the VM and plan accept the pickle but convert of its zip refuses"
        );
    }

    // The scatter path (storages larger than `gather_in_memory`, 64 MiB by
    // default, so no fuzz input reaches it otherwise) must write the same
    // bytes as the default path. Kept small: scatter costs about
    // runs x span / window.
    let Some(expected) = out else { return };
    if total.unwrap_or(0) > 4096 || expected.len() > 64 << 10 {
        return;
    }
    let tuning = Tuning {
        gather_in_memory: 0,
        scatter_block: [1, 7, 64, 4096][(h >> 1) as usize % 4],
        scatter_window: [64, 100, 4096][(h >> 3) as usize % 3],
    };
    let src = Bytes(&zip);
    let parsed = converter_guest::torch::parse(&src).expect("convert parsed it");
    let p = plan::plan(&parsed).expect("convert planned it");
    let mut sink = CappedSink::default();
    converter_guest::safetensors::write_tuned(&src, &parsed, &p, &mut sink, tuning)
        .unwrap_or_else(|e| panic!("scatter path refuses what convert wrote ({tuning:?}): {e:?}"));
    assert!(
        sink.out == expected,
        "scatter path ({tuning:?}) writes other bytes than convert"
    );
}
