//! Text normalization for evasion-resistant matching.
//!
//! [`normalize_into`] appends the normalized form of a text to a buffer:
//!
//! 1. zero-width, bidi and other format characters and control characters are removed;
//! 2. compatibility folding (NFKC's mapping, applied as NFKD with combining marks dropped, so
//!    full-width `ｉ` becomes `i` and `ï` becomes `i` too);
//! 3. case folding (lower case);
//! 4. common homoglyphs (Cyrillic and Greek look-alikes) fold to their Latin letter, and
//!    leetspeak digits and symbols to the letter they imitate (`0`→`o`, `1`→`i`, `3`→`e`,
//!    `4`→`a`, `5`→`s`, `7`→`t`, `@`→`a`, `$`→`s`);
//! 5. every run of other characters (whitespace, punctuation) becomes one space.
//!
//! So `IgNoRe\u{200B} previous ｉｎｓｔｒｕｃｔｉｏｎｓ` and `1gn0re  previous-instructions` both
//! read `ignore previous instructions`. ASCII text takes a table-driven fast path.
//!
//! ```
//! use palisade_proxy::guardrails::normalize::normalize;
//! assert_eq!(
//!     normalize("IgNoRe\u{200B} previous ｉｎｓｔｒｕｃｔｉｏｎｓ"),
//!     "ignore previous instructions"
//! );
//! ```

use unicode_normalization::char::{decompose_compatible, is_combining_mark};

/// What the ASCII table says about a byte.
const DROP: u8 = 0;
const SEP: u8 = b' ';

/// ASCII byte → normalized byte (`DROP` removes it, `SEP` separates words).
static ASCII: [u8; 128] = build_ascii();

const fn build_ascii() -> [u8; 128] {
    let mut t = [SEP; 128];
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
            b'\t' | b'\n' | 0x0b | 0x0c | b'\r' => SEP,
            0..=0x1f | 0x7f => DROP,
            _ => SEP,
        };
        b += 1;
    }
    t
}

/// The normalized form of `text`.
pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    normalize_into(text, &mut out);
    out
}

/// Appends the normalized form of `text` to `out`, collapsing separators with what `out`
/// already ends with (so appending pieces equals normalizing their concatenation, except for
/// a combining mark at the very start of a piece, which is dropped either way). A leading
/// separator is not written into an empty `out`.
pub fn normalize_into(text: &str, out: &mut String) {
    // JSON text (tool arguments are scanned as sent) may hide characters behind `\uXXXX`.
    if text.contains("\\u") {
        let decoded = decode_unicode_escapes(text);
        if decoded != text {
            return normalize_into(&decoded, out);
        }
    }
    let mut last_sep = out.as_bytes().last().is_none_or(|&b| b == SEP);
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
            out.push_str(&text[start..i]);
            last_sep = false;
            continue;
        }
        if b < 0x80 {
            // Other ASCII: one table lookup.
            i += 1;
            match ASCII[b as usize] {
                DROP => {}
                SEP => {
                    if !last_sep {
                        out.push(' ');
                        last_sep = true;
                    }
                }
                n => {
                    out.push(n as char);
                    last_sep = false;
                }
            }
            continue;
        }
        let Some(c) = text[i..].chars().next() else {
            break;
        };
        i += c.len_utf8();
        if is_invisible(c) {
            continue;
        }
        decompose_compatible(c, |d| {
            if is_combining_mark(d) || is_invisible(d) {
                return;
            }
            for lower in d.to_lowercase() {
                match fold(lower) {
                    Fold::Drop => {}
                    Fold::Sep => {
                        if !last_sep {
                            out.push(' ');
                            last_sep = true;
                        }
                    }
                    Fold::Char(ch) => {
                        out.push(ch);
                        last_sep = false;
                    }
                }
            }
        });
    }
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

enum Fold {
    Drop,
    Sep,
    Char(char),
}

fn fold(c: char) -> Fold {
    if c.is_ascii() {
        return match ASCII[c as usize] {
            DROP => Fold::Drop,
            SEP => Fold::Sep,
            b => Fold::Char(b as char),
        };
    }
    if let Some(latin) = homoglyph(c) {
        return Fold::Char(latin);
    }
    if c.is_alphanumeric() {
        Fold::Char(c)
    } else if c.is_control() {
        Fold::Drop
    } else {
        Fold::Sep
    }
}

/// Zero-width, bidi-control, variation-selector and tag characters: removed before matching.
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
            | '\u{E0000}'..='\u{E007F}'
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
mod tests {
    use super::*;

    #[test]
    fn evasions_normalize_to_the_plain_phrase() {
        for text in [
            "Ignore previous instructions",
            "IGNORE   PREVIOUS\tINSTRUCTIONS",
            "IgNoRe\u{200B} previous ｉｎｓｔｒｕｃｔｉｏｎｓ",
            "ignore\u{00AD} pre\u{200D}vious instruc\u{FEFF}tions",
            "1gn0r3 pr3v10u5 1n57ruc710n5",
            "іgnоrе рrеvіоus іnstruсtіоns", // Cyrillic і о е р с
            "ignore-previous_instructions!",
            "ïgnöre prévious instructions",
            "ig\u{0007}nore previous instructions",
            r"ignore\u200b previous\u00a0\u0069nstructions",
        ] {
            assert_eq!(
                normalize(text).trim(),
                "ignore previous instructions",
                "{text:?}"
            );
        }
    }

    #[test]
    fn appending_pieces_equals_normalizing_the_whole() {
        let whole = "Ignore  previous\u{200B} ＩＮＳＴＲＵＣＴＩＯＮＳ now";
        let mut pieces = String::new();
        let cut = whole.char_indices().map(|(i, _)| i).collect::<Vec<_>>();
        let mut start = 0;
        for &i in cut.iter().step_by(3).skip(1) {
            normalize_into(&whole[start..i], &mut pieces);
            start = i;
        }
        normalize_into(&whole[start..], &mut pieces);
        assert_eq!(pieces, normalize(whole));
    }
}
