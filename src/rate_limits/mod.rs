//! Rate limits on what attackers repeat (failed sign-ins, failed client authentication and
//! redemptions, sign-ups), counted in PostgreSQL so every instance shares them.
//!
//! Each limit is a generic cell rate algorithm (GCRA): one timestamp per key, the "theoretical
//! arrival time", moved on by `window / count` at each event, never more than a window ahead of
//! now. A burst of `count` events is allowed, then one per interval. Two ways to count:
//! - [`Limits::take`] before the work (sign-ups, new pre-sign-in sessions): one conditional upsert
//!   that counts the attempt only if it is within the limit, so parallel attempts cannot slip
//!   past it.
//! - [`Limits::record`] after a failure (sign-ins, client authentication, redemptions): a
//!   success costs nothing, and the hot path of `/token` never waits for the database. The check before such a request is a lookup in this
//!   instance's map of blocked keys; requests already in flight when a key becomes blocked are
//!   still judged (at most the connection pool's worth), and another instance learns of a block
//!   at its first failure for that key (at most `n - 1` more per interval across `n` instances).
//!
//! No crate keeps GCRA state in PostgreSQL; `governor` keeps it per process, which would multiply
//! every limit by the number of instances.

pub mod proof;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use diesel::sql_types::{BigInt, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use time::{Duration, OffsetDateTime};

use crate::audit::{self, NewAuditEvent};
use crate::metrics::Metrics;

/// The limits, each with its own key space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Limit {
    /// Failed sign-ins (page and password grant) per client address.
    SignInPerIp,
    /// Failed sign-ins across all addresses (distributed spraying).
    SignInGlobal,
    /// Failed client authentication and failed code or refresh-token redemptions per address, at
    /// `/token`, `/introspect` and `/revoke`.
    TokenPerIp,
    /// Failed code or refresh-token redemptions per authenticated confidential client.
    TokenPerClient,
    /// Sign-up attempts per address.
    SignUpPerIp,
    /// Mail a person asks for (codes sent again, password resets) per account: no mail bombing.
    MailPerAccount,
    /// The same per address.
    MailPerIp,
    /// Management API calls per client: a leaked management token cannot empty the user table
    /// at line speed.
    AdminPerClient,
}

impl Limit {
    /// The name in settings, audit events and keys.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SignInPerIp => "sign_in_per_ip",
            Self::SignInGlobal => "sign_in_global",
            Self::TokenPerIp => "token_per_ip",
            Self::TokenPerClient => "token_per_client",
            Self::SignUpPerIp => "sign_up_per_ip",
            Self::MailPerAccount => "mail_per_account",
            Self::MailPerIp => "mail_per_ip",
            Self::AdminPerClient => "admin_per_client",
        }
    }
}

/// `count` events per `window`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Events allowed in a burst.
    pub count: u32,
    /// The window they are spread over.
    pub window: Duration,
}

impl Rate {
    /// Parses `COUNT/WINDOW` (e.g. `20/10m`), with the window in the settings' duration syntax.
    pub fn parse(
        raw: &str,
        parse_duration: impl Fn(&str) -> Result<Duration, String>,
    ) -> Result<Self, String> {
        let (count, window) = raw
            .split_once('/')
            .ok_or_else(|| format!("'{raw}' is not COUNT/WINDOW (e.g. 20/10m) or off"))?;
        let count: u32 = count
            .trim()
            .parse()
            .map_err(|_| format!("'{count}' is not a whole number"))?;
        let window = parse_duration(window.trim())?;
        if count == 0 || count > 1_000_000 {
            return Err("the count must be between 1 and 1000000".into());
        }
        if window < Duration::SECOND || window > Duration::DAY {
            return Err("the window must be between 1s and 1d".into());
        }
        Ok(Self { count, window })
    }

    /// The time one event moves the key on.
    fn interval(self) -> Duration {
        self.window / self.count
    }

    /// Until when a key whose arrival time is `tat` is blocked, if it is blocked at `now`.
    fn blocked_until(self, tat: OffsetDateTime, now: OffsetDateTime) -> Option<OffsetDateTime> {
        let until = tat - self.window + self.interval();
        (until > now).then_some(until)
    }
}

