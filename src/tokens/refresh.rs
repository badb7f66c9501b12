//! Refresh tokens: opaque, stored as SHA-256, in families that rotate on every use. A family is a
//! chain (one token per generation, enforced by a unique index), never a tree.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{
    Array, Bytea, Integer, Nullable, Text, Timestamptz, Untyped, Uuid as SqlUuid,
};
use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::audit::Actor;
use crate::auth_methods::AuthMethods;
use crate::db::schema::{family_access_tokens, refresh_families, refresh_tokens};
use crate::scope::Scopes;
use crate::tokens::opaque::{PlainToken, TokenHash};
use crate::tokens::revoked;

/// Prefix of refresh tokens, recognisable in leaks.
pub const REFRESH_TOKEN_PREFIX: &str = "kwrt_";

/// How refresh tokens live and rotate.
#[derive(Clone, Copy)]
pub struct RefreshPolicy {
    /// An unused token expires after this.
    pub idle: Duration,
    /// A family ends this long after it started, whatever the rotations.
    pub absolute: Duration,
    /// The grace window for the immediate predecessor, if enabled.
    pub grace: Option<Duration>,
    /// Key for deriving successors (only used with a grace window).
    pub secret: [u8; 32],
}

impl std::fmt::Debug for RefreshPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshPolicy")
            .field("idle", &self.idle)
            .field("absolute", &self.absolute)
            .field("grace", &self.grace)
            .finish_non_exhaustive()
    }
}

impl RefreshPolicy {
    /// The successor of `presented`. With a grace window it is derived (HMAC under a server
    /// key), so presenting the predecessor again yields the same successor without ever storing
    /// it in plain text; without one it is simply random.
    #[must_use]
    pub fn successor_of(&self, presented: &str) -> PlainToken {
        if self.grace.is_none() {
            return PlainToken::generate(REFRESH_TOKEN_PREFIX);
        }
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.secret);
        let tag = ring::hmac::sign(&key, presented.as_bytes());
        PlainToken::from_secret(format!(
            "{REFRESH_TOKEN_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(tag.as_ref())
        ))
    }

    /// When a token issued at `now` in `family` expires: idle timeout, never past the family's end.
    #[must_use]
    pub fn token_expiry(&self, family: &Family, now: OffsetDateTime) -> OffsetDateTime {
        (now + self.idle).min(family.absolute_expires_at)
    }
}

/// A family: everything one authorization (a sign-in, a code) led to.
#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = refresh_families)]
pub struct Family {
    /// Id, also the audit subject.
    pub id: Uuid,
    /// The client it belongs to.
    pub client_id: String,
    /// The user.
    pub user_id: Uuid,
    /// Granted scope: the ceiling for refreshes.
    pub scopes: Vec<String>,
    /// Access-token audiences.
    pub audiences: Vec<String>,
    /// When the user authenticated.
    pub auth_time: OffsetDateTime,
    /// Start.
    pub created_at: OffsetDateTime,
    /// Absolute end.
    pub absolute_expires_at: OffsetDateTime,
    /// Revocation time.
    pub revoked_at: Option<OffsetDateTime>,
    /// Why.
    pub revoked_reason: Option<String>,
    /// How the user authenticated (RFC 8176 `amr` names).
    pub amr: Vec<String>,
}

/// One refresh token of a family.
#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = refresh_tokens)]
pub struct RefreshTokenRow {
    /// SHA-256 of the token.
    pub token_hash: TokenHash,
    /// Its family.
    pub family_id: Uuid,
    /// 0 for the first, +1 per rotation.
    pub generation: i32,
    /// The scope its access tokens carry (at most the family's).
    pub scopes: Vec<String>,
    /// Issued at.
    pub created_at: OffsetDateTime,
    /// Idle expiry.
    pub expires_at: OffsetDateTime,
    /// When it was rotated.
    pub used_at: Option<OffsetDateTime>,
}

