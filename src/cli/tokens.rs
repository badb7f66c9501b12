//! `keyward tokens ...`: purge expired rows, and explain why a token family was revoked.
#![expect(
    clippy::print_stdout,
    reason = "printing results is what a CLI command does"
)]

use anyhow::Context as _;
use clap::Subcommand;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::audit;
use crate::config::Config;
use crate::housekeeping;
use crate::tokens::opaque::TokenHash;
use crate::tokens::refresh;

/// Operators' token commands.
#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Delete expired codes, refresh families, revocation records, sessions and throttles now.
    Purge,
    /// Explain a refresh-token family: its state and every event about it.
    Why {
        /// A family id, or a refresh token (kwrt_...).
        family_or_token: String,
    },
}

/// Runs a `tokens` command.
pub async fn run(cmd: TokensCommand, config: &Config, now: OffsetDateTime) -> anyhow::Result<()> {
    let mut conn = super::connect(config).await?;
    match cmd {
        TokensCommand::Purge => {
            let longest = config.tokens.access_ttl;
            let purged = housekeeping::purge(&mut conn, now, longest).await?;
            println!(
                "sessions\t{}\ncodes\t{}\nrefresh\t{}\nsign_in\t{}",
                purged.sessions, purged.codes, purged.refresh, purged.sign_in
            );
        }
        TokensCommand::Why { family_or_token } => {
            let family_id = match uuid::Uuid::parse_str(&family_or_token) {
                Ok(id) => id,
                Err(_) => {
                    refresh::find_token(&mut conn, &TokenHash::of(&family_or_token))
                        .await?
                        .context("no such family or refresh token")?
                        .family_id
                }
            };
            let family = refresh::find_family(&mut conn, family_id)
                .await?
                .context("no such family (it may have expired and been purged)")?;
            let t = |t: time::OffsetDateTime| t.format(&Rfc3339).unwrap_or_default();
            println!("family\t{}", family.id);
            println!("client\t{}", family.client_id);
            println!("user\t{}", family.user_id);
            println!("scope\t{}", family.scopes.join(" "));
            println!("started\t{}", t(family.created_at));
            println!("ends\t{}", t(family.absolute_expires_at));
            match (&family.revoked_at, &family.revoked_reason) {
                (Some(at), Some(reason)) => println!("revoked\t{}\t{reason}", t(*at)),
                _ => println!("revoked\tno"),
            }
            for e in audit::find_by_subject(&mut conn, &family.id.to_string()).await? {
                println!(
                    "event\t{}\t{}\t{}\t{}",
                    t(e.occurred_at),
                    e.kind,
                    e.actor,
                    e.details
                );
            }
        }
    }
    Ok(())
}
