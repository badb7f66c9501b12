//! The `keyward` binary's commands, run as an operator would.

use std::process::Command;

use reqwest::StatusCode;

use crate::support::cli::{keyward, stderr, stdout};
use crate::support::{GOOD_PASSWORD, TestApp, assert_see_other};

#[tokio::test(flavor = "multi_thread")]
async fn operators_create_list_disable_and_reset_users() {
    let app = TestApp::spawn().await;

    let out = keyward(
        &app,
        &[
            "users",
            "create",
            "--username",
            "victor",
            "--email",
            "v@example.com",
            "--password-stdin",
        ],
        &format!("{GOOD_PASSWORD}\n"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out).trim().to_owned();
    assert!(
        uuid::Uuid::parse_str(&id).is_ok(),
        "prints the new id: {id}"
    );
    assert_see_other(
        &app.browser.sign_in("victor", GOOD_PASSWORD).await,
        "/account",
    );

    let out = keyward(&app, &["users", "list"], "");
    let listed = stdout(&out);
    let mut lines = listed.lines();
    assert_eq!(
        lines.next(),
        Some("id\tusername\temail\tstatus\tcreated_at"),
        "a header row first"
    );
    let fields: Vec<&str> = lines.next().unwrap().split('\t').collect();
    assert_eq!(
        &fields[..4],
        [id.as_str(), "victor", "v@example.com", "active"]
    );

    let out = keyward(
        &app,
        &["users", "set-password", "victor", "--password-stdin"],
        "a brand new secret\r\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // The password change ended the open session and the old password.
    assert_see_other(&app.browser.get("/account").await, "/signin");
    assert_eq!(
        app.new_browser()
            .sign_in("victor", GOOD_PASSWORD)
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_see_other(
        &app.new_browser()
            .sign_in("victor", "a brand new secret")
            .await,
        "/account",
    );

    let out = keyward(&app, &["users", "disable", "VICTOR"], "");
    assert!(out.status.success(), "{}", stderr(&out));
    let out = keyward(&app, &["users", "list", "--json"], "");
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json[0]["status"], "disabled");
    assert_eq!(json[0]["id"], id.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_refusals_exit_non_zero_with_one_clear_line() {
    let app = TestApp::spawn().await;

    let weak = keyward(
        &app,
        &["users", "create", "--username", "wendy", "--password-stdin"],
        "short\n",
    );
    assert!(!weak.status.success());
    assert!(stderr(&weak).contains("Use at least 8 characters."));

    keyward(
        &app,
        &[
            "users",
            "create",
            "--username",
            "xavier",
            "--password-stdin",
        ],
        "a fine password\n",
    );
    let dup = keyward(
        &app,
        &[
            "users",
            "create",
            "--username",
            "Xavier",
            "--password-stdin",
        ],
        "a fine password\n",
    );
    assert!(!dup.status.success());
    assert!(stderr(&dup).contains("That username is taken."));

    let missing = keyward(&app, &["users", "disable", "nobody"], "");
    assert!(!missing.status.success());
    assert!(stderr(&missing).contains("no user named 'nobody'"));

    let no_flag = keyward(&app, &["users", "create", "--username", "yara"], "");
    assert!(
        !no_flag.status.success(),
        "a password is never taken from arguments"
    );
}

#[test]
fn a_bad_setting_or_unreachable_database_names_the_setting() {
    let bad = Command::new(env!("CARGO_BIN_EXE_keyward"))
        .arg("migrate")
        .env("DATABASE_URL", "postgres://u:p@127.0.0.1:1/x")
        .env("KEYWARD_BIND", "not-an-address")
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let err = stderr(&bad);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("keyward: KEYWARD_BIND:"), "{err}");
    // Several bad ones: each named, in one go.
    let several = Command::new(env!("CARGO_BIN_EXE_keyward"))
        .arg("migrate")
        .env("DATABASE_URL", "postgres://u:p@127.0.0.1:1/x")
        .env("KEYWARD_BIND", "not-an-address")
        .env("KEYWARD_ACCESS_TOKEN_TTL", "5x")
        .output()
        .unwrap();
    assert_eq!(several.status.code(), Some(2));
    let err = stderr(&several);
    assert_eq!(err.lines().count(), 2, "{err}");
    assert!(
        err.contains("keyward: KEYWARD_BIND:")
            && err.contains("keyward: KEYWARD_ACCESS_TOKEN_TTL:"),
        "{err}"
    );

    let down = Command::new(env!("CARGO_BIN_EXE_keyward"))
        .arg("migrate")
        .env("DATABASE_URL", "postgres://u:secret-pw@127.0.0.1:1/x")
        .env_remove("KEYWARD_BIND")
        .output()
        .unwrap();
    assert!(!down.status.success());
    let err = stderr(&down);
    // Where it tried, and the driver's reason; never the password.
    assert!(
        err.starts_with(
            "keyward: DATABASE_URL: cannot migrate the database 'x' as 'u' at 127.0.0.1:1"
        ),
        "{err}"
    );
    assert!(err.to_lowercase().contains("refused"), "{err}");
    assert!(
        !err.contains("secret-pw"),
        "the password never reaches output"
    );

    // A log filter that would silence Keyward is refused; a misspelt setting is named, with the
    // closest real one, and the command goes on.
    let silent = Command::new(env!("CARGO_BIN_EXE_keyward"))
        .arg("migrate")
        .env("DATABASE_URL", "postgres://u:p@127.0.0.1:1/x")
        .env("KEYWARD_LOG", "verbose")
        .output()
        .unwrap();
    assert_eq!(silent.status.code(), Some(2));
    assert!(stderr(&silent).starts_with("keyward: KEYWARD_LOG:"));
    let typo = Command::new(env!("CARGO_BIN_EXE_keyward"))
        .arg("migrate")
        .env("DATABASE_URL", "postgres://u:p@127.0.0.1:1/x")
        .env("KEYWARD_SMTP_UR", "smtp://mail.example.com")
        .output()
        .unwrap();
    let err = stderr(&typo);
    assert!(
        err.contains(
            "keyward: warning: KEYWARD_SMTP_UR is not a setting and is ignored; did you mean KEYWARD_SMTP_URL?"
        ),
        "{err}"
    );
}

/// `clients create --id billing` with a redirect URI and an audience; returns the printed secret.
fn create_billing(app: &TestApp) -> String {
    let out = keyward(
        app,
        &[
            "clients",
            "create",
            "--name",
            "Billing",
            "--id",
            "billing",
            "--redirect-uri",
            "https://billing.example.com/cb",
            "--audience",
            "https://api.example.com",
        ],
        "",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
        .lines()
        .find_map(|l| l.strip_prefix("client_secret\t"))
        .expect("the secret is printed once")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_secret_is_shown_once_and_a_rotation_replaces_it() {
    let app = TestApp::spawn().await;
    let secret = create_billing(&app);
    assert!(secret.starts_with("kwcs_") && secret.len() >= 5 + 43);
    let show = stdout(&keyward(
        &app,
        &["clients", "show", "billing", "--json"],
        "",
    ));
    let json: serde_json::Value = serde_json::from_str(&show).unwrap();
    assert_eq!(json["type"], "confidential");
    assert!(!show.contains(&secret), "never shown again");

    let rotated = stdout(&keyward(&app, &["clients", "rotate-secret", "billing"], ""));
    assert!(rotated.starts_with("client_secret\tkwcs_"));
    assert!(!rotated.contains(&secret));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_with_a_bad_redirect_uri_grant_or_a_taken_id_is_refused() {
    let app = TestApp::spawn().await;
    create_billing(&app);
    let create = |redirect: &'static str, extra: &[&'static str]| {
        let mut args = vec![
            "clients",
            "create",
            "--name",
            "X",
            "--redirect-uri",
            redirect,
        ];
        args.extend_from_slice(extra);
        args
    };
    for bad in [
        create("http://example.com/cb", &[]),
        create("https://x.example/cb#frag", &[]),
        create("https://x.example/cb", &["--grant", "implicit"]),
        create("https://x.example/cb", &["--id", "billing"]),
    ] {
        let out = keyward(&app, &bad, "");
        assert!(!out.status.success(), "{bad:?}");
    }
    // RFC 9700 §4.15: a client whose id could be a user's `sub` could mint tokens that speak
    // for that user; every UUID spelling is refused.
    let user = app.create_user("alice", GOOD_PASSWORD).await;
    for id in [
        user.id.to_string(),
        user.id.simple().to_string(),
        user.id.urn().to_string(),
    ] {
        let args = [
            "clients",
            "create",
            "--name",
            "X",
            "--redirect-uri",
            "https://x.example/cb",
        ];
        let out = keyward(&app, &[&args[..], &["--id", &id]].concat(), "");
        assert!(!out.status.success(), "{id}");
        assert!(
            stderr(&out).contains("reads as a user's sub"),
            "{}",
            stderr(&out)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_client_is_gone_and_both_changes_are_audited() {
    let app = TestApp::spawn().await;
    create_billing(&app);
    let out = keyward(&app, &["clients", "delete", "billing"], "");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !keyward(&app, &["clients", "show", "billing"], "")
            .status
            .success()
    );
    let mut conn = keyward::db::connect(&app.state.db).await.unwrap();
    for kind in ["client.created", "client.deleted"] {
        let events = keyward::audit::find_by_kind(&mut conn, kind, 5)
            .await
            .unwrap();
        assert_eq!(events.len(), 1, "{kind}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_machine_client_needs_no_redirect_uri_and_origins_are_exact() {
    let app = TestApp::spawn().await;
    let machine = keyward(
        &app,
        &[
            "clients",
            "create",
            "--name",
            "Billing",
            "--id",
            "billing-svc",
            "--grant",
            "client_credentials",
            "--json",
        ],
        "",
    );
    assert!(machine.status.success(), "{}", stderr(&machine));
    let created: serde_json::Value = serde_json::from_str(&stdout(&machine)).unwrap();
    assert_eq!(created["redirect_uris"], serde_json::json!([]));
    // It works at once.
    let secret = created["client_secret"].as_str().unwrap();
    let resp = app
        .browser
        .client
        .post(format!("{}/token", app.base))
        .basic_auth("billing-svc", Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    // A client that redirects (authorization_code, the default) still needs one.
    let no_redirect = keyward(&app, &["clients", "create", "--name", "Web"], "");
    assert!(!no_redirect.status.success());
    assert!(
        stderr(&no_redirect).contains("--redirect-uri is required"),
        "{}",
        stderr(&no_redirect)
    );

    let with_origins = keyward(
        &app,
        &[
            "clients",
            "create",
            "--name",
            "SPA",
            "--public",
            "--json",
            "--redirect-uri",
            "https://app.example.com/callback",
            "--allowed-origin",
            "https://admin.example.com",
        ],
        "",
    );
    assert!(with_origins.status.success(), "{}", stderr(&with_origins));
    let spa: serde_json::Value = serde_json::from_str(&stdout(&with_origins)).unwrap();
    assert_eq!(
        spa["allowed_origins"],
        serde_json::json!(["https://app.example.com", "https://admin.example.com"])
    );
    for bad in [
        "*",
        "https://*.example.com",
        "https://admin.example.com/",
        "http://admin.example.com",
    ] {
        let out = keyward(
            &app,
            &[
                "clients",
                "create",
                "--name",
                "X",
                "--redirect-uri",
                "https://x.example/cb",
                "--allowed-origin",
                bad,
            ],
            "",
        );
        assert!(!out.status.success(), "{bad}");
        assert!(stderr(&out).contains("origin"), "{}", stderr(&out));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn clients_update_refuses_bad_changes_in_one_line_and_writes_nothing() {
    let app = TestApp::spawn().await;
    let created = keyward(
        &app,
        &[
            "clients",
            "create",
            "--name",
            "Spa",
            "--id",
            "spa",
            "--public",
            "--redirect-uri",
            "https://app.example.com/cb",
        ],
        "",
    );
    assert!(created.status.success(), "{}", stderr(&created));
    let show = || stdout(&keyward(&app, &["clients", "show", "spa", "--json"], ""));
    let before = show();
    for (args, says) in [
        (
            &["clients", "update", "nobody", "--name", "x"][..],
            "no client 'nobody'",
        ),
        (
            &[
                "clients",
                "update",
                "spa",
                "--allowed-origin",
                "https://*.example.com",
            ][..],
            "origin",
        ),
        (
            &["clients", "update", "spa", "--grant", "implicit"][..],
            "not supported",
        ),
        (
            &["clients", "update", "spa", "--audience", "not a uri"][..],
            "audience",
        ),
        (
            &[
                "clients",
                "update",
                "spa",
                "--redirect-uri",
                "http://example.com/cb",
            ][..],
            "loopback",
        ),
    ] {
        let out = keyward(&app, args, "");
        assert!(!out.status.success(), "{args:?}");
        let err = stderr(&out);
        assert!(err.contains(says), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    }
    assert_eq!(show(), before, "a refused update changes nothing");

    let ok = keyward(
        &app,
        &["clients", "update", "spa", "--first-party", "true"],
        "",
    );
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(show().contains(r#""first_party": true"#));
    let mut conn = keyward::db::connect(&app.state.db).await.unwrap();
    let kinds: Vec<String> = {
        use diesel::{ExpressionMethods, QueryDsl};
        use diesel_async::RunQueryDsl;
        use keyward::db::schema::audit_events;
        audit_events::table
            .filter(audit_events::client_id.eq("spa"))
            .select(audit_events::kind)
            .load(&mut conn)
            .await
            .unwrap()
    };
    assert_eq!(
        kinds,
        ["client.created", "client.updated"],
        "only the change is recorded"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reader_that_stops_early_ends_a_command_quietly() {
    let app = TestApp::spawn().await;
    app.register_spa().await;
    // The pipe's reader is gone before the command writes a byte: every write fails.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    for args in [
        &["clients", "list"][..],
        &["clients", "list", "--json"],
        &["keys", "list"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_keyward"))
            .args(args)
            .envs(app.env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(writer.try_clone().unwrap())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn consents_and_families_are_listed_and_ended_from_the_cli_in_json() {
    use serde_json::Value;
    let app = TestApp::spawn().await;
    app.create_user("alice", GOOD_PASSWORD).await;
    let web = app
        .register_client("web", crate::support::endpoints::refreshing())
        .await;
    let json = |args: &[&str]| -> Value {
        let out = keyward(&app, args, "");
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        serde_json::from_str(&stdout(&out)).unwrap()
    };
    let refresh_with = async |token: &str| {
        app.token_request(
            &web,
            &[("grant_type", "refresh_token"), ("refresh_token", token)],
        )
        .await
        .status()
    };
    let first = app.tokens_for(&web, "openid offline_access").await;
    let refresh = first["refresh_token"].as_str().unwrap();
    let access = first["access_token"].as_str().unwrap();

    let listed = json(&["consents", "list", "--json"]);
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["username"], "alice");
    assert_eq!(listed[0]["client_id"], "web");
    assert_eq!(listed[0]["scope"], "offline_access openid");
    assert_eq!(
        json(&["consents", "list", "--user", "alice", "--json"]),
        listed
    );

    // A family, explained and ended by an operator: refresh and access tokens die with it.
    let why = json(&["tokens", "why", refresh, "--json"]);
    assert_eq!(why["client_id"], "web");
    assert_eq!(why["revoked_at"], Value::Null);

    assert_eq!(
        json(&["tokens", "revoke", refresh, "--json"])["revoked"],
        true
    );
    assert_eq!(
        json(&["tokens", "revoke", refresh, "--json"])["revoked"],
        false
    );
    assert_eq!(refresh_with(refresh).await, StatusCode::BAD_REQUEST);
    let introspected = app.introspect(&web, access).await;
    assert_eq!(introspected["active"], false);
    let why = json(&["tokens", "why", refresh, "--json"]);
    assert_eq!(why["revoked_reason"], "revoked by an operator");
    let last = why["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["kind"].as_str(), last["actor"].as_str()),
        (Some("family.revoked"), Some("cli"))
    );

    // Withdrawing the consent ends what the client holds for her.
    let second = app.tokens_for(&web, "openid offline_access").await;
    let withdrawn = json(&[
        "consents", "revoke", "--user", "alice", "--client", "web", "--json",
    ]);
    assert_eq!(withdrawn["revoked"], true);
    assert_eq!(
        refresh_with(second["refresh_token"].as_str().unwrap()).await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(json(&["consents", "list", "--json"]), serde_json::json!([]));
    // The other commands answer in JSON too.
    let roles = json(&["users", "set-roles", "alice", "--role", "admin", "--json"]);
    assert_eq!(roles["roles"], serde_json::json!(["admin"]));

    let rotated = json(&["clients", "rotate-secret", "web", "--json"]);
    assert!(
        rotated["client_secret"]
            .as_str()
            .unwrap()
            .starts_with("kwcs_")
    );
    assert_eq!(json(&["migrate", "--json"])["applied"], 0);
    let again = keyward(
        &app,
        &["consents", "revoke", "--user", "alice", "--client", "web"],
        "",
    );
    assert!(!again.status.success());
    assert_eq!(
        stderr(&again).trim().lines().count(),
        1,
        "{}",
        stderr(&again)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn check_reports_each_part_and_never_prints_a_secret() {
    use serde_json::Value;
    let app = TestApp::spawn().await;
    let out = keyward(&app, &["check", "--json"], "");
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = stdout(&out);
    let report: Value = serde_json::from_str(&printed).unwrap();
    assert_eq!(report["ok"], true, "{report}");
    let names: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["database", "migrations", "keys", "clock", "mail"]);
    // The settings: one JSON member per setting, with the value in effect.
    assert_eq!(report["settings"]["KEYWARD_ISSUER"], app.base.as_str());
    assert_eq!(report["settings"]["KEYWARD_KEK"], "(set)");
    assert_eq!(
        report["settings"].as_object().unwrap().len(),
        keyward::config::SETTINGS.len()
    );
    // As text, a table of the same: one line per setting, name then value.
    let text = stdout(&keyward(&app, &["check"], ""));
    let issuer_line = text
        .lines()
        .find(|l| l.starts_with("KEYWARD_ISSUER "))
        .expect("a line for the issuer");
    assert_eq!(
        issuer_line.split_whitespace().nth(1),
        Some(app.base.as_str())
    );
    let url = url::Url::parse(&app.env["DATABASE_URL"]).unwrap();
    let mut secrets = vec![app.env["KEYWARD_KEK"].clone()];
    secrets.extend(url.password().map(str::to_owned));
    for secret in &secrets {
        assert!(
            !printed.contains(secret.as_str()),
            "a secret is in the output"
        );
    }

    // Another KEK cannot open the stored keys: that check fails, the others still run.
    let wrong = crate::support::random_kek();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args(["check", "--json"])
        .envs(app.env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("KEYWARD_KEK", &wrong)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let verdicts: Vec<(&str, bool)> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["check"].as_str().unwrap(), c["ok"].as_bool().unwrap()))
        .collect();
    assert_eq!(
        verdicts,
        [
            ("database", true),
            ("migrations", true),
            ("keys", false),
            ("clock", true),
            ("mail", true)
        ]
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains(wrong.as_str()));
}

/// Every event of user `id` in the audit trail, oldest first, as (kind, actor).
async fn user_events(app: &TestApp, id: uuid::Uuid) -> Vec<(String, String)> {
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use keyward::db::schema::audit_events;
    let mut conn = keyward::db::connect(&app.state.db).await.unwrap();
    audit_events::table
        .filter(audit_events::user_id.eq(id))
        .order(audit_events::id.asc())
        .select((audit_events::kind, audit_events::actor))
        .load(&mut conn)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn each_user_command_leaves_exactly_one_audit_event() {
    let app = TestApp::spawn().await;
    let created = keyward(
        &app,
        &["users", "create", "--username", "wanda", "--password-stdin"],
        &format!("{GOOD_PASSWORD}\n"),
    );
    assert!(created.status.success(), "{}", stderr(&created));
    let id = uuid::Uuid::parse_str(stdout(&created).trim()).unwrap();
    let steps: [(&[&str], &str, &str); 7] = [
        (&[], "", "user.created"),
        (
            &["users", "set-password", "wanda", "--password-stdin"],
            "another good secret\n",
            "user.password_set",
        ),
        (
            &["users", "set-roles", "wanda", "--role", "admin"],
            "",
            "user.roles_set",
        ),
        (
            &["users", "sign-out-everywhere", "wanda"],
            "",
            "user.signed_out_everywhere",
        ),
        (&["users", "disable", "wanda"], "", "user.disabled"),
        (&["users", "enable", "wanda"], "", "user.enabled"),
        (&["users", "delete", "wanda"], "", "user.deleted"),
    ];
    for (i, (args, stdin, kind)) in steps.iter().enumerate() {
        if !args.is_empty() {
            let out = keyward(&app, args, stdin);
            assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        }
        let events = user_events(&app, id).await;
        assert_eq!(events.len(), i + 1, "one event per command: {events:?}");
        assert_eq!(events[i], ((*kind).to_owned(), "cli".to_owned()));
    }
    // A command that changes nothing records nothing.
    let out = keyward(&app, &["users", "set-roles", "ghost", "--role", "x"], "");
    assert!(!out.status.success());
    let out = keyward(
        &app,
        &["users", "set-roles", "nobody here", "--role", "a b"],
        "",
    );
    assert!(!out.status.success());
    assert_eq!(user_events(&app, id).await.len(), steps.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn access_tokens_are_explained_and_users_shown_from_the_cli() {
    use serde_json::Value;
    let app = TestApp::spawn().await;
    app.create_user("alice", GOOD_PASSWORD).await;
    let web = app
        .register_client("web", crate::support::endpoints::refreshing())
        .await;
    let json = |args: &[&str]| -> Value {
        let out = keyward(&app, args, "");
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        serde_json::from_str(&stdout(&out)).unwrap()
    };
    let first = app.tokens_for(&web, "openid offline_access").await;
    let refresh = first["refresh_token"].as_str().unwrap();
    let access = first["access_token"].as_str().unwrap();
    // An access token leads to its family; a machine's token is from none.
    let why = json(&["tokens", "why", refresh, "--json"]);
    assert_eq!(
        json(&["tokens", "why", access, "--json"])["family"],
        why["family"]
    );
    let machine_spec = crate::support::oauth::ClientSpec {
        grants: vec!["client_credentials"],
        scopes: "notes:read",
        ..crate::support::oauth::ClientSpec::default()
    };
    let machine = app.register_client("machine", machine_spec).await;
    let issued: Value = app
        .token_request(&machine, &[("grant_type", "client_credentials")])
        .await
        .json()
        .await
        .unwrap();
    let token = issued["access_token"].as_str().unwrap();
    let own = json(&["tokens", "why", token, "--json"]);
    assert_eq!(own["family"], Value::Null, "{own}");
    assert_eq!(own["client_id"], "machine");
    assert_eq!(own["revoked"], false);

    // Roles read back, with the address's state and where she is signed in.
    json(&["users", "set-roles", "alice", "--role", "admin", "--json"]);
    let shown = json(&["users", "show", "alice", "--json"]);
    assert_eq!(shown["roles"], serde_json::json!(["admin"]));
    assert_eq!(shown["email_verified"], false);
    assert_eq!(shown["sessions"].as_array().unwrap().len(), 1, "{shown}");
    assert_eq!(shown["sessions"][0]["ip"], "127.0.0.1");
}

#[tokio::test(flavor = "multi_thread")]
async fn check_tells_whether_mail_can_leave() {
    use serde_json::Value;
    let mut sink = crate::support::smtp::SmtpSink::start().await;
    let app = TestApp::with_mail(&sink, &[]).await;
    let mail_check = |extra: &[(&str, &str)]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_keyward"))
            .args(["check", "--json"])
            .envs(app.env.iter().map(|(k, v)| (*k, v.as_str())))
            .envs(extra.iter().copied())
            .output()
            .unwrap();
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        let mail = report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == "mail")
            .unwrap()
            .clone();
        (out.status.code(), mail)
    };
    let (code, mail) = mail_check(&[]);
    assert_eq!((code, &mail["ok"]), (Some(0), &Value::Bool(true)), "{mail}");
    // An unreadable password file, then a server that is down: failed, and said why.
    let (code, mail) = mail_check(&[("KEYWARD_SMTP_PASSWORD_FILE", "/nonexistent/smtp")]);
    assert_eq!(code, Some(1));
    let detail = mail["detail"].as_str().unwrap();
    assert!(detail.contains("KEYWARD_SMTP_PASSWORD_FILE"), "{mail}");
    sink.stop().await;
    let (code, mail) = mail_check(&[]);
    assert_eq!(code, Some(1));
    assert!(
        mail["detail"]
            .as_str()
            .unwrap()
            .contains("cannot be reached"),
        "{mail}"
    );
}