/// Why a presented refresh token does not stand. [`check_live`] is the one Rust statement of
/// these rules; [`rotate_unused`]'s `WHERE` clauses are the same rules in SQL, and a test runs
/// every case through both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotLive {
    /// The family belongs to another client (RFC 6749 §6: bound to the client it was issued to).
    OtherClient,
    /// The family was revoked (by the client, an operator, reuse or a cut-off).
    Revoked,
    /// The family's absolute lifetime or the token's idle lifetime is over.
    Expired,
    /// The token was already rotated: a retry within the grace window, or reuse.
    Used,
    /// The request asks for more than the family was granted (RFC 6749 §6: narrowing only).
    WiderScope,
    /// The person was disabled (or deleted) since.
    UserDisabled,
}

impl NotLive {
    /// The `error_description` of the refusal (never naming anything the caller did not send).
    #[must_use]
    pub const fn description(self) -> &'static str {
        match self {
            Self::OtherClient => "the refresh token was issued to another client",
            Self::Revoked => "the refresh token was revoked",
            Self::Expired => "the refresh token has expired",
            Self::Used => "the refresh token was already used",
            Self::WiderScope => "scope exceeds what was originally granted",
            Self::UserDisabled => "the user can no longer sign in",
        }
    }
}

/// Whether `row` of `family` may be rotated now by `client_id`, asking for `scope` (or the
/// token's own), for a person who `is_enabled`. The order matters to the grant: a family that
/// ended refuses before a used token counts as reuse.
pub fn check_live(
    family: &Family,
    row: &RefreshTokenRow,
    client_id: &str,
    scope: Option<&Scopes>,
    is_enabled: bool,
    now: OffsetDateTime,
) -> Result<(), NotLive> {
    if family.client_id != client_id {
        return Err(NotLive::OtherClient);
    }
    if family.revoked_at.is_some() {
        return Err(NotLive::Revoked);
    }
    if family.absolute_expires_at <= now {
        return Err(NotLive::Expired);
    }
    if row.used_at.is_some() {
        return Err(NotLive::Used);
    }
    if row.expires_at <= now {
        return Err(NotLive::Expired);
    }
    if scope.is_some_and(|s| !s.is_subset(&Scopes::from_stored(&family.scopes))) {
        return Err(NotLive::WiderScope);
    }
    if !is_enabled {
        return Err(NotLive::UserDisabled);
    }
    Ok(())
}

/// Everything needed to start a family.
#[derive(Debug)]
pub struct NewFamily<'a> {
    /// Client.
    pub client_id: &'a str,
    /// User.
    pub user_id: Uuid,
    /// Granted scopes.
    pub scopes: &'a Scopes,
    /// Audiences.
    pub audiences: &'a [String],
    /// Authentication time.
    pub auth_time: OffsetDateTime,
    /// How the user authenticated.
    pub methods: &'a AuthMethods,
    /// The access token issued together with the first refresh token.
    pub access_token: (Uuid, OffsetDateTime),
}

/// Starts a family with its first token; returns the family's id and the token.
pub async fn insert_family(
    conn: &mut AsyncPgConnection,
    policy: &RefreshPolicy,
    new: &NewFamily<'_>,
    now: OffsetDateTime,
) -> QueryResult<(Uuid, PlainToken)> {
    let family = Family {
        id: Uuid::new_v4(),
        client_id: new.client_id.to_owned(),
        user_id: new.user_id,
        scopes: new.scopes.to_vec(),
        audiences: new.audiences.to_vec(),
        auth_time: new.auth_time,
        created_at: now,
        absolute_expires_at: now + policy.absolute,
        revoked_at: None,
        revoked_reason: None,
        amr: new.methods.amr(),
    };
    diesel::insert_into(refresh_families::table)
        .values((
            refresh_families::id.eq(family.id),
            refresh_families::client_id.eq(&family.client_id),
            refresh_families::user_id.eq(family.user_id),
            refresh_families::scopes.eq(&family.scopes),
            refresh_families::audiences.eq(&family.audiences),
            refresh_families::auth_time.eq(family.auth_time),
            refresh_families::created_at.eq(now),
            refresh_families::absolute_expires_at.eq(family.absolute_expires_at),
            refresh_families::amr.eq(&family.amr),
        ))
        .execute(conn)
        .await?;
    let token = PlainToken::generate(REFRESH_TOKEN_PREFIX);
    insert_token(
        conn,
        &family,
        &token,
        0,
        new.scopes,
        policy.token_expiry(&family, now),
        now,
    )
    .await?;
    insert_access_token(conn, family.id, new.access_token.0, new.access_token.1).await?;
    Ok((family.id, token))
}

