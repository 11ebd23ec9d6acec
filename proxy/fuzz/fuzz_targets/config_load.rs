//! Fuzzes configuration loading: YAML text → environment overrides → typed spec → validated
//! `Config` (`palisade_proxy::config::Config::from_yaml`). Whatever the bytes, loading returns
//! a config or field errors; it never panics. Half of the inputs also carry `PALISADE_*`
//! overrides (the first line, `NAME=value`), which patch the YAML tree before typing.

#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_proxy::config::{Config, ConfigError};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut env = Vec::new();
    let mut yaml = text;
    if let Some(rest) = text.strip_prefix("#env ") {
        let (line, body) = rest.split_once('\n').unwrap_or((rest, ""));
        if let Some((k, v)) = line.split_once('=') {
            env.push((format!("PALISADE_{k}"), v.to_string()));
        }
        yaml = body;
    }
    match Config::from_yaml(yaml, env) {
        Ok(_) => {}
        Err(ConfigError::Invalid(errors)) => {
            assert!(
                !errors.is_empty(),
                "an invalid config names at least one field"
            );
        }
        Err(_) => {}
    }
});
