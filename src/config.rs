//! Typed settings read once from the environment and validated before anything starts.

use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::ops::RangeInclusive;
use std::time::Duration;

use url::Url;

/// A setting that could not be used, with the variable it came from.
#[derive(Debug, thiserror::Error)]
#[error("{setting}: {message}")]
pub struct ConfigError {
    /// The environment variable at fault.
    pub setting: &'static str,
    /// What is wrong with its value.
    pub message: String,
}

impl ConfigError {
    fn new(setting: &'static str, message: impl Into<String>) -> Self {
        Self {
            setting,
            message: message.into(),
        }
    }
}

/// Everything Keyward can be told from outside; built by [`Config::from_env`].
#[derive(Clone)]
pub struct Config {
    /// `KEYWARD_ISSUER`: the public base URL, exactly as tokens and discovery will name it.
    pub issuer: Issuer,
    /// `KEYWARD_BIND`: the socket address to listen on.
    pub bind: SocketAddr,
    /// `DATABASE_URL`: the PostgreSQL connection URL (may hold a password; never logged).
    pub database_url: String,
    /// `KEYWARD_DB_POOL_SIZE`: how many database connections this process keeps at most.
    pub db_pool_size: usize,
    /// `KEYWARD_ARGON2_MEMORY_KIB`, `KEYWARD_ARGON2_ITERATIONS`, `KEYWARD_ARGON2_PARALLELISM`.
    pub argon2: Argon2Settings,
    /// `KEYWARD_HASH_CONCURRENCY`: password hashes computed at once (default: the core count).
    pub hash_concurrency: NonZeroUsize,
    /// `KEYWARD_HASH_QUEUE`: sign-ins allowed to wait for a hashing slot before we answer 503.
    pub hash_queue: NonZeroUsize,
    /// `KEYWARD_SIGNUP_ENABLED`: whether the public sign-up page exists.
    pub signup_enabled: bool,
    /// `KEYWARD_SESSION_TTL`: a browser session ends after this long without a request.
    pub session_ttl: Duration,
    /// `KEYWARD_LOCKOUT_THRESHOLD`: consecutive failures before sign-in is throttled.
    pub lockout_threshold: u32,
    /// `KEYWARD_LOCKOUT_BASE`: the first lockout; each further failure doubles it.
    pub lockout_base: Duration,
    /// `KEYWARD_LOCKOUT_MAX`: the longest lockout, so nobody is locked out for good.
    pub lockout_max: Duration,
    /// `KEYWARD_REQUEST_TIMEOUT`: a request still running after this gets 408.
    pub request_timeout: Duration,
    /// `KEYWARD_HEADER_TIMEOUT`: a client must send its request headers within this.
    pub header_timeout: Duration,
    /// `KEYWARD_LOG`: a tracing filter such as `info` or `keyward=debug,info`.
    pub log_filter: String,
    /// `KEYWARD_KEK` (base64) or `KEYWARD_KEK_FILE` (default `keys/kek`): seals signing keys.
    pub kek: KekSource,
    /// `KEYWARD_KEY_BITS`: RSA modulus size of new signing keys (2048, 3072 or 4096).
    pub key_bits: u32,
    /// `KEYWARD_KEY_ROTATION`: how long each signing key signs before the next takes over.
    pub key_rotation: Duration,
    /// `KEYWARD_KEY_PREPUBLISH`: a new key is in the JWKS at least this long before it signs.
    pub key_prepublish: Duration,
    /// `KEYWARD_JWKS_MAX_AGE`: the longest `Cache-Control: max-age` the JWKS is served with.
    pub jwks_max_age: Duration,
    /// `KEYWARD_KEY_RELOAD`: how often each instance checks the key set for changes.
    pub key_reload: Duration,
    /// `KEYWARD_ACCESS_TOKEN_TTL`: lifetime of access tokens.
    pub access_token_ttl: Duration,
    /// `KEYWARD_ID_TOKEN_TTL`: lifetime of ID tokens.
    pub id_token_ttl: Duration,
    /// `KEYWARD_REFRESH_IDLE_TTL`: a refresh token unused this long expires.
    pub refresh_idle_ttl: Duration,
    /// `KEYWARD_REFRESH_ABSOLUTE_TTL`: no refresh token of a family outlives this, from sign-in.
    pub refresh_absolute_ttl: Duration,
    /// `KEYWARD_REFRESH_REUSE_GRACE`: how long the immediate predecessor may be presented again
    /// and get the same successor (`0`, the default, turns the grace window off).
    pub refresh_reuse_grace: Option<Duration>,
}

