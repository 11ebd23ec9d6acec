//! Real peers through the proxy: software we did not write on both sides of Palisade, each
//! started on a free loopback port and installed by `tests/run.sh` from a committed lockfile or
//! requirements file (`tests/peers/agui-client/package-lock.json`,
//! `tests/peers/requirements.txt`). One test binary, one module per peer.

mod a2a;
mod agui;
mod example_proxy;
// Runs the `## Try it` bash blocks of EVERY examples/*/README.md (convention: examples/README.md);
// an example directory without such a section fails `examples::every_example_is_covered`.
mod examples;
mod keycloak;
mod mcp;
mod nginx;
mod orchestrator;
mod peer;
mod supabase;
