//! `keyward consents ...`: what people agreed to, and withdrawing it on their behalf.

use clap::Subcommand;
use diesel_async::AsyncPgConnection;
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::audit::Actor;
use crate::config::Config;
use crate::oauth::consent;
use crate::users::consents;

/// Operators' consent commands.
#[derive(Debug, Subcommand)]
pub enum ConsentsCommand {
    /// List consents: username, user id, client, scope, granted (tab-separated, header first).
    List {
        /// Only this user's.
        #[arg(long)]
        user: Option<String>,
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Withdraw a user's consent to a client: its unredeemed codes, refresh families and access
    /// tokens for that user end with it.
    Revoke {
        /// The username.
        #[arg(long)]
        user: String,
        /// The client_id.
        #[arg(long)]
        client: String,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a `consents` command.
pub async fn run(cmd: ConsentsCommand, config: &Config, now: OffsetDateTime) -> anyhow::Result<()> {
    let mut conn = super::connect(config).await?;
    match cmd {
        ConsentsCommand::List { user, json } => list(&mut conn, user.as_deref(), json).await,
        ConsentsCommand::Revoke { user, client, json } => {
            let user = super::users::find_user(&mut conn, &user).await?;
            let withdrawn =
                consent::withdraw(&mut conn, user.id, &client, &Actor::cli(), now).await?;
            if !withdrawn {
                anyhow::bail!("{} has no consent to '{client}'", user.username);
            }
            if json {
                let out = json!({ "user_id": user.id, "username": user.username, "client_id": client, "revoked": true });
                out!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                eprintln!(
                    "withdrew {}'s consent to '{client}'; its codes and tokens for them have ended",
                    user.username
                );
            }
            Ok(())
        }
    }
}

async fn list(conn: &mut AsyncPgConnection, user: Option<&str>, json: bool) -> anyhow::Result<()> {
    let user_id = match user {
        Some(name) => Some(super::users::find_user(conn, name).await?.id),
        None => None,
    };
    let rows = consents::list(conn, user_id).await?;
    if json {
        let out: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                json!({
                    "user_id": r.user_id,
                    "username": r.username,
                    "client_id": r.client_id,
                    "scope": r.scopes.join(" "),
                    "granted_at": r.granted_at.format(&Rfc3339).unwrap_or_default(),
                })
            })
            .collect();
        out!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    out!("username\tuser_id\tclient_id\tscope\tgranted_at");
    for r in &rows {
        out!(
            "{}\t{}\t{}\t{}\t{}",
            r.username,
            r.user_id,
            r.client_id,
            r.scopes.join(" "),
            r.granted_at.format(&Rfc3339)?
        );
    }
    Ok(())
}
