//! The JSONL file sink: one sealed record per line, rotated by size and age.
//!
//! The active file is `path` (e.g. `audit.jsonl`); a rotated file is renamed to
//! `<stem>.<last seq, 12 digits>.jsonl` beside it (`audit.000000050000.jsonl`), so a shell glob
//! lists the chain in order: `palisade audit verify audit.*.jsonl audit.jsonl` (or just the
//! directory). On start the sink continues the chain of the active file, or of the newest rotated
//! one.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::chain::{parse_chained, ChainHead};

/// The file sink.
pub struct FileSink {
    path: PathBuf,
    file: File,
    size: u64,
    opened: SystemTime,
    max_bytes: u64,
    max_age: Duration,
}

impl FileSink {
    /// Opens (or creates) the active file and returns the sink with the chain head to continue.
    pub fn open(
        path: &Path,
        max_bytes: u64,
        max_age: Duration,
    ) -> std::io::Result<(Self, ChainHead)> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        drop_torn_tail(path)?;
        let head = match last_head(path)? {
            Some(head) => head,
            None => match rotated_files(path)?.last() {
                Some(newest) => last_head(newest)?.unwrap_or_default(),
                None => ChainHead::default(),
            },
        };
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let meta = file.metadata()?;
        let opened = meta
            .created()
            .or_else(|_| meta.modified())
            .unwrap_or_else(|_| SystemTime::now());
        Ok((
            Self {
                path: path.to_path_buf(),
                file,
                size: meta.len(),
                opened,
                max_bytes,
                max_age,
            },
            head,
        ))
    }

    /// Appends `lines` (whole lines, each ended by its newline: a [`super::batch::Batch`]'s
    /// bytes) in one write; `last_seq` is the `seq` of the last line, used to name the file if
    /// this batch makes it rotate.
    pub fn write(&mut self, lines: &[u8], last_seq: u64) -> std::io::Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.file.write_all(lines) {
            // Part of the batch may be on disk (ENOSPC mid-write): cut back to the last whole
            // record, so the batch can be written again without a torn or repeated line.
            if let Err(cut) = self.file.set_len(self.size) {
                tracing::error!(error = %cut, "audit: cannot cut a partial write back");
            }
            return Err(e);
        }
        self.size += lines.len() as u64;
        if self.rotation_due_after(0) {
            // The records are written: a failed rotation must not make them be written again.
            // It is retried after the next batch.
            if let Err(e) = self.rotate(last_seq) {
                tracing::error!(error = %e, file = %self.path.display(), "audit: rotation failed");
            }
        }
        Ok(())
    }

    /// Whether writing `extra` more bytes will make the file rotate (by size or age): the
    /// writer then seals a checkpoint into the batch first, so a closed file ends signed.
    pub fn rotation_due_after(&self, extra: u64) -> bool {
        let too_old = self.opened.elapsed().is_ok_and(|age| age >= self.max_age);
        self.size + extra >= self.max_bytes || too_old
    }

    /// Flushes the file to disk (`fsync`).
    pub fn sync(&mut self) -> std::io::Result<()> {
        self.file.sync_data()
    }

    fn rotate(&mut self, last_seq: u64) -> std::io::Result<()> {
        self.file.sync_all()?;
        std::fs::rename(&self.path, rotated_name(&self.path, last_seq))?;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // Make the rename durable too.
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        self.size = 0;
        self.opened = SystemTime::now();
        tracing::info!(file = %self.path.display(), last_seq, "audit: rotated");
        Ok(())
    }
}

/// Cuts a last line that was never finished (the process died mid-write: no newline at the end),
/// so the chain continues from the last whole record.
fn drop_torn_tail(path: &Path) -> std::io::Result<()> {
    let mut file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !meta.is_file() || meta.len() == 0 {
        return Ok(());
    }
    let len = meta.len();
    let mut last = [0u8; 1];
    file.seek(SeekFrom::Start(len - 1))?;
    file.read_exact(&mut last)?;
    if last[0] == b'\n' {
        return Ok(());
    }
    // Find the last newline, reading backwards in blocks.
    let mut end = len;
    let mut keep = 0;
    while end > 0 {
        let start = end.saturating_sub(64 * 1024);
        let mut block = vec![0u8; (end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut block)?;
        if let Some(i) = block.iter().rposition(|b| *b == b'\n') {
            keep = start + i as u64 + 1;
            break;
        }
        end = start;
    }
    tracing::warn!(
        file = %path.display(),
        bytes = len - keep,
        "audit: dropping an unfinished last line (the writer stopped mid-write)"
    );
    file.set_len(keep)?;
    file.sync_all()
}

/// `<dir>/<stem>.<seq:012>.jsonl` for the active file `path`.
pub fn rotated_name(path: &Path, last_seq: u64) -> PathBuf {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("audit");
    path.with_file_name(format!("{stem}.{last_seq:012}.jsonl"))
}

/// The rotated files of the active file `path`, oldest first.
pub fn rotated_files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("audit");
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => dir.to_path_buf(),
        None => PathBuf::from("."),
    };
    let prefix = format!("{stem}.");
    let mut out: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                    n.strip_prefix(&prefix)
                        .and_then(|rest| rest.strip_suffix(".jsonl"))
                        .is_some_and(|seq| {
                            seq.len() == 12 && seq.bytes().all(|b| b.is_ascii_digit())
                        })
                })
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    out.sort();
    Ok(out)
}

/// The chain files of `path` in order: its rotated files, then `path` itself when it exists.
pub fn chain_files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = rotated_files(path)?;
    if path.is_file() {
        files.push(path.to_path_buf());
    }
    Ok(files)
}

/// The head after the last complete record of `path` (`None` when the file is missing or has no
/// record). Reads only the file's tail.
fn last_head(path: &Path) -> std::io::Result<Option<ChainHead>> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Ok(None);
    }
    let len = meta.len();
    let mut window = 64 * 1024u64;
    loop {
        let start = len.saturating_sub(window);
        file.seek(SeekFrom::Start(start))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        // The window may start inside a multi-byte character; only the last line matters.
        let tail = String::from_utf8_lossy(&bytes);
        let mut complete = tail.lines().filter(|l| !l.trim().is_empty());
        if let Some(line) = complete.next_back() {
            if let Ok((seq, _, hash, _)) = parse_chained(line) {
                return Ok(Some(ChainHead { seq, hash }));
            }
            if start == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "{}: the last line is not an audit record; move the file away",
                        path.display()
                    ),
                ));
            }
        } else if start == 0 {
            return Ok(None);
        }
        window *= 4;
    }
}
