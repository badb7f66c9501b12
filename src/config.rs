//! Typed settings read once from the environment, validated before anything starts, and grouped
//! by the part of Keyward that uses them. Each section stores the types its users need, so no
//! call site converts durations; the README's settings table is the one list of variables.

use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::str::FromStr;

use lettre::message::Mailbox;
use time::Duration;
use url::Url;

use crate::keys::kek::{KekSource, decode_kek};
use crate::keys::schedule::{CLOCK_LEEWAY, SchedulePolicy};
use crate::keys::store::KeyPolicy;
use crate::mail::transport::{Route, check_smtp_url, parse_sender};
use crate::rate_limits::{Rate, Rates};
use crate::sessions::store::SessionLifetimes;
use crate::users::lockout::LockoutPolicy;
use crate::users::password::Argon2Settings;

/// A setting that could not be used, with the variable it came from.
#[derive(Debug, thiserror::Error)]
#[error("{setting}: {message}")]
pub struct ConfigError {
    /// The environment variable at fault.
    pub setting: &'static str,
    /// What is wrong with its value.
    pub message: String,
}

/// Every setting that could not be used, each with its variable (at least one).
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&lines.join("\n"))
    }
}

impl std::error::Error for ConfigErrors {}

impl ConfigError {
    fn new(setting: &'static str, message: impl Into<String>) -> Self {
        Self {
            setting,
            message: message.into(),
        }
    }
}

/// Every setting Keyward reads (a unit test checks this against the code that reads them).
pub const SETTINGS: &[&str] = &[
    "DATABASE_URL",
    "KEYWARD_ACCESS_TOKEN_TTL",
    "KEYWARD_ADMIN_API",
    "KEYWARD_ARGON2_ITERATIONS",
    "KEYWARD_ARGON2_MEMORY_KIB",
    "KEYWARD_ARGON2_PARALLELISM",
    "KEYWARD_BIND",
    "KEYWARD_DB_POOL_SIZE",
    "KEYWARD_DB_POOL_WAIT",
    "KEYWARD_EMAIL_VERIFICATION",
    "KEYWARD_HASH_CONCURRENCY",
    "KEYWARD_HASH_QUEUE",
    "KEYWARD_HEADER_TIMEOUT",
    "KEYWARD_ID_TOKEN_TTL",
    "KEYWARD_IDLE_TIMEOUT",
    "KEYWARD_ISSUER",
    "KEYWARD_JWKS_MAX_AGE",
    "KEYWARD_KEK",
    "KEYWARD_KEK_FILE",
    "KEYWARD_KEY_BITS",
    "KEYWARD_KEY_PREPUBLISH",
    "KEYWARD_KEY_RELOAD",
    "KEYWARD_KEY_ROTATION",
    "KEYWARD_LIMIT_ADMIN_PER_CLIENT",
    "KEYWARD_LIMIT_MAIL_PER_ACCOUNT",
    "KEYWARD_LIMIT_MAIL_PER_IP",
    "KEYWARD_LIMIT_SIGN_IN_GLOBAL",
    "KEYWARD_LIMIT_SIGN_IN_PER_IP",
    "KEYWARD_LIMIT_SIGN_UP_PER_IP",
    "KEYWARD_LIMIT_TOKEN_PER_CLIENT",
    "KEYWARD_LIMIT_TOKEN_PER_IP",
    "KEYWARD_LOCKOUT_BASE",
    "KEYWARD_LOCKOUT_MAX",
    "KEYWARD_LOCKOUT_THRESHOLD",
    "KEYWARD_LOG",
    "KEYWARD_LOG_FORMAT",
    "KEYWARD_LOGO_FILE",
    "KEYWARD_MAIL_DIR",
    "KEYWARD_MAIL_FROM",
    "KEYWARD_MAIL_RETRY_FOR",
    "KEYWARD_MAX_CLOCK_SKEW",
    "KEYWARD_METRICS_BIND",
    "KEYWARD_MFA",
    "KEYWARD_PRODUCT_NAME",
    "KEYWARD_REFRESH_ABSOLUTE_TTL",
    "KEYWARD_REFRESH_IDLE_TTL",
    "KEYWARD_REFRESH_REUSE_GRACE",
    "KEYWARD_REQUEST_TIMEOUT",
    "KEYWARD_SESSION_ABSOLUTE_TTL",
    "KEYWARD_SESSION_IDLE_TTL",
    "KEYWARD_SESSION_PRE_SIGN_IN_TTL",
    "KEYWARD_SIGN_IN_IDENTIFIER",
    "KEYWARD_SIGN_IN_PROOF_BITS",
    "KEYWARD_SIGNUP_ENABLED",
    "KEYWARD_SMTP_PASSWORD_FILE",
    "KEYWARD_SMTP_URL",
    "KEYWARD_TRUSTED_PROXIES",
    "KEYWARD_TRUSTED_PROXY_HEADER",
];

/// Variables of the tools around Keyward that share its prefix: `.ci/pg`'s, the tests'.
const TOOL_VARIABLES: [&str; 3] = [
    "KEYWARD_PG_PORT",
    "KEYWARD_PG_DURABLE",
    "KEYWARD_SCREENSHOTS",
];

/// A warning for each `KEYWARD_*` variable in `names` that is no setting, naming the closest
/// real one: a misspelt setting would otherwise be silently ignored.
#[must_use]
pub fn unknown_settings(names: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut unknown: Vec<String> = names
        .into_iter()
        .filter(|n| n.starts_with("KEYWARD_"))
        .filter(|n| !SETTINGS.contains(&n.as_str()) && !TOOL_VARIABLES.contains(&n.as_str()))
        .collect();
    unknown.sort();
    unknown
        .into_iter()
        .map(|name| {
            let closest = SETTINGS
                .iter()
                .min_by_key(|s| edit_distance(&name, s))
                .map_or(String::new(), |s| format!("; did you mean {s}?"));
            format!("{name} is not a setting and is ignored{closest}")
        })
        .collect()
}

/// Levenshtein distance; no crate needed for a dozen short names.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let here = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(here + 1);
            prev = here;
        }
    }
    row[b.len()]
}

/// Everything Keyward can be told from outside; built by [`Config::from_env`].
#[derive(Clone, Debug)]
pub struct Config {
    /// Who we are and how we listen.
    pub server: ServerSettings,
    /// Where PostgreSQL is.
    pub database: DatabaseSettings,
    /// Password hashing and the sign-in lockout.
    pub passwords: PasswordSettings,
    /// Browser sessions.
    pub sessions: SessionSettings,
    /// Signing keys and their schedule.
    pub keys: KeySettings,
    /// Lifetimes of what we issue.
    pub tokens: TokenSettings,
    /// Rate limits on what attackers repeat.
    pub limits: Rates,
    /// Outbound mail.
    pub mail: MailSettings,
}

/// Outbound mail.
#[derive(Clone, Debug)]
pub struct MailSettings {
    /// `KEYWARD_SMTP_URL` and `KEYWARD_SMTP_PASSWORD_FILE`, or without them `KEYWARD_MAIL_DIR`.
    pub route: Route,
    /// `KEYWARD_MAIL_FROM`.
    pub from: Mailbox,
    /// `KEYWARD_MAIL_RETRY_FOR`: how long a mail is retried before it is given up.
    pub retry_for: Duration,
    /// `KEYWARD_EMAIL_VERIFICATION`.
    pub verification: crate::oauth::verification::Policy,
}

