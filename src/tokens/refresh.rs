//! Refresh tokens, in families that rotate on every use. A family is one row: its current
//! generation and what that generation's token carries. The token (`kwrf_`) names its family and
//! generation under a MAC with a server key, so the database holds nothing a thief could
//! present, and rotating is one conditional UPDATE of the row however many rotations came
//! before. Tokens from before this scheme (`kwrt_`, one `refresh_tokens` row each, stored as
//! SHA-256) are looked up by hash and keep working until they rotate.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{
    Array, BigInt, Integer, Nullable, Text, Timestamptz, Untyped, Uuid as SqlUuid,
};
use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl};
use ring::hmac;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::audit::Actor;
use crate::auth_methods::AuthMethods;
use crate::db::schema::{family_access_tokens, refresh_families, refresh_tokens};
use crate::scope::Scopes;
use crate::tokens::opaque::{PlainToken, TokenHash};
use crate::tokens::revoked;

/// Prefix of refresh tokens, recognisable in leaks.
pub const REFRESH_TOKEN_PREFIX: &str = "kwrf_";
/// Prefix of refresh tokens issued before they were MAC'd (a row each, looked up by hash).
pub const LEGACY_REFRESH_TOKEN_PREFIX: &str = "kwrt_";
/// The token layout's version, its first byte: another layout would be another number.
const TOKEN_VERSION: u8 = 1;
/// Version, family id, generation (big-endian): what the MAC covers.
const BODY_LEN: usize = 1 + 16 + 4;
/// HMAC-SHA256, untruncated.
const TAG_LEN: usize = 32;
/// The base64url length of body and tag, so anything else is refused before decoding.
const ENCODED_LEN: usize = ((BODY_LEN + TAG_LEN) * 4).div_ceil(3);

/// Whether `token` looks like a refresh token (either layout), for guessing a token's kind.
#[must_use]
pub fn looks_like_refresh_token(token: &str) -> bool {
    token.starts_with(REFRESH_TOKEN_PREFIX) || token.starts_with(LEGACY_REFRESH_TOKEN_PREFIX)
}

/// What a refresh token names: its family and generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Presented {
    /// The family.
    pub family_id: Uuid,
    /// 0 for the family's first token, +1 per rotation.
    pub generation: i32,
    /// Issued before tokens were MAC'd: a `refresh_tokens` row holds its hash.
    pub legacy: bool,
}

impl Presented {
    /// What a `kwrf_` token says, its MAC unchecked: for an operator naming a family by one of
    /// its tokens (`keyward tokens why`), never to grant anything.
    #[must_use]
    pub fn unverified(token: &str) -> Option<Self> {
        let raw = decode(token)?;
        Self::from_body(&raw[..BODY_LEN])
    }

    fn from_body(body: &[u8]) -> Option<Self> {
        if body.len() != BODY_LEN || body[0] != TOKEN_VERSION {
            return None;
        }
        let family_id = Uuid::from_slice(&body[1..17]).ok()?;
        let generation = i32::from_be_bytes(body[17..21].try_into().ok()?);
        (generation >= 0).then_some(Self {
            family_id,
            generation,
            legacy: false,
        })
    }
}

/// The bytes of a `kwrf_` token of the right length, else `None`.
fn decode(token: &str) -> Option<Vec<u8>> {
    let encoded = token.strip_prefix(REFRESH_TOKEN_PREFIX)?;
    if encoded.len() != ENCODED_LEN {
        return None;
    }
    URL_SAFE_NO_PAD
        .decode(encoded)
        .ok()
        .filter(|raw| raw.len() == BODY_LEN + TAG_LEN)
}

