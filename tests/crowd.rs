//! A crowd behind one address while someone sprays it: past the sign-in limits a browser proves
//! work for each guess, the right password gets through, and every wrong one is still counted.

use diesel::sql_types::{Text, Timestamptz};
use diesel_async::RunQueryDsl;
use reqwest::StatusCode;

use crate::support::oauth::ClientSpec;
use crate::support::{
    GOOD_PASSWORD, TestApp, assert_see_other, csrf_of, hidden_field, solve_proof,
};

const WRONG: &str = "Summer2026!";

/// What the per-address sign-in count of loopback stands at (its GCRA arrival time).
async fn sign_in_count_of_loopback(app: &TestApp) -> time::OffsetDateTime {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = Timestamptz)]
        tat: time::OffsetDateTime,
    }
    let mut conn = keyward::db::connect(&app.state.db).await.unwrap();
    let row: Row = diesel::sql_query("SELECT tat FROM rate_limits WHERE key = $1")
        .bind::<Text, _>("sign_in_per_ip:127.0.0.1")
        .get_result(&mut conn)
        .await
        .unwrap();
    row.tat
}

/// A sign-in page's form with every field given; the challenge and counter as chosen.
async fn post_sign_in(
    browser: &crate::support::Browser,
    page: &str,
    password: &str,
    challenge: &str,
    counter: &str,
) -> reqwest::Response {
    browser
        .post_form(
            "/signin",
            &[
                ("csrf", &csrf_of(page)),
                ("username", "owner"),
                ("password", password),
                ("proof_challenge", challenge),
                ("proof", counter),
            ],
        )
        .await
}

