//! The `keyward` binary: parse the command line and settings, then hand over to `cli::run`.

use std::process::ExitCode;

use clap::Parser;
use keyward::cli::{self, Cli};
use keyward::config::Config;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::from_process_env() {
        Ok(c) => c,
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("keyward: {e}");
            }
            return ExitCode::from(2);
        }
    };
    // A misspelt setting would otherwise be ignored without a word.
    for warning in keyward::config::unknown_settings(std::env::vars().map(|(name, _)| name)) {
        eprintln!("keyward: warning: {warning}");
    }
    keyward::telemetry::init(&config.server.log_filter, config.server.log_format);
    match cli::run(cli, config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keyward: {e:#}");
            ExitCode::FAILURE
        }
    }
}
