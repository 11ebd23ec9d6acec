#!/usr/bin/env python3
"""Declared dependencies no source file of their package mentions (what `cargo machete` checks).

For every workspace member, each dependency key of [dependencies], [dev-dependencies] and
[build-dependencies] must appear, as a Rust identifier (`-` read as `_`), somewhere in the
package's .rs files — code, `use` lines, or attribute strings such as
`with = "humantime_serde"`. A dependency needed without being named (a feature switch, a
version pin for unification) goes in `[package.metadata.unused-deps] ignored = [...]` with a
comment saying why.

Written here rather than installing cargo-machete, which does the same text search but costs CI
a three-minute build on every clean clone.
Usage: python3 tests/tools/unused_deps.py   (from the repository root; exit 1 when any is unused)
"""
import pathlib
import re
import sys
import tomllib

root = pathlib.Path(__file__).resolve().parents[2]
workspace = tomllib.loads((root / "Cargo.toml").read_text())
members = workspace.get("workspace", {}).get("members", [])
unused = []
for member in members:
    pkg_dir = root / member
    manifest = tomllib.loads((pkg_dir / "Cargo.toml").read_text())
    ignored = set(
        manifest.get("package", {}).get("metadata", {}).get("unused-deps", {}).get("ignored", [])
    )
    # Other packages inside this one's folder (proxy/wire, the fuzz crates) are not its sources.
    nested = [root / m for m in members if m != member and (root / m).is_relative_to(pkg_dir)]

    def own(path):
        parts = path.relative_to(pkg_dir).parts
        return (
            "target" not in parts
            and "fuzz" not in parts
            and not any(path.is_relative_to(n) for n in nested)
        )

    sources = "\n".join(p.read_text(errors="replace") for p in pkg_dir.rglob("*.rs") if own(p))
    for table in ("dependencies", "dev-dependencies", "build-dependencies"):
        for key in manifest.get(table, {}):
            if key in ignored:
                continue
            ident = key.replace("-", "_")
            if not re.search(r"\b" + re.escape(ident) + r"\b", sources):
                unused.append(f"{member}/Cargo.toml [{table}] {key}")
# A [workspace.dependencies] entry no member takes is dead weight too.
taken = set()
for member in members:
    manifest = tomllib.loads((root / member / "Cargo.toml").read_text())
    for table in ("dependencies", "dev-dependencies", "build-dependencies"):
        taken.update(manifest.get(table, {}))
for key in workspace.get("workspace", {}).get("dependencies", {}):
    if key not in taken:
        unused.append(f"Cargo.toml [workspace.dependencies] {key}")
if unused:
    print("declared but never used:", *unused, sep="\n  ")
    sys.exit(1)
print(f"no unused dependencies in {len(members)} workspace members")
