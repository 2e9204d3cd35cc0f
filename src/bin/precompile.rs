//! Compiles the committed converter (`converter-guest/dist/decant_guest.wasm`)
//! ahead of time for every supported target, into
//! `converter-guest/dist/decant_guest.<target>.cwasm`, which the host loads
//! instead of compiling at every start.
//!
//!     cargo run --locked --features precompile-all --bin decant-precompile [-- --check]
//!
//! `--check` writes nothing and fails if a committed file differs from what
//! the compiler makes now (CI runs it, like the wasm's own check).

use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let check = std::env::args().nth(1).as_deref() == Some("--check");
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("converter-guest/dist");
    let mut stale = false;
    for target in decant::guest::TARGETS {
        let compiled = match decant::sandbox::precompile(decant::guest::WASM, target) {
            Ok(bytes) => bytes,
            Err(e) => {
                eprintln!("decant-precompile: {target}: {}", e.message);
                return ExitCode::from(2);
            }
        };
        let path = dist.join(format!("decant_guest.{target}.cwasm"));
        let sha = decant::trust::statement::Sha256Hex::of(&compiled);
        if check {
            if std::fs::read(&path).ok().as_deref() != Some(compiled.as_slice()) {
                eprintln!(
                    "{} is stale or not reproducible (rebuilt: sha256 {sha}); run converter-guest/build-wasm.sh and commit the result",
                    path.display()
                );
                stale = true;
            } else {
                println!("compiled converter reproduces for {target}: {sha}");
            }
        } else if let Err(e) = std::fs::write(&path, &compiled) {
            eprintln!("decant-precompile: cannot write {}: {e}", path.display());
            return ExitCode::from(2);
        } else {
            println!("wrote {}: {sha}", path.display());
        }
    }
    if stale {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
