//! Versioned schema migrations, shared by both backends.
//!
//! Each backend has numbered SQL files in `orchestrator/migrations/<backend>/`
//! (`0001_sessions.sql`, `0002_retention.sql`, …), embedded in the binary by [`sqlite::MIGRATIONS`]
//! and [`postgres::MIGRATIONS`]. A table (`schema_version` in SQLite, `palisade_schema_version` in
//! PostgreSQL) records every version applied. Opening a store runs, in one transaction: read the
//! highest version recorded, refuse a database newer than the binary ([`pending`] →
//! [`StoreError::SchemaTooNew`]), apply the missing files in order and record each. A failure
//! rolls all of it back.
//!
//! Migration 1 is the layout the store created before versions existed, written with
//! `IF NOT EXISTS`: a database from that time (tables present, no version table) is adopted as
//! version 1 and then migrated like any other. Never edit a released migration; add the next
//! number.
//!
//! This runner is ours rather than `refinery` or `sqlx`: two backends, a handful of files and
//! ~50 lines, where either library would bring its own driver stack or a second copy of crates
//! the workspace already has.

use super::StoreError;

/// One schema step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    /// Its number, from 1, without gaps.
    pub version: i64,
    /// Its file name without `.sql`, e.g. `0001_sessions` (recorded with the version).
    pub name: &'static str,
    /// The statements.
    pub sql: &'static str,
}

/// Embeds `migrations/<dir>/<file>` as a [`Migration`].
macro_rules! migration {
    ($dir:literal, $version:literal, $name:literal) => {
        Migration {
            version: $version,
            name: $name,
            sql: include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/migrations/",
                $dir,
                "/",
                $name,
                ".sql"
            )),
        }
    };
}

/// SQLite's migrations.
pub mod sqlite {
    use super::Migration;

    /// In order.
    pub const MIGRATIONS: &[Migration] = &[
        migration!("sqlite", 1, "0001_sessions"),
        migration!("sqlite", 2, "0002_retention"),
    ];
}

/// PostgreSQL's migrations.
pub mod postgres {
    use super::Migration;

    /// In order.
    pub const MIGRATIONS: &[Migration] = &[
        migration!("postgres", 1, "0001_sessions"),
        migration!("postgres", 2, "0002_retention"),
    ];
}

/// The newest version in `known`.
pub fn latest(known: &[Migration]) -> i64 {
    known.last().map_or(0, |m| m.version)
}

/// The migrations to apply to a database at version `current` (0: none applied), or
/// [`StoreError::SchemaTooNew`] when the database is ahead of `known`.
pub fn pending(
    current: i64,
    known: &'static [Migration],
) -> Result<&'static [Migration], StoreError> {
    let newest = latest(known);
    if current > newest {
        return Err(StoreError::SchemaTooNew {
            found: current,
            known: newest,
        });
    }
    Ok(known
        .iter()
        .position(|m| m.version > current)
        .map_or(&[][..], |first| &known[first..]))
}

#[cfg(test)]
mod tests {
    use super::{pending, postgres, sqlite, Migration};
    use crate::store::StoreError;

    #[test]
    fn pending_starts_after_the_current_version_and_refuses_newer_databases() {
        let known = sqlite::MIGRATIONS;
        assert_eq!(pending(0, known).unwrap().len(), known.len());
        assert_eq!(pending(1, known).unwrap()[0].version, 2);
        assert!(pending(super::latest(known), known).unwrap().is_empty());
        let err = pending(99, known).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::SchemaTooNew {
                    found: 99,
                    known: 2
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("schema version 99"), "{err}");
    }

    /// Every file in `migrations/<backend>/` is embedded, numbered 1, 2, … without gaps, and
    /// both backends are at the same version.
    #[test]
    fn embedded_lists_match_the_files() {
        for (dir, known) in [
            ("sqlite", sqlite::MIGRATIONS),
            ("postgres", postgres::MIGRATIONS),
        ] {
            let path = format!("{}/migrations/{dir}", env!("CARGO_MANIFEST_DIR"));
            let mut files: Vec<String> = std::fs::read_dir(&path)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            files.sort();
            let embedded: Vec<String> = known
                .iter()
                .map(|m: &Migration| format!("{}.sql", m.name))
                .collect();
            assert_eq!(files, embedded, "{dir}");
            for (i, m) in known.iter().enumerate() {
                assert_eq!(m.version, i as i64 + 1, "{dir}: numbered without gaps");
                assert!(
                    m.name.starts_with(&format!("{:04}_", m.version)),
                    "{}",
                    m.name
                );
            }
        }
        assert_eq!(
            super::latest(sqlite::MIGRATIONS),
            super::latest(postgres::MIGRATIONS)
        );
    }
}
