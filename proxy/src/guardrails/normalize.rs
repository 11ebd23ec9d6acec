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
//! 4. common homoglyphs (Cyrillic and Greek look-alikes) fold to their Latin letter, and
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

/// What came between the last letter and the next one.
#[derive(Debug, Default, Clone, Copy)]
struct Run {
    spaces: u8,
    puncts: u8,
    invisible: bool,
    newline: bool,
    /// The first visible separator was a hyphen.
    hyphen_first: bool,
}

impl Run {
    fn is_empty(&self) -> bool {
        self.spaces == 0 && self.puncts == 0 && !self.invisible
    }

    fn space(&mut self, newline: bool) {
        self.spaces = self.spaces.saturating_add(1);
        self.newline |= newline;
    }

    fn punct(&mut self, hyphen: bool) {
        if self.spaces == 0 && self.puncts == 0 {
            self.hyphen_first = hyphen;
        }
        self.puncts = self.puncts.saturating_add(1);
    }
}

/// A normalized text: its letters and the gap before each (see the module docs). Appending
/// pieces one after another equals normalizing their concatenation (streams are read delta by
/// delta), except for a JSON `\uXXXX` escape cut in two.
#[derive(Debug, Default, Clone)]
pub struct Normalized {
    text: String,
    /// `gaps[i]`: the gap before byte `i` of `text` (`NONE` inside a character).
    gaps: Vec<u8>,
    /// The text was cut in the middle of a word (a stream keeps only a window).
    cut_mid_word: bool,
    run: Run,
    /// Characters of the current word since its last gap.
    word: u32,
    /// A soft gap between two one-letter words, until the second turns out longer.
    pending: Option<usize>,
}

