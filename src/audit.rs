//! The append-only audit trail of security events (the table refuses UPDATE and DELETE).

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use ipnet::IpNet;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::schema::audit_events;

/// Who caused an event: the server on its own, an operator's command, or a person.
pub const ACTOR_SYSTEM: &str = "system";
/// An operator running a `keyward` command.
pub const ACTOR_CLI: &str = "cli";

/// Who causes the events of one operation, as the audit trail names them: built by the adapter
/// (which knows the caller), recorded by the operation (which knows what happened).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    name: String,
    ip: Option<IpNet>,
}

impl Actor {
    /// An operator's `keyward` command.
    #[must_use]
    pub fn cli() -> Self {
        Self {
            name: ACTOR_CLI.to_owned(),
            ip: None,
        }
    }

    /// The server on its own, or an anonymous caller at `ip`.
    #[must_use]
    pub fn system(ip: Option<IpNet>) -> Self {
        Self {
            name: ACTOR_SYSTEM.to_owned(),
            ip,
        }
    }

    /// A service client calling the management API with its own token, from `ip`.
    #[must_use]
    pub fn client(id: &str, ip: Option<IpNet>) -> Self {
        Self {
            name: format!("client:{id}"),
            ip,
        }
    }

    /// A person acting for themselves, from `ip`.
    #[must_use]
    pub fn user(id: Uuid, ip: Option<IpNet>) -> Self {
        Self {
            name: format!("user:{id}"),
            ip,
        }
    }

    /// An event of `kind` by this actor at `now`, carrying their address.
    #[must_use]
    pub fn event<'a>(&'a self, kind: &'a str, now: OffsetDateTime) -> NewAuditEvent<'a> {
        NewAuditEvent::new(kind, &self.name, now).ip(self.ip)
    }
}

/// An event about to be recorded. Details must never hold a secret.
#[derive(Debug, Insertable)]
#[diesel(table_name = audit_events)]
pub struct NewAuditEvent<'a> {
    occurred_at: OffsetDateTime,
    kind: &'a str,
    actor: &'a str,
    subject: Option<&'a str>,
    user_id: Option<Uuid>,
    client_id: Option<&'a str>,
    ip: Option<IpNet>,
    details: serde_json::Value,
}

impl<'a> NewAuditEvent<'a> {
    /// An event of `kind` (`area.verb`, e.g. `key.revoked`) by `actor` at `now`.
    #[must_use]
    pub fn new(kind: &'a str, actor: &'a str, now: OffsetDateTime) -> Self {
        Self {
            occurred_at: now,
            kind,
            actor,
            subject: None,
            user_id: None,
            client_id: None,
            ip: None,
            details: serde_json::Value::Object(serde_json::Map::new()),
        }
    }

    /// What the event is about (a kid, a token family...).
    #[must_use]
    pub fn subject(mut self, subject: &'a str) -> Self {
        self.subject = Some(subject);
        self
    }

    /// The user concerned.
    #[must_use]
    pub fn user(mut self, user_id: Uuid) -> Self {
        self.user_id = Some(user_id);
        self
    }

    /// The client concerned.
    #[must_use]
    pub fn client(mut self, client_id: &'a str) -> Self {
        self.client_id = Some(client_id);
        self
    }

    /// The address the request came from.
    #[must_use]
    pub fn ip(mut self, ip: Option<IpNet>) -> Self {
        self.ip = ip;
        self
    }

    /// Structured context; never secrets.
    #[must_use]
    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }
}

/// A recorded event.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = audit_events)]
pub struct AuditEvent {
    /// Sequence number.
    pub id: i64,
    /// When it happened.
    pub occurred_at: OffsetDateTime,
    /// `area.verb`.
    pub kind: String,
    /// Who caused it.
    pub actor: String,
    /// What it is about.
    pub subject: Option<String>,
    /// The user concerned.
    pub user_id: Option<Uuid>,
    /// The client concerned.
    pub client_id: Option<String>,
    /// Structured context.
    pub details: serde_json::Value,
}

/// Records an event (inside the caller's transaction when there is one).
pub async fn insert(conn: &mut AsyncPgConnection, event: &NewAuditEvent<'_>) -> QueryResult<()> {
    diesel::insert_into(audit_events::table)
        .values(event)
        .execute(conn)
        .await
        .map(|_| ())
}

/// The most recent `limit` events of `kind`, newest first.
pub async fn find_by_kind(
    conn: &mut AsyncPgConnection,
    kind: &str,
    limit: i64,
) -> QueryResult<Vec<AuditEvent>> {
    audit_events::table
        .filter(audit_events::kind.eq(kind))
        .order(audit_events::id.desc())
        .limit(limit)
        .select(AuditEvent::as_select())
        .load(conn)
        .await
}

/// What a page of events is narrowed to (each `Some` must match).
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// About this user.
    pub user_id: Option<Uuid>,
    /// About this client.
    pub client_id: Option<String>,
    /// Of this kind.
    pub kind: Option<String>,
    /// At or after this instant.
    pub since: Option<OffsetDateTime>,
    /// Before this instant.
    pub until: Option<OffsetDateTime>,
}

/// Up to `limit` events matching `filter`, newest first, older than event `before` when given
/// (keyset pagination on the sequence number: events recorded meanwhile never shift a page).
pub async fn page(
    conn: &mut AsyncPgConnection,
    filter: &Filter,
    before: Option<i64>,
    limit: i64,
) -> QueryResult<Vec<AuditEvent>> {
    let mut query = audit_events::table
        .order(audit_events::id.desc())
        .limit(limit)
        .select(AuditEvent::as_select())
        .into_boxed();
    if let Some(user) = filter.user_id {
        query = query.filter(audit_events::user_id.eq(user));
    }
    if let Some(client) = &filter.client_id {
        query = query.filter(audit_events::client_id.eq(client.clone()));
    }
    if let Some(kind) = &filter.kind {
        query = query.filter(audit_events::kind.eq(kind.clone()));
    }
    if let Some(since) = filter.since {
        query = query.filter(audit_events::occurred_at.ge(since));
    }
    if let Some(until) = filter.until {
        query = query.filter(audit_events::occurred_at.lt(until));
    }
    if let Some(before) = before {
        query = query.filter(audit_events::id.lt(before));
    }
    query.load(conn).await
}

/// Whether `kind` has the form every recorded kind has (`area.verb`, lower case and `_`).
#[must_use]
pub fn is_kind(kind: &str) -> bool {
    kind.split_once('.').is_some_and(|(area, verb)| {
        let word = |w: &str| !w.is_empty() && w.chars().all(|c| c.is_ascii_lowercase() || c == '_');
        word(area) && word(verb)
    })
}

/// The events about `subject`, oldest first.
pub async fn find_by_subject(
    conn: &mut AsyncPgConnection,
    subject: &str,
) -> QueryResult<Vec<AuditEvent>> {
    audit_events::table
        .filter(audit_events::subject.eq(subject))
        .order(audit_events::id.asc())
        .select(AuditEvent::as_select())
        .load(conn)
        .await
}
