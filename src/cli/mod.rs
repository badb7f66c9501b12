//! The command line: `serve`, `migrate` and the operators' `users` commands.
//!
//! Results go to stdout in a form scripts can read (one value or one tab-separated record per
//! line, or JSON with `--json`); messages for people go to stderr.
#![allow(
    clippy::print_stdout,
    reason = "printing results is what a CLI command does"
)]

use std::io::BufRead as _;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use time::format_description::well_known::Rfc3339;

use crate::app::App;
use crate::clock::Clock;
use crate::config::Config;
use crate::db;
use crate::users::name::{Email, Username};
use crate::users::password::{PasswordHasher, check_new_password};
use crate::users::{self, CreateUserError, NewUser, User};

/// Keyward: an OAuth 2.1 / OpenID Connect identity provider. Settings come from the environment.
#[derive(Debug, Parser)]
#[command(name = "keyward", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply migrations and serve HTTP (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage users.
    #[command(subcommand)]
    Users(UsersCommand),
}

#[derive(Debug, Subcommand)]
enum UsersCommand {
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
    /// Set a user's password (read from stdin) and end their sessions.
    SetPassword {
        /// The username.
        username: String,
        /// Read the password from the first line of standard input.
        #[arg(long, required = true)]
        password_stdin: bool,
    },
}

/// Runs the parsed command.
pub async fn run(cli: Cli, config: Config) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config).await,
        Command::Migrate => {
            let n = migrate(&config).await?;
            eprintln!("applied {n} migration(s)");
            Ok(())
        }
        Command::Users(cmd) => users_command(cmd, &config).await,
    }
}

async fn migrate(config: &Config) -> anyhow::Result<usize> {
    db::run_migrations(&config.database_url)
        .await
        .context("DATABASE_URL: cannot migrate the database")
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let applied = migrate(&config).await?;
    if applied > 0 {
        tracing::info!(applied, "database migrated");
    }
    let bind = config.bind;
    let issuer = config.issuer.as_str().to_owned();
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("KEYWARD_BIND: cannot listen on {bind}"))?;
    let app = App::build(config, Clock::system()).await?;
    tracing::info!(%bind, "listening");
    println!("Keyward is serving {issuer} (listening on {bind}). Sign in at {issuer}/signin");
    app.serve(listener, shutdown_signal()).await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
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
    let settings = config.argon2;
    tokio::task::spawn_blocking(move || PasswordHasher::new(settings, 1, 1)).await?
}

async fn find_user(conn: &mut db::PooledConn, raw: &str) -> anyhow::Result<User> {
    let username = Username::parse(raw).map_err(|e| anyhow::anyhow!("{e}"))?;
    users::find_by_username(conn, &username)
        .await?
        .with_context(|| format!("no user named '{}'", username.as_str()))
}

async fn users_command(cmd: UsersCommand, config: &Config) -> anyhow::Result<()> {
    let pool = db::build_pool(&config.database_url, 1)?;
    let mut conn = db::connect(&pool)
        .await
        .context("DATABASE_URL: cannot connect to the database")?;
    let now = Clock::system().now();
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