/// Where the key-encryption key comes from.
#[derive(Clone)]
pub enum KekSource {
    /// Given inline (`KEYWARD_KEK`), already decoded.
    Inline([u8; 32]),
    /// Read from (or, on first start, created in) this file.
    File(std::path::PathBuf),
}

impl fmt::Debug for KekSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Inline(_) => f.write_str("Inline(<redacted>)"),
            Self::File(p) => f.debug_tuple("File").field(p).finish(),
        }
    }
}

/// Decodes a base64 (standard or URL-safe, padding optional) 32-byte key.
pub fn decode_kek(raw: &str) -> Result<[u8; 32], String> {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    let trimmed = raw.trim().trim_end_matches('=');
    let bytes = STANDARD_NO_PAD
        .decode(trimmed)
        .or_else(|_| URL_SAFE_NO_PAD.decode(trimmed))
        .map_err(|_| "is not base64".to_owned())?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| format!("must decode to 32 bytes, got {}", bytes.len()))
}

/// Argon2id cost parameters for new password hashes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Argon2Settings {
    /// Memory in KiB (OWASP: 19456).
    pub memory_kib: u32,
    /// Passes over memory (OWASP: 2).
    pub iterations: u32,
    /// Lanes (OWASP: 1).
    pub parallelism: u32,
}

impl Argon2Settings {
    /// OWASP's recommended argon2id parameters (Password Storage Cheat Sheet).
    pub const OWASP: Self = Self {
        memory_kib: 19_456,
        iterations: 2,
        parallelism: 1,
    };
    /// The largest memory cost we configure or agree to verify (256 MiB).
    pub const MAX_MEMORY_KIB: u32 = 262_144;
    /// The most passes we configure or agree to verify.
    pub const MAX_ITERATIONS: u32 = 16;
    /// The most lanes we configure or agree to verify.
    pub const MAX_PARALLELISM: u32 = 16;

    /// Whether these parameters are within the bounds this server will ever compute.
    #[must_use]
    pub fn is_within_bounds(&self) -> bool {
        (1..=Self::MAX_PARALLELISM).contains(&self.parallelism)
            && (1..=Self::MAX_ITERATIONS).contains(&self.iterations)
            // Argon2 needs at least 8 KiB per lane.
            && self.memory_kib >= 8 * self.parallelism
            && self.memory_kib <= Self::MAX_MEMORY_KIB
    }
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
            "http" if is_loopback_host(&url) => {}
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

fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The database URL may carry a password: show only that it is set.
        f.debug_struct("Config")
            .field("issuer", &self.issuer)
            .field("bind", &self.bind)
            .field("database_url", &"<set>")
            .field("db_pool_size", &self.db_pool_size)
            .field("argon2", &self.argon2)
            .field("signup_enabled", &self.signup_enabled)
            .field("session_ttl", &self.session_ttl)
            .field("kek", &self.kek)
            .field("key_bits", &self.key_bits)
            .field("key_rotation", &self.key_rotation)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Reads every setting from the process environment.
    pub fn from_process_env() -> Result<Self, ConfigError> {
        Self::from_env(|name| std::env::var(name).ok())
    }

