//! [`Batch`]: the sealed lines of one writer batch, back to back in one buffer.
//!
//! The writer seals each record straight into the batch ([`Batch::seal`]): one serialization,
//! no line of its own. The file and stdout sinks take the whole buffer in one write; the Redis
//! sink takes it line by line ([`Batch::lines`]). Lines the file failed to take are kept in a
//! batch of their own and written first next time.

use super::chain::ChainHead;
use super::AuditRecord;

/// Sealed lines, each ended by a newline.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// The lines with their newlines.
    bytes: Vec<u8>,
    /// Where each line ends (the offset just past its newline).
    ends: Vec<usize>,
}

impl Batch {
    /// Seals `record` into the chain at `head` and appends its line.
    pub fn seal(&mut self, record: &mut AuditRecord, head: &mut ChainHead) {
        record.seal_into(head, &mut self.bytes);
        self.end_line();
    }

    /// Appends a line sealed elsewhere (a checkpoint), given without its newline.
    pub fn push_line(&mut self, line: &str) {
        self.bytes.extend_from_slice(line.as_bytes());
        self.end_line();
    }

    fn end_line(&mut self) {
        self.bytes.push(b'\n');
        self.ends.push(self.bytes.len());
    }

    /// Lines held.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether no line is held.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The lines with their newlines, as written to a file.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Each line without its newline.
    pub fn lines(&self) -> impl Iterator<Item = &str> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts.zip(&self.ends).map(|(start, &end)| {
            // Sealed lines are serde_json's output and ASCII: UTF-8.
            std::str::from_utf8(&self.bytes[start..end - 1]).unwrap_or_default()
        })
    }

    /// Appends the lines of `other`.
    pub fn extend(&mut self, other: &Batch) {
        let base = self.bytes.len();
        self.bytes.extend_from_slice(&other.bytes);
        self.ends.extend(other.ends.iter().map(|end| base + end));
    }

    /// Keeps the first `lines` lines.
    pub fn truncate(&mut self, lines: usize) {
        if lines < self.ends.len() {
            self.ends.truncate(lines);
            self.bytes.truncate(self.ends.last().copied().unwrap_or(0));
        }
    }

    /// Empties the batch, keeping its buffers for the next one.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }
}
