//! What a signed-in person sees of their own account: who they are, and the apps they allowed.

use diesel_async::AsyncPgConnection;

use crate::sessions::SignedInSession;
use crate::users::consents::{self, ConsentView};
use crate::users::{self, User};

/// The account page's content.
#[derive(Debug)]
pub struct Overview {
    /// The person.
    pub user: User,
    /// The apps they allowed, and what to.
    pub consents: Vec<ConsentView>,
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
) -> diesel::QueryResult<Option<Overview>> {
    let Some(user) = current_user(conn, signed).await? else {
        return Ok(None);
    };
    let consents = consents::list_for_user(conn, user.id).await?;
    Ok(Some(Overview { user, consents }))
}