    /// Reads every setting through `env`, so tests can pass their own variables.
    #[allow(
        clippy::too_many_lines,
        reason = "one flat list of settings reads best in one place"
    )]
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| env(name).filter(|v| !v.trim().is_empty());

        let issuer_raw = get("KEYWARD_ISSUER").unwrap_or_else(|| "http://127.0.0.1:8080".into());
        let issuer =
            Issuer::parse(issuer_raw.trim()).map_err(|m| ConfigError::new("KEYWARD_ISSUER", m))?;
        let bind = parse_or(
            "KEYWARD_BIND",
            get("KEYWARD_BIND"),
            "127.0.0.1:8080".parse().ok(),
        )?;
        let database_url = get("DATABASE_URL").ok_or_else(|| {
            ConfigError::new(
                "DATABASE_URL",
                "not set (e.g. postgres://keyward:secret@127.0.0.1:5432/keyward; `make run` sets it)",
            )
        })?;
        if !(database_url.starts_with("postgres://") || database_url.starts_with("postgresql://")) {
            return Err(ConfigError::new(
                "DATABASE_URL",
                "must start with postgres:// or postgresql://",
            ));
        }
        // A whole number within bounds, named by its variable when it is not.
        let number = |name: &'static str, default: u32, range: RangeInclusive<u32>| {
            let value: u32 = parse_or(name, get(name), Some(default))?;
            if range.contains(&value) {
                Ok(value)
            } else {
                Err(ConfigError::new(
                    name,
                    format!("must be between {} and {}", range.start(), range.end()),
                ))
            }
        };
        let db_pool_size = number("KEYWARD_DB_POOL_SIZE", 16, 1..=1000)? as usize;
        let argon2 = Argon2Settings {
            memory_kib: number(
                "KEYWARD_ARGON2_MEMORY_KIB",
                Argon2Settings::OWASP.memory_kib,
                8..=Argon2Settings::MAX_MEMORY_KIB,
            )?,
            iterations: number(
                "KEYWARD_ARGON2_ITERATIONS",
                Argon2Settings::OWASP.iterations,
                1..=Argon2Settings::MAX_ITERATIONS,
            )?,
            parallelism: number(
                "KEYWARD_ARGON2_PARALLELISM",
                Argon2Settings::OWASP.parallelism,
                1..=Argon2Settings::MAX_PARALLELISM,
            )?,
        };
        if !argon2.is_within_bounds() {
            return Err(ConfigError::new(
                "KEYWARD_ARGON2_MEMORY_KIB",
                "must be at least 8 KiB per lane (KEYWARD_ARGON2_PARALLELISM)",
            ));
        }

        let cores = std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN);
        let hash_concurrency: NonZeroUsize = parse_or(
            "KEYWARD_HASH_CONCURRENCY",
            get("KEYWARD_HASH_CONCURRENCY"),
            Some(cores),
        )?;
        let hash_queue: NonZeroUsize = parse_or(
            "KEYWARD_HASH_QUEUE",
            get("KEYWARD_HASH_QUEUE"),
            hash_concurrency.checked_mul(NonZeroUsize::new(16).unwrap_or(NonZeroUsize::MIN)),
        )?;

        let signup_enabled = match get("KEYWARD_SIGNUP_ENABLED").as_deref().map(str::trim) {
            None | Some("true" | "1" | "yes" | "on") => true,
            Some("false" | "0" | "no" | "off") => false,
            Some(other) => {
                return Err(ConfigError::new(
                    "KEYWARD_SIGNUP_ENABLED",
                    format!("expected true or false, got '{other}'"),
                ));
            }
        };

        let duration = |name: &'static str, default: Duration| -> Result<Duration, ConfigError> {
            match get(name) {
                None => Ok(default),
                Some(raw) => parse_duration(raw.trim()).map_err(|m| ConfigError::new(name, m)),
            }
        };
        let session_ttl = duration("KEYWARD_SESSION_TTL", Duration::from_secs(12 * 3600))?;
        let lockout_base = duration("KEYWARD_LOCKOUT_BASE", Duration::from_secs(30))?;
        let lockout_max = duration("KEYWARD_LOCKOUT_MAX", Duration::from_secs(15 * 60))?;
        let request_timeout = duration("KEYWARD_REQUEST_TIMEOUT", Duration::from_secs(30))?;
        let header_timeout = duration("KEYWARD_HEADER_TIMEOUT", Duration::from_secs(10))?;
        if session_ttl < Duration::from_secs(60) {
            return Err(ConfigError::new(
                "KEYWARD_SESSION_TTL",
                "must be at least 60s",
            ));
        }
        if lockout_base.is_zero() || lockout_max < lockout_base {
            return Err(ConfigError::new(
                "KEYWARD_LOCKOUT_MAX",
                "must be at least KEYWARD_LOCKOUT_BASE, which must be above zero",
            ));
        }
        if lockout_max > Duration::from_secs(24 * 3600) {
            return Err(ConfigError::new(
                "KEYWARD_LOCKOUT_MAX",
                "at most 24h: a longer lockout hands attackers a denial of service",
            ));
        }
        if request_timeout.is_zero() || header_timeout.is_zero() {
            return Err(ConfigError::new(
                "KEYWARD_REQUEST_TIMEOUT",
                "timeouts must be above zero",
            ));
        }
        let lockout_threshold = number("KEYWARD_LOCKOUT_THRESHOLD", 5, 1..=100)?;

        let kek = match (get("KEYWARD_KEK"), get("KEYWARD_KEK_FILE")) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    "KEYWARD_KEK",
                    "set KEYWARD_KEK or KEYWARD_KEK_FILE, not both",
                ));
            }
            (Some(raw), None) => {
                KekSource::Inline(decode_kek(&raw).map_err(|m| ConfigError::new("KEYWARD_KEK", m))?)
            }
            (None, file) => KekSource::File(file.unwrap_or_else(|| "keys/kek".into()).into()),
        };
        let key_bits = number("KEYWARD_KEY_BITS", 2048, 2048..=4096)?;
        if ![2048, 3072, 4096].contains(&key_bits) {
            return Err(ConfigError::new(
                "KEYWARD_KEY_BITS",
                "must be 2048, 3072 or 4096",
            ));
        }
        let key_rotation = duration("KEYWARD_KEY_ROTATION", Duration::from_secs(30 * 86_400))?;
        let key_prepublish = duration("KEYWARD_KEY_PREPUBLISH", Duration::from_secs(48 * 3600))?;
        let jwks_max_age = duration("KEYWARD_JWKS_MAX_AGE", Duration::from_secs(3600))?;
        let key_reload = duration("KEYWARD_KEY_RELOAD", Duration::from_secs(5))?;
        let access_token_ttl = duration("KEYWARD_ACCESS_TOKEN_TTL", Duration::from_secs(600))?;
        let id_token_ttl = duration("KEYWARD_ID_TOKEN_TTL", Duration::from_secs(3600))?;
        // A verifier may cache the JWKS for max-age: a key published for less than that could
        // sign tokens the verifier cannot check yet.
        if key_prepublish < jwks_max_age {
            return Err(ConfigError::new(
                "KEYWARD_KEY_PREPUBLISH",
                "must be at least KEYWARD_JWKS_MAX_AGE, or verifiers with a cached JWKS reject new tokens",
            ));
        }
        if key_rotation < Duration::from_secs(3600) {
            return Err(ConfigError::new(
                "KEYWARD_KEY_ROTATION",
                "must be at least 1h",
            ));
        }
        if key_reload.is_zero() || key_reload > Duration::from_secs(300) {
            return Err(ConfigError::new(
                "KEYWARD_KEY_RELOAD",
                "must be between 1s and 5m",
            ));
        }
        let refresh_idle_ttl =
            duration("KEYWARD_REFRESH_IDLE_TTL", Duration::from_secs(14 * 86_400))?;
        let refresh_absolute_ttl = duration(
            "KEYWARD_REFRESH_ABSOLUTE_TTL",
            Duration::from_secs(30 * 86_400),
        )?;
        let grace = duration("KEYWARD_REFRESH_REUSE_GRACE", Duration::ZERO)?;
        if grace > Duration::from_secs(300) {
            return Err(ConfigError::new(
                "KEYWARD_REFRESH_REUSE_GRACE",
                "at most 5m: a longer window makes a stolen predecessor useful",
            ));
        }
        let refresh_reuse_grace = (!grace.is_zero()).then_some(grace);
        if refresh_idle_ttl < Duration::from_secs(60) || refresh_absolute_ttl < refresh_idle_ttl {
            return Err(ConfigError::new(
                "KEYWARD_REFRESH_ABSOLUTE_TTL",
                "must be at least KEYWARD_REFRESH_IDLE_TTL, which must be at least 1m",
            ));
        }
        for (name, ttl) in [
            ("KEYWARD_ACCESS_TOKEN_TTL", access_token_ttl),
            ("KEYWARD_ID_TOKEN_TTL", id_token_ttl),
        ] {
            if ttl < Duration::from_secs(60) || ttl > Duration::from_secs(86_400) {
                return Err(ConfigError::new(name, "must be between 1m and 24h"));
            }
        }

        Ok(Self {
            issuer,
            bind,
            database_url,
            db_pool_size,
            argon2,
            hash_concurrency,
            hash_queue,
            signup_enabled,
            session_ttl,
            lockout_threshold,
            lockout_base,
            lockout_max,
            request_timeout,
            header_timeout,
            log_filter: get("KEYWARD_LOG").unwrap_or_else(|| "info".into()),
            kek,
            key_bits,
            key_rotation,
            key_prepublish,
            jwks_max_age,
            key_reload,
            access_token_ttl,
            id_token_ttl,
            refresh_idle_ttl,
            refresh_absolute_ttl,
            refresh_reuse_grace,
        })
    }
}

