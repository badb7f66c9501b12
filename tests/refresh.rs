//! Refresh tokens (RFC 6749 §6): rotation on every use and reuse detection (with and without the
//! grace window, under races), expiry, cut-offs, and the one rule of a live token agreed by the
//! one-statement rotation, the transaction and introspection.

use reqwest::StatusCode;
use serde_json::Value;
use time::Duration;

use crate::support::cli::{keyward, stdout};
use crate::support::endpoints::{refreshing, refreshing_alice, rt};
use crate::support::oauth::{TestClient, assert_oauth_error};
use crate::support::{GOOD_PASSWORD, TestApp};

/// The grace window switched off, for the tests of reuse detection itself.
const NO_GRACE: (&str, &str) = ("KEYWARD_REFRESH_REUSE_GRACE", "0");

#[tokio::test(flavor = "multi_thread")]
async fn each_refresh_rotates_and_a_replay_revokes_the_whole_family() {
    let (app, client, first) = refreshing_alice(&[]).await;
    let rt0 = rt(&first);
    assert!(rt0.starts_with("kwrf_"));

    let second: Value = app.refresh(&client, &rt0, None).await.json().await.unwrap();
    let rt1 = rt(&second);
    assert_ne!(rt0, rt1);
    assert_eq!(second["scope"], "invoices:read offline_access openid");
    let third: Value = app.refresh(&client, &rt1, None).await.json().await.unwrap();
    let rt2 = rt(&third);
    let at2 = third["access_token"].as_str().unwrap().to_owned();
    assert_eq!(app.introspect(&client, &at2).await["active"], true);
    assert_eq!(app.introspect(&client, &rt2).await["active"], true);

    // rt0 was rotated long ago: presenting it is reuse.
    assert_oauth_error(app.refresh(&client, &rt0, None).await, "invalid_grant").await;
    // Now nothing of the family works: the newest refresh token, and its access token.
    assert_oauth_error(app.refresh(&client, &rt2, None).await, "invalid_grant").await;
    assert_eq!(app.introspect(&client, &rt2).await["active"], false);
    assert_eq!(app.introspect(&client, &at2).await["active"], false);
    assert_eq!(app.userinfo(&at2).await.status(), StatusCode::UNAUTHORIZED);
    let first_at = first["access_token"].as_str().unwrap();
    assert_eq!(
        app.introspect(&client, first_at).await["active"],
        false,
        "even the first access token"
    );

    // The operator can see why.
    let why = stdout(&keyward(&app, &["tokens", "why", &rt1], ""));
    assert!(
        why.contains("revoked\t") && why.contains("refresh token reuse"),
        "{why}"
    );
    assert!(
        why.contains("refresh.reused") && why.contains("\"replayed_generation\":0"),
        "{why}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_grace_window_off_of_fifty_racing_refreshes_one_wins_and_the_losers_revoke_the_family()
 {
    let (app, client, first) = refreshing_alice(&[NO_GRACE]).await;
    let rt0 = rt(&first);
    let results = race(&app, &client, &rt0, 50).await;
    let ok: Vec<&Value> = results
        .iter()
        .filter(|(s, _)| *s == StatusCode::OK)
        .map(|(_, v)| v)
        .collect();
    assert_eq!(ok.len(), 1, "exactly one refresh succeeds");
    assert!(
        results
            .iter()
            .all(|(s, _)| *s == StatusCode::OK || *s == StatusCode::BAD_REQUEST),
        "no 500s"
    );
    let (tokens, revoked) = app.family_rows().await;
    assert_eq!(tokens, 2, "the database holds exactly one successor");
    assert_eq!(revoked, 1, "the replays revoked the family");
    assert_oauth_error(
        app.refresh(&client, &rt(ok[0]), None).await,
        "invalid_grant",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotation_is_one_round_trip_to_the_database() {
    // Key and client checks every 5 minutes, so none falls inside the loop; housekeeping's first
    // round may add a handful of statements, and a connection idle for a second its check. Each
    // rotation sends one statement; with the pool's check before every checkout it sent two, as
    // a transaction of reads, locks and writes ten.
    let (app, client, first) = refreshing_alice(&[("KEYWARD_KEY_RELOAD", "5m")]).await;
    let statements = app.state.metrics.db_queries();
    let before = statements.get();
    let rotations: u16 = 30;
    let mut token = rt(&first);
    for _ in 0..rotations {
        let resp = app.refresh(&client, &token, None).await;
        assert_eq!(resp.status(), StatusCode::OK);
        token = rt(&resp.json::<Value>().await.unwrap());
    }
    let sent = statements.get() - before;
    assert!(
        sent < u64::from(rotations) * 2,
        "{sent} statements sent for {rotations} rotations"
    );
    // Nothing was skipped: the chain is whole and its last token works.
    assert_eq!(app.family_rows().await, (i64::from(rotations) + 1, 0));
    assert_eq!(app.introspect(&client, &token).await["active"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn under_the_default_settings_a_relying_party_refreshing_from_five_processes_stays_signed_in()
{
    // Apache's mod_auth_openidc has no refresh lock: after the access token expires, a page's
    // parallel requests make five processes present one refresh token together.
    let (app, client, first) = refreshing_alice(&[]).await;
    let mut tokens = first;
    for round in 0..10 {
        let results = race(&app, &client, &rt(&tokens), 5).await;
        assert!(
            results.iter().all(|(s, _)| *s == StatusCode::OK),
            "round {round}: every process gets an answer"
        );
        let successors: std::collections::BTreeSet<String> =
            results.iter().map(|(_, v)| rt(v)).collect();
        assert_eq!(
            successors.len(),
            1,
            "round {round}: one successor, no branch"
        );
        assert_eq!(
            app.family_rows().await.1,
            0,
            "round {round}: the family lives"
        );
        // A new sign-in (a new family) for the next round.
        tokens = app
            .tokens_for(&client, "openid offline_access invoices:read")
            .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn with_a_grace_window_racing_refreshes_all_get_the_same_successor() {
    let (app, client, first) = refreshing_alice(&[("KEYWARD_REFRESH_REUSE_GRACE", "30s")]).await;
    let rt0 = rt(&first);
    let results = race(&app, &client, &rt0, 50).await;
    assert!(
        results.iter().all(|(s, _)| *s == StatusCode::OK),
        "every racer gets an answer"
    );
    let successors: std::collections::BTreeSet<String> =
        results.iter().map(|(_, v)| rt(v)).collect();
    assert_eq!(successors.len(), 1, "one successor, no branch");
    let (tokens, revoked) = app.family_rows().await;
    assert_eq!((tokens, revoked), (2, 0));
    let next = successors.into_iter().next().unwrap();
    assert_eq!(
        app.refresh(&client, &next, None).await.status(),
        StatusCode::OK,
        "the family lives"
    );
}

async fn race(
    app: &TestApp,
    client: &TestClient,
    token: &str,
    n: usize,
) -> Vec<(StatusCode, Value)> {
    // Connections are opened first, then all requests are released together.
    let clients: Vec<reqwest::Client> = (0..n).map(|_| reqwest::Client::new()).collect();
    for c in &clients {
        c.get(format!("{}/healthz", app.base)).send().await.unwrap();
    }
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(n));
    let mut handles = Vec::new();
    for c in clients {
        let (barrier, base, token) = (barrier.clone(), app.base.clone(), token.to_owned());
        let (id, secret) = (client.id.clone(), client.secret.clone());
        handles.push(tokio::spawn(async move {
            barrier.wait().await;
            let resp = c
                .post(format!("{base}/token"))
                .basic_auth(id, secret)
                .form(&[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", token.as_str()),
                ])
                .send()
                .await
                .unwrap();
            let status = resp.status();
            (status, resp.json::<Value>().await.unwrap())
        }));
    }
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn the_grace_window_covers_only_the_immediate_predecessor_and_only_briefly() {
    let (app, client, first) = refreshing_alice(&[("KEYWARD_REFRESH_REUSE_GRACE", "30s")]).await;
    let rt0 = rt(&first);
    let rt1 = rt(&app
        .refresh(&client, &rt0, None)
        .await
        .json::<Value>()
        .await
        .unwrap());
    // The response was lost: the client retries with rt0 and gets rt1 again.
    let again: Value = app.refresh(&client, &rt0, None).await.json().await.unwrap();
    assert_eq!(rt(&again), rt1);
    assert!(again["access_token"].is_string());

    // Two generations back is reuse, window or not.
    let rt2 = rt(&app
        .refresh(&client, &rt1, None)
        .await
        .json::<Value>()
        .await
        .unwrap());
    assert_oauth_error(app.refresh(&client, &rt0, None).await, "invalid_grant").await;
    // The family is revoked.
    assert_oauth_error(app.refresh(&client, &rt2, None).await, "invalid_grant").await;

    // After the window, even the immediate predecessor is reuse.
    let (app, client, first) = refreshing_alice(&[("KEYWARD_REFRESH_REUSE_GRACE", "30s")]).await;
    let rt0 = rt(&first);
    let rt1 = rt(&app
        .refresh(&client, &rt0, None)
        .await
        .json::<Value>()
        .await
        .unwrap());
    app.clock().advance(Duration::seconds(31));
    assert_oauth_error(app.refresh(&client, &rt0, None).await, "invalid_grant").await;
    assert_oauth_error(app.refresh(&client, &rt1, None).await, "invalid_grant").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_racing_revoke_leaves_nothing_active() {
    for _ in 0..3 {
        let (app, client, first) = refreshing_alice(&[]).await;
        let rt0 = rt(&first);
        let secret = client.secret.clone().unwrap();
        let revoke = app
            .browser
            .client
            .post(format!("{}/revoke", app.base))
            .basic_auth(&client.id, Some(&secret))
            .form(&[("token", rt0.as_str())])
            .send();
        let (refreshed, revoked) = tokio::join!(app.refresh(&client, &rt0, None), revoke);
        assert_eq!(revoked.unwrap().status(), StatusCode::OK);
        if refreshed.status() == StatusCode::OK {
            let body: Value = refreshed.json().await.unwrap();
            assert_eq!(app.introspect(&client, &rt(&body)).await["active"], false);
            assert_eq!(
                app.introspect(&client, body["access_token"].as_str().unwrap())
                    .await["active"],
                false
            );
        }
        assert_eq!(app.introspect(&client, &rt0).await["active"], false);
        assert_eq!(
            app.introspect(&client, first["access_token"].as_str().unwrap())
                .await["active"],
            false
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn another_client_cannot_use_or_harm_a_refresh_token() {
    let (app, client, first) = refreshing_alice(&[]).await;
    let thief = app.register_client("thief", refreshing()).await;
    let rt0 = rt(&first);
    assert_oauth_error(app.refresh(&thief, &rt0, None).await, "invalid_grant").await;
    assert_eq!(
        app.introspect(&thief, &rt0).await["active"],
        false,
        "not its business"
    );
    // The victim's family is untouched.
    assert_eq!(
        app.refresh(&client, &rt0, None).await.status(),
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn scope_narrows_on_refresh_but_never_widens_past_the_grant() {
    let (app, client, first) = refreshing_alice(&[]).await;
    let narrow: Value = app
        .refresh(&client, &rt(&first), Some("openid"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(narrow["scope"], "openid");
    let wider = app
        .refresh(&client, &rt(&narrow), Some("openid email"))
        .await;
    assert_oauth_error(wider, "invalid_scope").await;
    // The original grant stays the ceiling: going back up to it is allowed.
    let back: Value = app
        .refresh(&client, &rt(&narrow), Some("openid invoices:read"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(back["scope"], "invoices:read openid");
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_and_absolute_expiry_end_a_family() {
    let (app, client, first) = refreshing_alice(&[]).await;
    app.clock().advance(Duration::days(15));
    assert_oauth_error(
        app.refresh(&client, &rt(&first), None).await,
        "invalid_grant",
    )
    .await;

    let (app, client, first) = refreshing_alice(&[]).await;
    let mut token = rt(&first);
    for _ in 0..2 {
        app.clock().advance(Duration::days(10));
        token = rt(&app
            .refresh(&client, &token, None)
            .await
            .json::<Value>()
            .await
            .unwrap());
    }
    // Day 20: the new token's idle expiry is capped at day 30, the family's end.
    let info = app.introspect(&client, &token).await;
    let start = app.clock().now() - Duration::days(20);
    assert_eq!(
        info["exp"].as_i64().unwrap(),
        (start + Duration::days(30)).unix_timestamp()
    );
    app.clock().advance(Duration::days(10));
    assert_oauth_error(app.refresh(&client, &token, None).await, "invalid_grant").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn password_change_disable_and_sign_out_everywhere_revoke_families() {
    let (app, client, first) = refreshing_alice(&[]).await;
    let user_id = app.find_user_by_name("alice").await;
    let mut conn = keyward::db::connect(&app.state.db).await.unwrap();
    let hash = app.state.hasher.hash("a new long password").await.unwrap();
    keyward::users::update_password(
        &mut conn,
        user_id,
        &hash,
        &keyward::audit::Actor::cli(),
        app.clock().now(),
    )
    .await
    .unwrap();
    assert_oauth_error(
        app.refresh(&client, &rt(&first), None).await,
        "invalid_grant",
    )
    .await;
    assert_eq!(
        app.introspect(&client, first["access_token"].as_str().unwrap())
            .await["active"],
        false
    );

    let (app, client, first) = refreshing_alice(&[]).await;
    let out = keyward(&app, &["users", "sign-out-everywhere", "alice"], "");
    assert!(out.status.success());
    assert_oauth_error(
        app.refresh(&client, &rt(&first), None).await,
        "invalid_grant",
    )
    .await;

    let (app, client, first) = refreshing_alice(&[]).await;
    let out = keyward(&app, &["users", "disable", "alice"], "");
    assert!(out.status.success());
    assert_oauth_error(
        app.refresh(&client, &rt(&first), None).await,
        "invalid_grant",
    )
    .await;
}

/// Refreshes of three families released together with a password change, over many rounds:
/// whichever commits first, nothing issued before or during the change stays live, and nobody
/// gets a 500 (a refresh that locked its family and then the user deadlocked with a cut-off,
/// which locks the user and then each family).
#[tokio::test(flavor = "multi_thread")]
async fn refreshes_racing_a_password_change_leave_nothing_live() {
    let app = TestApp::spawn().await;
    app.create_user("alice", GOOD_PASSWORD).await;
    let client = app.register_client("webapp", refreshing()).await;
    let user_id = app.find_user_by_name("alice").await;
    // The same password each round: the change still cuts everything off.
    let hash = app.state.hasher.hash(GOOD_PASSWORD).await.unwrap();
    let scope = "openid offline_access invoices:read";
    for _ in 0..15 {
        let mut families = Vec::new();
        for _ in 0..3 {
            families.push(app.tokens_for(&client, scope).await);
        }
        let mut conn = keyward::db::connect(&app.state.db).await.unwrap();
        let barrier = tokio::sync::Barrier::new(families.len() + 1);
        let one = async |tokens: &Value| {
            barrier.wait().await;
            let resp = app.refresh(&client, &rt(tokens), None).await;
            (resp.status(), resp.json::<Value>().await.unwrap())
        };
        let change = async {
            barrier.wait().await;
            keyward::users::update_password(
                &mut conn,
                user_id,
                &hash,
                &keyward::audit::Actor::cli(),
                app.clock().now(),
            )
            .await
        };
        let (a, b, c, changed) = tokio::join!(
            one(&families[0]),
            one(&families[1]),
            one(&families[2]),
            change
        );
        changed.expect("the password change commits");
        for (status, body) in [a, b, c] {
            assert!(
                status == StatusCode::OK || status == StatusCode::BAD_REQUEST,
                "{status}: {body}"
            );
            if status == StatusCode::OK {
                assert_eq!(app.introspect(&client, &rt(&body)).await["active"], false);
                let access = body["access_token"].as_str().unwrap();
                assert_eq!(app.introspect(&client, access).await["active"], false);
            }
        }
        for tokens in &families {
            assert_eq!(app.introspect(&client, &rt(tokens)).await["active"], false);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn purge_deletes_what_expired_and_keeps_what_reuse_detection_needs() {
    let (app, client, first) = refreshing_alice(&[NO_GRACE]).await;
    let rt1 = rt(&app
        .refresh(&client, &rt(&first), None)
        .await
        .json::<Value>()
        .await
        .unwrap());
    let out = keyward(&app, &["tokens", "purge"], "");
    assert!(out.status.success());
    // The used token is still there: replaying it is still caught.
    assert_oauth_error(
        app.refresh(&client, &rt(&first), None).await,
        "invalid_grant",
    )
    .await;
    assert_oauth_error(app.refresh(&client, &rt1, None).await, "invalid_grant").await;
    app.clock().advance(Duration::days(31));
    let mut conn = keyward::db::connect(&app.state.db).await.unwrap();
    let purged = keyward::housekeeping::purge(&mut conn, app.clock().now(), Duration::minutes(10))
        .await
        .unwrap();
    assert!(purged.refresh >= 1, "{purged:?}");
    assert_eq!(app.family_rows().await, (0, 0));
}

/// Each way a refresh token can stop standing, set up on a fresh family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Case {
    Live,
    Used,
    IdleExpired,
    AbsoluteExpired,
    Revoked,
    OtherClient,
    WiderScope,
    UserDisabled,
    PasswordChanged,
}

impl Case {
    const ALL: [Self; 9] = [
        Self::Live,
        Self::Used,
        Self::IdleExpired,
        Self::AbsoluteExpired,
        Self::Revoked,
        Self::OtherClient,
        Self::WiderScope,
        Self::UserDisabled,
        Self::PasswordChanged,
    ];

    /// What the Rust rule must say.
    fn expected(self) -> Result<(), keyward::tokens::refresh::NotLive> {
        use keyward::tokens::refresh::NotLive;
        match self {
            Self::Live => Ok(()),
            Self::Used => Err(NotLive::Used),
            Self::IdleExpired | Self::AbsoluteExpired => Err(NotLive::Expired),
            // A cut-off (a password change) revokes the family under its lock.
            Self::Revoked | Self::PasswordChanged => Err(NotLive::Revoked),
            Self::OtherClient => Err(NotLive::OtherClient),
            Self::WiderScope => Err(NotLive::WiderScope),
            Self::UserDisabled => Err(NotLive::UserDisabled),
        }
    }
}

/// Puts the family of `token` in `case`'s state; returns the scope to ask for, if any.
async fn put_in_case(
    app: &TestApp,
    client: &TestClient,
    token: &str,
    case: Case,
) -> Option<&'static str> {
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use keyward::db::schema::{refresh_families, users};
    let mut conn = keyward::db::connect(&app.state.db).await.unwrap();
    let user = app.find_user_by_name("alice").await;
    let now = app.clock().now();
    match case {
        Case::Live | Case::OtherClient => {}
        Case::Used => assert_eq!(app.refresh(client, token, None).await.status(), 200),
        Case::IdleExpired => app
            .clock()
            .advance(app.state.refresh.idle + Duration::seconds(1)),
        // Fixtures write the state directly: the absolute end alone (the token's own idle end
        // moved past it), a disabled flag without the cut-off that `users disable` performs.
        Case::AbsoluteExpired => {
            let absolute = app.state.refresh.absolute;
            diesel::update(refresh_families::table)
                .set(refresh_families::token_expires_at.eq(now + absolute + Duration::days(1)))
                .execute(&mut conn)
                .await
                .unwrap();
            app.clock().advance(absolute + Duration::seconds(1));
        }
        Case::UserDisabled => {
            diesel::update(users::table.find(user))
                .set(users::disabled_at.eq(Some(now)))
                .execute(&mut conn)
                .await
                .unwrap();
        }
        Case::Revoked => {
            let resp = app.revoke(client, token).await;
            assert_eq!(resp.status(), 200);
        }
        Case::WiderScope => return Some("openid offline_access invoices:read profile"),
        Case::PasswordChanged => {
            let hash = app.state.hasher.hash("another good secret").await.unwrap();
            let by = keyward::audit::Actor::cli();
            keyward::users::update_password(&mut conn, user, &hash, &by, now)
                .await
                .unwrap();
        }
    }
    None
}

/// What the Rust rule (the transaction's and introspection's) says of `token` for `client_id`.
async fn rust_verdict(
    app: &TestApp,
    token: &str,
    client_id: &str,
    scope: Option<&keyward::scope::Scopes>,
) -> Result<(), keyward::tokens::refresh::NotLive> {
    use keyward::tokens::refresh;
    let mut conn = keyward::db::connect(&app.state.db).await.unwrap();
    let presented = app.state.refresh.read(token).expect("a token of ours");
    let family = refresh::find_family(&mut conn, presented.family_id)
        .await
        .unwrap()
        .unwrap();
    let user = keyward::users::find(&mut conn, family.user_id)
        .await
        .unwrap();
    let enabled = user.is_some_and(|u| !u.is_disabled());
    let now = app.clock().now();
    refresh::check_live(
        &family,
        presented.generation,
        client_id,
        scope,
        enabled,
        now,
    )
}

/// Whether the one-statement rotation (the fast path alone) rotates `token`, in a transaction
/// rolled back so that the state stays as it was for the next look.
async fn sql_rotates(
    app: &TestApp,
    token: &str,
    client_id: &str,
    scope: Option<&keyward::scope::Scopes>,
) -> bool {
    use diesel_async::RunQueryDsl;
    let mut conn = keyward::db::connect(&app.state.db).await.unwrap();
    let now = app.clock().now();
    let presented = app.state.refresh.read(token).expect("a token of ours");
    let rotation = keyward::tokens::refresh::Rotation {
        family_id: presented.family_id,
        generation: presented.generation,
        client_id: client_id.to_owned(),
        scopes: scope.cloned(),
        idle_expires_at: now + app.state.refresh.idle,
        now,
    };
    diesel::sql_query("BEGIN").execute(&mut conn).await.unwrap();
    let [rotated] = <[_; 1]>::try_from(
        keyward::tokens::refresh::rotate_unused(&mut conn, &[rotation])
            .await
            .unwrap(),
    )
    .unwrap();
    diesel::sql_query("ROLLBACK")
        .execute(&mut conn)
        .await
        .unwrap();
    rotated.is_some()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_one_statement_rotation_and_the_rust_rule_agree_on_every_case() {
    for case in Case::ALL {
        // No grace window: a used token presented again is reuse, whatever the clock.
        let (app, client, tokens) = refreshing_alice(&[NO_GRACE]).await;
        let other = app.register_client("other", refreshing()).await;
        let token = rt(&tokens);
        let scope = put_in_case(&app, &client, &token, case).await;
        let presenter = if case == Case::OtherClient {
            &other
        } else {
            &client
        };
        let scopes = scope.map(|s| keyward::scope::Scopes::parse(s).unwrap());
        let rule = rust_verdict(&app, &token, &presenter.id, scopes.as_ref()).await;
        assert_eq!(rule, case.expected(), "{case:?}: the Rust rule");
        let sql = sql_rotates(&app, &token, &presenter.id, scopes.as_ref()).await;
        assert_eq!(
            sql,
            rule.is_ok(),
            "{case:?}: the statement and the rule disagree"
        );
        // And the whole grant (the statement, then the transaction) answers in RFC 6749 words.
        let resp = app.refresh(presenter, &token, scope).await;
        match case {
            Case::Live => assert_eq!(resp.status(), 200, "{case:?}"),
            Case::WiderScope => {
                assert_oauth_error(resp, "invalid_scope").await;
            }
            _ => {
                assert_oauth_error(resp, "invalid_grant").await;
            }
        }
        // Introspection by the presenting client follows the same rule.
        if case != Case::Used {
            let active = app.introspect(presenter, &token).await["active"] == true;
            let expected = matches!(case, Case::WiderScope);
            assert_eq!(active, expected, "{case:?}: introspection");
        }
    }
}

/// Takes the app's database back to before MAC'd refresh tokens (the migration's `down`), runs
/// `setup` on that schema, then migrates forward again (the migration's `up`, which gives each
/// family the generation of its newest token).
async fn before_mac_tokens(app: &TestApp, setup: &str) {
    use diesel_async::{AsyncMigrationHarness, SimpleAsyncConnection};
    use diesel_migrations::MigrationHarness;
    const MAC_TOKENS: &str = "20261209000001";
    let conn = keyward::db::establish(app.database_url()).await.unwrap();
    let mut harness = AsyncMigrationHarness::new(conn);
    while harness
        .applied_migrations()
        .unwrap()
        .iter()
        .any(|v| v.to_string() == MAC_TOKENS)
    {
        harness
            .revert_last_migration(keyward::db::MIGRATIONS)
            .unwrap();
    }
    let mut conn = keyward::db::establish(app.database_url()).await.unwrap();
    conn.batch_execute(setup).await.unwrap();
    keyward::db::run_migrations(app.database_url())
        .await
        .unwrap();
}

/// A family as the code before MAC'd tokens left it: generation 0 spent, generation 1 current,
/// each a `refresh_tokens` row holding the SHA-256 of a `kwrt_` token.
fn legacy_family(family: uuid::Uuid, user: uuid::Uuid, tokens: [&str; 2]) -> String {
    // SHA-256, as the old code stored them.
    let hex = |t: &str| {
        ring::digest::digest(&ring::digest::SHA256, t.as_bytes())
            .as_ref()
            .iter()
            .fold(String::new(), |mut hex, b| {
                use std::fmt::Write as _;
                let _ = write!(hex, "{b:02x}");
                hex
            })
    };
    format!(
        "INSERT INTO refresh_families (id, client_id, user_id, scopes, audiences, auth_time, \
         created_at, absolute_expires_at, amr) VALUES ('{family}', 'webapp', '{user}', \
         '{{openid,offline_access,invoices:read}}', '{{}}', now(), now(), now() + interval '30 days', \
         '{{pwd}}'); \
         INSERT INTO refresh_tokens (token_hash, family_id, generation, scopes, created_at, \
         expires_at, used_at) VALUES \
         ('\\x{}', '{family}', 0, '{{openid,offline_access,invoices:read}}', now(), now() + interval '14 days', now()), \
         ('\\x{}', '{family}', 1, '{{openid,offline_access,invoices:read}}', now(), now() + interval '14 days', NULL);",
        hex(tokens[0]),
        hex(tokens[1]),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_from_before_mac_tokens_work_until_they_rotate_and_their_replay_is_reuse() {
    use keyward::tokens::opaque::PlainToken;
    let (app, client, _) = refreshing_alice(&[]).await;
    let alice = app.find_user_by_name("alice").await;
    let (reused, graced) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    // The second family's current token was derived from its predecessor, as the grace window
    // of the old code made it.
    let [a0, a1] = [0, 1].map(|_| PlainToken::generate("kwrt_").expose().to_owned());
    let b0 = PlainToken::generate("kwrt_").expose().to_owned();
    let b1 = app
        .state
        .refresh
        .legacy_successor_of(&b0)
        .expose()
        .to_owned();
    let setup =
        legacy_family(reused, alice, [&a0, &a1]) + &legacy_family(graced, alice, [&b0, &b1]);
    before_mac_tokens(&app, &setup).await;
    // A new instance, as after an upgrade: its pool never saw the old schema.
    let app = app.another_instance(&[NO_GRACE]).await;

    // The current legacy token is live and rotates into a MAC'd one; the family goes on.
    assert_eq!(app.introspect(&client, &a1).await["active"], true);
    let next: Value = app.refresh(&client, &a1, None).await.json().await.unwrap();
    let r2 = rt(&next);
    assert!(r2.starts_with("kwrf_"), "{r2}");
    assert_eq!(next["scope"], "invoices:read offline_access openid");
    let r3 = rt(&app.refresh(&client, &r2, None).await.json().await.unwrap());
    assert_eq!(app.introspect(&client, &r3).await["active"], true);
    // A legacy token presented after its family moved on is reuse: the family ends.
    assert_oauth_error(app.refresh(&client, &a1, None).await, "invalid_grant").await;
    assert_oauth_error(app.refresh(&client, &r3, None).await, "invalid_grant").await;
    let why = stdout(&keyward(&app, &["tokens", "why", &r3], ""));
    assert!(why.contains("\"replayed_generation\":1"), "{why}");
    let grace = app
        .another_instance(&[("KEYWARD_REFRESH_REUSE_GRACE", "30s")])
        .await;
    // Within the grace window the immediate predecessor gets the legacy successor it was given.
    let again: Value = grace
        .refresh(&client, &b0, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(rt(&again), b1, "the same successor");
    let moved: Value = grace
        .refresh(&client, &b1, None)
        .await
        .json()
        .await
        .unwrap();
    let b2 = rt(&moved);
    assert!(b2.starts_with("kwrf_"));
    // And b1, now the predecessor of a MAC'd token, gets that token again within the window.
    let retry: Value = grace
        .refresh(&client, &b1, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(rt(&retry), b2);
    // b0 is two generations back: reuse, whatever the window.
    assert_oauth_error(grace.refresh(&client, &b0, None).await, "invalid_grant").await;
    assert_oauth_error(grace.refresh(&client, &b2, None).await, "invalid_grant").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forged_or_altered_refresh_token_changes_nothing_and_is_refused() {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (app, client, first) = refreshing_alice(&[NO_GRACE]).await;
    let token = rt(&first);
    let raw = URL_SAFE_NO_PAD
        .decode(token.strip_prefix("kwrf_").unwrap())
        .unwrap();
    let encode = |bytes: &[u8]| format!("kwrf_{}", URL_SAFE_NO_PAD.encode(bytes));
    let altered = |at: usize| {
        let mut b = raw.clone();
        b[at] ^= 1;
        encode(&b)
    };
    // What a forger can try: the next generation, another family, a changed tag, another
    // version, a truncated token, the family and generation of a real one under another key.
    let mut next = raw.clone();
    next[20] += 1;
    let other_key = keyward::tokens::refresh::RefreshPolicy {
        mac_key: [7; 32],
        ..app.state.refresh
    };
    let presented = app.state.refresh.read(&token).unwrap();
    let forgeries = [
        encode(&next),
        altered(5),
        altered(40),
        altered(0),
        encode(&raw[..raw.len() - 1]),
        other_key
            .token_for(presented.family_id, presented.generation)
            .expose()
            .to_owned(),
        format!("{token}A"),
    ];
    let (rows, revoked) = app.family_rows().await;
    for forged in &forgeries {
        assert_ne!(forged, &token);
        let resp = app.refresh(&client, forged, None).await;
        assert_oauth_error(resp, "invalid_grant").await;
        assert_eq!(app.introspect(&client, forged).await["active"], false);
        // Revoking it revokes nothing (RFC 7009 answers 200 either way).
        assert_eq!(app.revoke(&client, forged).await.status(), 200);
    }
    assert_eq!(app.family_rows().await, (rows, revoked), "nothing changed");
    // The real token still rotates: no forgery touched its family.
    assert_eq!(app.refresh(&client, &token, None).await.status(), 200);
    let metrics = app.metrics_text().await;
    let invalid = format!(
        "keyward_refresh_total{{outcome=\"invalid\"}} {}",
        forgeries.len()
    );
    assert!(
        metrics.contains(&invalid),
        "each counts as a failed redemption"
    );
}

/// The plan PostgreSQL picks for a purge batch's row selection (`EXPLAIN`, text).
async fn batch_plan(conn: &mut keyward::db::PooledConn, condition: &str) -> String {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Line {
        #[diesel(sql_type = diesel::sql_types::Text, column_name = "QUERY PLAN")]
        line: String,
    }
    let sql = format!("EXPLAIN SELECT ctid FROM refresh_families WHERE {condition} LIMIT 1000");
    let lines: Vec<Line> = diesel::sql_query(sql).load(conn).await.unwrap();
    lines
        .into_iter()
        .map(|l| l.line)
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_million_expired_families_are_purged_in_bounded_batches_and_live_ones_stay() {
    use diesel::QueryDsl;
    use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
    use keyward::housekeeping::BATCH;
    let (app, client, live) = refreshing_alice(&[]).await;
    let alice = app.find_user_by_name("alice").await;
    let mut conn = app.conn().await;
    // A million families past their absolute end, and a few thousand revoked long ago among
    // them and the live one: the revoked are few, so finding them must not mean reading the rest.
    let family = |count: u32, absolute: &str, revoked: &str| {
        format!(
            "INSERT INTO refresh_families (id, client_id, user_id, scopes, audiences, auth_time, \
             created_at, absolute_expires_at, amr, generation, token_scopes, token_expires_at, \
             rotated_at, revoked_at, revoked_reason) SELECT gen_random_uuid(), 'webapp', \
             '{alice}', '{{openid}}', '{{}}', now() - interval '40 days', now() - interval '40 days', \
             {absolute}, '{{pwd}}', 3, '{{openid}}', now() - interval '20 days', \
             now() - interval '30 days', {revoked} FROM generate_series(1, {count});"
        )
    };
    let setup = family(1_000_000, "now() - interval '10 days'", "NULL, NULL")
        + &family(
            3_000,
            "now() + interval '20 days'",
            "now() - interval '1 day', 'test'",
        )
        + "ANALYZE refresh_families;";
    conn.batch_execute(&setup).await.unwrap();

    // The few revoked families are found through an index, not by reading a million rows per
    // batch (a batch of the expired ones may read the table: nearly every row it reads matches).
    let condition = "revoked_at IS NOT NULL AND revoked_at <= now()";
    let plan = batch_plan(&mut conn, condition).await;
    assert!(!plan.contains("Seq Scan"), "{condition}:\n{plan}");
    // Drained in batches: no statement deletes more than a batch of each kind.
    let mut batches = 0;
    let mut deleted = 0;
    loop {
        let n = keyward::tokens::refresh::delete_expired(
            &mut conn,
            app.clock().now(),
            Duration::minutes(10),
            BATCH,
        )
        .await
        .unwrap();
        assert!(n <= 3 * usize::try_from(BATCH).unwrap(), "{n}");
        deleted += n;
        batches += 1;
        if n < usize::try_from(BATCH).unwrap() {
            break;
        }
    }
    assert!(deleted >= 1_003_000, "{deleted}");
    // A batch of each kind per statement: at least a thousand statements for a million rows.
    assert!(batches >= 1_000, "{batches} batches");
    let left: i64 = keyward::db::schema::refresh_families::table
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(left, 1, "only the live family stays");
    assert_eq!(app.refresh(&client, &rt(&live), None).await.status(), 200);
}

/// A rotation of `token` as `client_id` would ask for it now, with `scope` if narrowing.
fn rotation_of(
    app: &TestApp,
    token: &str,
    client_id: &str,
    scope: Option<&str>,
) -> keyward::tokens::refresh::Rotation {
    let presented = app.state.refresh.read(token).expect("a token of ours");
    let now = app.clock().now();
    keyward::tokens::refresh::Rotation {
        family_id: presented.family_id,
        generation: presented.generation,
        client_id: client_id.to_owned(),
        scopes: scope.map(|s| keyward::scope::Scopes::parse(s).unwrap()),
        idle_expires_at: now + app.state.refresh.idle,
        now,
    }
}

/// The current generation of `token`'s family.
async fn generation_of(app: &TestApp, token: &str) -> i32 {
    let family = app.state.refresh.read(token).unwrap().family_id;
    let mut conn = keyward::db::connect(&app.state.db).await.unwrap();
    keyward::tokens::refresh::find_family(&mut conn, family)
        .await
        .unwrap()
        .unwrap()
        .generation
}

#[tokio::test(flavor = "multi_thread")]
async fn one_statement_of_many_rotations_answers_each_as_it_would_alone() {
    let (app, client, first) = refreshing_alice(&[NO_GRACE]).await;
    let other = app.register_client("other", refreshing()).await;
    let scope = "openid offline_access invoices:read";
    let mut tokens = vec![rt(&first)];
    for _ in 0..5 {
        tokens.push(rt(&app.tokens_for(&client, scope).await));
    }
    // Family 2's first token is spent; family 5 is revoked.
    let spent = tokens[2].clone();
    let resp = app.refresh(&client, &spent, None).await;
    tokens[2] = rt(&resp.json::<Value>().await.unwrap());
    assert_eq!(app.revoke(&client, &tokens[5]).await.status(), 200);
    let before = {
        let mut g = Vec::new();
        for t in &tokens {
            g.push(generation_of(&app, t).await);
        }
        g
    };
    let rotations = [
        rotation_of(&app, &tokens[0], &client.id, None),
        rotation_of(&app, &spent, &client.id, None),
        rotation_of(&app, &tokens[1], &client.id, Some("offline_access")),
        rotation_of(
            &app,
            &tokens[3],
            &client.id,
            Some(&format!("{scope} profile")),
        ),
        rotation_of(&app, &tokens[4], &other.id, None),
        rotation_of(&app, &tokens[5], &client.id, None),
        // One token presented twice in the statement: rotated once.
        rotation_of(&app, &tokens[2], &client.id, None),
        rotation_of(&app, &tokens[2], &client.id, None),
    ];
    let mut conn = keyward::db::connect(&app.state.db).await.unwrap();
    let answers = keyward::tokens::refresh::rotate_unused(&mut conn, &rotations)
        .await
        .unwrap();
    let rotated: Vec<bool> = answers.iter().map(Option::is_some).collect();
    assert_eq!(&rotated[..6], [true, false, true, false, false, false]);
    assert!(rotated[6] ^ rotated[7], "one token twice: {rotated:?}");
    let narrowed = answers[2].as_ref().unwrap();
    assert_eq!(narrowed.scopes, ["offline_access"]);
    assert_eq!(answers[0].as_ref().unwrap().scopes.len(), 3);
    for (answer, family) in [(&answers[0], 0), (&answers[2], 1)] {
        assert_eq!(answer.as_ref().unwrap().generation, before[family] + 1);
    }
    let mut after = Vec::new();
    for t in &tokens {
        after.push(generation_of(&app, t).await - before[after.len()]);
    }
    assert_eq!(after, [1, 1, 1, 0, 0, 0], "each family moved once at most");
    // The successors the statement stands for are the ones that work now.
    for (token, answer) in [(&tokens[0], &answers[0]), (&tokens[1], &answers[2])] {
        let family = app.state.refresh.read(token).unwrap().family_id;
        let successor = app
            .state
            .refresh
            .token_for(family, answer.as_ref().unwrap().generation);
        assert_eq!(
            app.refresh(&client, successor.expose(), None)
                .await
                .status(),
            200
        );
    }
}

/// A connection of its own with a transaction open in which `statement` ran: its locks are held
/// until the transaction ends or the connection is dropped.
async fn holding(app: &TestApp, statement: &str) -> diesel_async::AsyncPgConnection {
    use diesel_async::{AsyncConnection as _, SimpleAsyncConnection as _};
    let mut holder = diesel_async::AsyncPgConnection::establish(app.database_url())
        .await
        .unwrap();
    holder
        .batch_execute(&format!("BEGIN; {statement}"))
        .await
        .unwrap();
    holder
}

/// A transaction of its own holding family `token`'s row lock until dropped or committed.
async fn hold_family(app: &TestApp, token: &str) -> diesel_async::AsyncPgConnection {
    let family = app.state.refresh.read(token).unwrap().family_id;
    let statement = format!("SELECT 1 FROM refresh_families WHERE id = '{family}' FOR UPDATE");
    holding(app, &statement).await
}

/// Waits until one of this database's sessions waits on a lock in a statement like `pattern`
/// (SQL `LIKE`): the app's housekeeping may wait too, and must not be taken for it.
async fn until_waiting_on_a_lock(app: &TestApp, pattern: &str) {
    use diesel::prelude::*;
    use diesel_async::{AsyncConnection as _, RunQueryDsl};
    #[derive(QueryableByName)]
    struct Waiting {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut watcher = diesel_async::AsyncPgConnection::establish(app.database_url())
        .await
        .unwrap();
    loop {
        let waiting: Waiting = diesel::sql_query(
            "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() \
             AND wait_event_type = 'Lock' AND query LIKE $1",
        )
        .bind::<diesel::sql_types::Text, _>(pattern)
        .get_result(&mut watcher)
        .await
        .unwrap();
        if waiting.n > 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shared_rotation_statement_never_waits_for_a_family_another_transaction_holds() {
    let (app, client, first) = refreshing_alice(&[NO_GRACE]).await;
    let held = rt(&first);
    let free = rt(&app
        .tokens_for(&client, "openid offline_access invoices:read")
        .await);
    let holder = hold_family(&app, &held).await;
    // Were the statement to wait for the held row, this would fail after ten seconds; skipping
    // it, the statement never meets the timeout, however slow the machine. (A connection of
    // its own, so the setting goes with it rather than back into the app's pool.)
    let mut conn = holding(&app, "SET lock_timeout = '10s'; COMMIT").await;
    let rotations = [
        rotation_of(&app, &held, &client.id, None),
        rotation_of(&app, &free, &client.id, None),
    ];
    let answers = keyward::tokens::refresh::rotate_unused(&mut conn, &rotations)
        .await
        .unwrap();
    assert!(answers[0].is_none(), "the held family is left alone");
    assert!(answers[1].is_some(), "the free one rotates");
    drop(holder);
    assert_eq!(generation_of(&app, &held).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refresh_of_a_held_family_waits_for_it_and_is_judged_on_what_its_holder_left() {
    use diesel_async::SimpleAsyncConnection as _;
    let (app, client, first) = refreshing_alice(&[NO_GRACE]).await;
    let token = rt(&first);
    // The holder commits nothing: the refresh, waiting behind it, then rotates.
    let holder = hold_family(&app, &token).await;
    let refresh = app.refresh(&client, &token, None);
    tokio::pin!(refresh);
    tokio::select! {
        _ = &mut refresh => panic!("answered while the family was held"),
        () = until_waiting_on_a_lock(&app, "%FOR UPDATE%") => {}
    }
    drop(holder);
    let resp = refresh.await;
    assert_eq!(resp.status(), 200);
    let token = rt(&resp.json::<Value>().await.unwrap());
    // The holder revokes the family: the refresh waiting behind it is refused.
    let mut holder = hold_family(&app, &token).await;
    let refresh = app.refresh(&client, &token, None);
    tokio::pin!(refresh);
    tokio::select! {
        _ = &mut refresh => panic!("answered while the family was held"),
        () = until_waiting_on_a_lock(&app, "%FOR UPDATE%") => {}
    }
    let family = app.state.refresh.read(&token).unwrap().family_id;
    holder
        .batch_execute(&format!(
            "UPDATE refresh_families SET revoked_at = now(), revoked_reason = 'test' \
             WHERE id = '{family}'; COMMIT"
        ))
        .await
        .unwrap();
    assert_oauth_error(refresh.await, "invalid_grant").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotation_withdrawn_before_its_statement_goes_out_is_not_made() {
    use diesel_async::RunQueryDsl;
    let (app, client, first) = refreshing_alice(&[NO_GRACE]).await;
    let scope = "openid offline_access invoices:read";
    let [a, b, c] = [
        rt(&first),
        rt(&app.tokens_for(&client, scope).await),
        rt(&app.tokens_for(&client, scope).await),
    ];
    let rotations = keyward::tokens::rotations::Rotations::start(app.state.db.clone(), 1);
    // The first statement waits behind a lock on `users` (which it reads), so the next
    // rotations queue behind it.
    let mut locker = holding(&app, "LOCK TABLE users IN ACCESS EXCLUSIVE MODE").await;
    let first_out = tokio::spawn(rotations.rotate(rotation_of(&app, &a, &client.id, None)));
    until_waiting_on_a_lock(&app, "%WITH mine AS%").await;
    // Queued, then given up (as when the client goes away): never sent.
    drop(rotations.rotate(rotation_of(&app, &b, &client.id, None)));
    let kept = rotations.rotate(rotation_of(&app, &c, &client.id, None));
    diesel::sql_query("ROLLBACK")
        .execute(&mut locker)
        .await
        .unwrap();
    assert!(first_out.await.unwrap().unwrap().is_some());
    assert!(kept.await.unwrap().is_some());
    assert_eq!(generation_of(&app, &a).await, 1);
    assert_eq!(generation_of(&app, &b).await, 0, "withdrawn, not rotated");
    assert_eq!(generation_of(&app, &c).await, 1);
}
