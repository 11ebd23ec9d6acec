//! The `palisade` binary.

// mimalloc: the request path allocates many small, short-lived objects (headers, Cedar
// expressions, audit records); glibc's malloc spent about 14 % of the proxy's CPU on them in a
// profile of the full pipeline (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    palisade_proxy::cli::main()
}