/// The public face of the server.
#[derive(Clone, Debug)]
pub struct ServerSettings {
    /// `KEYWARD_ISSUER`: the public base URL, exactly as tokens and discovery will name it.
    pub issuer: Issuer,
    /// `KEYWARD_BIND`: the socket address to listen on.
    pub bind: SocketAddr,
    /// `KEYWARD_METRICS_BIND`: where `/metrics` listens, apart from the public port; `None`
    /// when set to the empty string.
    pub metrics_bind: Option<SocketAddr>,
    /// `KEYWARD_REQUEST_TIMEOUT`: a request still running after this gets 408.
    pub request_timeout: std::time::Duration,
    /// `KEYWARD_HEADER_TIMEOUT`: once a request head began to arrive, the rest must within this.
    pub header_timeout: std::time::Duration,
    /// `KEYWARD_IDLE_TIMEOUT`: how long an idle keep-alive connection stays open.
    pub idle_timeout: std::time::Duration,
    /// `KEYWARD_SIGNUP_ENABLED`: whether the public sign-up page exists.
    pub signup_enabled: bool,
    /// `KEYWARD_ADMIN_API`: whether the management API (`/admin/v1/`) answers at all.
    pub admin_api: bool,
    /// `KEYWARD_PRODUCT_NAME`: what the hosted pages call the service.
    pub product_name: String,
    /// `KEYWARD_LOGO_FILE`: an image shown beside the name on the hosted pages.
    pub logo_file: Option<std::path::PathBuf>,
    /// `KEYWARD_LOG`: a tracing filter such as `info` or `keyward=debug,info`.
    pub log_filter: String,
    /// `KEYWARD_LOG_FORMAT`: `json` or `text` (default: text on a terminal, JSON otherwise).
    pub log_format: crate::telemetry::LogFormat,
    /// `KEYWARD_MAX_CLOCK_SKEW`: how far this instance's clock may be from the database's.
    pub max_clock_skew: Duration,
    /// `KEYWARD_TRUSTED_PROXIES`: peers whose forwarding header we believe.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// `KEYWARD_TRUSTED_PROXY_HEADER`: the one header those proxies set.
    pub trusted_proxy_header: ProxyHeader,
}

/// The header trusted proxies name the client in; the other one is ignored, since a proxy
/// passes through whatever it does not set, and the client could write it (OWASP ASVS 5.0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyHeader {
    /// `X-Forwarded-For` (nginx's `$proxy_add_x_forwarded_for`, most load balancers).
    XForwardedFor,
    /// `Forwarded` (RFC 7239).
    Forwarded,
}

/// The database connection.
#[derive(Clone)]
pub struct DatabaseSettings {
    /// `DATABASE_URL`: the PostgreSQL connection URL (may hold a password; never logged).
    pub url: String,
    /// `KEYWARD_DB_POOL_SIZE`: how many database connections this process keeps at most.
    pub pool_size: usize,
    /// `KEYWARD_DB_POOL_WAIT`: how long a request waits for a free connection before its 503.
    pub pool_wait: std::time::Duration,
}

impl DatabaseSettings {
    /// Where the database is, for messages: user, host, port and database, never the password.
    #[must_use]
    pub fn whereabouts(&self) -> String {
        let Ok(url) = Url::parse(&self.url) else {
            return "an unreadable URL".to_owned();
        };
        let host = url.host_str().unwrap_or("localhost");
        let port = url.port().unwrap_or(5432);
        let database = url.path().trim_start_matches('/');
        let user = url.username();
        let database = if database.is_empty() { user } else { database };
        format!("database '{database}' as '{user}' at {host}:{port}")
    }
}

impl fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may carry a password: show only that it is set.
        f.debug_struct("DatabaseSettings")
            .field("url", &"<set>")
            .field("pool_size", &self.pool_size)
            .field("pool_wait", &self.pool_wait)
            .finish()
    }
}

/// Password hashing cost, its concurrency, and the lockout.
#[derive(Clone, Copy, Debug)]
pub struct PasswordSettings {
    /// `KEYWARD_ARGON2_MEMORY_KIB`, `KEYWARD_ARGON2_ITERATIONS`, `KEYWARD_ARGON2_PARALLELISM`.
    pub argon2: Argon2Settings,
    /// `KEYWARD_HASH_CONCURRENCY`: password hashes computed at once (default: the core count).
    pub hash_concurrency: NonZeroUsize,
    /// `KEYWARD_HASH_QUEUE`: sign-ins allowed to wait for a hashing slot before we answer 503.
    pub hash_queue: NonZeroUsize,
    /// `KEYWARD_LOCKOUT_THRESHOLD`, `KEYWARD_LOCKOUT_BASE`, `KEYWARD_LOCKOUT_MAX`.
    pub lockout: LockoutPolicy,
    /// `KEYWARD_SIGN_IN_PROOF_BITS`: the proof of work a browser computes to sign in while its
    /// address (or everyone) is over the sign-in limit.
    pub sign_in_proof_bits: u8,
    /// `KEYWARD_SIGN_IN_IDENTIFIER`: what people type to name their account.
    pub sign_in_identifier: crate::users::name::Identifiers,
    /// `KEYWARD_MFA`: whether everyone must sign in with a second factor.
    pub mfa: crate::oauth::second_factor::Policy,
}

/// Browser sessions.
#[derive(Clone, Copy, Debug)]
pub struct SessionSettings {
    /// `KEYWARD_SESSION_IDLE_TTL` (after this long without a request) and
    /// `KEYWARD_SESSION_ABSOLUTE_TTL` (this long after sign-in, however busy).
    pub lifetimes: SessionLifetimes,
}

/// Signing keys.
#[derive(Clone, Debug)]
pub struct KeySettings {
    /// `KEYWARD_KEK` (base64) or `KEYWARD_KEK_FILE` (default `keys/kek`): seals signing keys.
    pub kek: KekSource,
    /// `KEYWARD_KEY_BITS`, `KEYWARD_KEY_ROTATION`, `KEYWARD_KEY_PREPUBLISH`,
    /// `KEYWARD_JWKS_MAX_AGE`, and the token lifetimes that decide how long a retired key stays.
    pub policy: KeyPolicy,
    /// `KEYWARD_KEY_RELOAD`: how often each instance checks the key set and the clients for
    /// changes.
    pub reload: std::time::Duration,
}

/// Lifetimes of tokens.
#[derive(Clone, Copy, Debug)]
pub struct TokenSettings {
    /// `KEYWARD_ACCESS_TOKEN_TTL`: lifetime of access tokens.
    pub access_ttl: Duration,
    /// `KEYWARD_ID_TOKEN_TTL`: lifetime of ID tokens.
    pub id_ttl: Duration,
    /// `KEYWARD_REFRESH_IDLE_TTL`: a refresh token unused this long expires.
    pub refresh_idle_ttl: Duration,
    /// `KEYWARD_REFRESH_ABSOLUTE_TTL`: no refresh token of a family outlives this, from sign-in.
    pub refresh_absolute_ttl: Duration,
    /// `KEYWARD_REFRESH_REUSE_GRACE`: how long the immediate predecessor may be presented again
    /// and get the same successor (default 30 s; `0` turns the grace window off).
    pub refresh_reuse_grace: Option<Duration>,
}

/// The issuer URL, checked to be a valid OAuth issuer (RFC 8414 §2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issuer(String);