/// Stores a token of generation `generation`; a second token for one generation fails on the
/// unique index (no branching, whatever happens above).
pub async fn insert_token(
    conn: &mut AsyncPgConnection,
    family: &Family,
    token: &PlainToken,
    generation: i32,
    scopes: &Scopes,
    expires_at: OffsetDateTime,
    now: OffsetDateTime,
) -> QueryResult<()> {
    diesel::insert_into(refresh_tokens::table)
        .values((
            refresh_tokens::token_hash.eq(token.hash()),
            refresh_tokens::family_id.eq(family.id),
            refresh_tokens::generation.eq(generation),
            refresh_tokens::scopes.eq(scopes.to_vec()),
            refresh_tokens::created_at.eq(now),
            refresh_tokens::expires_at.eq(expires_at),
        ))
        .execute(conn)
        .await
        .map(|_| ())
}

/// Records an access token issued within a family.
pub async fn insert_access_token(
    conn: &mut AsyncPgConnection,
    family_id: Uuid,
    jti: Uuid,
    expires_at: OffsetDateTime,
) -> QueryResult<()> {
    diesel::insert_into(family_access_tokens::table)
        .values((
            family_access_tokens::jti.eq(jti),
            family_access_tokens::family_id.eq(family_id),
            family_access_tokens::expires_at.eq(expires_at),
        ))
        .execute(conn)
        .await
        .map(|_| ())
}

/// The family an access token was issued in, if it was issued in one (and is still recorded).
pub async fn family_of_access_token(
    conn: &mut AsyncPgConnection,
    jti: Uuid,
) -> QueryResult<Option<Uuid>> {
    family_access_tokens::table
        .find(jti)
        .select(family_access_tokens::family_id)
        .first(conn)
        .await
        .optional()
}