/// The first counter that does not solve `challenge`.
fn not_a_solution(challenge: &str) -> String {
    let solution = solve_proof(challenge);
    if solution == "0" { "1" } else { "0" }.to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn past_the_limit_the_owner_on_a_new_browser_signs_in_after_a_proof_of_work() {
    let app = TestApp::spawn_with(&[("KEYWARD_LIMIT_SIGN_IN_PER_IP", "20/10m")]).await;
    app.create_user("owner", GOOD_PASSWORD).await;
    // Under the limit the page asks nothing more, and carries no script.
    let page = app.new_browser().get("/signin").await.text().await.unwrap();
    assert!(hidden_field(&page, "proof_challenge").is_none());
    assert!(!page.contains("<script"));

    // Someone at the same address sprays a common password over many names.
    for i in 0..20 {
        let resp = app.new_browser().sign_in(&format!("user{i}"), WRONG).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "guess {i}");
    }
    // The owner, on a browser never used before: the password alone is refused before any
    // hashing, and the answer asks for the extra step.
    let owner = app.new_browser();
    let refused = owner.sign_in("owner", GOOD_PASSWORD).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let refused = refused.text().await.unwrap();
    assert!(
        refused.contains("your browser first solves a short puzzle"),
        "{refused}"
    );
    assert!(refused.contains(r#"<script src="/assets/proof.js"></script>"#));
    let script = owner.get("/assets/proof.js").await;
    assert_eq!(script.status(), StatusCode::OK);
    assert!(
        script.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );

    // A new page asks for a proof from the start; with it, the owner is in.
    assert_see_other(
        &owner.sign_in_with_proof("owner", GOOD_PASSWORD).await,
        "/account",
    );
    let account = owner.get("/account").await.text().await.unwrap();
    assert!(account.contains("owner"));

    // The password grant has no page to compute a proof: it keeps its 429.
    let spec = ClientSpec {
        grants: vec!["password"],
        scopes: "openid",
        ..ClientSpec::default()
    };
    let client = app.register_client("legacy", spec).await;
    let grant = app
        .browser
        .client
        .post(format!("{}/token", app.base))
        .basic_auth(&client.id, client.secret.as_deref())
        .form(&[
            ("grant_type", "password"),
            ("username", "owner"),
            ("password", GOOD_PASSWORD),
            ("scope", "openid"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(grant.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test(flavor = "multi_thread")]
async fn past_the_limit_each_guess_costs_one_fresh_proof_and_wrong_ones_stay_counted() {
    let app = TestApp::spawn_with(&[("KEYWARD_LIMIT_SIGN_IN_PER_IP", "20/10m")]).await;
    app.create_user("owner", GOOD_PASSWORD).await;
    for i in 0..20 {
        let resp = app.new_browser().sign_in(&format!("user{i}"), WRONG).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "guess {i}");
    }
    let sprayer = app.new_browser();
    let page = sprayer.get("/signin").await.text().await.unwrap();
    let challenge = hidden_field(&page, "proof_challenge").expect("a challenge past the limit");
    assert!(page.contains(&format!(r#"data-proof="{challenge}""#)));
    let solution = solve_proof(&challenge);

    // Nothing but a solved challenge we issued passes, and refusals count nothing.
    let before = sign_in_count_of_loopback(&app).await;
    let (bits, after_bits) = challenge.split_once('.').unwrap();
    let easier = format!("{}.{after_bits}", bits.parse::<u32>().unwrap() - 8);
    let (signed, _mac) = challenge.rsplit_once('.').unwrap();
    let unsigned = format!("{signed}.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    let wrong_counter = not_a_solution(&challenge);
    for (c, n) in [
        ("", ""),
        (challenge.as_str(), ""),
        (challenge.as_str(), wrong_counter.as_str()),
        (easier.as_str(), "0"),
        (unsigned.as_str(), solution.as_str()),
    ] {
        let resp = post_sign_in(&sprayer, &page, GOOD_PASSWORD, c, n).await;
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS, "{c} {n}");
    }
    assert_eq!(sign_in_count_of_loopback(&app).await, before);

    // A solved challenge buys one guess; a wrong one is refused as ever and counted.
    let wrong = post_sign_in(&sprayer, &page, WRONG, &challenge, &solution).await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let wrong = wrong.text().await.unwrap();
    assert!(wrong.contains("Wrong username or password."));
    let next = hidden_field(&wrong, "proof_challenge").expect("the next guess needs a new one");
    assert_ne!(next, challenge);
    assert!(sign_in_count_of_loopback(&app).await > before);

    // The same proof again, even with the right password, buys nothing.
    let replay = post_sign_in(&sprayer, &page, GOOD_PASSWORD, &challenge, &solution).await;
    assert_eq!(replay.status(), StatusCode::TOO_MANY_REQUESTS);

    // The per-username lockout (5 failures by default, one of them above) still holds with a
    // proof per guess.
    for _ in 0..4 {
        let resp = sprayer.sign_in_with_proof("owner", WRONG).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    }
    let locked = sprayer.sign_in_with_proof("owner", GOOD_PASSWORD).await;
    assert_eq!(locked.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(
        locked
            .text()
            .await
            .unwrap()
            .contains("Too many failed attempts")
    );

    // Each accepted and refused proof is counted for the operator.
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains(r#"keyward_sign_in_proofs_total{outcome="accepted"} 6"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"keyward_sign_in_proofs_total{outcome="refused"} 5"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn past_the_global_limit_a_browser_from_anywhere_signs_in_after_a_proof_of_work() {
    let app = TestApp::spawn_with(&[
        ("KEYWARD_LIMIT_SIGN_IN_PER_IP", "off"),
        ("KEYWARD_LIMIT_SIGN_IN_GLOBAL", "10/1m"),
        ("KEYWARD_SIGN_IN_PROOF_BITS", "12"),
    ])
    .await;
    app.create_user("carol", GOOD_PASSWORD).await;
    for i in 0..10 {
        let resp = app.new_browser().sign_in(&format!("user{i}"), WRONG).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "guess {i}");
    }
    let carol = app.new_browser();
    assert_eq!(
        carol.sign_in("carol", GOOD_PASSWORD).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    let page = carol.get("/signin").await.text().await.unwrap();
    let challenge = hidden_field(&page, "proof_challenge").unwrap();
    assert!(
        challenge.starts_with("12."),
        "the configured difficulty: {challenge}"
    );
    assert_see_other(
        &carol.sign_in_with_proof("carol", GOOD_PASSWORD).await,
        "/account",
    );
}