impl Issuer {
    /// Parses an issuer: absolute `https` (or `http` on a loopback host), no query or fragment.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let url = Url::parse(raw).map_err(|e| format!("not an absolute URL ({e})"))?;
        if url.query().is_some() || url.fragment().is_some() {
            return Err("must not have a query or fragment (RFC 8414 §2)".into());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("must not contain credentials".into());
        }
        match url.scheme() {
            "https" => {}
            "http" if crate::clients::is_loopback(&url) => {}
            "http" => return Err("http is only allowed for 127.0.0.1, [::1] or localhost".into()),
            other => return Err(format!("unsupported scheme '{other}'")),
        }
        // The issuer is compared as a string by relying parties: keep exactly one spelling.
        Ok(Self(url.as_str().trim_end_matches('/').to_owned()))
    }

    /// The issuer string, without a trailing slash.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether browsers reach us over TLS, which decides the cookie flags.
    #[must_use]
    pub fn is_https(&self) -> bool {
        self.0.starts_with("https://")
    }
}

/// Reads variables: blank counts as unset, and every failure names its variable.
struct Env<F> {
    lookup: F,
}

impl<F: Fn(&str) -> Option<String>> Env<F> {
    fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    fn parse<T: FromStr>(&self, name: &'static str, default: T) -> Result<T, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => raw
                .parse()
                .map_err(|_| ConfigError::new(name, format!("cannot parse '{raw}'"))),
        }
    }

    /// A whole number within bounds.
    fn number(
        &self,
        name: &'static str,
        default: u32,
        range: RangeInclusive<u32>,
    ) -> Result<u32, ConfigError> {
        let value = self.parse(name, default)?;
        if range.contains(&value) {
            Ok(value)
        } else {
            Err(ConfigError::new(
                name,
                format!("must be between {} and {}", range.start(), range.end()),
            ))
        }
    }

    /// A count of things (threads, queue places) within bounds.
    fn count(
        &self,
        name: &'static str,
        default: usize,
        range: RangeInclusive<usize>,
    ) -> Result<NonZeroUsize, ConfigError> {
        let value = self.parse(name, default)?;
        match NonZeroUsize::new(value).filter(|_| range.contains(&value)) {
            Some(n) => Ok(n),
            None => Err(ConfigError::new(
                name,
                format!("must be between {} and {}", range.start(), range.end()),
            )),
        }
    }

    /// A duration like `90s`, `15m`, `12h` or `14d`, within bounds.
    fn duration(
        &self,
        name: &'static str,
        default: Duration,
        range: RangeInclusive<Duration>,
        bounds: &str,
    ) -> Result<Duration, ConfigError> {
        let value = match self.get(name) {
            None => default,
            Some(raw) => parse_duration(&raw).map_err(|m| ConfigError::new(name, m))?,
        };
        if range.contains(&value) {
            Ok(value)
        } else {
            Err(ConfigError::new(name, bounds.to_owned()))
        }
    }

    fn flag(&self, name: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.get(name).as_deref() {
            None => Ok(default),
            Some("true" | "1" | "yes" | "on") => Ok(true),
            Some("false" | "0" | "no" | "off") => Ok(false),
            Some(other) => Err(ConfigError::new(
                name,
                format!("expected true or false, got '{other}'"),
            )),
        }
    }
}

const MINUTE: Duration = Duration::MINUTE;
const HOUR: Duration = Duration::HOUR;
const DAY: Duration = Duration::DAY;
/// Any positive duration a setting could sensibly hold.
const POSITIVE: RangeInclusive<Duration> = Duration::SECOND..=Duration::days(3650);

fn to_std(d: Duration) -> std::time::Duration {
    std::time::Duration::try_from(d).unwrap_or(std::time::Duration::MAX)
}

impl Config {
    /// Reads every setting from the process environment, reporting every bad one at once.
    pub fn from_process_env() -> Result<Self, ConfigErrors> {
        Self::from_env_reporting_all(|name| std::env::var(name).ok())
    }

    /// Reads every setting through `lookup`; when one is bad, sets it aside (as if unset) and
    /// reads again, so an operator fixing a deployment learns of every bad variable in one go
    /// rather than one per restart. A missing required one ends the search.
    pub fn from_env_reporting_all(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigErrors> {
        let mut errors: Vec<ConfigError> = Vec::new();
        let mut set_aside: Vec<&'static str> = Vec::new();
        loop {
            let read = Self::from_env(|name| {
                if set_aside.contains(&name) {
                    None
                } else {
                    lookup(name)
                }
            });
            match read {
                Ok(config) if errors.is_empty() => return Ok(config),
                Ok(_) => return Err(ConfigErrors(errors)),
                Err(e) => {
                    let more = lookup(e.setting).is_some() && !set_aside.contains(&e.setting);
                    set_aside.push(e.setting);
                    errors.push(e);
                    if !more {
                        return Err(ConfigErrors(errors));
                    }
                }
            }
        }
    }

    /// Reads every setting through `lookup`, so tests can pass their own variables.
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env { lookup };
        let tokens = tokens(&env)?;
        let server = server(&env)?;
        let mut passwords = passwords(&env, server.request_timeout)?;
        let mail = mail(&env, &server)?;
        // Read after the mail settings, whose verification policy it depends on.
        passwords.sign_in_identifier = sign_in_identifier(&env, &mail)?;
        Ok(Self {
            server,
            database: database(&env)?,
            passwords,
            sessions: sessions(&env)?,
            keys: keys(&env, &tokens)?,
            tokens,
            limits: limits(&env)?,
            mail,
        })
    }
}

fn mail(
    env: &Env<impl Fn(&str) -> Option<String>>,
    server: &ServerSettings,
) -> Result<MailSettings, ConfigError> {
    let password_file = env.get("KEYWARD_SMTP_PASSWORD_FILE").map(PathBuf::from);
    let route = match env.get("KEYWARD_SMTP_URL") {
        Some(raw) => Route::Smtp {
            url: check_smtp_url(&raw).map_err(|m| ConfigError::new("KEYWARD_SMTP_URL", m))?,
            password_file,
        },
        None if password_file.is_some() => {
            return Err(ConfigError::new(
                "KEYWARD_SMTP_PASSWORD_FILE",
                "set without KEYWARD_SMTP_URL",
            ));
        }
        // Development: mail lands in files next to the KEK's default place.
        None => Route::Files(PathBuf::from(
            env.get("KEYWARD_MAIL_DIR")
                .unwrap_or_else(|| ".keyward/mail".to_owned()),
        )),
    };
    let from = match (env.get("KEYWARD_MAIL_FROM"), &route) {
        (Some(raw), _) => {
            parse_sender(&raw).map_err(|m| ConfigError::new("KEYWARD_MAIL_FROM", m))?
        }
        (None, Route::Smtp { .. }) => {
            return Err(ConfigError::new(
                "KEYWARD_MAIL_FROM",
                "required with KEYWARD_SMTP_URL: the address mail comes from, e.g. \
                 \"Example <no-reply@example.com>\"",
            ));
        }
        (None, Route::Files(_)) => {
            parse_sender(&format!("\"{}\" <no-reply@localhost>", server.product_name))
                .map_err(|m| ConfigError::new("KEYWARD_PRODUCT_NAME", m))?
        }
    };
    let retry_for = env.duration(
        "KEYWARD_MAIL_RETRY_FOR",
        DAY,
        MINUTE..=7 * DAY,
        "must be between 1m and 7d",
    )?;
    let verification = match env.get("KEYWARD_EMAIL_VERIFICATION") {
        None => crate::oauth::verification::Policy::Optional,
        Some(raw) => crate::oauth::verification::Policy::parse(&raw)
            .map_err(|m| ConfigError::new("KEYWARD_EMAIL_VERIFICATION", m))?,
    };
    Ok(MailSettings {
        route,
        from,
        retry_for,
        verification,
    })
}

