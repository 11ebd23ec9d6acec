//! Structured logs through `tracing`, one subscriber per process.
//!
//! `log_format: auto` (the default) writes pretty, coloured lines when stderr is a terminal and
//! JSON lines otherwise (a container, a pipe, a file). Pretty lines leave out the event's target
//! and source file, so a dependency's registry path never fills a developer's terminal.
//!
//! The filter sits behind a [`reload`] layer: `PUT /admin/logging` (see `docs/operations.md`)
//! swaps it at run time through [`set_filter`] without a restart.

use std::io::IsTerminal;
use std::sync::OnceLock;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Layered, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, reload, EnvFilter, Layer, Registry};

use super::spec::LogFormat;

/// Handle that swaps the installed subscriber's filter.
pub type FilterHandle = reload::Handle<EnvFilter, Registry>;

type Filtered = Layered<reload::Layer<EnvFilter, Registry>, Registry>;

/// The longest filter `set_filter` accepts, in bytes.
pub const MAX_FILTER_BYTES: usize = 4096;

static FILTER: OnceLock<FilterHandle> = OnceLock::new();

/// Why a filter could not be changed.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    /// The directives do not parse (`EnvFilter` syntax, e.g. `info,palisade_proxy=debug`).
    #[error("not a valid log filter: {0}")]
    Invalid(String),
    /// This process did not install the subscriber (an embedding program did).
    #[error("logging was not initialised by palisade in this process")]
    NotInstalled,
}

/// The format `format` means on a stderr that is (or is not) a terminal.
pub fn resolve(format: LogFormat, terminal: bool) -> LogFormat {
    match format {
        LogFormat::Auto if terminal => LogFormat::Pretty,
        LogFormat::Auto => LogFormat::Json,
        explicit => explicit,
    }
}

/// Parses `directives` strictly: an unknown level or a malformed directive is an error (the
/// lossy parse would silently drop it).
pub fn parse_filter(directives: &str) -> Result<EnvFilter, FilterError> {
    let directives = directives.trim();
    if directives.is_empty() {
        return Err(FilterError::Invalid("the filter is empty".into()));
    }
    if directives.len() > MAX_FILTER_BYTES {
        return Err(FilterError::Invalid(format!(
            "longer than {MAX_FILTER_BYTES} bytes"
        )));
    }
    EnvFilter::builder()
        .parse(directives)
        .map_err(|e| FilterError::Invalid(e.to_string()))
}

/// A subscriber writing `format` lines to `writer`, with a reloadable filter. `terminal` says
/// whether `writer` is a terminal: it picks the `auto` format and turns colours on.
pub fn subscriber<W>(
    format: LogFormat,
    filter: EnvFilter,
    writer: W,
    terminal: bool,
) -> (impl tracing::Subscriber + Send + Sync, FilterHandle)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let (filter, handle) = reload::Layer::new(filter);
    let lines: Box<dyn Layer<Filtered> + Send + Sync> = match resolve(format, terminal) {
        LogFormat::Pretty => Box::new(
            fmt::layer()
                .with_target(false)
                .with_file(false)
                .with_line_number(false)
                .with_ansi(terminal)
                .with_writer(writer),
        ),
        LogFormat::Json | LogFormat::Auto => Box::new(
            fmt::layer()
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false)
                .with_writer(writer),
        ),
    };
    (Registry::default().with(filter).with(lines), handle)
}

/// Installs the global `tracing` subscriber on stderr. Later calls (tests starting several
/// proxies) are no-ops. A filter that does not parse falls back to `info` (config validation
/// reports it before this runs).
pub fn init(format: LogFormat, filter: &str) {
    if FILTER.get().is_some() {
        return;
    }
    let filter = parse_filter(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let terminal = std::io::stderr().is_terminal();
    let (subscriber, handle) = subscriber(format, filter, std::io::stderr, terminal);
    if subscriber.try_init().is_ok() {
        let _ = FILTER.set(handle);
    }
}

/// The filter in force, in `EnvFilter` syntax.
pub fn current_filter() -> Result<String, FilterError> {
    let handle = FILTER.get().ok_or(FilterError::NotInstalled)?;
    handle
        .with_current(ToString::to_string)
        .map_err(|_| FilterError::NotInstalled)
}

/// Replaces the filter in force with `directives` (validated first); returns the new filter.
pub fn set_filter(directives: &str) -> Result<String, FilterError> {
    let filter = parse_filter(directives)?;
    let handle = FILTER.get().ok_or(FilterError::NotInstalled)?;
    handle
        .reload(filter)
        .map_err(|_| FilterError::NotInstalled)?;
    current_filter()
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Collects what a subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Captured {
        type Writer = Captured;
        fn make_writer(&'w self) -> Self::Writer {
            self.clone()
        }
    }

    fn log_one(format: LogFormat, terminal: bool) -> String {
        let out = Captured::default();
        let (subscriber, _) = subscriber(format, EnvFilter::new("info"), out.clone(), terminal);
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(route = "agent", "request admitted");
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        text
    }

    #[test]
    fn auto_is_json_when_stderr_is_not_a_terminal() {
        assert_eq!(resolve(LogFormat::Auto, false), LogFormat::Json);
        assert_eq!(resolve(LogFormat::Auto, true), LogFormat::Pretty);
        assert_eq!(resolve(LogFormat::Json, true), LogFormat::Json);
        let line = log_one(LogFormat::Auto, false);
        let json: serde_json::Value = serde_json::from_str(line.trim()).expect("one JSON line");
        assert_eq!(json["message"], "request admitted");
        assert_eq!(json["route"], "agent");
        assert_eq!(json["level"], "INFO");
    }

    #[test]
    fn pretty_lines_are_readable_and_carry_no_target_or_file() {
        let line = log_one(LogFormat::Pretty, false);
        assert!(line.contains("INFO"), "{line}");
        assert!(line.contains("request admitted"), "{line}");
        assert!(line.contains("route=\"agent\""), "{line}");
        assert!(!line.contains(module_path!()), "no target: {line}");
        assert!(!line.contains(".rs"), "no source file: {line}");
        assert!(
            !line.contains('\u{1b}'),
            "no colours off a terminal: {line}"
        );
        assert!(serde_json::from_str::<serde_json::Value>(line.trim()).is_err());
        // On a terminal, auto is pretty and coloured.
        let coloured = log_one(LogFormat::Auto, true);
        assert!(coloured.contains('\u{1b}'), "{coloured}");
        assert!(coloured.contains("request admitted"), "{coloured}");
    }

    #[test]
    fn filters_are_parsed_strictly() {
        assert!(parse_filter("info,palisade_proxy=debug").is_ok());
        for bad in [
            "",
            "   ",
            "palisade_proxy=loud",
            "[{",
            &"x".repeat(MAX_FILTER_BYTES + 1),
        ] {
            assert!(
                matches!(parse_filter(bad), Err(FilterError::Invalid(_))),
                "{bad:.20}"
            );
        }
    }

    #[test]
    fn a_reload_changes_what_is_logged() {
        let out = Captured::default();
        let (subscriber, handle) =
            subscriber(LogFormat::Json, EnvFilter::new("warn"), out.clone(), false);
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("hidden");
            handle.reload(parse_filter("debug").unwrap()).unwrap();
            tracing::debug!("shown");
            assert_eq!(handle.with_current(ToString::to_string).unwrap(), "debug");
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert!(!text.contains("hidden"), "{text}");
        assert!(text.contains("shown"), "{text}");
    }
}
