//! What a signed-in person sees of their own account: who they are, the apps they allowed, and
//! where they are signed in (and signing other browsers out).

use diesel_async::AsyncPgConnection;

use crate::audit::Actor;
use crate::sessions::SignedInSession;
use crate::sessions::store::{self as session_store, SessionView, Which};
use crate::users::consents::{self, ConsentView};
use crate::users::{self, User};

/// The account page's content.
#[derive(Debug)]
pub struct Overview {
    /// The person.
    pub user: User,
    /// The apps they allowed, and what to.
    pub consents: Vec<ConsentView>,
    /// The browsers signed in, most recently used first.
    pub sessions: Vec<SessionView>,
    /// Their second factors.
    pub factors: crate::users::factors::Factors,
}

/// The signed-in person as they are now: `None` when disabled or deleted since, and the
/// browser's session should then end.
pub async fn current_user(
    conn: &mut AsyncPgConnection,
    signed: &SignedInSession,
) -> diesel::QueryResult<Option<User>> {
    Ok(users::find(conn, signed.user_id)
        .await?
        .filter(|u| !u.is_disabled()))
}

/// The account page of the signed-in person, or `None` as [`current_user`].
pub async fn overview(
    conn: &mut AsyncPgConnection,
    signed: &SignedInSession,
    now: time::OffsetDateTime,
) -> diesel::QueryResult<Option<Overview>> {
    let Some(user) = current_user(conn, signed).await? else {
        return Ok(None);
    };
    let consents = consents::list_for_user(conn, user.id).await?;
    let sessions = session_store::list_for_user(conn, user.id, now).await?;
    let factors = crate::users::factors::of(conn, user.id).await?;
    Ok(Some(Overview {
        user,
        consents,
        sessions,
        factors,
    }))
}

/// Signs other browsers of the signed-in person out: one, or all but the asking one. Recorded
/// as `session.ended` by the person; returns how many ended.
pub async fn sign_out_browsers(
    conn: &mut AsyncPgConnection,
    signed: &SignedInSession,
    which: Which<'_>,
    ip: std::net::IpAddr,
    now: time::OffsetDateTime,
) -> diesel::QueryResult<usize> {
    let by = Actor::user(signed.user_id, Some(ip.into()));
    session_store::end_for_user(conn, signed.user_id, which, &by, now).await
}
