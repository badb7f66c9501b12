//! The command line: `serve`, `migrate`, and the operators' `users`, `clients`, `keys` and
//! `tokens` commands.
//!
//! Results go to stdout in a form scripts can read (one value or one tab-separated record per
//! line, or JSON with `--json`); messages for people go to stderr.

/// `println!` for a command's results: a reader that stopped early (`| head`) ends the command
/// quietly with exit 0, where `println!` would panic on the closed pipe.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::write_line(format_args!($($arg)*))
    };
}

mod check;
mod clients;
mod consents;
mod keys;
mod mail;
mod tokens;
mod users;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use time::OffsetDateTime;

use crate::app::App;
use crate::clock::Clock;
use crate::config::Config;
use crate::db;

/// Keyward: an OAuth 2.1 / OpenID Connect identity provider. Settings come from the environment.
#[derive(Debug, Parser)]
#[command(name = "keyward", version, about)]
pub struct Cli {
    /// The time the command acts at, as Unix seconds, instead of the system clock. Hidden: only
    /// the tests use it, so a command's times agree with a server running on the test clock.
    #[arg(long, hide = true, global = true, value_parser = parse_unix_time)]
    now: Option<OffsetDateTime>,
    #[command(subcommand)]
    command: Option<Command>,
}

fn parse_unix_time(raw: &str) -> Result<OffsetDateTime, String> {
    let seconds: i64 = raw
        .parse()
        .map_err(|_| "expected Unix seconds".to_owned())?;
    OffsetDateTime::from_unix_timestamp(seconds).map_err(|e| e.to_string())
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply migrations and serve HTTP (the default).
    #[command(after_help = SERVE_ENVIRONMENT)]
    Serve,
    /// Apply pending database migrations and exit.
    Migrate {
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check the settings, the database and its migrations, that the KEK opens the stored keys,
    /// and the clock against the database's; print the effective settings (secrets hidden).
    Check {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Manage users.
    #[command(subcommand)]
    Users(users::UsersCommand),
    /// Manage signing keys.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Manage clients (relying parties).
    #[command(subcommand)]
    Clients(clients::ClientsCommand),
    /// List and withdraw consents.
    #[command(subcommand)]
    Consents(consents::ConsentsCommand),
    /// Purge expired tokens; explain and revoke refresh families.
    #[command(subcommand)]
    Tokens(tokens::TokensCommand),
    /// Check outbound mail.
    #[command(subcommand)]
    Mail(mail::MailCommand),
}

/// `serve --help`: every setting, by name (the README's settings table says what each means).
const SERVE_ENVIRONMENT: &str = "\
Environment (README.md, \"Settings\", has defaults and meanings):
  Database      DATABASE_URL, KEYWARD_DB_POOL_SIZE, KEYWARD_DB_POOL_WAIT
  Server        KEYWARD_ISSUER, KEYWARD_BIND, KEYWARD_METRICS_BIND, KEYWARD_REQUEST_TIMEOUT,
                KEYWARD_HEADER_TIMEOUT, KEYWARD_IDLE_TIMEOUT, KEYWARD_TRUSTED_PROXIES, KEYWARD_TRUSTED_PROXY_HEADER,
                KEYWARD_MAX_CLOCK_SKEW,
                KEYWARD_SIGNUP_ENABLED, KEYWARD_PRODUCT_NAME, KEYWARD_LOGO_FILE, KEYWARD_ADMIN_API
  Logs          KEYWARD_LOG, KEYWARD_LOG_FORMAT
  Passwords     KEYWARD_ARGON2_MEMORY_KIB, KEYWARD_ARGON2_ITERATIONS, KEYWARD_ARGON2_PARALLELISM,
                KEYWARD_HASH_CONCURRENCY, KEYWARD_HASH_QUEUE, KEYWARD_LOCKOUT_THRESHOLD,
                KEYWARD_LOCKOUT_BASE, KEYWARD_LOCKOUT_MAX, KEYWARD_SIGN_IN_IDENTIFIER, KEYWARD_MFA
  Rate limits   KEYWARD_LIMIT_SIGN_IN_PER_IP, KEYWARD_LIMIT_SIGN_IN_GLOBAL,
                KEYWARD_LIMIT_TOKEN_PER_IP, KEYWARD_LIMIT_TOKEN_PER_CLIENT,
                KEYWARD_LIMIT_SIGN_UP_PER_IP, KEYWARD_LIMIT_MAIL_PER_ACCOUNT,
                KEYWARD_LIMIT_MAIL_PER_IP, KEYWARD_LIMIT_ADMIN_PER_CLIENT, KEYWARD_SIGN_IN_PROOF_BITS
  Mail          KEYWARD_SMTP_URL, KEYWARD_SMTP_PASSWORD_FILE, KEYWARD_MAIL_FROM, KEYWARD_MAIL_DIR,
                KEYWARD_MAIL_RETRY_FOR, KEYWARD_EMAIL_VERIFICATION
  Sessions      KEYWARD_SESSION_IDLE_TTL, KEYWARD_SESSION_ABSOLUTE_TTL,
                KEYWARD_SESSION_PRE_SIGN_IN_TTL
  Keys          KEYWARD_KEK, KEYWARD_KEK_FILE, KEYWARD_KEY_BITS, KEYWARD_KEY_ROTATION,
                KEYWARD_KEY_PREPUBLISH, KEYWARD_KEY_RELOAD, KEYWARD_JWKS_MAX_AGE
  Tokens        KEYWARD_ACCESS_TOKEN_TTL, KEYWARD_ID_TOKEN_TTL, KEYWARD_REFRESH_IDLE_TTL,
                KEYWARD_REFRESH_ABSOLUTE_TTL, KEYWARD_REFRESH_REUSE_GRACE";

/// Runs the parsed command.
pub async fn run(cli: Cli, config: Config) -> anyhow::Result<()> {
    let now = cli.now.unwrap_or_else(|| Clock::system().now());
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config).await,
        Command::Migrate { json } => {
            let n = migrate(&config).await?;
            report(
                json,
                &serde_json::json!({ "applied": n }),
                &format!("applied {n} migration(s)"),
            )
        }
        Command::Check { json } => check::run(&config, json).await,
        Command::Users(cmd) => users::run(cmd, &config, now).await,
        Command::Keys(cmd) => keys::run(cmd, &config, now).await,
        Command::Clients(cmd) => clients::run(cmd, &config, now).await,
        Command::Consents(cmd) => consents::run(cmd, &config, now).await,
        Command::Tokens(cmd) => tokens::run(cmd, &config, now).await,
        Command::Mail(cmd) => mail::run(cmd, &config).await,
    }
}

