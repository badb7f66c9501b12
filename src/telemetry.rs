//! Tracing setup: human-readable logs on stderr, filtered by `KEYWARD_LOG`.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once; later calls (as in tests) are no-ops.
pub fn init(filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    // Errors only mean a subscriber is already installed, which is fine.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
