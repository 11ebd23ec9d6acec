//! Text normalization for evasion-resistant matching.
//!
//! [`Normalized::push`] reads a text into two parts: the *letters* (every letter and digit,
//! folded, with nothing between them) and, before each letter, the *gap* that separated it from
//! the one before:
//!
//! - [`NONE`]: nothing — the two letters are one word;
//! - [`HARD`]: whitespace or punctuation — a word break;
//! - [`SOFT`]: something a model may read either way, so matching accepts both readings:
//!   invisible characters (zero-width spaces and joiners, U+2060 word joiner, soft hyphen, bidi
//!   controls, variation selectors, control characters), a single punctuation character between
//!   two letters (`ig-nore`, `i.g.n.o.r.e`, `don't`), a hyphen that ends a line (`ig-⏎nore`), and
//!   a single space between two one-letter words (`i g n o r e   p r e v i o u s`).
//!
//! Folding, per character:
//!
//! 1. Unicode tag characters U+E0020–U+E007E decode to the ASCII character they shadow (U+E0041
//!    is an invisible `A`), so instructions smuggled in tags are read like visible ones;
//! 2. compatibility folding (NFKC's mapping, applied as NFKD with combining marks dropped, so
//!    full-width `ｉ` becomes `i` and `ï` becomes `i` too);
//! 3. case folding (lower case);
//! 4. homoglyphs fold to the Latin letter they look like (Unicode's confusables, UTS #39: Cyrillic,
//!    Greek, Armenian, Cherokee, Lisu… look-alikes; see [`fold`]), and
//!    leetspeak digits and symbols to the letter they imitate (`0`→`o`, `1`→`i`, `3`→`e`,
//!    `4`→`a`, `5`→`s`, `7`→`t`, `@`→`a`, `$`→`s`).
//!
//! JSON `\uXXXX` escapes are decoded first (tool arguments are scanned as sent). Phrases match
//! on the letters, with their word breaks checked against the gaps
//! ([`super::detect::RuleSet::norm_hits`]), so `ig\u{AD}nore\u{200B}previous instructions` —
//! one soft gap read as nothing, the other as a space — is caught as well as each reading on its
//! own. Regexes see two renderings: [`Normalized::split`] (every gap a space) and
//! [`Normalized::joined`] (soft gaps removed). ASCII text takes a table-driven fast path.
//!
//! ```
//! use palisade_proxy::guardrails::normalize::{normalize, Normalized};
//! assert_eq!(
//!     normalize("IgNoRe\u{200B} previous ｉｎｓｔｒｕｃｔｉｏｎｓ"),
//!     "ignore previous instructions"
//! );
//! let n = Normalized::of("ig-nore pre\u{AD}vious\u{200B}instructions");
//! assert_eq!(n.split(), "ig nore pre vious instructions");
//! assert_eq!(n.joined(), "ignore previousinstructions");
//! ```

use unicode_normalization::char::{decompose_compatible, is_combining_mark};

use fold::{decode_unicode_escapes, homoglyph, tag_ascii};
pub use fold::{is_invisible, warm};

mod fold;

/// Gap before a letter that continues a word.
pub const NONE: u8 = 0;
/// Gap a model may read as a word break or as nothing.
pub const SOFT: u8 = 1;
/// Gap that breaks words.
pub const HARD: u8 = 2;

/// Classes of the ASCII table; every other value is the folded letter itself (all ≥ `b'2'`).
const INVISIBLE: u8 = 0;
const SPACE: u8 = 1;
const NEWLINE: u8 = 2;
const PUNCT: u8 = 3;
const HYPHEN: u8 = 4;

/// ASCII byte → its class or folded letter.
static ASCII: [u8; 128] = build_ascii();

const fn build_ascii() -> [u8; 128] {
    let mut t = [PUNCT; 128];
    let mut b = 0u8;
    while b < 128 {
        t[b as usize] = match b {
            b'a'..=b'z' => b,
            b'A'..=b'Z' => b + 32,
            b'0' => b'o',
            b'1' => b'i',
            b'3' => b'e',
            b'4' => b'a',
            b'5' => b's',
            b'7' => b't',
            b'@' => b'a',
            b'$' => b's',
            b'2' | b'6' | b'8' | b'9' => b,
            b'\n' | b'\r' | 0x0b | 0x0c => NEWLINE,
            b'\t' | b' ' => SPACE,
            b'-' => HYPHEN,
            0..=0x1f | 0x7f => INVISIBLE,
            _ => PUNCT,
        };
        b += 1;
    }
    t
}