fn sessions(env: &Env<impl Fn(&str) -> Option<String>>) -> Result<SessionSettings, ConfigError> {
    let idle = env.duration(
        "KEYWARD_SESSION_IDLE_TTL",
        12 * HOUR,
        5 * MINUTE..=30 * DAY,
        "must be between 5m and 30d",
    )?;
    let absolute = env.duration(
        "KEYWARD_SESSION_ABSOLUTE_TTL",
        7 * DAY,
        idle..=365 * DAY,
        "must be at least KEYWARD_SESSION_IDLE_TTL and at most 365d",
    )?;
    let pre_sign_in = env.duration(
        "KEYWARD_SESSION_PRE_SIGN_IN_TTL",
        HOUR,
        5 * MINUTE..=idle,
        "must be at least 5m and at most KEYWARD_SESSION_IDLE_TTL",
    )?;
    Ok(SessionSettings {
        lifetimes: SessionLifetimes {
            idle,
            absolute,
            pre_sign_in,
        },
    })
}

fn server(env: &Env<impl Fn(&str) -> Option<String>>) -> Result<ServerSettings, ConfigError> {
    let issuer = env
        .get("KEYWARD_ISSUER")
        .unwrap_or_else(|| "http://127.0.0.1:8080".into());
    let timeouts = "timeouts must be above zero";
    Ok(ServerSettings {
        issuer: Issuer::parse(&issuer).map_err(|m| ConfigError::new("KEYWARD_ISSUER", m))?,
        bind: env.parse("KEYWARD_BIND", SocketAddr::from(([127, 0, 0, 1], 8080)))?,
        metrics_bind: metrics_bind(env)?,
        request_timeout: to_std(env.duration(
            "KEYWARD_REQUEST_TIMEOUT",
            30 * Duration::SECOND,
            POSITIVE,
            timeouts,
        )?),
        header_timeout: to_std(env.duration(
            "KEYWARD_HEADER_TIMEOUT",
            10 * Duration::SECOND,
            POSITIVE,
            timeouts,
        )?),
        // Longer than the 60 s that nginx's upstream keepalive and common load balancers keep an
        // idle connection: the proxy must close first, or its next request races our close.
        idle_timeout: to_std(env.duration(
            "KEYWARD_IDLE_TIMEOUT",
            75 * Duration::SECOND,
            Duration::SECOND..=Duration::HOUR,
            "must be between 1s and 1h",
        )?),
        signup_enabled: env.flag("KEYWARD_SIGNUP_ENABLED", true)?,
        admin_api: env.flag("KEYWARD_ADMIN_API", true)?,
        product_name: product_name(env)?,
        logo_file: env.get("KEYWARD_LOGO_FILE").map(std::path::PathBuf::from),
        log_filter: {
            let raw = env.get("KEYWARD_LOG").unwrap_or_else(|| "info".into());
            crate::telemetry::check_filter(&raw).map_err(|m| ConfigError::new("KEYWARD_LOG", m))?;
            raw
        },
        log_format: crate::telemetry::LogFormat::parse(env.get("KEYWARD_LOG_FORMAT").as_deref())
            .ok_or_else(|| ConfigError::new("KEYWARD_LOG_FORMAT", "must be json or text"))?,
        trusted_proxies: trusted_proxies(env)?,
        trusted_proxy_header: match env.get("KEYWARD_TRUSTED_PROXY_HEADER") {
            None => ProxyHeader::XForwardedFor,
            Some(v) if v.eq_ignore_ascii_case("x-forwarded-for") => ProxyHeader::XForwardedFor,
            Some(v) if v.eq_ignore_ascii_case("forwarded") => ProxyHeader::Forwarded,
            Some(v) => {
                return Err(ConfigError::new(
                    "KEYWARD_TRUSTED_PROXY_HEADER",
                    format!("expected x-forwarded-for or forwarded, got '{v}'"),
                ));
            }
        },
        max_clock_skew: env.duration(
            "KEYWARD_MAX_CLOCK_SKEW",
            5 * Duration::SECOND,
            Duration::SECOND..=DAY,
            "must be between 1s and 1d",
        )?,
    })
}

/// Loopback by default: the counters say how an instance is attacked, not for the public.
fn metrics_bind(
    env: &Env<impl Fn(&str) -> Option<String>>,
) -> Result<Option<SocketAddr>, ConfigError> {
    const NAME: &str = "KEYWARD_METRICS_BIND";
    match (env.lookup)(NAME) {
        Some(raw) if raw.trim().is_empty() => Ok(None),
        _ => env
            .parse(NAME, SocketAddr::from(([127, 0, 0, 1], 9464)))
            .map(Some),
    }
}

/// A name people read at the top of every page: 1 to 64 characters, none of them control.
fn product_name(env: &Env<impl Fn(&str) -> Option<String>>) -> Result<String, ConfigError> {
    const NAME: &str = "KEYWARD_PRODUCT_NAME";
    let name = env.get(NAME).unwrap_or_else(|| "Keyward".into());
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(ConfigError::new(
            NAME,
            "must be 1 to 64 characters, without control characters",
        ));
    }
    Ok(name.to_owned())
}

/// CIDRs (or bare addresses) separated by commas or spaces.
fn trusted_proxies(
    env: &Env<impl Fn(&str) -> Option<String>>,
) -> Result<Vec<ipnet::IpNet>, ConfigError> {
    const NAME: &str = "KEYWARD_TRUSTED_PROXIES";
    let Some(raw) = env.get(NAME) else {
        return Ok(Vec::new());
    };
    raw.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<ipnet::IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| ConfigError::new(NAME, format!("'{s}' is not an address or CIDR")))
        })
        .collect()
}

fn limits(env: &Env<impl Fn(&str) -> Option<String>>) -> Result<Rates, ConfigError> {
    let rate =
        |name: &'static str, count: u32, window: Duration| -> Result<Option<Rate>, ConfigError> {
            match env.get(name) {
                None => Ok(Some(Rate { count, window })),
                Some(raw) if raw.eq_ignore_ascii_case("off") => Ok(None),
                Some(raw) => Rate::parse(&raw, parse_duration)
                    .map(Some)
                    .map_err(|m| ConfigError::new(name, m)),
            }
        };
    Ok(Rates {
        sign_in_per_ip: rate("KEYWARD_LIMIT_SIGN_IN_PER_IP", 20, 10 * MINUTE)?,
        sign_in_global: rate("KEYWARD_LIMIT_SIGN_IN_GLOBAL", 300, MINUTE)?,
        token_per_ip: rate("KEYWARD_LIMIT_TOKEN_PER_IP", 60, MINUTE)?,
        token_per_client: rate("KEYWARD_LIMIT_TOKEN_PER_CLIENT", 300, MINUTE)?,
        sign_up_per_ip: rate("KEYWARD_LIMIT_SIGN_UP_PER_IP", 10, HOUR)?,
        mail_per_account: rate("KEYWARD_LIMIT_MAIL_PER_ACCOUNT", 5, HOUR)?,
        mail_per_ip: rate("KEYWARD_LIMIT_MAIL_PER_IP", 20, HOUR)?,
        admin_per_client: rate("KEYWARD_LIMIT_ADMIN_PER_CLIENT", 600, MINUTE)?,
    })
}

fn database(env: &Env<impl Fn(&str) -> Option<String>>) -> Result<DatabaseSettings, ConfigError> {
    let url = env.get("DATABASE_URL").ok_or_else(|| {
        ConfigError::new(
            "DATABASE_URL",
            "not set (e.g. postgres://keyward:secret@127.0.0.1:5432/keyward; `make run` sets it)",
        )
    })?;
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(ConfigError::new(
            "DATABASE_URL",
            "must start with postgres:// or postgresql://",
        ));
    }
    let pool_size = env.number("KEYWARD_DB_POOL_SIZE", 16, 1..=1000)?;
    let pool_wait = env.duration(
        "KEYWARD_DB_POOL_WAIT",
        Duration::milliseconds(250),
        Duration::milliseconds(1)..=30 * Duration::SECOND,
        "must be between 1ms and 30s",
    )?;
    Ok(DatabaseSettings {
        url,
        pool_size: pool_size as usize,
        pool_wait: to_std(pool_wait),
    })
}

