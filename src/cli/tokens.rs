//! `keyward tokens ...`: purge expired rows, explain why a token family ended, and end one.

use anyhow::Context as _;
use clap::Subcommand;
use diesel_async::AsyncPgConnection;
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::audit::Actor;
use crate::config::Config;
use crate::housekeeping;
use crate::tokens::opaque::TokenHash;
use crate::tokens::refresh::{self, Owner};

/// Why an operator's revocation says it happened.
const REVOKED_BY_OPERATOR: &str = "revoked by an operator";
/// A family named by id that is not (or no longer) stored.
const NO_FAMILY: &str = "no such family (it may have expired and been purged)";

/// Operators' token commands.
#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Delete expired codes, refresh families, revocation records, sessions and lockouts now.
    Purge {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Explain a refresh-token family: its state and every event about it. Given an access
    /// token, its family, or what it is when it has none.
    Why {
        /// A family id, a refresh token (kwrf_... or kwrt_...), or an access token (a JWT).
        family_or_token: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a refresh-token family: every refresh token and access token it issued.
    Revoke {
        /// A family id, or a refresh token (kwrf_... or kwrt_...).
        family_or_token: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn t(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_default()
}

/// The family a command names: by id, or by one of its refresh tokens.
async fn family_of(conn: &mut AsyncPgConnection, family_or_token: &str) -> anyhow::Result<Uuid> {
    if let Ok(id) = Uuid::parse_str(family_or_token) {
        return Ok(id);
    }
    // A MAC'd token names its family in the clear: the operator needs no key to follow it.
    if let Some(presented) = refresh::Presented::unverified(family_or_token) {
        return Ok(presented.family_id);
    }
    Ok(refresh::find_token(conn, &TokenHash::of(family_or_token))
        .await?
        .context("no such family or refresh token")?
        .family_id)
}

/// Runs a `tokens` command.
pub async fn run(cmd: TokensCommand, config: &Config, now: OffsetDateTime) -> anyhow::Result<()> {
    let mut conn = super::connect(config).await?;
    match cmd {
        TokensCommand::Purge { json } => {
            let longest = config.tokens.access_ttl;
            let p = housekeeping::purge(&mut conn, now, longest).await?;
            if json {
                let out = json!({ "sessions": p.sessions, "codes": p.codes, "refresh": p.refresh, "sign_in": p.sign_in });
                out!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                out!(
                    "sessions\t{}\ncodes\t{}\nrefresh\t{}\nsign_in\t{}",
                    p.sessions,
                    p.codes,
                    p.refresh,
                    p.sign_in
                );
            }
        }
        TokensCommand::Why {
            family_or_token,
            json,
        } => {
            if let Some(claims) = access_token_claims(&family_or_token) {
                return why_access_token(&mut conn, &claims, json).await;
            }
            let id = family_of(&mut conn, &family_or_token).await?;
            why(&mut conn, id, json).await?;
        }
        TokensCommand::Revoke {
            family_or_token,
            json,
        } => {
            let id = family_of(&mut conn, &family_or_token).await?;
            let revoked = refresh::end_family(
                &mut conn,
                id,
                Owner::Any,
                REVOKED_BY_OPERATOR,
                &Actor::cli(),
                now,
            )
            .await?
            .context(NO_FAMILY)?;
            if json {
                let out = json!({ "family": id, "revoked": revoked });
                out!("{}", serde_json::to_string_pretty(&out)?);
            } else if revoked {
                eprintln!("revoked family {id}: its refresh and access tokens no longer work");
            } else {
                eprintln!("family {id} had already ended");
            }
        }
    }
    Ok(())
}

/// What an access token says about itself, read without checking its signature: an operator
/// explaining a token learns nothing a forged one could abuse.
#[derive(serde::Deserialize)]
struct AccessClaims {
    jti: Uuid,
    client_id: String,
    #[serde(default)]
    sub: String,
    exp: i64,
    /// The refresh family it was issued in (Keyward's `fam` claim).
    #[serde(default)]
    fam: Option<Uuid>,
}

fn access_token_claims(token: &str) -> Option<AccessClaims> {
    use base64::Engine as _;
    let mut parts = token.split('.');
    let (_, payload, _, None) = (parts.next()?, parts.next()?, parts.next()?, parts.next()) else {
        return None;
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// An access token: its family's story, or, for one issued outside any family (client
/// credentials, the password grant without `offline_access`), its client, subject and expiry.
async fn why_access_token(
    conn: &mut AsyncPgConnection,
    claims: &AccessClaims,
    json: bool,
) -> anyhow::Result<()> {
    // Named in the token; a token from before `fam` was recorded in `family_access_tokens`.
    let family = match claims.fam {
        Some(family) => Some(family),
        None => refresh::family_of_access_token(conn, claims.jti).await?,
    };
    if let Some(family) = family {
        return why(conn, family, json).await;
    }
    let revoked = crate::tokens::revoked::is_revoked(conn, claims.jti).await?;
    let expires = OffsetDateTime::from_unix_timestamp(claims.exp).map_or_else(|_| "?".into(), t);
    if json {
        let out = json!({
            "family": null,
            "jti": claims.jti,
            "client_id": claims.client_id,
            "sub": claims.sub,
            "expires": expires,
            "revoked": revoked,
        });
        out!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    out!("family	none: not from a refresh family (claims read without checking the signature)");
    out!("jti	{}", claims.jti);
    out!("client	{}", claims.client_id);
    out!("subject	{}", claims.sub);
    out!("expires	{expires}");
    out!("revoked	{}", if revoked { "yes" } else { "no" });
    Ok(())
}

async fn why(conn: &mut AsyncPgConnection, id: Uuid, json: bool) -> anyhow::Result<()> {
    let (family, events) = refresh::find_history(conn, id).await?.context(NO_FAMILY)?;
    if json {
        let events: Vec<serde_json::Value> = events
            .iter()
            .map(|e| json!({ "at": t(e.occurred_at), "kind": e.kind, "actor": e.actor, "details": e.details }))
            .collect();
        let out = json!({
            "family": family.id,
            "client_id": family.client_id,
            "user_id": family.user_id,
            "scope": family.scopes.join(" "),
            "started": t(family.created_at),
            "ends": t(family.absolute_expires_at),
            "revoked_at": family.revoked_at.map(t),
            "revoked_reason": family.revoked_reason,
            "events": events,
        });
        out!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    out!("family\t{}", family.id);
    out!("client\t{}", family.client_id);
    out!("user\t{}", family.user_id);
    out!("scope\t{}", family.scopes.join(" "));
    out!("started\t{}", t(family.created_at));
    out!("ends\t{}", t(family.absolute_expires_at));
    match (&family.revoked_at, &family.revoked_reason) {
        (Some(at), Some(reason)) => out!("revoked\t{}\t{reason}", t(*at)),
        _ => out!("revoked\tno"),
    }
    for e in events {
        out!(
            "event\t{}\t{}\t{}\t{}",
            t(e.occurred_at),
            e.kind,
            e.actor,
            e.details
        );
    }
    Ok(())
}
