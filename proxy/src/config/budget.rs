//! A bound on what a config file may expand to, checked before anything builds its tree.
//!
//! YAML aliases replay their anchor: `a: &x [0, …×10⁴]` and `b: [*x, …×10⁴]` is a 50 KB file of
//! 10⁸ nodes. The parser limits alias *jumps* and nesting depth but not the expansion, so a tree
//! built from such a file would exhaust memory — at `palisade validate` in CI, or in a running
//! proxy's config reload. [`check`] walks the document once, counting every node an alias
//! replays, without building any, and refuses past [`MAX_NODES`] (a real config has a few
//! thousand). Aliases within the budget keep working.

use std::cell::Cell;

use serde::de::{self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, Visitor};

/// The most bytes a config file may have.
pub const MAX_BYTES: usize = 4 * 1024 * 1024;
/// The most nodes (scalars, sequences, mappings, aliases expanded) a config file may expand to.
pub const MAX_NODES: usize = 200_000;

/// `Ok` when `text` is within both limits (or not YAML at all: the parser reports that);
/// otherwise why not.
pub fn check(text: &str) -> Result<(), String> {
    if text.len() > MAX_BYTES {
        return Err(format!(
            "the file has {} bytes; a config file may have at most {MAX_BYTES}",
            text.len()
        ));
    }
    let nodes = Cell::new(0);
    match Count(&nodes).deserialize(yaml_serde::Deserializer::from_str(text)) {
        Err(_) if nodes.get() > MAX_NODES => Err(format!(
            "the file expands to more than {MAX_NODES} values (YAML aliases included); \
             a config file that large is refused"
        )),
        // Parse errors are the parser's to report, with their position.
        _ => Ok(()),
    }
}

#[derive(Clone, Copy)]
struct Count<'a>(&'a Cell<usize>);

impl Count<'_> {
    fn bump<E: de::Error>(self) -> Result<(), E> {
        let n = self.0.get() + 1;
        self.0.set(n);
        if n > MAX_NODES {
            return Err(E::custom("over the node budget"));
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for Count<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

macro_rules! scalars {
    ($($name:ident: $ty:ty),*) => {
        $(fn $name<E: de::Error>(self, _: $ty) -> Result<(), E> { self.bump() })*
    };
}

impl<'de> Visitor<'de> for Count<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any YAML value")
    }

    scalars!(visit_bool: bool, visit_i64: i64, visit_u64: u64, visit_i128: i128,
        visit_u128: u128, visit_f64: f64, visit_str: &str, visit_bytes: &[u8]);

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.bump()
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.bump()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.bump()?;
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.bump()?;
        while map.next_key_seed(self)?.is_some() {
            map.next_value_seed(self)?;
        }
        Ok(())
    }

    /// A tagged value (`!tag x`): the tag, then its value.
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        use de::VariantAccess;
        self.bump()?;
        let ((), variant) = data.variant_seed(self)?;
        variant.newtype_variant_seed(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alias_bomb_is_refused_before_any_tree_is_built() {
        let row = vec!["0"; 10_000].join(",");
        let refs = vec!["*x"; 10_000].join(",");
        let bomb = format!("a: &x [{row}]\nb: [{refs}]\n");
        assert!(bomb.len() < 100_000);
        let started = std::time::Instant::now();
        let err = check(&bomb).unwrap_err();
        assert!(err.contains("expands to more than"), "{err}");
        // Refused after counting the budget, not the 10⁸ nodes.
        assert!(started.elapsed() < std::time::Duration::from_secs(30));
    }

    #[test]
    fn ordinary_configs_and_small_aliases_pass() {
        assert_eq!(check(crate::config::EMBEDDED_DEV_CONFIG), Ok(()));
        assert_eq!(check("a: &x {b: 1}\nc: *x\nd: !tag 3\n"), Ok(()));
        assert_eq!(
            check("not: [valid"),
            Ok(()),
            "the parser reports syntax errors"
        );
        assert!(check(&"#".repeat(MAX_BYTES + 1)).is_err());
    }
}
