//! The `palisade` binary.

fn main() -> std::process::ExitCode {
    palisade_proxy::cli::main()
}