fn parse_or<T: std::str::FromStr>(
    name: &'static str,
    raw: Option<String>,
    default: Option<T>,
) -> Result<T, ConfigError> {
    match raw {
        Some(raw) => raw
            .trim()
            .parse()
            .map_err(|_| ConfigError::new(name, format!("cannot parse '{}'", raw.trim()))),
        None => default.ok_or_else(|| ConfigError::new(name, "not set")),
    }
}

/// Parses `90`, `90s`, `15m`, `12h` or `14d` into a duration.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let (digits, unit) = raw
        .find(|c: char| !c.is_ascii_digit())
        .map_or((raw, "s"), |i| raw.split_at(i));
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("'{raw}' is not a duration like 30s, 15m, 12h or 14d"))?;
    let unit_secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("'{raw}' has an unknown unit (use s, m, h or d)")),
    };
    n.checked_mul(unit_secs)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("'{raw}' is too long"))
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
        assert_eq!(config.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(config.issuer.as_str(), "http://127.0.0.1:8080");
        assert_eq!(config.argon2, Argon2Settings::OWASP);
        assert!(config.signup_enabled);
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
            ("KEYWARD_SESSION_TTL", "5x"),
            ("KEYWARD_LOCKOUT_MAX", "100d"),
            ("KEYWARD_KEK", "c2hvcnQ"),
            ("KEYWARD_KEY_BITS", "1024"),
            ("KEYWARD_KEY_BITS", "3000"),
            ("KEYWARD_KEY_PREPUBLISH", "10m"),
            ("KEYWARD_ACCESS_TOKEN_TTL", "2d"),
        ] {
            let err = Config::from_env(env_with(&[DB, (name, value)])).expect_err(value);
            assert_eq!(err.setting, name, "{value}");
        }
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
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("1w").is_err());
        assert!(parse_duration("m").is_err());
    }

    #[test]
    fn a_kek_decodes_from_either_base64_alphabet() {
        use base64::Engine as _;
        let key = [0xfb_u8; 32];
        let std = base64::engine::general_purpose::STANDARD.encode(key);
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key);
        assert_eq!(decode_kek(&std), Ok(key));
        assert_eq!(decode_kek(&format!("{url}\n")), Ok(key));
        assert!(decode_kek("not base64!").is_err());
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
}
