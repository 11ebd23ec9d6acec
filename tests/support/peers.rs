//! Where the third-party peers live: the workspace root and the Python with the peers' packages
//! (`tests/peers/requirements.txt`). A missing tool fails loudly with what to run; a test never
//! skips.

use std::path::{Path, PathBuf};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("workspace root")
}

/// The Python with the peers' packages (`tests/peers/requirements.txt`):
/// `PALISADE_PEERS_PYTHON`, else `target/peers-venv/bin/python`; panics with what to run when
/// it is missing.
pub fn python() -> PathBuf {
    let path = std::env::var_os("PALISADE_PEERS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/peers-venv/bin/python"));
    assert!(
        path.exists(),
        "no Python with the peer packages at {}: run `bash tests/run.sh` once (it creates \
         target/peers-venv from tests/peers/requirements.txt) or set PALISADE_PEERS_PYTHON",
        path.display()
    );
    path
}