fn passwords(
    env: &Env<impl Fn(&str) -> Option<String>>,
    request_timeout: std::time::Duration,
) -> Result<PasswordSettings, ConfigError> {
    let owasp = Argon2Settings::OWASP;
    let argon2 = Argon2Settings {
        memory_kib: env.number(
            "KEYWARD_ARGON2_MEMORY_KIB",
            owasp.memory_kib,
            8..=Argon2Settings::MAX_MEMORY_KIB,
        )?,
        iterations: env.number(
            "KEYWARD_ARGON2_ITERATIONS",
            owasp.iterations,
            1..=Argon2Settings::MAX_ITERATIONS,
        )?,
        parallelism: env.number(
            "KEYWARD_ARGON2_PARALLELISM",
            owasp.parallelism,
            1..=Argon2Settings::MAX_PARALLELISM,
        )?,
    };
    if !argon2.is_within_bounds() {
        return Err(ConfigError::new(
            "KEYWARD_ARGON2_MEMORY_KIB",
            "must be at least 8 KiB per lane (KEYWARD_ARGON2_PARALLELISM)",
        ));
    }
    let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    // One thread (and argon2 memory block) each: more than 256 is no machine we serve on.
    let hash_concurrency = env.count("KEYWARD_HASH_CONCURRENCY", cores.min(256), 1..=256)?;
    // Hashes waiting their turn: a bounded queue, never an allocation sized by a typo.
    let hash_queue = env.count(
        "KEYWARD_HASH_QUEUE",
        hash_concurrency.get() * 16,
        1..=65_536,
    )?;
    Ok(PasswordSettings {
        argon2,
        hash_concurrency,
        hash_queue,
        lockout: lockout(env, request_timeout)?,
        sign_in_proof_bits: sign_in_proof_bits(env)?,
        sign_in_identifier: crate::users::name::Identifiers::Username,
        mfa: match env.get("KEYWARD_MFA") {
            None => crate::oauth::second_factor::Policy::default(),
            Some(raw) => crate::oauth::second_factor::Policy::parse(&raw)
                .map_err(|m| ConfigError::new("KEYWARD_MFA", m))?,
        },
    })
}

/// Sign-in by email needs addresses that can be proven: only a verified one names one account.
fn sign_in_identifier(
    env: &Env<impl Fn(&str) -> Option<String>>,
    mail: &MailSettings,
) -> Result<crate::users::name::Identifiers, ConfigError> {
    use crate::users::name::Identifiers;
    const NAME: &str = "KEYWARD_SIGN_IN_IDENTIFIER";
    let Some(raw) = env.get(NAME) else {
        return Ok(Identifiers::Username);
    };
    let identifiers = Identifiers::parse(&raw).map_err(|m| ConfigError::new(NAME, m))?;
    if identifiers != Identifiers::Username
        && mail.verification == crate::oauth::verification::Policy::Off
    {
        return Err(ConfigError::new(
            NAME,
            "signing in by email needs KEYWARD_EMAIL_VERIFICATION optional or required",
        ));
    }
    Ok(identifiers)
}

/// 16 bits: about 65,000 SHA-256 hashes, a few hundred milliseconds in a browser.
fn sign_in_proof_bits(env: &Env<impl Fn(&str) -> Option<String>>) -> Result<u8, ConfigError> {
    use crate::rate_limits::proof::BITS_RANGE;
    let range = u32::from(*BITS_RANGE.start())..=u32::from(*BITS_RANGE.end());
    let bits = env.number("KEYWARD_SIGN_IN_PROOF_BITS", 16, range)?;
    Ok(u8::try_from(bits).unwrap_or(*BITS_RANGE.end()))
}

/// The default refresh grace window: Okta's, and longer than relying parties' parallel requests
/// after an access token expires take to arrive.
const DEFAULT_REFRESH_REUSE_GRACE: Duration = Duration::seconds(30);

fn lockout(
    env: &Env<impl Fn(&str) -> Option<String>>,
    request_timeout: std::time::Duration,
) -> Result<LockoutPolicy, ConfigError> {
    let base = env.duration(
        "KEYWARD_LOCKOUT_BASE",
        30 * Duration::SECOND,
        POSITIVE,
        "must be above zero",
    )?;
    let max = env.duration(
        "KEYWARD_LOCKOUT_MAX",
        15 * MINUTE,
        // A longer lockout hands attackers a denial of service.
        base..=DAY,
        "at least KEYWARD_LOCKOUT_BASE and at most 24h: a longer lockout hands attackers a denial of service",
    )?;
    Ok(LockoutPolicy {
        threshold: env.number("KEYWARD_LOCKOUT_THRESHOLD", 5, 1..=100)?,
        base,
        max,
        // A sign-in waiting for a place must still be answered well within the request timeout.
        hold_wait: request_timeout / 2,
    })
}

fn tokens(env: &Env<impl Fn(&str) -> Option<String>>) -> Result<TokenSettings, ConfigError> {
    let ttl =
        |name, default| env.duration(name, default, MINUTE..=DAY, "must be between 1m and 24h");
    let refresh_idle_ttl = env.duration(
        "KEYWARD_REFRESH_IDLE_TTL",
        14 * DAY,
        MINUTE..=3650 * DAY,
        "must be at least 1m",
    )?;
    let refresh_absolute_ttl = env.duration(
        "KEYWARD_REFRESH_ABSOLUTE_TTL",
        30 * DAY,
        refresh_idle_ttl..=3650 * DAY,
        "must be at least KEYWARD_REFRESH_IDLE_TTL, which must be at least 1m",
    )?;
    // On by default: relying parties that refresh from several processes at once (Apache's
    // mod_auth_openidc has no refresh lock) present one token several times within moments, and
    // without a window the second presentation revokes the family and signs the person out.
    // The window never branches (one successor), so it only delays detecting a thief.
    let grace = env.duration(
        "KEYWARD_REFRESH_REUSE_GRACE",
        DEFAULT_REFRESH_REUSE_GRACE,
        Duration::ZERO..=5 * MINUTE,
        "at most 5m: a longer window makes a stolen predecessor useful",
    )?;
    Ok(TokenSettings {
        access_ttl: ttl("KEYWARD_ACCESS_TOKEN_TTL", 10 * MINUTE)?,
        id_ttl: ttl("KEYWARD_ID_TOKEN_TTL", HOUR)?,
        refresh_idle_ttl,
        refresh_absolute_ttl,
        refresh_reuse_grace: grace.is_positive().then_some(grace),
    })
}