/// How refresh tokens live and rotate.
#[derive(Clone, Copy)]
pub struct RefreshPolicy {
    /// An unused token expires after this.
    pub idle: Duration,
    /// A family ends this long after it started, whatever the rotations.
    pub absolute: Duration,
    /// The grace window for the immediate predecessor, if enabled.
    pub grace: Option<Duration>,
    /// The key the successors of legacy (`kwrt_`) tokens were derived with under a grace window.
    pub secret: [u8; 32],
    /// The key tokens are MAC'd with.
    pub mac_key: [u8; 32],
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
    fn mac(&self) -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, &self.mac_key)
    }

    /// The token of `generation` in `family`: the same every time it is asked for, so a retry
    /// within the grace window gets the very token the lost response carried.
    #[must_use]
    pub fn token_for(&self, family: Uuid, generation: i32) -> PlainToken {
        let mut raw = Vec::with_capacity(BODY_LEN + TAG_LEN);
        raw.push(TOKEN_VERSION);
        raw.extend_from_slice(family.as_bytes());
        raw.extend_from_slice(&generation.to_be_bytes());
        let tag = hmac::sign(&self.mac(), &raw);
        raw.extend_from_slice(tag.as_ref());
        PlainToken::from_secret(format!(
            "{REFRESH_TOKEN_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(raw)
        ))
    }

    /// The family and generation `token` names, if it is a `kwrf_` token whose MAC is ours
    /// (compared in constant time). A forged or altered token names nothing.
    #[must_use]
    pub fn read(&self, token: &str) -> Option<Presented> {
        let raw = decode(token)?;
        let (body, tag) = raw.split_at(BODY_LEN);
        hmac::verify(&self.mac(), body, tag).ok()?;
        Presented::from_body(body)
    }

    /// Whether `token` is one of ours, by its MAC or its legacy prefix.
    #[must_use]
    pub fn recognise(&self, token: &str) -> Recognised {
        if let Some(presented) = self.read(token) {
            Recognised::Current(presented)
        } else if token.starts_with(LEGACY_REFRESH_TOKEN_PREFIX) {
            Recognised::Legacy
        } else {
            Recognised::Foreign
        }
    }

    /// The successor a legacy token was given under a grace window: HMAC of the predecessor.
    #[must_use]
    pub fn legacy_successor_of(&self, presented: &str) -> PlainToken {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &self.secret);
        let tag = hmac::sign(&key, presented.as_bytes());
        PlainToken::from_secret(format!(
            "{LEGACY_REFRESH_TOKEN_PREFIX}{}",
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
    /// The current generation: the one token of the family that may be rotated.
    pub generation: i32,
    /// The scope the current token's access tokens carry (at most `scopes`).
    pub token_scopes: Vec<String>,
    /// The current token's idle expiry.
    pub token_expires_at: OffsetDateTime,
    /// When the current token was issued (its predecessor spent).
    pub rotated_at: OffsetDateTime,
}

/// One refresh token of a family issued before tokens were MAC'd (`kwrt_`).
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
    /// Idle expiry (as issued; the family's `token_expires_at` is what counts).
    pub expires_at: OffsetDateTime,
    /// When it was rotated by the code before MAC'd tokens (later rotations only move the
    /// family's generation).
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
    /// A generation the family never reached (a database restored from an older backup).
    Unknown,
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
            Self::Unknown => "the refresh token is invalid",
            Self::WiderScope => "scope exceeds what was originally granted",
            Self::UserDisabled => "the user can no longer sign in",
        }
    }
}

