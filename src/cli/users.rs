//! `keyward users ...`: create, list, disable, set-password.
#![allow(
    clippy::print_stdout,
    reason = "printing results is what a CLI command does"
)]

use std::io::BufRead as _;

use anyhow::{Context as _, bail};
use clap::Subcommand;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::config::Config;
use crate::db;
use crate::users::name::{Email, Username};
use crate::users::password::{PasswordHasher, check_new_password};
use crate::users::{self, CreateUserError, NewUser, User};

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
        /// Read the password from the first line of standard input (never from arguments).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// List users: id, username, email, status, created_at (tab-separated), or JSON.
    List {
        /// Print a JSON array instead.
        #[arg(long)]
        json: bool,
    },
    /// Disable a user and end their sessions at once.
    Disable {
        /// The username.
        username: String,
    },
    /// Set a user's roles (carried in access tokens); no --role clears them.
    SetRoles {
        /// The username.
        username: String,
        /// A role; repeat for several.
        #[arg(long = "role")]
        roles: Vec<String>,
    },
    /// End every session and refresh token of a user (their access tokens are revoked too).
    SignOutEverywhere {
        /// The username.
        username: String,
    },
    /// Set a user's password (read from stdin) and end their sessions.
    SetPassword {
        /// The username.
        username: String,
        /// Read the password from the first line of standard input.
        #[arg(long, required = true)]
        password_stdin: bool,
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

async fn find_user(conn: &mut db::PooledConn, raw: &str) -> anyhow::Result<User> {
    let username = Username::parse(raw).map_err(|e| anyhow::anyhow!("{e}"))?;
    users::find_by_username(conn, &username)
        .await?
        .with_context(|| format!("no user named '{}'", username.as_str()))
}

/// Runs a `users` command.
#[allow(clippy::too_many_lines, reason = "one match arm per subcommand")]
pub async fn run(cmd: UsersCommand, config: &Config, now: OffsetDateTime) -> anyhow::Result<()> {
    let mut conn = super::connect(config).await?;
    match cmd {
        UsersCommand::Create {
            username,
            email,
            password_stdin: _,
        } => {
            let username = Username::parse(&username).map_err(|e| anyhow::anyhow!("{e}"))?;
            let email = Email::parse_optional(email.as_deref().unwrap_or(""))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let password = read_password_line()?;
            check_new_password(&password, &username).map_err(|e| anyhow::anyhow!("{e}"))?;
            let hash = hasher_for(config).await?.hash(&password).await?;
            let user = match users::insert(
                &mut conn,
                &NewUser::new(&username, email.as_ref(), &hash, now),
            )
            .await
            {
                Ok(u) => u,
                Err(e @ (CreateUserError::UsernameTaken | CreateUserError::EmailTaken)) => {
                    bail!("{e}")
                }
                Err(CreateUserError::Db(e)) => return Err(e.into()),
            };
            println!("{}", user.id);
        }
        UsersCommand::List { json } => {
            let all = users::list(&mut conn).await?;
            if json {
                let rows: Vec<serde_json::Value> = all.iter().map(user_json).collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for u in &all {
                    println!(
                        "{}\t{}\t{}\t{}\t{}",
                        u.id,
                        u.username,
                        u.email.as_deref().unwrap_or("-"),
                        status(u),
                        u.created_at.format(&Rfc3339)?
                    );
                }
            }
        }
        UsersCommand::Disable { username } => {
            let user = find_user(&mut conn, &username).await?;
            if users::update_disabled(&mut conn, user.id, now).await? {
                eprintln!("disabled {}; their sessions have ended", user.username);
            } else {
                eprintln!("{} was already disabled", user.username);
            }
        }
        UsersCommand::SetRoles { username, roles } => {
            let user = find_user(&mut conn, &username).await?;
            for r in &roles {
                if r.is_empty() || r.len() > 64 || !r.chars().all(|c| c.is_ascii_graphic()) {
                    bail!("role '{r}' must be 1-64 visible ASCII characters");
                }
            }
            users::update_roles(&mut conn, user.id, &roles, now).await?;
            eprintln!("{} now has roles: {}", user.username, roles.join(" "));
        }
        UsersCommand::SignOutEverywhere { username } => {
            let user = find_user(&mut conn, &username).await?;
            let families =
                users::delete_sign_ins(&mut conn, user.id, "signed out everywhere", now).await?;
            crate::audit::insert(
                &mut conn,
                &crate::audit::NewAuditEvent::new(
                    "user.signed_out_everywhere",
                    crate::audit::ACTOR_CLI,
                    now,
                )
                .user(user.id)
                .details(serde_json::json!({ "families": families })),
            )
            .await?;
            eprintln!(
                "{} is signed out everywhere ({} token families revoked)",
                user.username,
                families.len()
            );
        }
        UsersCommand::SetPassword {
            username,
            password_stdin: _,
        } => {
            let user = find_user(&mut conn, &username).await?;
            let username = Username::parse(&user.username).map_err(|e| anyhow::anyhow!("{e}"))?;
            let password = read_password_line()?;
            check_new_password(&password, &username).map_err(|e| anyhow::anyhow!("{e}"))?;
            let hash = hasher_for(config).await?.hash(&password).await?;
            users::update_password(&mut conn, user.id, &hash, now).await?;
            eprintln!(
                "password set for {}; their sessions have ended",
                user.username
            );
        }
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