/// What came between the last letter and the next one, packed in a byte (the hot loop keeps
/// it in a register): spaces and punctuation characters counted up to 2, whether an invisible
/// character, a line break, and a hyphen first of all were among them. `0`: nothing.
mod run {
    pub const SPACES: u8 = 0b0000_0011;
    pub const PUNCTS: u8 = 0b0000_1100;
    pub const INVISIBLE: u8 = 0b0001_0000;
    pub const NEWLINE: u8 = 0b0010_0000;
    pub const HYPHEN_FIRST: u8 = 0b0100_0000;

    /// `run` with one more whitespace character.
    pub const fn space(run: u8, newline: bool) -> u8 {
        let spaces = run & SPACES;
        let run = (run & !SPACES) | (spaces + (spaces < 2) as u8);
        if newline {
            run | NEWLINE
        } else {
            run
        }
    }

    /// `run` with one more punctuation character.
    pub const fn punct(run: u8, hyphen: bool) -> u8 {
        let puncts = (run & PUNCTS) >> 2;
        let first = run & (SPACES | PUNCTS) == 0;
        let run = (run & !PUNCTS) | ((puncts + (puncts < 2) as u8) << 2);
        if first && hyphen {
            run | HYPHEN_FIRST
        } else {
            run
        }
    }

    /// `STEP[class][run]`: `run` after one separator of an ASCII class (`INVISIBLE` …
    /// `HYPHEN`) — one load instead of a branch per separator.
    pub static STEP: [[u8; 128]; 5] = {
        let mut t = [[0u8; 128]; 5];
        let mut r = 0;
        while r < 128 {
            let run = r as u8;
            t[super::INVISIBLE as usize][r] = run | INVISIBLE;
            t[super::SPACE as usize][r] = space(run, false);
            t[super::NEWLINE as usize][r] = space(run, true);
            t[super::PUNCT as usize][r] = punct(run, false);
            t[super::HYPHEN as usize][r] = punct(run, true);
            r += 1;
        }
        t
    };
}

/// A normalized text: its letters and the gaps between them (see the module docs). Appending
/// pieces one after another equals normalizing their concatenation (streams are read delta by
/// delta), except for a JSON `\uXXXX` escape cut in two.
#[derive(Debug, Default, Clone)]
pub struct Normalized {
    text: String,
    /// The split reading (every gap one space), written in step with `text`: the regexes read
    /// it on every scan, so it is not rendered after the fact.
    spaced: String,
    /// `(at, gap)`: a soft or hard gap before byte `at` of `text`, ascending; no entry is no
    /// gap. Sparse (one per word), so the hot path writes little more than the letters.
    breaks: Vec<(u32, u8)>,
    /// The text was cut in the middle of a word (a stream keeps only a window).
    cut_mid_word: bool,
    /// A soft gap was recorded.
    soft: bool,
    /// The separators since the last letter ([`run`]).
    run: u8,
    /// Index in `breaks` of a soft gap between two one-letter words, until the second turns
    /// out longer.
    pending: Option<usize>,
}

impl Normalized {
    /// An empty text with room for `bytes`.
    pub fn with_capacity(bytes: usize) -> Self {
        Self {
            text: String::with_capacity(bytes),
            spaced: String::with_capacity(bytes),
            breaks: Vec::with_capacity(bytes / 5),
            ..Self::default()
        }
    }