/// Finds a token by its hash.
pub async fn find_token(
    conn: &mut AsyncPgConnection,
    hash: &TokenHash,
) -> QueryResult<Option<RefreshTokenRow>> {
    refresh_tokens::table
        .find(hash)
        .select(RefreshTokenRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// The token of `generation` in `family`.
pub async fn find_generation(
    conn: &mut AsyncPgConnection,
    family_id: Uuid,
    generation: i32,
) -> QueryResult<Option<RefreshTokenRow>> {
    refresh_tokens::table
        .filter(refresh_tokens::family_id.eq(family_id))
        .filter(refresh_tokens::generation.eq(generation))
        .select(RefreshTokenRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// Reads a family.
pub async fn find_family(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<Family>> {
    refresh_families::table
        .find(id)
        .select(Family::as_select())
        .first(conn)
        .await
        .optional()
}

/// Reads a family and locks it until the transaction ends: every change to a family's tokens
/// (rotation, revocation) happens under this lock, so they cannot interleave.
pub async fn lock_family(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<Family>> {
    refresh_families::table
        .find(id)
        .select(Family::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// What a one-statement rotation needs: the presented token, its successor, the access token
/// about to be signed.
#[derive(Debug)]
pub struct Rotation<'a> {
    /// Hash of the presented token.
    pub presented: &'a TokenHash,
    /// The client presenting it.
    pub client_id: &'a str,
    /// The successor to store.
    pub successor: &'a TokenHash,
    /// A narrower scope asked for, if any (RFC 6749 §6).
    pub scopes: Option<&'a Scopes>,
    /// The successor's idle expiry before the family's absolute end caps it.
    pub idle_expires_at: OffsetDateTime,
    /// The access token's `jti` and expiry, recorded in the family.
    pub access_token: (Uuid, OffsetDateTime),
    /// Now.
    pub now: OffsetDateTime,
}

/// What the access token of a rotation carries, read in the same statement.
#[derive(Debug, QueryableByName)]
pub struct Rotated {
    /// The family's user.
    #[diesel(sql_type = SqlUuid)]
    pub user_id: Uuid,
    /// Their `sub`: the subject they kept from another system, else the id.
    #[diesel(sql_type = Text)]
    pub sub: String,
    /// Access-token audiences.
    #[diesel(sql_type = Array<Text>)]
    pub audiences: Vec<String>,
    /// When the user authenticated.
    #[diesel(sql_type = Timestamptz)]
    pub auth_time: OffsetDateTime,
    /// How the user authenticated (RFC 8176 `amr` names).
    #[diesel(sql_type = Array<Text>)]
    pub amr: Vec<String>,
    /// The user's roles.
    #[diesel(sql_type = Array<Text>)]
    pub roles: Vec<String>,
    /// The user's credential version.
    #[diesel(sql_type = Integer)]
    pub credential_version: i32,
    /// The successor's scope.
    #[diesel(sql_type = Array<Text>)]
    pub scopes: Vec<String>,
}

/// The whole rotation of an unused, live token in one statement, so one round trip to
/// PostgreSQL: lock the family (as [`lock_family`] does, so revocation cannot interleave), spend
/// the token by the same conditional update as [`update_used`], store the successor and the
/// access token's record, and read the user's claims. `None` when any condition of
/// [`check_live`] fails (used, expired, revoked, another client, a wider scope, a disabled
/// user): nothing was written, and
/// the caller's transaction works out which refusal, reuse or grace retry it is.
///
/// It reads `users` too, though this is the tokens module, because the rotation must be
/// conditional on the account in the same statement. The user's row is not locked: a cut-off
/// revokes the family under the family lock after bumping the version, so it either waits for
/// this statement and revokes what it issued, or committed first and the family fails the
/// lock's recheck (READ COMMITTED re-evaluates `revoked_at` on the newest row version).
pub async fn rotate_unused(
    conn: &mut AsyncPgConnection,
    rotation: &Rotation<'_>,
) -> QueryResult<Option<Rotated>> {
    RotateUnused {
        r: rotation,
        scopes: rotation.scopes.map(Scopes::to_vec),
    }
    .get_result(conn)
    .await
    .optional()
}

/// [`rotate_unused`]'s statement. Written as a query fragment rather than with `sql_query`,
/// which marks itself unsafe to cache: PostgreSQL would parse and plan this statement on every
/// refresh (the profile showed the parser and planner ahead of the executor). Its text never
/// varies, so diesel prepares it once per connection.
struct RotateUnused<'a> {
    r: &'a Rotation<'a>,
    /// The narrower scope as bound (diesel binds borrow from the query).
    scopes: Option<Vec<String>>,
}

impl QueryId for RotateUnused<'_> {
    type QueryId = ();
    // Cached by its SQL text instead of a type id (the struct borrows, so has no static id).
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for RotateUnused<'_> {
    type SqlType = Untyped;
}

impl QueryFragment<Pg> for RotateUnused<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let (r, scopes) = (self.r, &self.scopes);
        out.push_sql("WITH presented AS (SELECT family_id FROM refresh_tokens WHERE token_hash = ");
        out.push_bind_param::<Bytea, _>(r.presented)?;
        out.push_sql(" AND used_at IS NULL AND expires_at > ");
        out.push_bind_param::<Timestamptz, _>(&r.now)?;
        out.push_sql(
            "), family AS (\
             SELECT f.id, f.user_id, f.audiences, f.auth_time, f.amr, f.absolute_expires_at \
             FROM refresh_families f \
             WHERE f.id = (SELECT family_id FROM presented) AND f.client_id = ",
        );
        out.push_bind_param::<Text, _>(r.client_id)?;
        out.push_sql(" AND f.revoked_at IS NULL AND f.absolute_expires_at > ");
        out.push_bind_param::<Timestamptz, _>(&r.now)?;
        // Narrowing only (RFC 6749 §6): a wider scope finds no row and is refused below.
        out.push_sql(" AND f.scopes @> COALESCE(");
        out.push_bind_param::<Nullable<Array<Text>>, _>(scopes)?;
        out.push_sql(
            ", '{}') FOR UPDATE\
             ), holder AS (\
             SELECT u.roles, u.credential_version, COALESCE(u.subject, u.id::text) AS sub \
             FROM users u, family \
             WHERE u.id = family.user_id AND u.disabled_at IS NULL\
             ), spent AS (\
             UPDATE refresh_tokens t SET used_at = ",
        );
        out.push_bind_param::<Timestamptz, _>(&r.now)?;
        out.push_sql(" FROM family, holder WHERE t.token_hash = ");
        out.push_bind_param::<Bytea, _>(r.presented)?;
        // Rechecked on the newest row version when a racer spent it first: one of them wins.
        out.push_sql(" AND t.family_id = family.id AND t.used_at IS NULL AND t.expires_at > ");
        out.push_bind_param::<Timestamptz, _>(&r.now)?;
        out.push_sql(
            " RETURNING t.family_id, t.generation, t.scopes\
             ), successor AS (\
             INSERT INTO refresh_tokens \
             (token_hash, family_id, generation, scopes, created_at, expires_at) SELECT ",
        );
        out.push_bind_param::<Bytea, _>(r.successor)?;
        out.push_sql(", spent.family_id, spent.generation + 1, COALESCE(");
        out.push_bind_param::<Nullable<Array<Text>>, _>(scopes)?;
        out.push_sql(", spent.scopes), ");
        out.push_bind_param::<Timestamptz, _>(&r.now)?;
        out.push_sql(", LEAST(");
        out.push_bind_param::<Timestamptz, _>(&r.idle_expires_at)?;
        out.push_sql(
            ", family.absolute_expires_at) FROM spent, family RETURNING scopes\
             ), access AS (\
             INSERT INTO family_access_tokens (jti, family_id, expires_at) SELECT ",
        );
        out.push_bind_param::<SqlUuid, _>(&r.access_token.0)?;
        out.push_sql(", family_id, ");
        out.push_bind_param::<Timestamptz, _>(&r.access_token.1)?;
        out.push_sql(
            " FROM spent) \
             SELECT family.user_id, holder.sub, family.audiences, family.auth_time, family.amr, \
             holder.roles, holder.credential_version, successor.scopes \
             FROM family, holder, successor",
        );
        Ok(())
    }
}

/// Marks a token used; the one conditional update that decides who rotates it.
pub async fn update_used(
    conn: &mut AsyncPgConnection,
    hash: &TokenHash,
    now: OffsetDateTime,
) -> QueryResult<bool> {
    diesel::update(
        refresh_tokens::table
            .find(hash)
            .filter(refresh_tokens::used_at.is_null()),
    )
    .set(refresh_tokens::used_at.eq(now))
    .execute(conn)
    .await
    .map(|n| n == 1)
}

/// Revokes a family and every access token issued in it (until each expires).
pub async fn revoke_family(
    conn: &mut AsyncPgConnection,
    family_id: Uuid,
    reason: &str,
    now: OffsetDateTime,
) -> QueryResult<bool> {
    let revoked = diesel::update(
        refresh_families::table
            .find(family_id)
            .filter(refresh_families::revoked_at.is_null()),
    )
    .set((
        refresh_families::revoked_at.eq(now),
        refresh_families::revoked_reason.eq(reason),
    ))
    .execute(conn)
    .await?;
    revoked::insert_for_family(conn, family_id, reason, now).await?;
    Ok(revoked == 1)
}

/// Who may end a family by naming it, for [`end_family`].
#[derive(Clone, Copy, Debug)]
pub enum Owner<'a> {
    /// Only the family's own client (RFC 7009 §2.1: a client ends its own tokens only).
    Client(&'a str),
    /// Anyone (an operator).
    Any,
}

/// Ends family `id` on request, under its lock (a racing refresh either committed first, and
/// its access token is revoked here, or sees the family revoked), and records `family.revoked`.
/// `None` when there is no such family or `owner` may not end it; `Some(false)` when it had
/// already ended.
pub async fn end_family(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    owner: Owner<'_>,
    reason: &str,
    by: &Actor,
    now: OffsetDateTime,
) -> QueryResult<Option<bool>> {
    conn.transaction(async |conn| {
        let Some(family) = lock_family(conn, id).await? else {
            return Ok(None);
        };
        if let Owner::Client(client_id) = owner
            && family.client_id != client_id
        {
            return Ok(None);
        }
        if !revoke_family(conn, family.id, reason, now).await? {
            return Ok(Some(false));
        }
        let subject = family.id.to_string();
        let event = by
            .event("family.revoked", now)
            .subject(&subject)
            .user(family.user_id)
            .client(&family.client_id)
            .details(serde_json::json!({ "reason": reason }));
        crate::audit::insert(conn, &event).await?;
        Ok(Some(true))
    })
    .await
}

/// A family and every event recorded about it, oldest first: why it ended, for `tokens why`.
pub async fn find_history(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> QueryResult<Option<(Family, Vec<crate::audit::AuditEvent>)>> {
    let Some(family) = find_family(conn, id).await? else {
        return Ok(None);
    };
    let events = crate::audit::find_by_subject(conn, &family.id.to_string()).await?;
    Ok(Some((family, events)))
}

/// Revokes every live family of `client_id`, whoever it was for; returns their ids.
pub async fn revoke_families_of_client(
    conn: &mut AsyncPgConnection,
    client_id: &str,
    reason: &str,
    now: OffsetDateTime,
) -> QueryResult<Vec<Uuid>> {
    let ids: Vec<Uuid> = refresh_families::table
        .filter(refresh_families::client_id.eq(client_id))
        .filter(refresh_families::revoked_at.is_null())
        .select(refresh_families::id)
        .load(conn)
        .await?;
    for id in &ids {
        // Under each family's lock, as every revocation.
        lock_family(conn, *id).await?;
        revoke_family(conn, *id, reason, now).await?;
    }
    Ok(ids)
}

/// Revokes every live family of `user_id` (for one client, or all); returns their ids.
pub async fn revoke_families_of_user(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    client_id: Option<&str>,
    reason: &str,
    now: OffsetDateTime,
) -> QueryResult<Vec<Uuid>> {
    let mut query = refresh_families::table
        .filter(refresh_families::user_id.eq(user_id))
        .filter(refresh_families::revoked_at.is_null())
        .select(refresh_families::id)
        .into_boxed();
    if let Some(c) = client_id {
        query = query.filter(refresh_families::client_id.eq(c.to_owned()));
    }
    let ids: Vec<Uuid> = query.load(conn).await?;
    for id in &ids {
        // Lock each family, so a refresh racing this revocation either finishes first (and its
        // access token is revoked here) or sees the family revoked.
        lock_family(conn, *id).await?;
        revoke_family(conn, *id, reason, now).await?;
    }
    Ok(ids)
}

/// Deletes families past their absolute end or revoked long enough ago that every access token
/// they issued has expired, and stale access-token records; at most `batch` rows each.
pub async fn delete_expired(
    conn: &mut AsyncPgConnection,
    now: OffsetDateTime,
    longest_access_ttl: Duration,
    batch: i64,
) -> QueryResult<usize> {
    // Used tokens are kept while their family lives: a replay must still be recognised as reuse.
    let families = crate::db::delete_batch(
        conn,
        "refresh_families",
        "absolute_expires_at <= $1",
        now,
        batch,
    )
    .await?;
    let revoked = crate::db::delete_batch(
        conn,
        "refresh_families",
        "revoked_at IS NOT NULL AND revoked_at <= $1",
        now - longest_access_ttl,
        batch,
    )
    .await?;
    let access =
        crate::db::delete_batch(conn, "family_access_tokens", "expires_at <= $1", now, batch)
            .await?;
    Ok(families + revoked + access)
}
