//! Compact answers: shapes that share an outcome for every value of a dimension become one
//! row with `*` in that dimension; and plain-text tables.

use std::collections::BTreeMap;

use super::{Domain, ShapeValues, DIMENSIONS};

/// A dimension's value in a compacted row: one value, or every value (`*`).
pub type Cell = Option<usize>;

/// A compacted shape.
pub type Row = [Cell; 8];

/// Merges rows with the same outcome `K` that differ in one dimension and together cover all
/// its values, dimension after dimension (last first, so rows stay grouped by type and role).
/// Exact: a `*` row stands for shapes that all have that outcome.
pub fn compact<K: Ord + Clone>(domain: &Domain, rows: Vec<(ShapeValues, K)>) -> Vec<(Row, K)> {
    let sizes = domain.sizes();
    let mut rows: Vec<(Row, K)> = rows.into_iter().map(|(s, k)| (s.map(Some), k)).collect();
    for dim in (0..DIMENSIONS.len()).rev() {
        let mut groups: BTreeMap<(Row, K), Vec<Cell>> = BTreeMap::new();
        for (row, k) in rows {
            let mut key = row;
            key[dim] = None;
            groups.entry((key, k)).or_default().push(row[dim]);
        }
        rows = Vec::new();
        for ((key, k), mut values) in groups {
            values.sort();
            values.dedup();
            let varies = match key[0] {
                Some(kind) => domain.varies(kind, dim),
                None => dim == 0 || (5..8).contains(&dim),
            };
            let full = varies && values.len() == sizes[dim] && values.iter().all(Option::is_some);
            if full || values.contains(&None) {
                rows.push((key, k));
            } else {
                for v in values {
                    let mut row = key;
                    row[dim] = v;
                    rows.push((row, k.clone()));
                }
            }
        }
    }
    rows.sort_by_key(|a| a.0);
    rows
}

/// The labels of a row, by dimension name (`*` for every value).
pub fn labels(domain: &Domain, row: &Row) -> BTreeMap<&'static str, String> {
    DIMENSIONS
        .iter()
        .enumerate()
        .map(|(dim, name)| {
            let label = row[dim].map_or_else(|| "*".to_string(), |i| domain.label(dim, i));
            (*name, label)
        })
        .collect()
}

/// The dimensions worth a column: those with more than one value.
pub fn shown_dimensions(domain: &Domain) -> Vec<usize> {
    let sizes = domain.sizes();
    (0..DIMENSIONS.len()).filter(|d| sizes[*d] > 1).collect()
}

/// A plain-text table: headers, then rows, columns padded to their widest cell.
pub fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut out = String::new();
        for (i, cell) in cells.enumerate() {
            let width = widths.get(i).copied().unwrap_or(0);
            out.push_str(cell);
            let pad = width.saturating_sub(cell.chars().count());
            out.push_str(&" ".repeat(pad + 2));
        }
        out.truncate(out.trim_end().len());
        out.push('\n');
        out
    };
    let mut out = line(&mut headers.iter().copied());
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}
