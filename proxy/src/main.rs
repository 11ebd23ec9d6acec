//! The `palisade` binary.

// mimalloc: the request path allocates many small, short-lived objects (headers, Cedar
// expressions, audit records); glibc's malloc spent about 14 % of the proxy's CPU on them in a
// profile of the full pipeline (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    disable_transparent_huge_pages();
    palisade_proxy::cli::main()
}

/// mimalloc advises the kernel to back its segments with transparent huge pages, so memory that
/// an idle connection touches a few KiB of becomes resident 2 MiB at a time: 2,000 idle SSE
/// streams cost 191 KiB of RSS each with huge pages and 73 KiB without (tests/bench's `idle`
/// row). Turned off for the whole process before the runtime's threads allocate; what mimalloc
/// mapped before `main` keeps its advice but faults in no huge pages from here on.
#[cfg(target_os = "linux")]
fn disable_transparent_huge_pages() {
    // The result is not checked: a kernel without the option leaves the allocator as it was
    // (more memory, same behaviour), and logging is not set up yet to say so.
    // SAFETY: PR_SET_THP_DISABLE takes integer arguments only and touches no memory.
    unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
}

#[cfg(not(target_os = "linux"))]
fn disable_transparent_huge_pages() {}
