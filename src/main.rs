#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    decant::cli::main()
}