/// Writes one line of results to stdout; see [`out!`].
pub fn write_line(line: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    let written = stdout
        .write_fmt(line)
        .and_then(|()| stdout.write_all(b"\n"))
        .and_then(|()| stdout.flush());
    match written {
        Ok(()) => {}
        // Nobody reads any more: what was wanted has been read.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => {
            eprintln!("keyward: cannot write the results: {e}");
            std::process::exit(1);
        }
    }
}

/// A command's outcome: JSON on stdout with `--json`, else the sentence for people on stderr.
fn report(json: bool, value: &serde_json::Value, message: &str) -> anyhow::Result<()> {
    if json {
        out!("{}", serde_json::to_string_pretty(value)?);
    } else {
        eprintln!("{message}");
    }
    Ok(())
}

async fn migrate(config: &Config) -> anyhow::Result<usize> {
    db::run_migrations(&config.database.url)
        .await
        .with_context(|| {
            let at = config.database.whereabouts();
            format!("DATABASE_URL: cannot migrate the {at}")
        })
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let applied = migrate(&config).await?;
    if applied > 0 {
        tracing::info!(applied, "database migrated");
    }
    let bind = config.server.bind;
    let issuer = config.server.issuer.as_str().to_owned();
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("KEYWARD_BIND: cannot listen on {bind}"))?;
    let metrics = match config.server.metrics_bind {
        Some(at) => Some(
            tokio::net::TcpListener::bind(at)
                .await
                .with_context(|| format!("KEYWARD_METRICS_BIND: cannot listen on {at}"))?,
        ),
        None => None,
    };
    let app = App::build(config, Clock::system()).await?;
    // The address bound, not the one asked for: port 0 picks one.
    let bind = listener.local_addr()?;
    tracing::info!(%bind, "listening");
    // A server whose stdout is closed must still serve: the banner is best effort.
    {
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stdout(),
            "Keyward is serving {issuer} (listening on {bind}). Sign in at {issuer}/signin"
        );
    }
    app.serve(listener, metrics, shutdown_signal()).await
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

/// A connection for a one-off command.
async fn connect(config: &Config) -> anyhow::Result<db::PooledConn> {
    let pool = db::single(&config.database.url)?;
    match db::connect(&pool).await {
        Ok(conn) => Ok(conn),
        Err(e) => {
            let at = config.database.whereabouts();
            let why = db::unreachable_because(&config.database.url).await;
            let why = why.map_or(String::new(), |w| format!(" ({w})"));
            Err(anyhow::Error::new(e)
                .context(format!("DATABASE_URL: cannot connect to the {at}{why}")))
        }
    }
}
#[cfg(test)]
mod tests {
    use super::{Cli, SERVE_ENVIRONMENT};

    /// Every command but `serve` can answer in JSON, for scripts.
    #[test]
    fn every_command_takes_json() {
        fn leaves(cmd: &clap::Command, path: &str, out: &mut Vec<(String, bool)>) {
            let subs: Vec<&clap::Command> = cmd.get_subcommands().collect();
            if subs.is_empty() {
                let has = cmd.get_arguments().any(|a| a.get_id() == "json");
                out.push((path.to_owned(), has));
            }
            for sub in subs {
                leaves(sub, &format!("{path} {}", sub.get_name()), out);
            }
        }
        let mut all = vec![];
        leaves(
            &<Cli as clap::CommandFactory>::command(),
            "keyward",
            &mut all,
        );
        let missing: Vec<&str> = all
            .iter()
            .filter(|(path, has)| !has && path != "keyward serve")
            .map(|(path, _)| path.as_str())
            .collect();
        assert!(all.len() > 20, "{all:?}");
        assert!(missing.is_empty(), "without --json: {missing:?}");
    }

    #[test]
    fn serve_help_names_every_setting_the_code_reads() {
        // `config::SETTINGS` is checked against the code that reads them (config's tests).
        for setting in crate::config::SETTINGS {
            assert!(
                SERVE_ENVIRONMENT.contains(setting),
                "{setting} is not in serve --help"
            );
        }
    }
}