fn keys(
    env: &Env<impl Fn(&str) -> Option<String>>,
    tokens: &TokenSettings,
) -> Result<KeySettings, ConfigError> {
    let kek = kek_source(env)?;
    let bits = env.number("KEYWARD_KEY_BITS", 2048, 2048..=4096)?;
    if ![2048, 3072, 4096].contains(&bits) {
        return Err(ConfigError::new(
            "KEYWARD_KEY_BITS",
            "must be 2048, 3072 or 4096",
        ));
    }
    let rotation = env.duration(
        "KEYWARD_KEY_ROTATION",
        30 * DAY,
        HOUR..=3650 * DAY,
        "must be at least 1h",
    )?;
    let jwks_max_age =
        env.duration("KEYWARD_JWKS_MAX_AGE", HOUR, POSITIVE, "must be above zero")?;
    // A verifier may cache the JWKS for max-age: a key published for less than that could sign
    // tokens the verifier cannot check yet.
    let prepublish = env.duration(
        "KEYWARD_KEY_PREPUBLISH",
        48 * HOUR,
        jwks_max_age..=3650 * DAY,
        "must be at least KEYWARD_JWKS_MAX_AGE, or verifiers with a cached JWKS reject new tokens",
    )?;
    let reload = env.duration(
        "KEYWARD_KEY_RELOAD",
        5 * Duration::SECOND,
        Duration::SECOND..=5 * MINUTE,
        "must be between 1s and 5m",
    )?;
    let schedule = SchedulePolicy {
        rotation,
        prepublish,
        // RFC 9068 tokens and ID tokens are the JWTs we sign: the longer one decides.
        token_lifetime: tokens.access_ttl.max(tokens.id_ttl) + CLOCK_LEEWAY,
    };
    Ok(KeySettings {
        kek,
        policy: KeyPolicy {
            schedule,
            bits,
            jwks_max_age,
        },
        reload: to_std(reload),
    })
}

fn kek_source(env: &Env<impl Fn(&str) -> Option<String>>) -> Result<KekSource, ConfigError> {
    match (env.get("KEYWARD_KEK"), env.get("KEYWARD_KEK_FILE")) {
        (Some(_), Some(_)) => Err(ConfigError::new(
            "KEYWARD_KEK",
            "set KEYWARD_KEK or KEYWARD_KEK_FILE, not both",
        )),
        (Some(raw), None) => decode_kek(&raw)
            .map(KekSource::Inline)
            .map_err(|m| ConfigError::new("KEYWARD_KEK", m)),
        (None, file) => Ok(KekSource::File(
            file.unwrap_or_else(|| "keys/kek".into()).into(),
        )),
    }
}

/// Parses `90`, `90s`, `15m`, `12h` or `14d` into a duration.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let (digits, unit) = raw
        .find(|c: char| !c.is_ascii_digit())
        .map_or((raw, "s"), |i| raw.split_at(i));
    let n: i64 = digits
        .parse()
        .map_err(|_| format!("'{raw}' is not a duration like 30s, 15m, 12h or 14d"))?;
    if unit == "ms" {
        return Ok(Duration::milliseconds(n));
    }
    let unit_secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "'{raw}' has an unknown unit (use ms, s, m, h or d)"
            ));
        }
    };
    n.checked_mul(unit_secs)
        .filter(|s| *s <= 3650 * 86_400)
        .map(Duration::seconds)
        .ok_or_else(|| format!("'{raw}' is too long"))
}

/// A duration in the settings' own syntax (`90s`, `10m`, `12h`, `30d`): what an operator would write.
fn shown(d: Duration) -> String {
    let secs = d.whole_seconds();
    if d.subsec_nanoseconds() != 0 || secs == 0 {
        return format!("{}ms", d.whole_milliseconds());
    }
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if secs % size == 0 {
            return format!("{}{unit}", secs / size);
        }
    }
    format!("{secs}s")
}

fn shown_std(d: std::time::Duration) -> String {
    shown(Duration::try_from(d).unwrap_or(Duration::MAX))
}

fn shown_path(path: Option<&std::path::Path>) -> String {
    path.map_or("-".to_owned(), |p| p.display().to_string())
}

fn shown_rate(rate: Option<Rate>) -> String {
    rate.map_or_else(
        || "off".to_owned(),
        |r| format!("{}/{}", r.count, shown(r.window)),
    )
}

