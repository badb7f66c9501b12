//! Outbound mail through a real SMTP server process: the transactional outbox (a rollback sends
//! nothing, an outage loses nothing), giving up with an audit event, two instances sending each
//! mail once, the development sink, and `keyward mail test`.

use std::os::unix::fs::PermissionsExt as _;

use diesel::sql_types::{Int4, Nullable, Text};
use diesel_async::{AsyncConnection as _, RunQueryDsl};
use keyward::mail::Letter;
use serde_json::Value;

use crate::support::TestApp;
use crate::support::cli::{keyward, stderr, stdout};
use crate::support::smtp::SmtpSink;

fn letter(to: &str, n: usize) -> Letter {
    Letter {
        kind: "test".to_owned(),
        to: to.to_owned(),
        subject: format!("Letter {n}"),
        text: format!("Your code is 8421-{n}."),
        html: format!("<p>Your code is <b>8421-{n}</b>.</p>"),
    }
}

/// Queues `letter` in a transaction of its own, as an operation would in its own.
async fn enqueue(app: &TestApp, letter: &Letter) {
    let mut conn = app.state.conn().await.unwrap();
    let now = app.clock().now();
    let outbox = app.state.courier.outbox();
    conn.transaction(async |conn| outbox.enqueue(conn, letter, now).await)
        .await
        .unwrap();
}

#[derive(diesel::QueryableByName, Debug)]
struct Row {
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = Int4)]
    attempts: i32,
    #[diesel(sql_type = Nullable<Text>)]
    last_error: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Bytea)]
    sealed: Vec<u8>,
}

async fn outbox_rows(app: &TestApp) -> Vec<Row> {
    let mut conn = app.state.conn().await.unwrap();
    diesel::sql_query("SELECT kind, attempts, last_error, sealed FROM mail_outbox")
        .load(&mut conn)
        .await
        .unwrap()
}

