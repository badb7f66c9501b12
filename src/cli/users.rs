//! `keyward users ...`: create, list, disable, set-password.

use std::io::BufRead as _;

use anyhow::{Context as _, bail};
use clap::Subcommand;
use diesel_async::AsyncPgConnection;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::audit::Actor;
use crate::config::Config;
use crate::users::name::{Role, Username};
use crate::users::password::PasswordHasher;
use crate::users::{self, User};

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user; prints the new user's id (the OIDC `sub`).
    Create {
        /// The username (3-32 of A-Z a-z 0-9 . _ -).
        #[arg(long)]
        username: String,
        /// An optional email address.
        #[arg(long)]
        email: Option<String>,
        /// The operator vouches for the address: it counts as verified.
        #[arg(long, requires = "email")]
        email_verified: bool,
        /// Read the password from the first line of standard input (never from arguments).
        #[arg(long, required = true)]
        password_stdin: bool,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one user: id, email (and whether it is verified), status, roles, two-step sign-in
    /// (authenticator app, passkeys, recovery codes left), and where they are signed in.
    Show {
        /// The username.
        username: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List users: id, username, email, status, created_at (tab-separated), or JSON.
    List {
        /// Print a JSON array instead.
        #[arg(long)]
        json: bool,
    },
    /// Disable a user: a cut-off (sessions, codes, refresh and access tokens end at once).
    Disable {
        /// The username.
        username: String,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Let a disabled user sign in again (nothing issued before comes back).
    Enable {
        /// The username.
        username: String,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a user: the cut-off, then the account and its personal data. The audit trail
    /// keeps the user id only.
    Delete {
        /// The username.
        username: String,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Set a user's roles (carried in access tokens); no --role clears them.
    SetRoles {
        /// The username.
        username: String,
        /// A role; repeat for several.
        #[arg(long = "role")]
        roles: Vec<String>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// End every session and refresh token of a user (their access tokens are revoked too).
    SignOutEverywhere {
        /// The username.
        username: String,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Start a password reset for a user: a code is mailed to their address (through the outbox:
    /// a running server delivers it) and works for 15 minutes on /reset-password.
    SendReset {
        /// The username.
        username: String,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Import users from another system with the password hashes it kept: a JSON Lines file,
    /// one `{"username", "email", "email_verified", "roles", "sub", "password_hash"}` per line
    /// (bcrypt `$2a$`/`$2b$`/`$2y$`, PHC PBKDF2 or scrypt, or argon2id; all are replaced by
    /// argon2id at the first sign-in). Prints what became of each line; a re-run changes nothing. Exit 1 when a line
    /// was refused.
    Import {
        /// The file (`-` for standard input).
        file: std::path::PathBuf,
        /// Print one JSON object per line instead.
        #[arg(long)]
        json: bool,
    },
    /// Turn two-step sign-in off for someone who lost every factor: removes their authenticator
    /// app, passkeys and recovery codes (recorded as `mfa.reset`) and mails them a notice. Their password
    /// alone signs them in again; they can set up a new app from their account page.
    ResetMfa {
        /// The username.
        username: String,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Set a user's password (read from stdin) and end their sessions.
    SetPassword {
        /// The username.
        username: String,
        /// Read the password from the first line of standard input.
        #[arg(long, required = true)]
        password_stdin: bool,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn read_password_line() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from stdin")?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    Ok(password.to_owned())
}

async fn hasher_for(config: &Config) -> anyhow::Result<PasswordHasher> {
    let settings = config.passwords.argon2;
    tokio::task::spawn_blocking(move || PasswordHasher::new(settings, 1, 1)).await?
}

pub(super) async fn find_user(conn: &mut AsyncPgConnection, raw: &str) -> anyhow::Result<User> {
    let username = Username::parse(raw).map_err(|e| anyhow::anyhow!("{e}"))?;
    users::find_by_username(conn, &username)
        .await?
        .with_context(|| format!("no user named '{}'", username.as_str()))
}

/// Runs a `users` command.
pub async fn run(cmd: UsersCommand, config: &Config, now: OffsetDateTime) -> anyhow::Result<()> {
    let mut conn = super::connect(config).await?;
    let conn = &mut conn;
    match cmd {
        UsersCommand::Create {
            username,
            email,
            email_verified,
            json,
            ..
        } => {
            let email = (email.as_deref(), email_verified);
            create(conn, config, &username, email, json, now).await
        }
        UsersCommand::SendReset { username, json } => {
            send_reset(conn, config, &username, json, now).await
        }
        UsersCommand::Import { file, json } => import(conn, config, &file, json, now).await,
        UsersCommand::ResetMfa { username, json } => {
            reset_mfa(conn, config, &username, json, now).await
        }
        UsersCommand::List { json } => list(conn, json).await,
        UsersCommand::Show { username, json } => show(conn, &username, json, now).await,
        UsersCommand::Disable { username, json } => {
            let user = find_user(conn, &username).await?;
            let changed = users::update_disabled(conn, user.id, &Actor::cli(), now).await?;
            let message = if changed {
                format!("disabled {}; their sessions have ended", user.username)
            } else {
                format!("{} was already disabled", user.username)
            };
            super::report(
                json,
                &serde_json::json!({ "username": user.username, "disabled": true, "changed": changed }),
                &message,
            )
        }
        UsersCommand::Enable { username, json } => {
            let user = find_user(conn, &username).await?;
            let changed = users::update_enabled(conn, user.id, &Actor::cli(), now).await?;
            let message = if changed {
                format!("enabled {}", user.username)
            } else {
                format!("{} was not disabled", user.username)
            };
            super::report(
                json,
                &serde_json::json!({ "username": user.username, "disabled": false, "changed": changed }),
                &message,
            )
        }
        UsersCommand::Delete { username, json } => delete(conn, &username, json, now).await,
        UsersCommand::SetRoles {
            username,
            roles,
            json,
        } => set_roles(conn, &username, &roles, json, now).await,
        UsersCommand::SignOutEverywhere { username, json } => {
            sign_out_everywhere(conn, &username, json, now).await
        }
        UsersCommand::SetPassword { username, json, .. } => {
            set_password(conn, config, &username, json, now).await
        }
    }
}

async fn create(
    conn: &mut AsyncPgConnection,
    config: &Config,
    username: &str,
    (email, verified): (Option<&str>, bool),
    json: bool,
    now: OffsetDateTime,
) -> anyhow::Result<()> {
    use crate::oauth::import::{Imported, import_value};
    // The same record, rules and audit events as the management API's creation and an import.
    let record = serde_json::json!({
        "username": username,
        "email": email,
        "email_verified": verified,
        "password": read_password_line()?,
    });
    let hasher = hasher_for(config).await?;
    let (id, username) = match import_value(conn, &hasher, record, &Actor::cli(), now).await? {
        Imported::Created { username, id, .. } => (id, username),
        Imported::Skipped { reason, .. } | Imported::Refused { reason } => bail!("{reason}"),
    };
    if json {
        let out = serde_json::json!({ "id": id, "username": username });
        out!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        out!("{id}");
    }
    Ok(())
}

/// Mails `username` a reset code, as "Forgot your password?" would, started by an operator.
async fn send_reset(
    conn: &mut AsyncPgConnection,
    config: &Config,
    username: &str,
    json: bool,
    now: OffsetDateTime,
) -> anyhow::Result<()> {
    let user = find_user(conn, username).await?;
    let kit = MailKit::load(config)?;
    let Some(to) =
        crate::oauth::recovery::send_reset(conn, kit.mail(), &user, &Actor::cli(), now).await?
    else {
        bail!("{} has no email address to send a code to", user.username);
    };
    super::report(
        json,
        &serde_json::json!({ "username": user.username, "queued_to": to }),
        &format!(
            "a reset code for {} is queued to {to}; running servers deliver it within seconds",
            user.username
        ),
    )
}

/// Imports users line by line: each line's outcome on stdout, the counts on stderr.
async fn import(
    conn: &mut AsyncPgConnection,
    config: &Config,
    file: &std::path::Path,
    json: bool,
    now: OffsetDateTime,
) -> anyhow::Result<()> {
    use crate::oauth::import::{Imported, import_line};
    let text = if file == std::path::Path::new("-") {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
    };
    let by = Actor::cli();
    let hasher = hasher_for(config).await?;
    let (mut created, mut skipped, mut refused) = (0, 0, 0);
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let line_no = n + 1;
        let (outcome, username, detail) = match import_line(conn, &hasher, line, &by, now).await? {
            Imported::Created { username, sub, .. } => {
                created += 1;
                ("created", username, sub)
            }
            Imported::Skipped { username, reason } => {
                skipped += 1;
                ("skipped", username, reason)
            }
            Imported::Refused { reason } => {
                refused += 1;
                ("refused", String::new(), reason)
            }
        };
        if json {
            let out = serde_json::json!({
                "line": line_no, "outcome": outcome, "username": username, "detail": detail,
            });
            out!("{out}");
        } else {
            out!("{line_no}\t{outcome}\t{username}\t{detail}");
        }
    }
    eprintln!("{created} created, {skipped} skipped (already here), {refused} refused");
    if refused > 0 {
        bail!("{refused} line(s) refused; fix them and run the import again");
    }
    Ok(())
}

/// What account mail is queued with from the command line (the KEK's keys, the letterhead).
struct MailKit {
    outbox: crate::mail::outbox::Outbox,
    codes: crate::users::codes::CodeKey,
    letterhead: crate::mail::letters::Letterhead,
}

impl MailKit {
    fn load(config: &Config) -> anyhow::Result<Self> {
        let kek = crate::keys::kek::Kek::load(&config.keys.kek)?;
        Ok(Self {
            outbox: crate::mail::outbox::Outbox::new(kek.mail_secret()),
            codes: crate::users::codes::CodeKey::new(kek.code_secret()),
            letterhead: crate::app::letterhead(config),
        })
    }

    fn mail(&self) -> crate::oauth::verification::AccountMail<'_> {
        crate::oauth::verification::AccountMail {
            outbox: &self.outbox,
            letterhead: &self.letterhead,
            codes: &self.codes,
        }
    }
}

/// Removes every second factor of `username` (they lost them all).
async fn reset_mfa(
    conn: &mut AsyncPgConnection,
    config: &Config,
    username: &str,
    json: bool,
    now: OffsetDateTime,
) -> anyhow::Result<()> {
    let user = find_user(conn, username).await?;
    let kit = MailKit::load(config)?;
    let by = Actor::cli();
    let had = crate::oauth::second_factor::reset(conn, kit.mail(), &user, &by, now).await?;
    super::report(
        json,
        &serde_json::json!({
            "username": username,
            "removed": {
                "authenticator_app": had.totp,
                "passkeys": had.passkeys,
                "recovery_codes": had.recovery_left,
            },
        }),
        &format!(
            "two-step sign-in is off for {username} (authenticator app removed: {}, passkeys \
             removed: {}, unused recovery codes removed: {}); they sign in with their password \
             alone",
            if had.totp { "yes" } else { "none set up" },
            had.passkeys,
            had.recovery_left
        ),
    )
}

async fn list(conn: &mut AsyncPgConnection, json: bool) -> anyhow::Result<()> {
    let all = users::list(conn).await?;
    if json {
        let rows: Vec<serde_json::Value> = all.iter().map(user_json).collect();
        out!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    out!("id\tusername\temail\tstatus\tcreated_at");
    for u in &all {
        out!(
            "{}\t{}\t{}\t{}\t{}",
            u.id,
            u.username,
            u.email.as_deref().unwrap_or("-"),
            status(u),
            u.created_at.format(&Rfc3339)?
        );
    }
    Ok(())
}

async fn delete(
    conn: &mut AsyncPgConnection,
    username: &str,
    json: bool,
    now: OffsetDateTime,
) -> anyhow::Result<()> {
    let user = find_user(conn, username).await?;
    let families = users::delete(conn, user.id, &Actor::cli(), now).await?;
    let message = format!(
        "deleted {} ({} token families revoked); the audit trail keeps the id {}",
        user.username,
        families.len(),
        user.id
    );
    let out = serde_json::json!({ "id": user.id, "username": user.username, "deleted": true, "families_revoked": families.len() });
    super::report(json, &out, &message)
}

async fn set_roles(
    conn: &mut AsyncPgConnection,
    username: &str,
    roles: &[String],
    json: bool,
    now: OffsetDateTime,
) -> anyhow::Result<()> {
    let user = find_user(conn, username).await?;
    let parsed = Role::parse_all(roles)?;
    users::update_roles(conn, user.id, &parsed, &Actor::cli(), now).await?;
    let message = format!("{} now has roles: {}", user.username, roles.join(" "));
    super::report(
        json,
        &serde_json::json!({ "username": user.username, "roles": roles }),
        &message,
    )
}

async fn sign_out_everywhere(
    conn: &mut AsyncPgConnection,
    username: &str,
    json: bool,
    now: OffsetDateTime,
) -> anyhow::Result<()> {
    let user = find_user(conn, username).await?;
    let families = users::sign_out_everywhere(conn, user.id, &Actor::cli(), now).await?;
    let message = format!(
        "{} is signed out everywhere ({} token families revoked)",
        user.username,
        families.len()
    );
    let out = serde_json::json!({ "username": user.username, "families_revoked": families.len() });
    super::report(json, &out, &message)
}

async fn set_password(
    conn: &mut AsyncPgConnection,
    config: &Config,
    username: &str,
    json: bool,
    now: OffsetDateTime,
) -> anyhow::Result<()> {
    let user = find_user(conn, username).await?;
    let password = read_password_line()?;
    let hasher = hasher_for(config).await?;
    // The same rules and cut-off as the management API's `:setPassword`.
    crate::oauth::admin::set_password(conn, &hasher, &user, &password, &Actor::cli(), now)
        .await?
        .map_err(|m| anyhow::anyhow!("{m}"))?;
    let message = format!(
        "password set for {}; their sessions have ended",
        user.username
    );
    super::report(
        json,
        &serde_json::json!({ "username": user.username, "password_set": true }),
        &message,
    )
}

/// `users show`: the record, its roles, and its signed-in browsers.
async fn show(
    conn: &mut AsyncPgConnection,
    username: &str,
    json: bool,
    now: OffsetDateTime,
) -> anyhow::Result<()> {
    let user = find_user(conn, username).await?;
    let sessions = crate::sessions::store::list_for_user(conn, user.id, now).await?;
    let factors = crate::users::factors::of(conn, user.id).await?;
    let at = |t: Option<OffsetDateTime>| t.and_then(|t| t.format(&Rfc3339).ok());
    if json {
        let mut out = user_json(&user);
        out["sub"] = user.sub().into();
        out["email_verified"] = user.email_verified().into();
        out["roles"] = serde_json::json!(user.roles);
        out["two_step"] = serde_json::json!({
            "authenticator_app": factors.totp,
            "passkeys": factors.passkeys,
            "recovery_codes_left": factors.recovery_left,
        });
        out["sessions"] = sessions
            .iter()
            .map(|s| {
                serde_json::json!({
                    "device": s.device,
                    "ip": s.ip,
                    "signed_in_at": at(s.signed_in_at),
                    "last_seen_at": at(s.last_seen_at),
                })
            })
            .collect();
        out!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    out!("id\t{}", user.id);
    out!("sub\t{}", user.sub());
    out!("username\t{}", user.username);
    let verified = if user.email_verified() {
        "verified"
    } else {
        "not verified"
    };
    match &user.email {
        Some(email) => out!("email\t{email}\t{verified}"),
        None => out!("email\t-"),
    }
    out!("status\t{}", status(&user));
    out!("roles\t{}", user.roles.join(" "));
    out!(
        "two_step\tauthenticator app: {}\tpasskeys: {}\trecovery codes left: {}",
        if factors.totp { "yes" } else { "no" },
        factors.passkeys,
        factors.recovery_left
    );
    out!(
        "created_at\t{}",
        at(Some(user.created_at)).unwrap_or_default()
    );
    for s in &sessions {
        out!(
            "session\t{}\t{}\t{}",
            s.device.as_deref().unwrap_or("-"),
            s.ip.as_deref().unwrap_or("-"),
            at(s.last_seen_at).unwrap_or_default()
        );
    }
    Ok(())
}

fn status(u: &User) -> &'static str {
    if u.is_disabled() {
        "disabled"
    } else {
        "active"
    }
}

fn user_json(u: &User) -> serde_json::Value {
    serde_json::json!({
        "id": u.id,
        "username": u.username,
        "email": u.email,
        "status": status(u),
        "created_at": u.created_at.format(&Rfc3339).unwrap_or_default(),
    })
}
