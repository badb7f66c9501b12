//! Tracing setup: logs on stderr, JSON or text (`KEYWARD_LOG_FORMAT`), filtered by `KEYWARD_LOG`.

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line, for collectors.
    Json,
    /// Human-readable; coloured only on a terminal.
    Text,
}

impl LogFormat {
    /// `json` or `text`; unset means text on a terminal, JSON otherwise.
    #[must_use]
    pub fn parse(raw: Option<&str>) -> Option<Self> {
        match raw {
            None => Some(if std::io::stderr().is_terminal() {
                Self::Text
            } else {
                Self::Json
            }),
            Some("json") => Some(Self::Json),
            Some("text") => Some(Self::Text),
            Some(_) => None,
        }
    }
}

/// The filter as given, but the PostgreSQL driver never below `info`: at `debug` it logs every
/// statement's parameters, which include session data and people's addresses.
fn filter(directives: &str) -> EnvFilter {
    let mut directives = directives.to_owned();
    if !directives.contains("tokio_postgres") {
        directives.push_str(",tokio_postgres=info");
    }
    EnvFilter::try_new(&directives).unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Refuses a `KEYWARD_LOG` that parses to nothing useful: every directive names a target that is
/// not Keyward's (`verbose` is read as "the target called verbose, at every level", which
/// silences every line Keyward writes). A level alone, `off`, or a `keyward...` target is fine.
pub fn check_filter(directives: &str) -> Result<(), String> {
    const LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];
    EnvFilter::try_new(directives).map_err(|e| format!("'{directives}' is not a filter: {e}"))?;
    let reaches_keyward = directives.split(',').map(str::trim).any(|d| {
        let target = d.split('=').next().unwrap_or_default();
        LEVELS.contains(&d.to_ascii_lowercase().as_str())
            || target == "keyward"
            || target.starts_with("keyward::")
            || target.starts_with("keyward[")
    });
    if reaches_keyward {
        Ok(())
    } else {
        Err(format!(
            "'{directives}' enables no line of Keyward's: use a level (error, warn, info, debug, \
             trace) or a filter such as keyward=debug,info"
        ))
    }
}

/// Installs the global subscriber once; later calls (as in tests) are no-ops.
pub fn init(directives: &str, format: LogFormat) {
    let ansi = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(directives))
        .with_writer(std::io::stderr)
        .with_target(false);
    // Errors only mean a subscriber is already installed, which is fine.
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder.with_ansi(ansi).try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_must_reach_keyward_s_own_lines() {
        for ok in [
            "info",
            "debug",
            "off",
            "keyward=debug,info",
            "warn,tower_http=debug",
            "keyward::http=trace",
        ] {
            assert_eq!(check_filter(ok), Ok(()), "{ok}");
        }
        for bad in [
            "verbose",
            "hyper=debug",
            "tower_http=trace,h2=debug",
            "keyward=loud",
        ] {
            assert!(check_filter(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn formats_parse_and_the_driver_stays_quiet() {
        assert_eq!(LogFormat::parse(Some("json")), Some(LogFormat::Json));
        assert_eq!(LogFormat::parse(Some("text")), Some(LogFormat::Text));
        assert_eq!(LogFormat::parse(Some("yaml")), None);
        assert!(filter("debug").to_string().contains("tokio_postgres=info"));
        assert!(
            !filter("tokio_postgres=trace")
                .to_string()
                .contains("tokio_postgres=info")
        );
    }
}