/// The configured rates; `None` is off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rates {
    /// [`Limit::SignInPerIp`].
    pub sign_in_per_ip: Option<Rate>,
    /// [`Limit::SignInGlobal`].
    pub sign_in_global: Option<Rate>,
    /// [`Limit::TokenPerIp`].
    pub token_per_ip: Option<Rate>,
    /// [`Limit::TokenPerClient`].
    pub token_per_client: Option<Rate>,
    /// [`Limit::SignUpPerIp`].
    pub sign_up_per_ip: Option<Rate>,
    /// [`Limit::MailPerAccount`].
    pub mail_per_account: Option<Rate>,
    /// [`Limit::MailPerIp`].
    pub mail_per_ip: Option<Rate>,
    /// [`Limit::AdminPerClient`].
    pub admin_per_client: Option<Rate>,
}

impl Rates {
    fn of(&self, limit: Limit) -> Option<Rate> {
        match limit {
            Limit::SignInPerIp => self.sign_in_per_ip,
            Limit::SignInGlobal => self.sign_in_global,
            Limit::TokenPerIp => self.token_per_ip,
            Limit::TokenPerClient => self.token_per_client,
            Limit::SignUpPerIp => self.sign_up_per_ip,
            Limit::MailPerAccount => self.mail_per_account,
            Limit::MailPerIp => self.mail_per_ip,
            Limit::AdminPerClient => self.admin_per_client,
        }
    }
}

/// The most blocked keys one instance remembers; past it, expired ones are dropped, and if none
/// has expired a new block is only in the database (the next event of that key finds it there).
const MAX_BLOCKED: usize = 100_000;

/// A refusal: the key is blocked for this long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Blocked {
    /// Which limit.
    pub limit: Limit,
    /// How long until the next attempt is accepted (at least a second).
    pub retry_after: Duration,
}

/// What a key is counted under: an address (IPv6 by its /64, what one host is usually given),
/// a client id, or the one global key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Key(String);

impl Key {
    /// The key of a client address.
    #[must_use]
    pub fn ip(ip: IpAddr) -> Self {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or_else(
                || ipnet::Ipv6Net::new_assert(v6, 64).trunc().to_string(),
                |v4| v4.to_string(),
            ),
            IpAddr::V4(v4) => v4.to_string(),
        };
        Self(ip)
    }

    /// The key of a client.
    #[must_use]
    pub fn client(id: &str) -> Self {
        Self(id.chars().take(128).collect())
    }

    /// The key of an account.
    #[must_use]
    pub fn account(id: uuid::Uuid) -> Self {
        Self(id.to_string())
    }

    /// The key of what a person typed to name an account (known or not), lower-cased.
    #[must_use]
    pub fn identifier(typed: &str) -> Self {
        Self(format!(
            "typed:{}",
            typed.chars().take(128).collect::<String>()
        ))
    }

    /// The one key of a global limit.
    #[must_use]
    pub fn global() -> Self {
        Self("*".to_owned())
    }
}

/// The limits of one instance: the rates, and the keys it knows to be blocked.
#[derive(Clone, Debug)]
pub struct Limits {
    rates: Rates,
    blocked: Arc<Mutex<HashMap<(Limit, Key), OffsetDateTime>>>,
    /// Counts every refusal (`keyward_rate_limited_total{limit}`).
    metrics: Arc<Metrics>,
}

impl Limits {
    /// Limits with these rates and no block known yet.
    #[must_use]
    pub fn new(rates: Rates, metrics: Arc<Metrics>) -> Self {
        Self {
            rates,
            blocked: Arc::new(Mutex::new(HashMap::new())),
            metrics,
        }
    }

    /// Refuses when `key` is blocked under `limit` (as far as this instance knows), and counts
    /// the refusal.
    pub fn check(&self, limit: Limit, key: &Key, now: OffsetDateTime) -> Result<(), Blocked> {
        let result = self.peek(limit, key, now);
        if result.is_err() {
            self.metrics.rate_limited(limit.as_str());
        }
        result
    }

