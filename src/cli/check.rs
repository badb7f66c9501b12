//! `keyward check`: whether this configuration can serve, checked without serving.

use serde_json::json;

use crate::clock::Clock;
use crate::config::Config;
use crate::db;
use crate::keys::kek::{Kek, KekSource};
use crate::keys::keyring::KeyRing;
use crate::keys::store;

/// One check's verdict.
struct Verdict {
    name: &'static str,
    ok: bool,
    detail: String,
}

fn verdict(name: &'static str, result: anyhow::Result<String>) -> Verdict {
    match result {
        Ok(detail) => Verdict {
            name,
            ok: true,
            detail,
        },
        Err(e) => Verdict {
            name,
            ok: false,
            detail: format!("{e:#}"),
        },
    }
}

/// The database URL with its password hidden.
fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "<unparseable>".to_owned(),
    }
}

async fn check_keys(config: &Config, clock: &Clock) -> anyhow::Result<String> {
    let pool = db::single(&config.database.url)?;
    let mut conn = db::connect(&pool).await?;
    let rows = store::list(&mut conn).await?;
    if let (true, KekSource::File(path)) = (rows.is_empty(), &config.keys.kek)
        && !path.exists()
    {
        let at = std::path::absolute(path).unwrap_or_else(|_| path.clone());
        return Ok(format!(
            "no keys yet: the first `serve` creates the KEK file {} and the keys",
            at.display()
        ));
    }
    let kek = Kek::load(&config.keys.kek)?;
    let version = store::current_version(&mut conn).await?;
    // Loading the ring opens every published key, as a starting server would.
    KeyRing::load(version, &rows, &kek, clock.now())?;
    Ok(format!(
        "{} stored key(s) open with KEK {}",
        rows.len(),
        kek.id()
    ))
}

async fn check_clock(config: &Config, clock: &Clock) -> anyhow::Result<String> {
    let pool = db::single(&config.database.url)?;
    let offset = crate::clock::offset_from_database(clock, &pool).await?;
    let max = config.server.max_clock_skew;
    anyhow::ensure!(
        offset.abs() <= max,
        "this clock is {offset} from the database's, more than KEYWARD_MAX_CLOCK_SKEW ({max})"
    );
    Ok(format!("{offset} from the database's (at most {max})"))
}

/// Where mail goes, checked without sending: the password file can be read and the SMTP server
/// answers on its port (`keyward mail test` sends a real mail).
async fn check_mail(config: &Config) -> anyhow::Result<String> {
    use crate::mail::transport::{Route, without_credentials};
    match &config.mail.route {
        Route::Files(dir) => Ok(format!(
            "no SMTP server configured: mail is written as .eml files into {}",
            std::path::absolute(dir)
                .unwrap_or_else(|_| dir.clone())
                .display()
        )),
        Route::Smtp { url, password_file } => {
            if let Some(file) = password_file {
                let password = std::fs::read_to_string(file).map_err(|e| {
                    anyhow::anyhow!("KEYWARD_SMTP_PASSWORD_FILE {}: {e}", file.display())
                })?;
                anyhow::ensure!(
                    !password.trim().is_empty(),
                    "KEYWARD_SMTP_PASSWORD_FILE {} is empty",
                    file.display()
                );
            }
            let shown = without_credentials(url);
            if let Some(why) = db::unreachable_because(url).await {
                anyhow::bail!("KEYWARD_SMTP_URL {shown} cannot be reached: {why}");
            }
            Ok(format!(
                "{shown} answers; `keyward mail test ADDRESS` sends a real mail"
            ))
        }
    }
}

/// Runs every check; fails (exit 1) if any did, after printing them all.
pub async fn run(config: &Config, json: bool) -> anyhow::Result<()> {
    let clock = Clock::system();
    let database = verdict(
        "database",
        async {
            let pool = db::single(&config.database.url)?;
            let mut conn = db::connect(&pool).await?;
            let now = db::now(&mut conn).await?;
            Ok(format!(
                "{} answers (its time {now})",
                redacted(&config.database.url)
            ))
        }
        .await,
    );
    let migrations = verdict(
        "migrations",
        async {
            let pending = db::pending_migrations(&config.database.url).await?;
            anyhow::ensure!(
                pending.is_empty(),
                "pending: {} (run `keyward migrate`)",
                pending.join(", ")
            );
            Ok("none pending".to_owned())
        }
        .await,
    );
    let keys = verdict("keys", check_keys(config, &clock).await);
    let time = verdict("clock", check_clock(config, &clock).await);
    let mail = verdict("mail", check_mail(config).await);
    let verdicts = [database, migrations, keys, time, mail];
    // Every setting in effect, in the settings' own syntax, secrets withheld.
    let settings = config.effective();
    if json {
        let checks: Vec<serde_json::Value> = verdicts
            .iter()
            .map(|v| json!({ "check": v.name, "ok": v.ok, "detail": v.detail }))
            .collect();
        let settings: serde_json::Map<String, serde_json::Value> = settings
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value.into()))
            .collect();
        let out =
            json!({ "ok": verdicts.iter().all(|v| v.ok), "checks": checks, "settings": settings });
        out!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        out!("check\tresult\tdetail");
        for v in &verdicts {
            out!(
                "{}\t{}\t{}",
                v.name,
                if v.ok { "ok" } else { "FAILED" },
                v.detail
            );
        }
        let width = settings.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
        out!("\nsetting{}  value", " ".repeat(width.saturating_sub(7)));
        for (name, value) in &settings {
            out!("{name:width$}  {value}");
        }
    }
    let failed: Vec<&str> = verdicts.iter().filter(|v| !v.ok).map(|v| v.name).collect();
    anyhow::ensure!(failed.is_empty(), "failed: {}", failed.join(", "));
    Ok(())
}
