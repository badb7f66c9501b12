//! `keyward mail test ADDRESS`: sends one mail through the configured transport, now, and says
//! where it went or why it did not.

use std::sync::Arc;

use anyhow::Context as _;
use clap::Subcommand;
use serde_json::json;

use crate::app::{letterhead, start_courier};
use crate::config::Config;
use crate::keys::kek::Kek;
use crate::mail::letters;

/// Operators' mail commands.
#[derive(Debug, Subcommand)]
pub enum MailCommand {
    /// Send a test mail to ADDRESS with the configured transport (`KEYWARD_SMTP_URL`, or the
    /// files of `KEYWARD_MAIL_DIR`), outside the outbox; exits non-zero if it is refused.
    Test {
        /// Where to send it.
        address: String,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a mail command.
pub async fn run(cmd: MailCommand, config: &Config) -> anyhow::Result<()> {
    match cmd {
        MailCommand::Test { address, json } => {
            let kek = Kek::load(&config.keys.kek)?;
            let metrics = Arc::new(crate::metrics::Metrics::new());
            let courier = start_courier(config, kek.mail_secret(), &metrics)?;
            let letter = letters::test(&letterhead(config), &address);
            let to = courier
                .send_now(&letter)
                .await
                .with_context(|| format!("{} refused the test mail", courier.describe()))?;
            super::report(
                json,
                &json!({ "sent": true, "to": address, "via": to }),
                &format!("test mail to {address} sent: {to}"),
            )
        }
    }
}