    /// Whether `key` is blocked under `limit` (as far as this instance knows), counting nothing:
    /// for pages that prepare for a refusal before any attempt.
    pub fn peek(&self, limit: Limit, key: &Key, now: OffsetDateTime) -> Result<(), Blocked> {
        if self.rates.of(limit).is_none() {
            return Ok(());
        }
        let mut blocked = self.blocked.lock().unwrap_or_else(PoisonError::into_inner);
        let map_key = (limit, key.clone());
        match blocked.get(&map_key) {
            Some(until) if *until > now => Err(Blocked {
                limit,
                retry_after: (*until - now).max(Duration::SECOND),
            }),
            Some(_) => {
                blocked.remove(&map_key);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Counts an attempt of `key` under `limit` before doing its work, if it is within the limit;
    /// otherwise refuses it and counts nothing.
    pub async fn take(
        &self,
        conn: &mut AsyncPgConnection,
        limit: Limit,
        key: &Key,
        now: OffsetDateTime,
    ) -> diesel::QueryResult<Result<(), Blocked>> {
        let Some(rate) = self.rates.of(limit) else {
            return Ok(Ok(()));
        };
        if let Err(blocked) = self.check(limit, key, now) {
            return Ok(Err(blocked));
        }
        let tat = match try_advance(conn, limit, key, rate, now).await? {
            Advanced::Counted => return Ok(Ok(())),
            Advanced::Refused(tat) => tat,
        };
        let until = rate
            .blocked_until(tat, now)
            .unwrap_or(now + rate.interval());
        self.remember(conn, limit, key, until, now).await?;
        self.metrics.rate_limited(limit.as_str());
        Ok(Err(Blocked {
            limit,
            retry_after: (until - now).max(Duration::SECOND),
        }))
    }

    /// Counts one failure of `key` under `limit` after the fact; audits the moment a key becomes
    /// blocked.
    pub async fn record(
        &self,
        conn: &mut AsyncPgConnection,
        limit: Limit,
        key: &Key,
        now: OffsetDateTime,
    ) -> diesel::QueryResult<()> {
        let Some(rate) = self.rates.of(limit) else {
            return Ok(());
        };
        let tat = advance(conn, limit, key, rate, now).await?;
        match rate.blocked_until(tat, now) {
            Some(until) => self.remember(conn, limit, key, until, now).await,
            None => Ok(()),
        }
    }

    /// Notes a block in this instance's map, and audits it the first time this instance sees it.
    async fn remember(
        &self,
        conn: &mut AsyncPgConnection,
        limit: Limit,
        key: &Key,
        until: OffsetDateTime,
        now: OffsetDateTime,
    ) -> diesel::QueryResult<()> {
        let newly = {
            let mut blocked = self.blocked.lock().unwrap_or_else(PoisonError::into_inner);
            if blocked.len() >= MAX_BLOCKED {
                blocked.retain(|_, u| *u > now);
            }
            let known = blocked.get(&(limit, key.clone())).is_some_and(|u| *u > now);
            if blocked.len() < MAX_BLOCKED || known {
                blocked.insert((limit, key.clone()), until);
            }
            !known
        };
        if newly {
            tracing::warn!(limit = limit.as_str(), key = %key.0, "rate limit reached");
            let event = NewAuditEvent::new("rate_limit.exceeded", audit::ACTOR_SYSTEM, now)
                .subject(&key.0)
                .details(serde_json::json!({
                    "limit": limit.as_str(),
                    "blocked_until": until.unix_timestamp(),
                }));
            audit::insert(conn, &event).await?;
        }
        Ok(())
    }
}

fn storage_key(limit: Limit, key: &Key) -> String {
    format!("{}:{}", limit.as_str(), key.0)
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.whole_microseconds()).unwrap_or(i64::MAX)
}

#[derive(diesel::QueryableByName)]
struct Tat {
    #[diesel(sql_type = Timestamptz)]
    tat: OffsetDateTime,
}

/// Moves the key's arrival time on by one interval and returns it; one statement, so concurrent
/// events on any instance each count. The time is capped a window and an interval ahead: events
/// while blocked (from instances that did not know) do not prolong the block without end.
async fn advance(
    conn: &mut AsyncPgConnection,
    limit: Limit,
    key: &Key,
    rate: Rate,
    now: OffsetDateTime,
) -> diesel::QueryResult<OffsetDateTime> {
    let row: Tat = diesel::sql_query(
        "INSERT INTO rate_limits AS r (key, tat) VALUES ($1, $2 + $3 * interval '1 microsecond') \
         ON CONFLICT (key) DO UPDATE SET tat = LEAST( \
             GREATEST(r.tat, $2) + $3 * interval '1 microsecond', \
             $2 + ($3 + $4) * interval '1 microsecond') \
         RETURNING tat",
    )
    .bind::<Text, _>(storage_key(limit, key))
    .bind::<Timestamptz, _>(now)
    .bind::<BigInt, _>(micros(rate.interval()))
    .bind::<BigInt, _>(micros(rate.window))
    .get_result(conn)
    .await?;
    Ok(row.tat)
}

enum Advanced {
    Counted,
    /// Over the limit: nothing counted; the key's arrival time.
    Refused(OffsetDateTime),
}

/// Moves the arrival time on only if the event stays within the limit (at most a window ahead
/// of now): the row lock of the upsert makes parallel attempts count one after another.
async fn try_advance(
    conn: &mut AsyncPgConnection,
    limit: Limit,
    key: &Key,
    rate: Rate,
    now: OffsetDateTime,
) -> diesel::QueryResult<Advanced> {
    use diesel::OptionalExtension as _;
    let storage = storage_key(limit, key);
    let counted: Option<Tat> = diesel::sql_query(
        "INSERT INTO rate_limits AS r (key, tat) VALUES ($1, $2 + $3 * interval '1 microsecond') \
         ON CONFLICT (key) DO UPDATE SET tat = GREATEST(r.tat, $2) + $3 * interval '1 microsecond' \
         WHERE GREATEST(r.tat, $2) + $3 * interval '1 microsecond' \
               <= $2 + $4 * interval '1 microsecond' \
         RETURNING tat",
    )
    .bind::<Text, _>(&storage)
    .bind::<Timestamptz, _>(now)
    .bind::<BigInt, _>(micros(rate.interval()))
    .bind::<BigInt, _>(micros(rate.window))
    .get_result(conn)
    .await
    .optional()?;
    if counted.is_some() {
        return Ok(Advanced::Counted);
    }
    let current: Tat = diesel::sql_query("SELECT tat FROM rate_limits WHERE key = $1")
        .bind::<Text, _>(&storage)
        .get_result(conn)
        .await?;
    Ok(Advanced::Refused(current.tat))
}

/// Deletes keys whose arrival time has passed (they hold no count any more), at most `batch`.
pub async fn delete_expired(
    conn: &mut AsyncPgConnection,
    now: OffsetDateTime,
    batch: i64,
) -> diesel::QueryResult<usize> {
    crate::db::delete_batch(conn, "rate_limits", "tat < $1", now, batch).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-01-01 00:00 UTC);

    fn rate(count: u32, secs: i64) -> Rate {
        Rate {
            count,
            window: Duration::seconds(secs),
        }
    }

    /// The arrival time after `n` events at `at`, from nothing.
    fn after(rate: Rate, n: u32, at: OffsetDateTime) -> OffsetDateTime {
        let mut tat = at;
        for _ in 0..n {
            tat = tat.max(at) + rate.interval();
        }
        tat
    }

    #[test]
    fn a_burst_of_count_events_blocks_for_one_interval() {
        let r = rate(20, 600);
        assert_eq!(r.blocked_until(after(r, 19, T0), T0), None);
        let tat = after(r, 20, T0);
        assert_eq!(r.blocked_until(tat, T0), Some(T0 + Duration::seconds(30)));
        assert_eq!(r.blocked_until(tat, T0 + Duration::seconds(30)), None);
    }

    #[test]
    fn rates_parse_and_refuse_nonsense() {
        let parse = |raw: &str| {
            Rate::parse(raw, |d| match d {
                "10m" => Ok(Duration::minutes(10)),
                "1s" => Ok(Duration::SECOND),
                "2d" => Ok(Duration::days(2)),
                _ => Err("bad duration".into()),
            })
        };
        assert_eq!(parse("20/10m"), Ok(rate(20, 600)));
        assert!(parse("20").is_err());
        assert!(parse("0/10m").is_err());
        assert!(parse("x/10m").is_err());
        assert!(parse("5/2d").is_err());
        assert!(parse("5/zz").is_err());
    }

    #[test]
    fn ipv6_addresses_count_by_their_64_and_mapped_v4_as_v4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().expect("ip");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(Key::ip(a), Key::ip(b));
        assert_ne!(Key::ip(a), Key::ip(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().expect("ip");
        assert_eq!(Key::ip(mapped), Key::ip("192.0.2.7".parse().expect("ip")));
    }

    #[test]
    fn a_known_block_refuses_until_it_ends_and_off_never_refuses() {
        let rates = Rates {
            sign_in_per_ip: Some(rate(1, 60)),
            sign_in_global: None,
            token_per_ip: None,
            token_per_client: None,
            sign_up_per_ip: None,
            mail_per_account: None,
            mail_per_ip: None,
            admin_per_client: None,
        };
        let limits = Limits::new(rates, Arc::new(Metrics::new()));
        let key = Key::global();
        limits.blocked.lock().expect("lock").insert(
            (Limit::SignInPerIp, key.clone()),
            T0 + Duration::seconds(10),
        );
        assert_eq!(
            limits.check(Limit::SignInPerIp, &key, T0),
            Err(Blocked {
                limit: Limit::SignInPerIp,
                retry_after: Duration::seconds(10)
            })
        );
        assert!(
            limits
                .check(Limit::SignInPerIp, &key, T0 + Duration::seconds(10))
                .is_ok()
        );
        assert!(limits.check(Limit::SignInGlobal, &key, T0).is_ok());
    }
}