impl Normalized {
    /// An empty text with room for `bytes`.
    pub fn with_capacity(bytes: usize) -> Self {
        Self {
            text: String::with_capacity(bytes),
            gaps: Vec::with_capacity(bytes),
            ..Self::default()
        }
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

    /// The gap before each byte of [`Normalized::letters`].
    pub fn gaps(&self) -> &[u8] {
        &self.gaps
    }

    /// Whether a match may start at byte `at` of the letters (a gap, or the start of the text
    /// unless it was cut mid-word).
    pub fn starts_word(&self, at: usize) -> bool {
        if at == 0 {
            !self.cut_mid_word
        } else {
            self.gaps.get(at).is_some_and(|&g| g != NONE)
        }
    }

    /// Whether a match may end at byte `at` (a gap, or the end of what was read so far).
    pub fn ends_word(&self, at: usize) -> bool {
        self.gaps.get(at).is_none_or(|&g| g != NONE)
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
    pub fn split(&self) -> String {
        self.render(0, |g| g != NONE).0
    }

    /// Hard gaps rendered as one space, soft ones as nothing (the reading where anything
    /// that may join a word does).
    pub fn joined(&self) -> String {
        self.render(0, |g| g == HARD).0
    }

    /// The rendering where `space(gap)` says which gaps become a space, and where byte `from`
    /// of the letters landed in it.
    pub fn render(&self, from: usize, space: impl Fn(u8) -> bool) -> (String, usize) {
        let mut out = String::with_capacity(self.text.len() + self.text.len() / 4);
        let mut mapped = None;
        let mut start = 0;
        for (i, &g) in self.gaps.iter().enumerate().skip(1) {
            let spaced = g != NONE && space(g);
            if i == from || spaced {
                out.push_str(&self.text[start..i]);
                start = i;
                if i == from {
                    mapped = Some(out.len());
                }
                if spaced {
                    out.push(' ');
                }
            }
        }
        out.push_str(&self.text[start..]);
        let from = if from == 0 {
            0
        } else {
            mapped.unwrap_or(out.len())
        };
        (out, from)
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
        self.cut_mid_word = self.gaps.get(cut).is_some_and(|&g| g == NONE);
        self.text.drain(..cut);
        self.gaps.drain(..cut);
        self.pending = self.pending.and_then(|p| p.checked_sub(cut));
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
        while i < bytes.len() {
            let b = bytes[i];
            if b.is_ascii_lowercase() {
                // The common case: a run of lower-case letters is copied as is.
                let start = i;
                while i < bytes.len() && bytes[i].is_ascii_lowercase() {
                    i += 1;
                }
                self.letters_in(&text[start..i], (i - start) as u32);
                continue;
            }
            if b < 0x80 {
                i += 1;
                self.ascii(b);
                continue;
            }
            let Some(c) = text[i..].chars().next() else {
                break;
            };
            i += c.len_utf8();
            self.char(c);
        }
    }

    /// One ASCII byte (other than a lower-case letter, which [`Normalized::push`] copies).
    fn ascii(&mut self, b: u8) {
        match ASCII[usize::from(b & 0x7f)] {
            INVISIBLE => self.run.invisible = true,
            SPACE => self.run.space(false),
            NEWLINE => self.run.space(true),
            PUNCT => self.run.punct(false),
            HYPHEN => self.run.punct(true),
            letter => self.letter(char::from(letter)),
        }
    }

    /// One non-ASCII character.
    fn char(&mut self, c: char) {
        if let Some(ascii) = tag_ascii(c) {
            return self.ascii(ascii);
        }
        if is_invisible(c) {
            self.run.invisible = true;
            return;
        }
        decompose_compatible(c, |d| {
            if is_combining_mark(d) {
                return;
            }
            if is_invisible(d) {
                self.run.invisible = true;
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
                    self.run.invisible = true;
                } else if lower.is_whitespace() {
                    self.run
                        .space(matches!(lower, '\u{85}' | '\u{2028}' | '\u{2029}'));
                } else {
                    self.run.punct(matches!(lower, '\u{2010}' | '\u{2011}'));
                }
            }
        });
    }

    fn letter(&mut self, c: char) {
        let mut buf = [0u8; 4];
        self.letters_in(c.encode_utf8(&mut buf), 1);
    }

    /// Appends `chars` letters (`s`), deciding the gap before them from the run since the last
    /// letter.
    fn letters_in(&mut self, s: &str, chars: u32) {
        let gap = self.gap();
        self.gaps.push(gap);
        self.text.push_str(s);
        self.gaps.resize(self.text.len(), NONE);
        let before = self.word;
        self.word = self.word.saturating_add(chars);
        if before < 2 && self.word >= 2 {
            // The word after a provisional soft gap has two letters: it was a word break.
            if let Some(p) = self.pending.take() {
                self.gaps[p] = HARD;
            }
        }
    }

    /// The gap before the next letter; resets the run.
    fn gap(&mut self) -> u8 {
        let run = std::mem::take(&mut self.run);
        if run.is_empty() {
            return NONE;
        }
        let previous_word = std::mem::take(&mut self.word);
        // A pending soft gap whose right-hand word ended after one letter stays soft.
        self.pending = None;
        if self.text.is_empty() {
            return HARD;
        }
        if run.spaces == 0 && run.puncts <= 1 {
            // Only invisible characters, or one punctuation character: `ig\u{AD}nore`,
            // `ig-nore`, `i.g.n.o.r.e`.
            SOFT
        } else if run.puncts == 1 && run.hyphen_first && run.newline {
            // A hyphenated line break.
            SOFT
        } else if run.spaces == 1 && run.puncts == 0 && previous_word == 1 {
            // `i g n o r e`: soft while the next word is one letter too.
            self.pending = Some(self.text.len());
            SOFT
        } else {
            HARD
        }
    }
}

/// The split reading of `text` (every gap one space, no leading or trailing space): what phrases
/// look like once normalized.
pub fn normalize(text: &str) -> String {
    Normalized::of(text).split()
}

/// The ASCII character a Unicode tag character (U+E0020–U+E007E) stands for.
fn tag_ascii(c: char) -> Option<u8> {
    let code = u32::from(c);
    (0xE0020..=0xE007E)
        .contains(&code)
        .then(|| (code - 0xE0000) as u8)
}

/// `text` with JSON `\uXXXX` escapes decoded (lone surrogates dropped).
fn decode_unicode_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("\\u") {
        out.push_str(&rest[..i]);
        let hex = rest
            .get(i + 2..i + 6)
            .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
        match hex.and_then(|h| u32::from_str_radix(h, 16).ok()) {
            Some(code) => {
                out.extend(char::from_u32(code));
                rest = &rest[i + 6..];
            }
            None => {
                out.push_str("\\u");
                rest = &rest[i + 2..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Zero-width, bidi-control, variation-selector, tag-control and other format characters:
/// soft gaps. (Tag characters that shadow ASCII are decoded before this is asked.)
pub fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{17B4}'
            | '\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{E0000}'..='\u{E0FFF}'
    ) || (c.is_control() && !c.is_whitespace())
}

/// Lower-case Cyrillic, Greek and other letters that look like a Latin letter.
fn homoglyph(c: char) -> Option<char> {
    Some(match c {
        'а' | 'α' | 'ɑ' => 'a',
        'в' | 'β' | 'ь' => 'b',
        'с' | 'ϲ' | 'ⅽ' => 'c',
        'ԁ' | 'ⅾ' => 'd',
        'е' | 'ё' | 'ε' | 'є' => 'e',
        'ғ' => 'f',
        'ɡ' => 'g',
        'һ' | 'н' => 'h',
        'і' | 'ї' | 'ι' | 'ı' | 'ɩ' | 'ⅰ' => 'i',
        'ј' | 'ϳ' => 'j',
        'к' | 'κ' => 'k',
        'ӏ' | 'ⅼ' | 'ℓ' => 'l',
        'м' | 'ⅿ' => 'm',
        'п' | 'η' => 'n',
        'о' | 'ο' | 'σ' | 'օ' => 'o',
        'р' | 'ρ' => 'p',
        'ԛ' => 'q',
        'г' => 'r',
        'ѕ' => 's',
        'т' | 'τ' => 't',
        'υ' | 'ս' => 'u',
        'ν' | 'ѵ' | 'ⅴ' => 'v',
        'ѡ' | 'ω' | 'ԝ' => 'w',
        'х' | 'χ' | 'ⅹ' => 'x',
        'у' | 'γ' | 'ү' => 'y',
        'ᴢ' => 'z',
        _ => return None,
    })
}

#[cfg(test)]
mod tests;
