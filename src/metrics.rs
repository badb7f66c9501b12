//! Prometheus metrics of one instance (`keyward_*`), served in the text format on `KEYWARD_METRICS_BIND`.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// One label.
type Label = [(&'static str, &'static str); 1];
/// The labels of an HTTP request: route template (never the raw path), method, status.
type RequestLabels = [(&'static str, String); 3];

/// Every metric of this instance, registered once; cheap to share behind an `Arc`.
pub struct Metrics {
    registry: Registry,
    http_requests: Family<RequestLabels, Counter>,
    http_duration: Family<[(&'static str, String); 1], Histogram>,
    tokens_issued: Family<Label, Counter>,
    refresh: Family<Label, Counter>,
    sign_ins: Family<Label, Counter>,
    sign_in_proofs: Family<Label, Counter>,
    mail_sent: Counter,
    mail_failed: Family<Label, Counter>,
    mail_queued: Gauge,
    mail_oldest: Gauge,
    rate_limited: Family<Label, Counter>,
    load_shed: Family<Label, Counter>,
    hash_in_flight: Gauge,
    hash_rejected: Counter,
    signing_keys: Family<Label, Gauge>,
    key_events: Family<Label, Counter>,
    db_pool: Family<Label, Gauge>,
    db_errors: Family<Label, Counter>,
    jwks_requests: Family<Label, Counter>,
    db_queries: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// How a refresh ended (`keyward_refresh_total{outcome}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// A new token was issued.
    Rotated,
    /// The predecessor came back within the grace window and got the same successor.
    Grace,
    /// A used token came back: the family was revoked.
    ReuseRevoked,
    /// Past its idle or absolute expiry.
    Expired,
    /// Unknown, another client's, revoked, or the user can no longer sign in.
    Invalid,
}

/// How a sign-in ended (`keyward_sign_ins_total{outcome}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignInOutcome {
    /// Signed in.
    Ok,
    /// Wrong username or password.
    BadCredentials,
    /// The account is locked after failures.
    Locked,
    /// A rate limit or the hashing queue refused it.
    Throttled,
    /// The account is disabled.
    Disabled,
}

impl Metrics {
    /// All families, registered.
    #[must_use]
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let http_requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "keyward_http_requests",
            "HTTP requests by route template, method and status",
            http_requests.clone(),
        );
        let http_duration =
            Family::<[(&'static str, String); 1], Histogram>::new_with_constructor(|| {
                // 0.5 ms to ~16 s: a JWKS hit to a request timing out.
                Histogram::new(exponential_buckets(0.000_5, 2.0, 16))
            });
        registry.register(
            "keyward_http_request_duration_seconds",
            "Time from request to response head, by route template",
            http_duration.clone(),
        );
        let m = Self {
            http_requests,
            http_duration,
            tokens_issued: Family::default(),
            refresh: Family::default(),
            sign_ins: Family::default(),
            sign_in_proofs: Family::default(),
            mail_sent: Counter::default(),
            mail_failed: Family::default(),
            mail_queued: Gauge::default(),
            mail_oldest: Gauge::default(),
            rate_limited: Family::default(),
            load_shed: Family::default(),
            hash_in_flight: Gauge::default(),
            hash_rejected: Counter::default(),
            signing_keys: Family::default(),
            key_events: Family::default(),
            db_pool: Family::default(),
            db_errors: Family::default(),
            jwks_requests: Family::default(),
            db_queries: Counter::default(),
            registry: Registry::default(),
        };
        let mut m = m;
        m.registry = registry;
        m.register_families();
        m
    }

    /// Registers every family but the HTTP ones.
    fn register_families(&mut self) {
        let m = self;
        let r = &mut m.registry;
        r.register(
            "keyward_tokens_issued",
            "Token responses by grant type",
            m.tokens_issued.clone(),
        );
        r.register(
            "keyward_refresh",
            "Refresh token redemptions by outcome",
            m.refresh.clone(),
        );
        r.register(
            "keyward_sign_ins",
            "Password checks (page and password grant) by outcome",
            m.sign_ins.clone(),
        );
        r.register(
            "keyward_sign_in_proofs",
            "Proofs of work spent past a reached sign-in limit, accepted or refused",
            m.sign_in_proofs.clone(),
        );
        r.register(
            "keyward_mail_sent",
            "Mails handed to the SMTP server (or the file sink)",
            m.mail_sent.clone(),
        );
        r.register(
            "keyward_mail_failed",
            "Failed mail attempts: deferred (tried again later) or abandoned (given up, audited)",
            m.mail_failed.clone(),
        );
        r.register(
            "keyward_mail_queued",
            "Mails waiting in the outbox",
            m.mail_queued.clone(),
        );
        r.register(
            "keyward_mail_oldest_age_seconds",
            "Age of the oldest mail waiting in the outbox",
            m.mail_oldest.clone(),
        );
        r.register(
            "keyward_rate_limited",
            "Requests refused by a rate limit, by limit",
            m.rate_limited.clone(),
        );
        r.register(
            "keyward_load_shed",
            "Requests shed under overload, by class of work",
            m.load_shed.clone(),
        );
        r.register(
            "keyward_password_hash_in_flight",
            "Password hashes being computed or waiting",
            m.hash_in_flight.clone(),
        );
        r.register(
            "keyward_password_hash_rejected",
            "Sign-ins refused because the hashing queue was full",
            m.hash_rejected.clone(),
        );
        r.register(
            "keyward_signing_keys",
            "Signing keys by state",
            m.signing_keys.clone(),
        );
        r.register(
            "keyward_key_events",
            "Signing-key maintenance on this instance, by event",
            m.key_events.clone(),
        );
        r.register(
            "keyward_db_pool_connections",
            "Database pool connections by state",
            m.db_pool.clone(),
        );
        r.register(
            "keyward_db_errors",
            "Database failures answered with 503, by kind",
            m.db_errors.clone(),
        );
        r.register(
            "keyward_db_queries",
            "SQL statements sent to PostgreSQL, BEGIN and COMMIT and pool checks included",
            m.db_queries.clone(),
        );
        r.register(
            "keyward_jwks_requests",
            "JWKS responses by result",
            m.jwks_requests.clone(),
        );
    }

    /// One answered request.
    pub fn request(&self, route: &str, method: &str, status: u16, seconds: f64) {
        self.http_requests
            .get_or_create(&[
                ("route", route.to_owned()),
                ("method", method.to_owned()),
                ("status", status.to_string()),
            ])
            .inc();
        self.http_duration
            .get_or_create(&[("route", route.to_owned())])
            .observe(seconds);
    }

    /// A token response for `grant`.
    pub fn token_issued(&self, grant: &'static str) {
        self.tokens_issued.get_or_create(&[("grant", grant)]).inc();
    }

    /// A refresh redemption's outcome.
    pub fn refresh(&self, outcome: RefreshOutcome) {
        let name = match outcome {
            RefreshOutcome::Rotated => "rotated",
            RefreshOutcome::Grace => "grace",
            RefreshOutcome::ReuseRevoked => "reuse_revoked",
            RefreshOutcome::Expired => "expired",
            RefreshOutcome::Invalid => "invalid",
        };
        self.refresh.get_or_create(&[("outcome", name)]).inc();
    }

    /// A sign-in's outcome.
    pub fn sign_in(&self, outcome: SignInOutcome) {
        let name = match outcome {
            SignInOutcome::Ok => "ok",
            SignInOutcome::BadCredentials => "bad_credentials",
            SignInOutcome::Locked => "locked",
            SignInOutcome::Throttled => "throttled",
            SignInOutcome::Disabled => "disabled",
        };
        self.sign_ins.get_or_create(&[("outcome", name)]).inc();
    }

    /// A proof of work presented past a reached sign-in limit.
    pub fn sign_in_proof(&self, accepted: bool) {
        let outcome = if accepted { "accepted" } else { "refused" };
        self.sign_in_proofs
            .get_or_create(&[("outcome", outcome)])
            .inc();
    }

    /// A mail handed over.
    pub fn mail_sent(&self) {
        self.mail_sent.inc();
    }

    /// A failed mail attempt: `deferred` or `abandoned`.
    pub fn mail_failed(&self, outcome: &'static str) {
        self.mail_failed
            .get_or_create(&[("outcome", outcome)])
            .inc();
    }

    /// The outbox's size and the age of its oldest mail, in seconds.
    pub fn mail_backlog(&self, queued: i64, oldest_seconds: i64) {
        self.mail_queued.set(queued);
        self.mail_oldest.set(oldest_seconds);
    }

    /// A request refused by `limit` (its setting's suffix, e.g. `sign_in_per_ip`).
    pub fn rate_limited(&self, limit: &'static str) {
        self.rate_limited.get_or_create(&[("limit", limit)]).inc();
    }

    /// A request shed from `class` (`rotation`, `db_pool`).
    pub fn shed(&self, class: &'static str) {
        self.load_shed.get_or_create(&[("class", class)]).inc();
    }

    /// A sign-in refused because the hashing queue was full.
    pub fn hash_rejected(&self) {
        self.hash_rejected.inc();
    }

    /// A database failure answered with 503 (`unavailable`, `exhausted`).
    pub fn db_error(&self, kind: &'static str) {
        self.db_errors.get_or_create(&[("kind", kind)]).inc();
    }

    /// A signing-key maintenance event (`reloaded`, `scheduled`, `maintenance_failed`).
    pub fn key_event(&self, event: &'static str) {
        self.key_events.get_or_create(&[("event", event)]).inc();
    }

    /// The counter every pooled connection adds its statements to.
    #[must_use]
    pub fn db_queries(&self) -> Counter {
        self.db_queries.clone()
    }

    /// A JWKS response (`200`, `304`).
    pub fn jwks(&self, result: &'static str) {
        self.jwks_requests
            .get_or_create(&[("result", result)])
            .inc();
    }

    /// The text exposition, with the gauges read at this moment.
    #[must_use]
    pub fn render(&self, now: &Snapshot) -> String {
        self.hash_in_flight.set(now.hashes_in_flight);
        for (state, n) in &now.signing_keys {
            self.signing_keys.get_or_create(&[("state", state)]).set(*n);
        }
        for (state, n) in &now.pool {
            self.db_pool.get_or_create(&[("state", state)]).set(*n);
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// The gauges, read from the rest of the app when scraped.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Password hashes computing or queued.
    pub hashes_in_flight: i64,
    /// Signing keys per state (`next`, `active`, `retired`).
    pub signing_keys: Vec<(&'static str, i64)>,
    /// Pool connections per state (`idle`, `in_use`, `waiting` for one).
    pub pool: Vec<(&'static str, i64)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_render_with_their_names_and_labels() {
        let m = Metrics::new();
        m.token_issued("client_credentials");
        m.request("/token", "POST", 200, 0.002);
        m.refresh(RefreshOutcome::ReuseRevoked);
        let text = m.render(&Snapshot {
            hashes_in_flight: 2,
            signing_keys: vec![("active", 1), ("next", 1)],
            pool: vec![("idle", 3)],
        });
        for line in [
            r#"keyward_tokens_issued_total{grant="client_credentials"} 1"#,
            r#"keyward_http_requests_total{route="/token",method="POST",status="200"} 1"#,
            r#"keyward_refresh_total{outcome="reuse_revoked"} 1"#,
            "keyward_password_hash_in_flight 2",
            r#"keyward_signing_keys{state="active"} 1"#,
            r#"keyward_db_pool_connections{state="idle"} 3"#,
            "# TYPE keyward_http_request_duration_seconds histogram",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
