//! Field path → line and column in the YAML text, for error messages (`palisade.yaml:12:5: …`).
//!
//! `yaml_serde` keeps no positions in its [`yaml_serde::Value`], but every error it raises while
//! deserializing carries the position of the node being read. [`locate`] walks the document with
//! a deserializer that follows one path and fails on purpose at the node it names, so the position
//! comes from the same parser that reads the config (anchors, flow style and multi-line scalars
//! included). One walk per path; `palisade validate` locates a handful of errors, each walk a
//! fraction of a millisecond on a config file.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::structure::Segment;

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub column: usize,
}

/// Splits `routes[1].match.methods[0]` into segments; `None` for text that is not a field path
/// (an error about a policy file, say).
pub(crate) fn parse_path(path: &str) -> Option<Vec<Segment>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (key, mut rest) = match part.find('[') {
            Some(i) => part.split_at(i),
            None => (part, ""),
        };
        if key.is_empty() || key.contains([' ', '/', ':']) {
            return None;
        }
        out.push(Segment::Key(key.to_string()));
        while let Some(stripped) = rest.strip_prefix('[') {
            let (index, after) = stripped.split_once(']')?;
            out.push(Segment::Index(index.parse().ok()?));
            rest = after;
        }
        if !rest.is_empty() {
            return None;
        }
    }
    Some(out)
}

/// Where `path` is written in `text`: a key's position for a mapping entry, the entry's own for a
/// list item. When the path goes deeper than the document (a missing field), the position of the
/// deepest part that exists; `None` when not even the first segment is in the file.
pub fn locate(text: &str, path: &str) -> Option<Position> {
    let segments = parse_path(path)?;
    let depth = Cell::new(0);
    let probe = Probe {
        rest: &segments,
        depth: &depth,
    };
    let err = probe
        .deserialize(yaml_serde::Deserializer::from_str(text))
        .err()?;
    if depth.get() == 0 {
        return None;
    }
    err.location().map(|l| Position {
        line: l.line(),
        column: l.column(),
    })
}

/// The deliberate failure that carries a position out of the deserializer.
const HERE: &str = "palisade: located";

struct Probe<'a> {
    rest: &'a [Segment],
    /// How many segments were found.
    depth: &'a Cell<usize>,
}

impl<'de> DeserializeSeed<'de> for Probe<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Probe<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((Segment::Key(want), rest)) = self.rest.split_first() else {
            return Err(de::Error::custom(HERE));
        };
        loop {
            let key = KeyProbe {
                want,
                stop: rest.is_empty(),
                depth: self.depth,
            };
            match map.next_key_seed(key)? {
                None => return Err(de::Error::custom(HERE)),
                Some(true) => {
                    return map.next_value_seed(Probe {
                        rest,
                        depth: self.depth,
                    })
                }
                Some(false) => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some((Segment::Index(want), rest)) = self.rest.split_first() else {
            return Err(de::Error::custom(HERE));
        };
        for _ in 0..*want {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Err(de::Error::custom(HERE));
            }
        }
        self.depth.set(self.depth.get() + 1);
        seq.next_element_seed(Probe {
            rest,
            depth: self.depth,
        })?;
        Err(de::Error::custom(HERE))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(HERE))
    }
}

/// Reads one mapping key: `Some(true)` when it is the wanted one (or fails right there, with the
/// key's position, when the path ends at it).
struct KeyProbe<'a> {
    want: &'a str,
    stop: bool,
    depth: &'a Cell<usize>,
}

impl<'de> DeserializeSeed<'de> for KeyProbe<'_> {
    type Value = bool;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KeyProbe<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<bool, E> {
        if key != self.want {
            return Ok(false);
        }
        self.depth.set(self.depth.get() + 1);
        if self.stop {
            return Err(E::custom(HERE));
        }
        Ok(true)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<bool, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<bool, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_none<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(false)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
admin:
  address: 127.0.0.1:9901
routes:
  - name: a
    match: {path_prefix: /x, methods: [GET, post]}
    upstream: u
  - name: b
    upstream: v
upstreams:
  u: {address: \"127.0.0.1:1\"}
";

    fn at(path: &str) -> Option<(usize, usize)> {
        locate(DOC, path).map(|p| (p.line, p.column))
    }

    #[test]
    fn finds_keys_and_items() {
        assert_eq!(at("admin"), Some((1, 1)));
        assert_eq!(at("admin.address"), Some((2, 3)));
        assert_eq!(at("routes[0]"), Some((4, 5)));
        assert_eq!(at("routes[0].match.path_prefix"), Some((5, 13)));
        assert_eq!(at("routes[0].match.methods[1]"), Some((5, 45)));
        assert_eq!(at("routes[1].upstream"), Some((8, 5)));
        assert_eq!(at("upstreams.u.address"), Some((10, 7)));
    }

    #[test]
    fn missing_fields_point_at_the_closest_parent() {
        // `routes[1].match` is missing: the route's mapping.
        assert_eq!(at("routes[1].match.path_prefix"), Some((7, 5)));
        assert_eq!(at("routes[5].name"), Some((4, 3)));
        assert_eq!(at("listeners"), None);
        assert_eq!(at("policies/x.cedar:3"), None);
    }

    #[test]
    fn parses_paths() {
        assert_eq!(
            parse_path("a.b[2][3].c"),
            Some(vec![
                Segment::Key("a".into()),
                Segment::Key("b".into()),
                Segment::Index(2),
                Segment::Index(3),
                Segment::Key("c".into())
            ])
        );
        assert_eq!(parse_path("a[x]"), None);
        assert_eq!(
            parse_path("(root)"),
            Some(vec![Segment::Key("(root)".into())])
        );
    }
}
