//! Real peers through the proxy: software we did not write on both sides of Palisade, each
//! started on a free loopback port and installed by `tests/run.sh` from a committed lockfile or
//! requirements file (`tests/peers/agui-client/package-lock.json`,
//! `tests/peers/requirements.txt`). One test binary, one module per peer.

mod a2a;
mod agui;
mod mcp;
mod peer;
