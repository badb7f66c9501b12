//! `keyward keys ...`: list, rotate, revoke, import, rewrap.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use diesel_async::AsyncPgConnection;
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::config::Config;
use crate::keys::kek::Kek;
use crate::keys::kek::KekSource;

use crate::keys::material;
use crate::keys::schedule::{self, KeyTimes};
use crate::keys::store::{self, KeyPolicy, SigningKeyRow};

/// Operators' key commands. Running servers pick up every change within `KEYWARD_KEY_RELOAD`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// List keys: kid, state, published, activates, retires, expires, revoked (tab-separated).
    List {
        /// Print a JSON array instead.
        #[arg(long)]
        json: bool,
    },
    /// Make the next key (already published) sign now, and publish a new next key.
    Rotate {
        /// Rotate even if verifiers may not have cached the next key yet.
        #[arg(long)]
        force: bool,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Withdraw a key from the JWKS at once; if it was signing, the next key takes over.
    Revoke {
        /// The key's kid (a thumbprint may start with `-`).
        #[arg(allow_hyphen_values = true)]
        kid: String,
        /// Why (kept in the audit trail).
        #[arg(long)]
        reason: String,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Import an RSA private key (PEM) as the next key, in place of the waiting one.
    Import {
        /// A PEM file: PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`.
        file: PathBuf,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Re-seal every stored key under a new KEK, in one transaction.
    Rewrap {
        /// The new KEK file (base64, 32 bytes); created with a random key if it does not exist.
        #[arg(long)]
        new_kek_file: PathBuf,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn time(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

fn print_keys(rows: &[SigningKeyRow], now: OffsetDateTime, json: bool) -> anyhow::Result<()> {
    let times: Vec<KeyTimes> = rows.iter().map(SigningKeyRow::times).collect();
    if json {
        let out: Vec<serde_json::Value> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| {
                serde_json::json!({
                    "kid": r.kid,
                    "state": schedule::state(&times, i, now).as_str(),
                    "origin": r.origin,
                    "bits": r.bits,
                    "kek_id": r.kek_id,
                    "published_at": time(r.published_at),
                    "activates_at": time(r.activates_at),
                    "retires_at": time(r.retires_at),
                    "expires_at": time(r.expires_at),
                    "revoked_at": r.revoked_at.map(time),
                    "revoked_reason": r.revoked_reason,
                })
            })
            .collect();
        out!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    out!("kid\tstate\tpublished\tactivates\tretires\texpires\trevoked");
    for (i, r) in rows.iter().enumerate() {
        out!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}",
            r.kid,
            schedule::state(&times, i, now).as_str(),
            time(r.published_at),
            time(r.activates_at),
            time(r.retires_at),
            time(r.expires_at),
            r.revoked_at.map_or_else(|| "-".to_owned(), time),
        );
    }
    Ok(())
}

/// The command's one result: the value alone on stdout (for scripts), or JSON.
fn print_value(json: bool, value: &serde_json::Value, plain: &str) -> anyhow::Result<()> {
    if json {
        out!("{}", serde_json::to_string_pretty(value)?);
    } else {
        out!("{plain}");
    }
    Ok(())
}

/// `keys import FILE`: an existing RSA key becomes the next key.
async fn import(
    conn: &mut AsyncPgConnection,
    kek: &Kek,
    policy: &KeyPolicy,
    file: &std::path::Path,
    json: bool,
    now: OffsetDateTime,
) -> anyhow::Result<()> {
    let pem = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let key = tokio::task::spawn_blocking(move || material::from_pem(&pem)).await??;
    let times = store::import(conn, kek, policy, &key, now).await?;
    eprintln!(
        "imported {} as the next key: published now, signs from {}",
        key.kid,
        time(times.activates_at)
    );
    let value = json!({ "kid": key.kid, "activates_at": time(times.activates_at) });
    print_value(json, &value, &key.kid)
}

/// Runs a `keys` command.
pub async fn run(cmd: KeysCommand, config: &Config, now: OffsetDateTime) -> anyhow::Result<()> {
    let mut conn = super::connect(config).await?;
    let policy = config.keys.policy;
    match cmd {
        KeysCommand::List { json } => {
            let rows = store::list(&mut conn).await?;
            print_keys(&rows, now, json)?;
        }
        KeysCommand::Rotate { force, json } => {
            let kek = Kek::load(&config.keys.kek)?;
            let promoted = store::rotate(&mut conn, &kek, &policy, now, force).await?;
            eprintln!(
                "rotated: {} signs from now on; a new next key is published",
                promoted.active
            );
            print_value(
                json,
                &json!({ "active": promoted.active }),
                &promoted.active,
            )?;
        }
        KeysCommand::Revoke { kid, reason, json } => {
            let kek = Kek::load(&config.keys.kek)?;
            let promoted = store::revoke(&mut conn, &kek, &policy, &kid, &reason, now).await?;
            eprintln!("revoked {kid}; {} is the active key", promoted.active);
            let value = json!({ "revoked": kid, "active": promoted.active });
            print_value(json, &value, &promoted.active)?;
        }
        KeysCommand::Import { file, json } => {
            let kek = Kek::load(&config.keys.kek)?;
            import(&mut conn, &kek, &policy, &file, json, now).await?;
        }
        KeysCommand::Rewrap { new_kek_file, json } => {
            let old = Kek::load(&config.keys.kek)?;
            // The one other place a KEK file is made: the new KEK this command seals under.
            let new = Kek::load_or_create(&KekSource::File(new_kek_file.clone()))?;
            let done = crate::oauth::rewrap::rewrap(&mut conn, &old, &new, now).await?;
            eprintln!(
                "re-sealed {} key(s) and {} authenticator app secret(s) under KEK {}; now point \
                 KEYWARD_KEK_FILE at {}",
                done.keys,
                done.totp_secrets,
                new.id(),
                new_kek_file.display()
            );
            let value = json!({
                "rewrapped": done.keys,
                "totp_secrets": done.totp_secrets,
                "refresh_keys": done.refresh_keys,
                "kek_id": new.id(),
            });
            print_value(json, &value, new.id())?;
        }
    }
    Ok(())
}