/// Whether the token of `generation` in `family` may be rotated now by `client_id`, asking for
/// `scope` (or the token's own), for a person who `is_enabled`. The order matters to the grant:
/// a family that ended refuses before an older generation counts as reuse.
pub fn check_live(
    family: &Family,
    generation: i32,
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
    if generation < family.generation {
        return Err(NotLive::Used);
    }
    if generation > family.generation {
        return Err(NotLive::Unknown);
    }
    if family.token_expires_at <= now {
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
    /// Its id, chosen before: the first access token names it.
    pub id: Uuid,
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
}

/// Starts a family; returns its first token.
pub async fn insert_family(
    conn: &mut AsyncPgConnection,
    policy: &RefreshPolicy,
    new: &NewFamily<'_>,
    now: OffsetDateTime,
) -> QueryResult<PlainToken> {
    let id = new.id;
    let absolute_expires_at = now + policy.absolute;
    diesel::insert_into(refresh_families::table)
        .values((
            refresh_families::id.eq(id),
            refresh_families::client_id.eq(new.client_id),
            refresh_families::user_id.eq(new.user_id),
            refresh_families::scopes.eq(new.scopes.to_vec()),
            refresh_families::audiences.eq(new.audiences),
            refresh_families::auth_time.eq(new.auth_time),
            refresh_families::created_at.eq(now),
            refresh_families::absolute_expires_at.eq(absolute_expires_at),
            refresh_families::amr.eq(new.methods.amr()),
            refresh_families::generation.eq(0),
            refresh_families::token_scopes.eq(new.scopes.to_vec()),
            refresh_families::token_expires_at.eq((now + policy.idle).min(absolute_expires_at)),
            refresh_families::rotated_at.eq(now),
        ))
        .execute(conn)
        .await?;
    Ok(policy.token_for(id, 0))
}

/// The family an access token issued before access tokens named it (`fam`) was recorded in,
/// while the record lasts (until the token expires).
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

/// Finds a legacy (`kwrt_`) token by its hash.
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

/// The legacy token of `generation` in `family`, if that generation was issued before tokens
/// were MAC'd.
pub async fn find_legacy_generation(
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

/// What a presented string is, told without a query.
#[derive(Clone, Copy, Debug)]
pub enum Recognised {
    /// A `kwrf_` token with a valid MAC, and what it names.
    Current(Presented),
    /// A `kwrt_` token: only its row can say what it names.
    Legacy,
    /// Anything else, a forged or altered token included.
    Foreign,
}

/// What legacy token `token` names, by its row.
pub async fn find_legacy(
    conn: &mut AsyncPgConnection,
    token: &str,
) -> QueryResult<Option<Presented>> {
    Ok(find_token(conn, &TokenHash::of(token))
        .await?
        .map(|row| Presented {
            family_id: row.family_id,
            generation: row.generation,
            legacy: true,
        }))
}

/// What `token` names: a `kwrf_` token by its MAC (no query), a legacy one by its row. `None`
/// for anything else, a forged or altered token included.
pub async fn locate(
    conn: &mut AsyncPgConnection,
    policy: &RefreshPolicy,
    token: &str,
) -> QueryResult<Option<Presented>> {
    match policy.recognise(token) {
        Recognised::Current(presented) => Ok(Some(presented)),
        Recognised::Legacy => find_legacy(conn, token).await,
        Recognised::Foreign => Ok(None),
    }
}

/// Whether family `id` still stands (exists, not revoked): what an access token naming it
/// (`fam`) is judged by. A family purged after its absolute end is gone only once every access
/// token it issued has expired.
pub async fn is_standing(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<bool> {
    refresh_families::table
        .find(id)
        .filter(refresh_families::revoked_at.is_null())
        .select(refresh_families::id)
        .first::<Uuid>(conn)
        .await
        .optional()
        .map(|found| found.is_some())
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

/// What a one-statement rotation needs: the presented token's family and generation.
#[derive(Clone, Debug)]
pub struct Rotation {
    /// The family the token names.
    pub family_id: Uuid,
    /// The generation it names: it must be the current one.
    pub generation: i32,
    /// The client presenting it.
    pub client_id: String,
    /// A narrower scope asked for, if any (RFC 6749 §6).
    pub scopes: Option<Scopes>,
    /// The successor's idle expiry before the family's absolute end caps it.
    pub idle_expires_at: OffsetDateTime,
    /// Now.
    pub now: OffsetDateTime,
}

/// What the access token of a rotation carries, read in the same statement.
#[derive(Debug, QueryableByName)]
pub struct Rotated {
    /// Which of the statement's rotations this is (1-based, in the order given).
    #[diesel(sql_type = BigInt)]
    slot: i64,
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
    /// The successor's generation.
    #[diesel(sql_type = Integer)]
    pub generation: i32,
}

/// Rotations of the current tokens of live families, any number in one statement, so one round
/// trip and one commit for all of them: each moves its family's generation on by a conditional
/// UPDATE and reads the user's claims. The access token names the family (`fam`), so nothing is
/// written per access token. The answer is in the order given; `None` where any condition of
/// [`check_live`] fails (an older generation, expired, revoked, another client, a wider scope,
/// a disabled user) or where another transaction holds the family's row: nothing was written
/// for it, and the caller's transaction, which waits for the row, works out which refusal,
/// reuse, grace retry or rotation it is. A family named twice (two requests presenting one
/// token together) is rotated once, for one of them: PostgreSQL updates a row once per
/// statement whatever number of joined rows name it; the other finds the token used.
///
/// Rows held elsewhere are skipped rather than waited for (`SKIP LOCKED`): a statement for many
/// families never waits behind one busy family, and never holds one row while waiting for
/// another, so it cannot deadlock with a cut-off revoking a user's families one by one.
///
/// No indexed column changes, so PostgreSQL can update the row in place (HOT; the table keeps
/// free space on each page for it): the family's storage does not grow with its rotations.
///
/// It reads `users` too, though this is the tokens module, because the rotation must be
/// conditional on the account in the same statement. The user's row is not locked: a cut-off
/// revokes the family under the family lock after bumping the version, so either this
/// statement skips the row (and the caller waits for the cut-off and finds it revoked), or the
/// cut-off waits for this statement and revokes what it issued, or it committed first and the
/// row lock's recheck finds `revoked_at` set (READ COMMITTED re-evaluates the conditions on the
/// newest row version).
pub async fn rotate_unused(
    conn: &mut AsyncPgConnection,
    rotations: &[Rotation],
) -> QueryResult<Vec<Option<Rotated>>> {
    let statement = RotateUnused {
        ids: rotations.iter().map(|r| r.family_id).collect(),
        generations: rotations.iter().map(|r| r.generation).collect(),
        clients: rotations.iter().map(|r| r.client_id.clone()).collect(),
        // Scope tokens never hold a space (RFC 6749 §3.3), so one string per rotation carries
        // them (PostgreSQL arrays cannot be ragged).
        scopes: rotations
            .iter()
            .map(|r| r.scopes.as_ref().map(ToString::to_string))
            .collect(),
        idle_expires_at: rotations.iter().map(|r| r.idle_expires_at).collect(),
        now: rotations.iter().map(|r| r.now).collect(),
    };
    let rows: Vec<Rotated> = statement.load(conn).await?;
    let mut answers: Vec<Option<Rotated>> = rotations.iter().map(|_| None).collect();
    for row in rows {
        let slot = usize::try_from(row.slot - 1).ok();
        if let Some(answer) = slot.and_then(|i| answers.get_mut(i)) {
            *answer = Some(row);
        }
    }
    Ok(answers)
}

/// [`rotate_unused`]'s statement. Written as a query fragment rather than with `sql_query`,
/// which marks itself unsafe to cache: PostgreSQL would parse and plan this statement on every
/// refresh (the profile showed the parser and planner ahead of the executor). Its text never
/// varies (the rotations are arrays), so diesel prepares it once per connection.
struct RotateUnused {
    ids: Vec<Uuid>,
    generations: Vec<i32>,
    clients: Vec<String>,
    scopes: Vec<Option<String>>,
    idle_expires_at: Vec<OffsetDateTime>,
    now: Vec<OffsetDateTime>,
}

impl QueryId for RotateUnused {
    type QueryId = ();
    // Cached by its SQL text.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for RotateUnused {
    type SqlType = Untyped;
}

impl QueryFragment<Pg> for RotateUnused {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql(
            "WITH mine AS (SELECT f.id, v.slot, v.generation, v.idle_expires_at, v.asked_at, \
             string_to_array(v.scopes, ' ') AS narrowed FROM unnest(",
        );
        out.push_bind_param::<Array<SqlUuid>, _>(&self.ids)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Integer>, _>(&self.generations)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(&self.clients)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<Text>>, _>(&self.scopes)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Timestamptz>, _>(&self.idle_expires_at)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Timestamptz>, _>(&self.now)?;
        out.push_sql(
            ") WITH ORDINALITY AS v(id, generation, client_id, scopes, idle_expires_at, asked_at, \
             slot) JOIN refresh_families f ON f.id = v.id \
             WHERE f.generation = v.generation AND f.client_id = v.client_id \
             AND f.revoked_at IS NULL AND f.absolute_expires_at > v.asked_at \
             AND f.token_expires_at > v.asked_at \
             AND f.scopes @> COALESCE(string_to_array(v.scopes, ' '), '{}') \
             AND EXISTS (SELECT 1 FROM users u WHERE u.id = f.user_id AND u.disabled_at IS NULL) \
             FOR NO KEY UPDATE OF f SKIP LOCKED), \
             family AS (UPDATE refresh_families f SET generation = f.generation + 1, \
             token_scopes = COALESCE(mine.narrowed, f.token_scopes), \
             token_expires_at = LEAST(mine.idle_expires_at, f.absolute_expires_at), \
             rotated_at = mine.asked_at \
             FROM mine WHERE f.id = mine.id AND f.generation = mine.generation \
             RETURNING mine.slot, f.user_id, f.audiences, f.auth_time, f.amr, f.token_scopes, \
             f.generation) \
             SELECT family.slot, family.user_id, COALESCE(u.subject, u.id::text) AS sub, \
             family.audiences, family.auth_time, family.amr, u.roles, u.credential_version, \
             family.token_scopes AS scopes, family.generation \
             FROM family JOIN users u ON u.id = family.user_id",
        );
        Ok(())
    }
}

/// Moves family `id` from generation `from` to the next, under the family lock the caller
/// holds: the successor carries `scopes` and expires at `expires_at`. False when the family is
/// no longer at `from` (the one conditional update that decides who rotates).
pub async fn advance(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    from: i32,
    scopes: &Scopes,
    expires_at: OffsetDateTime,
    now: OffsetDateTime,
) -> QueryResult<bool> {
    diesel::update(
        refresh_families::table
            .find(id)
            .filter(refresh_families::generation.eq(from)),
    )
    .set((
        refresh_families::generation.eq(from + 1),
        refresh_families::token_scopes.eq(scopes.to_vec()),
        refresh_families::token_expires_at.eq(expires_at),
        refresh_families::rotated_at.eq(now),
    ))
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
    // Access tokens name their family (`fam`) and stand only while it does: a family past its
    // absolute end stays until the last access token it issued has expired.
    let families = crate::db::delete_batch(
        conn,
        "refresh_families",
        "absolute_expires_at <= $1",
        now - longest_access_ttl,
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