/// A `Debug` name (`Optional`, `XForwardedFor`) as the settings spell it (`optional`,
/// `x-forwarded-for`).
fn shown_choice(choice: &impl fmt::Debug) -> String {
    let name = format!("{choice:?}");
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('-');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

impl Config {
    /// Every setting with the value in effect, in the settings' own syntax, secrets withheld
    /// (the database password, an inline KEK, SMTP credentials): what `keyward check` prints.
    #[must_use]
    pub fn effective(&self) -> Vec<(&'static str, String)> {
        let mut all = self.effective_server();
        all.extend(self.effective_storage());
        all.extend(self.effective_sign_in());
        all.extend(self.effective_tokens());
        all.sort_by_key(|(name, _)| *name);
        all
    }

    fn effective_server(&self) -> Vec<(&'static str, String)> {
        let server = &self.server;
        let proxies: Vec<String> = server
            .trusted_proxies
            .iter()
            .map(ToString::to_string)
            .collect();
        vec![
            (
                "KEYWARD_ADMIN_API",
                if server.admin_api { "on" } else { "off" }.to_owned(),
            ),
            ("KEYWARD_BIND", server.bind.to_string()),
            ("KEYWARD_HEADER_TIMEOUT", shown_std(server.header_timeout)),
            ("KEYWARD_IDLE_TIMEOUT", shown_std(server.idle_timeout)),
            ("KEYWARD_ISSUER", server.issuer.as_str().to_owned()),
            ("KEYWARD_LOG", server.log_filter.clone()),
            ("KEYWARD_LOG_FORMAT", shown_choice(&server.log_format)),
            ("KEYWARD_LOGO_FILE", shown_path(server.logo_file.as_deref())),
            ("KEYWARD_MAX_CLOCK_SKEW", shown(server.max_clock_skew)),
            (
                "KEYWARD_METRICS_BIND",
                server
                    .metrics_bind
                    .map_or("off".to_owned(), |a| a.to_string()),
            ),
            ("KEYWARD_PRODUCT_NAME", server.product_name.clone()),
            ("KEYWARD_REQUEST_TIMEOUT", shown_std(server.request_timeout)),
            ("KEYWARD_SIGNUP_ENABLED", server.signup_enabled.to_string()),
            (
                "KEYWARD_TRUSTED_PROXIES",
                if proxies.is_empty() {
                    "-".to_owned()
                } else {
                    proxies.join(",")
                },
            ),
            (
                "KEYWARD_TRUSTED_PROXY_HEADER",
                shown_choice(&server.trusted_proxy_header),
            ),
        ]
    }

    fn effective_storage(&self) -> Vec<(&'static str, String)> {
        let (smtp_url, smtp_password_file, mail_dir) = match &self.mail.route {
            Route::Smtp { url, password_file } => (
                crate::mail::transport::without_credentials(url),
                shown_path(password_file.as_deref()),
                "-".to_owned(),
            ),
            Route::Files(dir) => ("-".to_owned(), "-".to_owned(), dir.display().to_string()),
        };
        vec![
            ("DATABASE_URL", self.database.whereabouts()),
            ("KEYWARD_DB_POOL_SIZE", self.database.pool_size.to_string()),
            ("KEYWARD_DB_POOL_WAIT", shown_std(self.database.pool_wait)),
            (
                "KEYWARD_EMAIL_VERIFICATION",
                shown_choice(&self.mail.verification),
            ),
            ("KEYWARD_MAIL_DIR", mail_dir),
            ("KEYWARD_MAIL_FROM", self.mail.from.to_string()),
            ("KEYWARD_MAIL_RETRY_FOR", shown(self.mail.retry_for)),
            ("KEYWARD_SMTP_PASSWORD_FILE", smtp_password_file),
            ("KEYWARD_SMTP_URL", smtp_url),
        ]
    }

    fn effective_sign_in(&self) -> Vec<(&'static str, String)> {
        let (passwords, limits) = (&self.passwords, &self.limits);
        let lockout = &passwords.lockout;
        vec![
            (
                "KEYWARD_ARGON2_ITERATIONS",
                passwords.argon2.iterations.to_string(),
            ),
            (
                "KEYWARD_ARGON2_MEMORY_KIB",
                passwords.argon2.memory_kib.to_string(),
            ),
            (
                "KEYWARD_ARGON2_PARALLELISM",
                passwords.argon2.parallelism.to_string(),
            ),
            (
                "KEYWARD_HASH_CONCURRENCY",
                passwords.hash_concurrency.to_string(),
            ),
            ("KEYWARD_HASH_QUEUE", passwords.hash_queue.to_string()),
            (
                "KEYWARD_LIMIT_ADMIN_PER_CLIENT",
                shown_rate(limits.admin_per_client),
            ),
            (
                "KEYWARD_LIMIT_MAIL_PER_ACCOUNT",
                shown_rate(limits.mail_per_account),
            ),
            ("KEYWARD_LIMIT_MAIL_PER_IP", shown_rate(limits.mail_per_ip)),
            (
                "KEYWARD_LIMIT_SIGN_IN_GLOBAL",
                shown_rate(limits.sign_in_global),
            ),
            (
                "KEYWARD_LIMIT_SIGN_IN_PER_IP",
                shown_rate(limits.sign_in_per_ip),
            ),
            (
                "KEYWARD_LIMIT_SIGN_UP_PER_IP",
                shown_rate(limits.sign_up_per_ip),
            ),
            (
                "KEYWARD_LIMIT_TOKEN_PER_CLIENT",
                shown_rate(limits.token_per_client),
            ),
            (
                "KEYWARD_LIMIT_TOKEN_PER_IP",
                shown_rate(limits.token_per_ip),
            ),
            ("KEYWARD_LOCKOUT_BASE", shown(lockout.base)),
            ("KEYWARD_LOCKOUT_MAX", shown(lockout.max)),
            ("KEYWARD_LOCKOUT_THRESHOLD", lockout.threshold.to_string()),
            ("KEYWARD_MFA", shown_choice(&passwords.mfa)),
            (
                "KEYWARD_SIGN_IN_IDENTIFIER",
                shown_choice(&passwords.sign_in_identifier),
            ),
            (
                "KEYWARD_SIGN_IN_PROOF_BITS",
                passwords.sign_in_proof_bits.to_string(),
            ),
        ]
    }

    fn effective_tokens(&self) -> Vec<(&'static str, String)> {
        let (keys, tokens) = (&self.keys, &self.tokens);
        let (kek, kek_file) = match &keys.kek {
            KekSource::Inline(_) => ("(set)".to_owned(), "-".to_owned()),
            KekSource::File(path) => ("-".to_owned(), path.display().to_string()),
        };
        vec![
            ("KEYWARD_ACCESS_TOKEN_TTL", shown(tokens.access_ttl)),
            ("KEYWARD_ID_TOKEN_TTL", shown(tokens.id_ttl)),
            ("KEYWARD_JWKS_MAX_AGE", shown(keys.policy.jwks_max_age)),
            ("KEYWARD_KEK", kek),
            ("KEYWARD_KEK_FILE", kek_file),
            ("KEYWARD_KEY_BITS", keys.policy.bits.to_string()),
            (
                "KEYWARD_KEY_PREPUBLISH",
                shown(keys.policy.schedule.prepublish),
            ),
            ("KEYWARD_KEY_RELOAD", shown_std(keys.reload)),
            ("KEYWARD_KEY_ROTATION", shown(keys.policy.schedule.rotation)),
            (
                "KEYWARD_REFRESH_ABSOLUTE_TTL",
                shown(tokens.refresh_absolute_ttl),
            ),
            ("KEYWARD_REFRESH_IDLE_TTL", shown(tokens.refresh_idle_ttl)),
            (
                "KEYWARD_REFRESH_REUSE_GRACE",
                tokens.refresh_reuse_grace.map_or("off".to_owned(), shown),
            ),
            (
                "KEYWARD_SESSION_ABSOLUTE_TTL",
                shown(self.sessions.lifetimes.absolute),
            ),
            (
                "KEYWARD_SESSION_IDLE_TTL",
                shown(self.sessions.lifetimes.idle),
            ),
            (
                "KEYWARD_SESSION_PRE_SIGN_IN_TTL",
                shown(self.sessions.lifetimes.pre_sign_in),
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_with(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let owned: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| {
            owned
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    const DB: (&str, &str) = ("DATABASE_URL", "postgres://u:p@127.0.0.1/db");

    #[test]
    fn defaults_serve_on_loopback_with_owasp_argon2() {
        let config = Config::from_env(env_with(&[DB])).expect("defaults are valid");
        assert_eq!(config.server.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(config.server.issuer.as_str(), "http://127.0.0.1:8080");
        assert_eq!(config.passwords.argon2, Argon2Settings::OWASP);
        assert!(config.server.signup_enabled);
        assert_eq!(config.tokens.access_ttl, 10 * MINUTE);
        assert_eq!(config.sessions.lifetimes.idle, 12 * HOUR);
        assert_eq!(config.sessions.lifetimes.absolute, 7 * DAY);
        assert_eq!(config.keys.policy.schedule.rotation, 30 * DAY);
        assert_eq!(
            config.tokens.refresh_reuse_grace,
            Some(30 * Duration::SECOND)
        );
    }

    #[test]
    fn missing_database_url_names_the_setting() {
        let err = Config::from_env(env_with(&[])).expect_err("must fail");
        assert_eq!(err.setting, "DATABASE_URL");
    }

    #[test]
    fn bad_values_name_their_setting() {
        for (name, value) in [
            ("KEYWARD_BIND", "nope"),
            ("KEYWARD_ISSUER", "http://example.com"),
            ("KEYWARD_ISSUER", "https://example.com/?x=1"),
            ("KEYWARD_ARGON2_MEMORY_KIB", "4"),
            ("KEYWARD_ARGON2_MEMORY_KIB", "10000000"),
            ("KEYWARD_SIGNUP_ENABLED", "maybe"),
            ("KEYWARD_SESSION_IDLE_TTL", "5x"),
            ("KEYWARD_SESSION_IDLE_TTL", "30s"),
            ("KEYWARD_SESSION_ABSOLUTE_TTL", "1h"),
            ("KEYWARD_LOCKOUT_MAX", "100d"),
            ("KEYWARD_LOCKOUT_MAX", "10s"),
            ("KEYWARD_KEK", "c2hvcnQ"),
            ("KEYWARD_KEY_BITS", "1024"),
            ("KEYWARD_KEY_BITS", "3000"),
            ("KEYWARD_KEY_PREPUBLISH", "10m"),
            ("KEYWARD_KEY_RELOAD", "0"),
            ("KEYWARD_ACCESS_TOKEN_TTL", "2d"),
            ("KEYWARD_REFRESH_REUSE_GRACE", "10m"),
            ("KEYWARD_REFRESH_ABSOLUTE_TTL", "1d"),
            ("KEYWARD_REQUEST_TIMEOUT", "0"),
        ] {
            let err = Config::from_env(env_with(&[DB, (name, value)])).expect_err(value);
            assert_eq!(err.setting, name, "{value}");
        }
        // Signing in by an address nobody can prove is refused.
        let off = [
            DB,
            ("KEYWARD_EMAIL_VERIFICATION", "off"),
            ("KEYWARD_SIGN_IN_IDENTIFIER", "either"),
        ];
        let err = Config::from_env(env_with(&off)).expect_err("by email without verification");
        assert_eq!(err.setting, "KEYWARD_SIGN_IN_IDENTIFIER");
    }

    #[test]
    fn issuer_is_kept_without_trailing_slash_and_https_detected() {
        let issuer = Issuer::parse("https://id.example.com/").expect("valid");
        assert_eq!(issuer.as_str(), "https://id.example.com");
        assert!(issuer.is_https());
        assert!(
            !Issuer::parse("http://localhost:8080")
                .expect("valid")
                .is_https()
        );
    }

    #[test]
    fn durations_accept_units_and_reject_garbage() {
        assert_eq!(parse_duration("90"), Ok(Duration::seconds(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::milliseconds(250)));
        assert_eq!(parse_duration("15m"), Ok(15 * MINUTE));
        assert_eq!(parse_duration("2d"), Ok(2 * DAY));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("1w").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("99999999999d").is_err());
    }

    #[test]
    fn the_key_schedule_keeps_retired_keys_for_the_longest_token_plus_leeway() {
        let config = Config::from_env(env_with(&[DB, ("KEYWARD_ID_TOKEN_TTL", "2h")])).expect("ok");
        assert_eq!(
            config.keys.policy.schedule.token_lifetime,
            2 * HOUR + CLOCK_LEEWAY
        );
    }

    #[test]
    fn debug_never_shows_the_kek() {
        let config =
            Config::from_env(env_with(&[DB, ("KEYWARD_KEK", &"A".repeat(43))])).expect("valid");
        let shown = format!("{config:?}");
        assert!(shown.contains("Inline(<redacted>)"), "{shown}");
        assert!(!shown.contains("AAAA"));
    }

    #[test]
    fn debug_never_shows_the_database_url() {
        let config = Config::from_env(env_with(&[DB])).expect("valid");
        assert!(!format!("{config:?}").contains("u:p@"));
    }

    /// Every `KEYWARD_*` name this file and the rate limits read.
    fn every_setting() -> std::collections::BTreeSet<&'static str> {
        let sources = [
            include_str!("config.rs"),
            include_str!("rate_limits/mod.rs"),
        ];
        sources
            .iter()
            .flat_map(|s| s.split('"').skip(1).step_by(2))
            .filter(|p| {
                p.starts_with("KEYWARD_")
                    && p.len() > "KEYWARD_".len()
                    && p.chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            })
            .collect()
    }

    #[test]
    fn the_list_of_settings_is_exactly_what_the_code_reads() {
        let read: std::collections::BTreeSet<&str> = every_setting()
            .into_iter()
            .filter(|n| !TOOL_VARIABLES.contains(n))
            .collect();
        let mut listed: std::collections::BTreeSet<&str> = SETTINGS.iter().copied().collect();
        listed.remove("DATABASE_URL");
        assert_eq!(read, listed);
    }

    #[test]
    fn the_effective_settings_name_every_setting_and_no_secret() {
        let kek = "a2V5d2FyZC1rZXl3YXJkLWtleXdhcmQta2V5d2FyZCE=";
        let config = Config::from_env(|name| match name {
            "DATABASE_URL" => Some("postgres://keyward:hunter2@db.internal:6543/kw".into()),
            "KEYWARD_KEK" => Some(kek.into()),
            "KEYWARD_LIMIT_SIGN_UP_PER_IP" => Some("off".into()),
            _ => None,
        })
        .expect("valid");
        let shown = config.effective();
        let names: Vec<&str> = shown.iter().map(|(n, _)| *n).collect();
        let mut expected = SETTINGS.to_vec();
        expected.sort_unstable();
        assert_eq!(names, expected);
        let all = format!("{shown:?}");
        assert!(!all.contains("hunter2") && !all.contains(kek), "{all}");
        let value = |n: &str| shown.iter().find(|(k, _)| *k == n).map(|(_, v)| v.clone());
        assert_eq!(value("KEYWARD_ACCESS_TOKEN_TTL").as_deref(), Some("10m"));
        assert_eq!(
            value("KEYWARD_LIMIT_SIGN_UP_PER_IP").as_deref(),
            Some("off")
        );
        assert_eq!(
            value("KEYWARD_TRUSTED_PROXY_HEADER").as_deref(),
            Some("x-forwarded-for")
        );
        assert!(value("DATABASE_URL").is_some_and(|v| v.contains("db.internal:6543")));
    }

    #[test]
    fn every_bad_variable_is_reported_at_once() {
        let env = env_with(&[
            DB,
            ("KEYWARD_BIND", "nope"),
            ("KEYWARD_ACCESS_TOKEN_TTL", "5x"),
            ("KEYWARD_LIMIT_TOKEN_PER_IP", "lots"),
        ]);
        let errors = Config::from_env_reporting_all(env).expect_err("three are bad");
        let mut named: Vec<&str> = errors.0.iter().map(|e| e.setting).collect();
        named.sort_unstable();
        assert_eq!(
            named,
            [
                "KEYWARD_ACCESS_TOKEN_TTL",
                "KEYWARD_BIND",
                "KEYWARD_LIMIT_TOKEN_PER_IP"
            ]
        );
        assert!(Config::from_env_reporting_all(env_with(&[DB])).is_ok());
    }

    #[test]
    fn an_unknown_variable_is_named_with_the_closest_setting() {
        let names = [
            "KEYWARD_SMTP_UR",
            "KEYWARD_LOG",
            "KEYWARD_PG_PORT",
            "PATH",
            "KEYWARD_ISUER",
        ];
        let warnings = unknown_settings(names.iter().map(ToString::to_string));
        assert_eq!(
            warnings,
            [
                "KEYWARD_ISUER is not a setting and is ignored; did you mean KEYWARD_ISSUER?",
                "KEYWARD_SMTP_UR is not a setting and is ignored; did you mean KEYWARD_SMTP_URL?",
            ]
        );
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        let err =
            Config::from_env(env_with(&[DB, ("KEYWARD_LOG", "verbose")])).expect_err("silent");
        assert_eq!(err.setting, "KEYWARD_LOG");
    }

    #[test]
    fn every_setting_refuses_absurd_values_by_name_and_never_panics() {
        let absurd = [
            "0",
            "-1",
            "18446744073709551615",
            "1e12",
            "garbage",
            "9999999999d",
        ];
        let names = every_setting();
        assert!(names.len() > 30, "the walk found the settings: {names:?}");
        for name in names {
            for value in absurd {
                let read =
                    std::panic::catch_unwind(|| Config::from_env(env_with(&[DB, (name, value)])));
                let read = read.unwrap_or_else(|_| panic!("{name}={value} panicked"));
                if let Err(e) = read {
                    assert_eq!(e.setting, name, "{name}={value} blamed another setting");
                }
            }
        }
        // What used to start and then abort (a capacity overflow, a 24 TB queue) or spawn a
        // thread per unit is refused at once, naming the setting.
        for (name, value) in [
            ("KEYWARD_HASH_QUEUE", "18446744073709551615"),
            ("KEYWARD_HASH_QUEUE", "1000000000000"),
            ("KEYWARD_HASH_QUEUE", "0"),
            ("KEYWARD_HASH_CONCURRENCY", "1000000"),
            ("KEYWARD_HASH_CONCURRENCY", "0"),
            ("KEYWARD_TRUSTED_PROXY_HEADER", "x-real-ip"),
            ("KEYWARD_EMAIL_VERIFICATION", "sometimes"),
            ("KEYWARD_SIGN_IN_IDENTIFIER", "phone"),
        ] {
            let err = Config::from_env(env_with(&[DB, (name, value)])).expect_err(value);
            assert_eq!(err.setting, name, "{value}");
        }
    }
}