    /// Calls `f` with the normalized form of `text`, read into this thread's reused buffers
    /// (a request scans many texts; each would otherwise allocate and fault in fresh pages for
    /// its letters, its split reading and its gaps). Buffers that grew past
    /// [`SCRATCH_LIMIT`] bytes are freed after use.
    pub fn with<R>(text: &str, f: impl FnOnce(&Normalized) -> R) -> R {
        SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut n) => {
                n.clear();
                n.push(text);
                let out = f(&n);
                if n.text.capacity() > SCRATCH_LIMIT {
                    *n = Normalized::default();
                }
                out
            }
            // Re-entered from `f` (not done today): a fresh one.
            Err(_) => f(&Normalized::of(text)),
        })
    }

    /// Empties the text, keeping the buffers.
    fn clear(&mut self) {
        self.text.clear();
        self.spaced.clear();
        self.breaks.clear();
        self.cut_mid_word = false;
        self.soft = false;
        self.run = 0;
        self.pending = None;
    }

    /// The normalized form of `text`.
    pub fn of(text: &str) -> Self {
        let mut n = Self::with_capacity(text.len());
        n.push(text);
        n
    }

    /// The letters, without gaps.
    pub fn letters(&self) -> &str {
        &self.text
    }

    /// The soft and hard gaps: `(byte of the letters after it, SOFT or HARD)`, ascending.
    pub fn breaks(&self) -> &[(u32, u8)] {
        &self.breaks
    }

    /// The gap before byte `at` of the letters.
    pub fn gap(&self, at: usize) -> u8 {
        match self.breaks.binary_search_by_key(&(at as u32), |b| b.0) {
            Ok(i) => self.breaks[i].1,
            Err(_) => NONE,
        }
    }

    /// Whether some gap is, or was, soft (the joined reading may differ from the split one).
    pub fn has_soft(&self) -> bool {
        self.soft
    }

    /// Whether a match may start at byte `at` of the letters (a gap, or the start of the text
    /// unless it was cut mid-word).
    pub fn starts_word(&self, at: usize) -> bool {
        if at == 0 {
            !self.cut_mid_word
        } else {
            self.gap(at) != NONE
        }
    }

    /// Whether a match may end at byte `at` (a gap, or the end of what was read so far).
    pub fn ends_word(&self, at: usize) -> bool {
        at >= self.text.len() || self.gap(at) != NONE
    }

    /// Bytes of letters.
    pub fn len(&self) -> usize {
        self.text.len()
    }

    /// Whether no letter was read.
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// Every gap rendered as one space (the reading where anything may split a word).
    pub fn split(&self) -> &str {
        &self.spaced
    }

    /// Where byte `at` of the letters sits in [`Normalized::split`] (before the space a gap
    /// there became).
    pub fn split_offset(&self, at: usize) -> usize {
        at + self.breaks.partition_point(|b| (b.0 as usize) < at)
    }

    /// Hard gaps rendered as one space, soft ones as nothing (the reading where anything
    /// that may join a word does).
    pub fn joined(&self) -> String {
        self.render(0, |g| g == HARD).0
    }

    /// The rendering where `space(gap)` says which gaps become a space, and where byte `from`
    /// of the letters landed in it (before the space a gap there became).
    pub fn render(&self, from: usize, space: impl Fn(u8) -> bool) -> (String, usize) {
        let mut out = String::with_capacity(self.text.len() + self.breaks.len());
        let mut mapped = (from == 0).then_some(0);
        let mut start = 0;
        for &(at, gap) in &self.breaks {
            let at = at as usize;
            if at == 0 || !space(gap) {
                continue;
            }
            if mapped.is_none() && from <= at {
                mapped = Some(out.len() + (from - start));
            }
            out.push_str(&self.text[start..at]);
            out.push(' ');
            start = at;
        }
        let mapped = mapped.unwrap_or_else(|| out.len() + (from.min(self.text.len()) - start));
        out.push_str(&self.text[start..]);
        (out, mapped)
    }

    /// Keeps only the last `keep` bytes of letters (at least; the cut moves to a character
    /// boundary), with their gaps.
    pub fn keep_last(&mut self, keep: usize) {
        if self.text.len() <= keep {
            return;
        }
        let mut cut = self.text.len() - keep;
        while !self.text.is_char_boundary(cut) {
            cut += 1;
        }
        self.cut_mid_word = self.gap(cut) == NONE;
        self.text.drain(..cut);
        let dropped = self.breaks.partition_point(|b| (b.0 as usize) <= cut);
        self.spaced.drain(..cut + dropped);
        self.breaks.drain(..dropped);
        for b in &mut self.breaks {
            b.0 -= cut as u32;
        }
        self.pending = self.pending.and_then(|p| p.checked_sub(dropped));
    }

    /// Appends the normalized form of `text`.
    pub fn push(&mut self, text: &str) {
        // JSON text (tool arguments are scanned as sent) may hide characters behind `\uXXXX`.
        if text.contains("\\u") {
            let decoded = decode_unicode_escapes(text);
            if decoded != text {
                return self.push(&decoded);
            }
        }
        let bytes = text.as_bytes();
        let mut i = 0;
        // The separators since the last letter live in a local while ASCII lasts.
        let mut sep = self.run;
        while i < bytes.len() {
            let b = bytes[i];
            if b >= 0x80 {
                self.run = sep;
                let Some(c) = text[i..].chars().next() else {
                    break;
                };
                i += c.len_utf8();
                self.char(c);
                sep = self.run;
                continue;
            }
            if b.is_ascii_lowercase() {
                // The common case: a run of lower-case letters is copied as is.
                let start = i;
                while i < bytes.len() && bytes[i].is_ascii_lowercase() {
                    i += 1;
                }
                if sep != 0 {
                    self.end_run(sep);
                    sep = 0;
                }
                self.text.push_str(&text[start..i]);
                self.spaced.push_str(&text[start..i]);
                continue;
            }
            i += 1;
            let class = ASCII[usize::from(b)];
            if class <= HYPHEN {
                sep = run::STEP[usize::from(class)][usize::from(sep & 0x7f)];
                continue;
            }
            if sep != 0 {
                self.end_run(sep);
                sep = 0;
            }
            self.text.push(char::from(class));
            self.spaced.push(char::from(class));
        }
        self.run = sep;
        self.settle();
    }

    /// One ASCII byte (other than a lower-case letter, which [`Normalized::push`] copies).
    fn ascii(&mut self, b: u8) {
        match ASCII[usize::from(b & 0x7f)] {
            INVISIBLE => self.run |= run::INVISIBLE,
            SPACE => self.run = run::space(self.run, false),
            NEWLINE => self.run = run::space(self.run, true),
            PUNCT => self.run = run::punct(self.run, false),
            HYPHEN => self.run = run::punct(self.run, true),
            letter => self.letter(char::from(letter)),
        }
    }

    /// One non-ASCII character.
    fn char(&mut self, c: char) {
        if let Some(ascii) = tag_ascii(c) {
            return self.ascii(ascii);
        }
        if is_invisible(c) {
            self.run |= run::INVISIBLE;
            return;
        }
        decompose_compatible(c, |d| {
            if is_combining_mark(d) {
                return;
            }
            if is_invisible(d) {
                self.run |= run::INVISIBLE;
                return;
            }
            for lower in d.to_lowercase() {
                if lower.is_ascii() {
                    self.ascii(lower as u8);
                } else if let Some(latin) = homoglyph(lower) {
                    self.ascii(latin as u8);
                } else if lower.is_alphanumeric() {
                    self.letter(lower);
                } else if lower.is_control() {
                    self.run |= run::INVISIBLE;
                } else if lower.is_whitespace() {
                    let newline = matches!(lower, '\u{85}' | '\u{2028}' | '\u{2029}');
                    self.run = run::space(self.run, newline);
                } else {
                    self.run = run::punct(self.run, matches!(lower, '\u{2010}' | '\u{2011}'));
                }
            }
        });
    }

    fn letter(&mut self, c: char) {
        let mut buf = [0u8; 4];
        self.letters_in(c.encode_utf8(&mut buf));
    }

    /// Appends letters (`s`), deciding the gap before them from the run since the last
    /// letter.
    fn letters_in(&mut self, s: &str) {
        if self.run != 0 {
            let sep = std::mem::take(&mut self.run);
            self.end_run(sep);
        }
        self.text.push_str(s);
        self.spaced.push_str(s);
    }

    /// Whether the letters from byte `start` (a character boundary) to the end are exactly one
    /// character.
    fn one_char_from(&self, start: usize) -> bool {
        let n = self.text.len().saturating_sub(start);
        match n {
            1 => true,
            2..=4 => {
                let lead = self.text.as_bytes()[start];
                n == match lead {
                    0x00..=0x7F => 1,
                    0xC0..=0xDF => 2,
                    0xE0..=0xEF => 3,
                    _ => 4,
                }
            }
            _ => false,
        }
    }

    /// Settles a provisional soft gap whose right-hand word already has two letters: it was a
    /// word break.
    fn settle(&mut self) {
        if let Some(p) = self.pending {
            let start = self.breaks[p].0 as usize;
            if start < self.text.len() && !self.one_char_from(start) {
                self.breaks[p].1 = HARD;
                self.pending = None;
            }
        }
    }

    /// Records the gap the separators `sep` (not empty) make before the next letter.
    fn end_run(&mut self, sep: u8) {
        // The word since the last gap ends here: a provisional soft gap before it stays soft
        // when it is one letter, and is a word break otherwise.
        self.settle();
        self.pending = None;
        if self.text.is_empty() {
            return;
        }
        let spaces = sep & run::SPACES;
        let puncts = (sep & run::PUNCTS) >> 2;
        let gap = if spaces == 0 && puncts <= 1 {
            // Only invisible characters, or one punctuation character: `ig\u{AD}nore`,
            // `ig-nore`, `i.g.n.o.r.e`.
            SOFT
        } else if puncts == 1 && sep & run::HYPHEN_FIRST != 0 && sep & run::NEWLINE != 0 {
            // A hyphenated line break.
            SOFT
        } else if spaces == 1
            && puncts == 0
            && self.one_char_from(self.breaks.last().map_or(0, |b| b.0 as usize))
        {
            // `i g n o r e`: soft while the next word is one letter too.
            self.pending = Some(self.breaks.len());
            SOFT
        } else {
            HARD
        };
        self.soft |= gap == SOFT;
        self.breaks.push((self.text.len() as u32, gap));
        self.spaced.push(' ');
    }
}

/// Largest text buffer [`Normalized::with`] keeps for the next scan on its thread, in bytes.
pub const SCRATCH_LIMIT: usize = 2 << 20;

thread_local! {
    static SCRATCH: std::cell::RefCell<Normalized> = std::cell::RefCell::new(Normalized::default());
}

/// The split reading of `text` (every gap one space, no leading or trailing space): what phrases
/// look like once normalized.
pub fn normalize(text: &str) -> String {
    Normalized::of(text).split().to_string()
}

#[cfg(test)]
mod tests;