/// Waits until the outbox satisfies `done`: the delivery runs in the background.
async fn wait_for_outbox(app: &TestApp, what: &str, done: impl Fn(&[Row]) -> bool) -> Vec<Row> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(300);
    loop {
        let rows = outbox_rows(app).await;
        if done(&rows) {
            return rows;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: {rows:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_committed_letter_arrives_once_and_a_rolled_back_one_never_exists() {
    let sink = SmtpSink::start().await;
    let app = TestApp::with_mail(&sink, &[]).await;
    let now = app.clock().now();
    let outbox = app.state.courier.outbox();
    // Queued, then the operation that caused it fails: nothing was ever there to send.
    let mut conn = app.state.conn().await.unwrap();
    let rolled_back: Result<(), diesel::result::Error> = conn
        .transaction(async |conn| {
            outbox
                .enqueue(conn, &letter("a@example.com", 1), now)
                .await?;
            Err(diesel::result::Error::RollbackTransaction)
        })
        .await;
    assert!(rolled_back.is_err());
    assert!(outbox_rows(&app).await.is_empty());

    enqueue(&app, &letter("b@example.com", 2)).await;
    let mail = sink.wait_for_mail_to("b@example.com").await;
    assert_eq!(mail.subject, "Letter 2");
    assert_eq!(mail.from, "Keyward <no-reply@keyward.test>");
    assert_eq!(mail.to, "b@example.com");
    assert_eq!(
        mail.text.as_deref().map(str::trim_end),
        Some("Your code is 8421-2.")
    );
    assert!(mail.html.unwrap().contains("<b>8421-2</b>"));
    assert!(
        mail.message_id.ends_with("@keyward.test>"),
        "{}",
        mail.message_id
    );
    wait_for_outbox(&app, "the sent mail leaves the outbox", <[Row]>::is_empty).await;
    assert_eq!(
        sink.mails().len(),
        1,
        "only the committed mail was ever sent"
    );
    let m = app.metrics_text().await;
    assert!(m.contains("keyward_mail_sent_total 1"), "{m}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_waiting_letter_is_sealed_and_survives_an_smtp_outage() {
    let mut sink = SmtpSink::start().await;
    sink.stop().await;
    let app = TestApp::with_mail(&sink, &[]).await;
    enqueue(&app, &letter("c@example.com", 3)).await;
    let rows = wait_for_outbox(&app, "a failed attempt is recorded", |rows| {
        rows.first().is_some_and(|r| r.last_error.is_some())
    })
    .await;
    // What waits carries a code: it is stored sealed, never readable.
    let sealed = String::from_utf8_lossy(&rows[0].sealed);
    assert!(!sealed.contains("8421") && !sealed.contains("c@example.com"));
    assert_eq!(rows[0].kind, "test");
    assert_eq!(rows[0].attempts, 1);

    // The server comes back; the next attempt is due 30 s after the first.
    sink.restart().await;
    app.clock().advance(time::Duration::seconds(31));
    let mail = sink.wait_for_mail_to("c@example.com").await;
    assert_eq!(mail.subject, "Letter 3");
    wait_for_outbox(&app, "delivered", <[Row]>::is_empty).await;
    let m = app.metrics_text().await;
    assert!(
        m.contains(r#"keyward_mail_failed_total{outcome="deferred"}"#),
        "{m}"
    );
    assert!(m.contains("keyward_mail_sent_total 1"), "{m}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_letter_and_one_failing_past_the_retry_period_are_given_up_and_audited() {
    let mut sink = SmtpSink::start().await;
    let app = TestApp::with_mail(&sink, &[("KEYWARD_MAIL_RETRY_FOR", "10m")]).await;
    // A 550 is final: no retry.
    enqueue(&app, &letter("reject-me@example.com", 4)).await;
    wait_for_outbox(&app, "the refused mail is given up", <[Row]>::is_empty).await;

    // An outage longer than the retry period.
    sink.stop().await;
    enqueue(&app, &letter("d@example.com", 5)).await;
    wait_for_outbox(&app, "the first attempt failed", |rows| {
        rows.first().is_some_and(|r| r.last_error.is_some())
    })
    .await;
    app.clock().advance(time::Duration::minutes(11));
    wait_for_outbox(&app, "given up after the retry period", <[Row]>::is_empty).await;

    let mut conn = app.state.conn().await.unwrap();
    let events = keyward::audit::find_by_kind(&mut conn, "mail.abandoned", 10)
        .await
        .unwrap();
    let mut details: Vec<&Value> = events.iter().map(|e| &e.details).collect();
    details.sort_by_key(|d| d["attempts"].as_i64());
    assert_eq!(details.len(), 2, "{details:?}");
    assert!(
        details[0]["error"].as_str().unwrap().contains("550"),
        "{details:?}"
    );
    assert_eq!(details[1]["attempts"], 2);
    assert_eq!(details[1]["kind"], "test");
    let m = app.metrics_text().await;
    assert!(
        m.contains(r#"keyward_mail_failed_total{outcome="abandoned"} 2"#),
        "{m}"
    );
    assert!(sink.mails().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_deliver_every_letter_exactly_once() {
    let sink = SmtpSink::start().await;
    let app = TestApp::with_mail(&sink, &[]).await;
    let other = app.another_instance(&[]).await;
    for n in 0..60 {
        let on = if n % 2 == 0 { &app } else { &other };
        enqueue(on, &letter(&format!("person{n}@example.com"), n)).await;
    }
    wait_for_outbox(&app, "all delivered", <[Row]>::is_empty).await;
    let mails = sink.wait_for(60).await;
    assert_eq!(mails.len(), 60, "no mail sent twice");
    let mut ids: Vec<&str> = mails.iter().map(|m| m.message_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 60);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_smtp_mail_lands_in_files_only_the_owner_reads() {
    let app = TestApp::spawn().await;
    enqueue(&app, &letter("e@example.com", 6)).await;
    wait_for_outbox(&app, "written", <[Row]>::is_empty).await;
    let dir = std::path::PathBuf::from(&app.env["KEYWARD_MAIL_DIR"]);
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(files.len(), 1);
    let path = files[0].as_ref().unwrap().path();
    assert_eq!(path.extension().unwrap(), "eml");
    let eml = std::fs::read_to_string(&path).unwrap();
    assert!(eml.contains("Subject: Letter 6"), "{eml}");
    assert!(eml.contains("To: e@example.com"), "{eml}");
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode, 0o700,
        "mails carry codes: the directory is the owner's only"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn mail_test_reaches_a_real_smtp_server_and_a_refusal_exits_non_zero() {
    let sink = SmtpSink::start().await;
    let app = TestApp::with_mail(&sink, &[("KEYWARD_PRODUCT_NAME", "Acme ID")]).await;
    let out = keyward(&app, &["mail", "test", "ops@example.com", "--json"], "");
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["sent"], true);
    let mail = sink.wait_for_mail_to("ops@example.com").await;
    assert_eq!(mail.subject, "Acme ID: test mail");
    assert!(
        mail.text.unwrap().contains(&app.base),
        "links come from the issuer"
    );

    let refused = keyward(&app, &["mail", "test", "reject@example.com"], "");
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr(&refused).contains("550"), "{}", stderr(&refused));

    // Settings that cannot work are refused at once, naming the variable.
    for (name, value) in [
        (
            "KEYWARD_SMTP_URL",
            "smtp://mail.example.com?tls=opportunistic",
        ),
        ("KEYWARD_MAIL_FROM", "not an address"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_keyward"))
            .args(["mail", "test", "x@example.com"])
            .envs(app.env.iter().map(|(k, v)| (*k, v.as_str())))
            .env(name, value)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{name}={value}");
        assert!(stderr(&out).contains(name), "{}", stderr(&out));
    }
}
