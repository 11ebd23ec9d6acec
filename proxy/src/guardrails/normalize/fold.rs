//! Per-character folding for [`super::Normalized`]: tag characters, JSON escapes, invisible
//! characters and homoglyphs.

/// The ASCII character a Unicode tag character (U+E0020–U+E007E) stands for.
pub(super) fn tag_ascii(c: char) -> Option<u8> {
    let code = u32::from(c);
    (0xE0020..=0xE007E)
        .contains(&code)
        .then(|| (code - 0xE0000) as u8)
}

/// `text` with JSON `\uXXXX` escapes decoded (lone surrogates dropped).
pub(super) fn decode_unicode_escapes(text: &str) -> String {
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

/// The Latin letter a non-ASCII character looks like: from Unicode's confusables (UTS #39, the
/// skeleton of `unicode-security`: some 2,400 characters across Cyrillic, Greek, Armenian,
/// Cherokee, Lisu, mathematical and compatibility letters…), and for the few look-alikes whose
/// UTS #39 prototype is not an ASCII letter (`к` → `ĸ`, `т` → `ᴛ`), from [`BEYOND_UTS39`].
/// The callers pass lower-cased, decomposed characters; both cases are in the table.
pub(super) fn homoglyph(c: char) -> Option<char> {
    let table = confusables();
    table
        .binary_search_by_key(&c, |&(from, _)| from)
        .ok()
        .map(|i| table[i].1)
}

/// Look-alikes of a Latin letter that UTS #39 maps to a prototype other than an ASCII letter
/// (small capitals, `ĸ`, `ʍ`, Greek letters it keeps apart), kept from the hand-made table this
/// replaced so no evasion it caught gets through.
const BEYOND_UTS39: &[(char, char)] = &[
    ('ε', 'e'),
    // UTS #39 says an `r` with a stroke; it is also read as an `f` (`ғorget`): the supplement
    // wins, as the old table had it.
    ('ғ', 'f'),
    ('є', 'e'),
    ('н', 'h'),
    ('к', 'k'),
    ('κ', 'k'),
    ('м', 'm'),
    ('ⅿ', 'm'),
    ('п', 'n'),
    ('η', 'n'),
    ('т', 't'),
    ('τ', 't'),
    ('ω', 'w'),
    ('χ', 'x'),
    ('ᴀ', 'a'),
    ('ʙ', 'b'),
    ('ɢ', 'g'),
    ('ʜ', 'h'),
    ('ʟ', 'l'),
    ('ɴ', 'n'),
    ('ʀ', 'r'),
    ('ᴛ', 't'),
];

/// The sorted (character, Latin letter) table, built once from the confusables data (about
/// 15 ms in a release build; [`warm`] builds it at config load, off the request path). A sorted
/// slice rather than the skeleton per character: the skeleton normalizes twice and searches
/// the whole confusables table, on every non-ASCII character of every scanned text.
fn confusables() -> &'static [(char, char)] {
    static TABLE: std::sync::OnceLock<Vec<(char, char)>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        // (character, precedence, letter): the supplement wins over a character's own
        // confusable, which wins over what its upper-case form looks like (`η` is an `n`, though
        // `Η` is an `H`).
        let mut table: Vec<(char, u8, char)> = Vec::with_capacity(2600);
        // Up to the end of the Supplementary Multilingual Plane: every confusable letter is there.
        for c in ('\u{80}'..='\u{1FFFF}').filter(|c| !is_invisible(*c)) {
            if let Some(latin) = uts39_latin(c) {
                table.push((c, 1, latin));
                // The scanner lower-cases first: an upper-case look-alike (Cherokee `Ꭺ`) arrives
                // as its lower-case form, which the confusables data may not list.
                let mut lower = c.to_lowercase();
                if let (Some(l), None) = (lower.next(), lower.next()) {
                    if l != c && !l.is_ascii() {
                        table.push((l, 2, latin));
                    }
                }
            }
        }
        table.extend(BEYOND_UTS39.iter().map(|&(c, latin)| (c, 0, latin)));
        table.sort_unstable();
        table.dedup_by_key(|e| e.0);
        table.into_iter().map(|(c, _, latin)| (c, latin)).collect()
    })
}

/// Builds the table now (config load), so no request pays for it.
pub fn warm() {
    let _ = confusables();
}

/// The ASCII letter `c`'s UTS #39 skeleton is, combining marks aside (`ё` → `e`).
fn uts39_latin(c: char) -> Option<char> {
    let mut buf = [0u8; 4];
    let mut proto = unicode_security::skeleton(c.encode_utf8(&mut buf))
        .filter(|d| !matches!(u32::from(*d), 0x300..=0x36F));
    let first = proto.next()?;
    if proto.next().is_some() {
        return None;
    }
    (first != c && first.is_ascii_alphabetic()).then(|| first.to_ascii_lowercase())
}
