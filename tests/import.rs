//! Users brought from a hand-rolled Express app with the bcrypt hashes it kept (made here by
//! Node's `bcryptjs` at cost 10, as the tutorials do): imported by `keyward users import`, each
//! line reported, a re-run changing nothing, then signing in with their old passwords on the
//! hosted page and through the password grant, each hash replaced by argon2id at that sign-in.

use std::path::Path;

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::cli::{keyward, stderr, stdout};
use crate::support::oauth::ClientSpec;
use crate::support::{TestApp, assert_see_other};

const ALICE_SUB: &str = "5f0c1c0e-8d1a-4c8e-9a43-2f6a0f3b7d10";

/// A bcrypt hash of `password` by Node's `bcryptjs`, an implementation independent of ours.
pub fn bcryptjs(password: &str, cost: u32) -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e");
    let out = std::process::Command::new("node")
        .current_dir(dir)
        .args([
            "-e",
            "import('bcryptjs').then(b => console.log(b.default.hashSync(process.argv[1], Number(process.argv[2]))))",
            password,
            &cost.to_string(),
        ])
        .output()
        .expect("node runs (make test installs tests/e2e's dependencies)");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A PHC string of `password` made by Python's `hashlib` (`pbkdf2_hmac` or `scrypt`), another
/// implementation than ours.
fn python_phc(kind: &str, password: &str) -> String {
    let program = r#"
import base64, hashlib, os, sys
kind, password = sys.argv[1], sys.argv[2].encode()
b64 = lambda b: base64.b64encode(b).decode().rstrip("=")
salt = os.urandom(16)
if kind == "pbkdf2":
    dk = hashlib.pbkdf2_hmac("sha256", password, salt, 100000)
    print(f"$pbkdf2-sha256$i=100000,l=32${b64(salt)}${b64(dk)}")
else:
    dk = hashlib.scrypt(password, salt=salt, n=2**14, r=8, p=1, dklen=32)
    print(f"$scrypt$ln=14,r=8,p=1${b64(salt)}${b64(dk)}")
"#;
    let out = std::process::Command::new("/usr/bin/python3")
        .args(["-c", program, kind, password])
        .output()
        .expect("Debian's python3 runs");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn pbkdf2_and_scrypt_users_from_python_sign_in_and_are_rehashed() {
    let app = TestApp::spawn().await;
    let file = std::env::temp_dir().join(format!("keyward-import-{}.jsonl", uuid::Uuid::new_v4()));
    let lines = [
        serde_json::json!({ "username": "pat", "password_hash": python_phc("pbkdf2", "pat's pw") }),
        serde_json::json!({ "username": "sam", "password_hash": python_phc("scrypt", "sam's pw") }),
        serde_json::json!({
            "username": "greedy",
            "password_hash": "$scrypt$ln=20,r=8,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g",
        }),
    ];
    std::fs::write(&file, lines.map(|l| l.to_string()).join("\n")).unwrap();
    let out = keyward(
        &app,
        &["users", "import", file.to_str().unwrap(), "--json"],
        "",
    );
    let _ = std::fs::remove_file(&file);
    let report = outcomes(&out);
    assert_eq!(report[0]["outcome"], "created", "{report:?}");
    assert_eq!(report[1]["outcome"], "created", "{report:?}");
    assert_eq!(report[2]["outcome"], "refused", "more than 64 MiB");
    for (name, password) in [("pat", "pat's pw"), ("sam", "sam's pw")] {
        let wrong = app.new_browser().sign_in(name, "wrong").await;
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED, "{name}");
        assert_see_other(&app.new_browser().sign_in(name, password).await, "/account");
        let user = app.user_named(name).await.unwrap();
        assert!(
            user.password_hash.starts_with("$argon2id$"),
            "{name} rehashed"
        );
    }
}

fn outcomes(o: &std::process::Output) -> Vec<Value> {
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn bcrypt_users_are_imported_once_and_sign_in_with_their_old_passwords() {
    let app = TestApp::spawn().await;
    let file = std::env::temp_dir().join(format!("keyward-import-{}.jsonl", uuid::Uuid::new_v4()));
    let lines = [
        serde_json::json!({
            "username": "alice", "email": "alice@example.com", "email_verified": true,
            "roles": ["admin"], "sub": ALICE_SUB,
            "password_hash": bcryptjs("alice's old password", 10),
        }),
        serde_json::json!({
            "username": "carol", "password_hash": bcryptjs("carol's old password", 10),
        }),
        // A UUID in another spelling would be a second name for one account.
        serde_json::json!({
            "username": "dave", "sub": "5F0C1C0E-8D1A-4C8E-9A43-2F6A0F3B7D10",
            "password_hash": bcryptjs("x", 4),
        }),
        serde_json::json!({ "username": "erin", "password_hash": "$1$md5$notsupported" }),
        serde_json::json!({ "username": "frank", "password_hash": bcryptjs("x", 14) }),
        serde_json::json!({ "username": "no spaces allowed", "password_hash": bcryptjs("x", 4) }),
    ];
    let text = lines.map(|l| l.to_string()).join("\n");
    std::fs::write(&file, text).unwrap();
    let path = file.to_str().unwrap();

    let first = keyward(&app, &["users", "import", path, "--json"], "");
    assert!(!first.status.success(), "refused lines make it exit 1");
    assert!(stderr(&first).contains("2 created, 0 skipped (already here), 4 refused"));
    let report = outcomes(&first);
    let outcome: Vec<&str> = report
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcome,
        [
            "created", "created", "refused", "refused", "refused", "refused"
        ]
    );
    assert_eq!(report[0]["detail"], ALICE_SUB, "the sub is kept");
    let reasons: Vec<&str> = report[2..]
        .iter()
        .map(|r| r["detail"].as_str().unwrap())
        .collect();
    assert!(reasons[0].contains("canonical"), "{reasons:?}");
    assert!(reasons[1].contains("neither bcrypt nor"), "{reasons:?}");
    assert!(reasons[2].contains("cost 14"), "{reasons:?}");
    assert!(reasons[3].starts_with("username"), "{reasons:?}");
    for r in &report {
        assert!(!r.to_string().contains("$2b$"), "no hash is echoed");
    }
    // A re-run changes nothing.
    let again = keyward(&app, &["users", "import", path, "--json"], "");
    let again: Vec<String> = outcomes(&again)
        .iter()
        .map(|r| r["outcome"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(&again[..2], ["skipped", "skipped"]);
    let _ = std::fs::remove_file(&file);

    // Alice signs in on the hosted page with her old password; her hash becomes argon2id.
    let alice = app.user_named("alice").await.unwrap();
    assert_eq!(alice.id.to_string(), ALICE_SUB);
    assert_eq!(alice.roles, ["admin"]);
    assert!(alice.email_verified());
    assert!(alice.password_hash.starts_with("$2b$10$"));
    let wrong = app.browser.sign_in("alice", "not her password").await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_see_other(
        &app.browser.sign_in("alice", "alice's old password").await,
        "/account",
    );
    let alice = app.user_named("alice").await.unwrap();
    assert!(alice.password_hash.starts_with("$argon2id$"), "rehashed");
    app.assert_signs_in_only_with("alice", "alice's old password", "not her password")
        .await;

    // Carol's app uses the password grant: the same.
    let legacy = app
        .register_client(
            "legacy",
            ClientSpec {
                grants: vec!["password"],
                ..ClientSpec::default()
            },
        )
        .await;
    let resp = app
        .token_request(
            &legacy,
            &[
                ("grant_type", "password"),
                ("username", "carol"),
                ("password", "carol's old password"),
                ("scope", "openid"),
            ],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let carol = app.user_named("carol").await.unwrap();
    assert!(carol.password_hash.starts_with("$argon2id$"), "rehashed");
}

/// What the tutorials' `MongoDB` ids look like.
const DAVE_OBJECT_ID: &str = "507f1f77bcf86cd799439011";

#[tokio::test(flavor = "multi_thread")]
async fn a_mongodb_object_id_is_kept_as_the_sub_of_every_token_and_no_client_can_take_it() {
    let app = TestApp::spawn().await;
    let web = app.register_client("web", ClientSpec::default()).await;
    let file = std::env::temp_dir().join(format!("keyward-import-{}.jsonl", uuid::Uuid::new_v4()));
    let lines = [
        serde_json::json!({ "username": "alice", "sub": DAVE_OBJECT_ID,
                            "password_hash": bcryptjs(crate::support::GOOD_PASSWORD, 10) }),
        // Another account under the same sub, or a client's id as a sub: never.
        serde_json::json!({ "username": "mallory", "sub": DAVE_OBJECT_ID,
                            "password": crate::support::GOOD_PASSWORD }),
        serde_json::json!({ "username": "eve", "sub": "web", "password_hash": bcryptjs("x", 4) }),
        serde_json::json!({ "username": "trent", "sub": "no spaces", "password_hash": bcryptjs("x", 4) }),
    ];
    std::fs::write(&file, lines.map(|l| l.to_string()).join("\n")).unwrap();
    let out = keyward(
        &app,
        &["users", "import", file.to_str().unwrap(), "--json"],
        "",
    );
    let _ = std::fs::remove_file(&file);
    let report = outcomes(&out);
    let outcome: Vec<&str> = report
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcome,
        ["created", "skipped", "skipped", "refused"],
        "{report:?}"
    );
    assert_eq!(report[0]["detail"], DAVE_OBJECT_ID);

    // Every token, answer and listing names her by the kept sub.
    let tokens = app.tokens_for(&web, "openid profile").await;
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(
        crate::support::oauth::claims_of(access)["sub"],
        DAVE_OBJECT_ID
    );
    let id_token = tokens["id_token"].as_str().unwrap();
    assert_eq!(
        crate::support::oauth::claims_of(id_token)["sub"],
        DAVE_OBJECT_ID
    );
    let info: Value = app.userinfo(access).await.json().await.unwrap();
    assert_eq!(info["sub"], DAVE_OBJECT_ID);
    assert_eq!(app.introspect(&web, access).await["sub"], DAVE_OBJECT_ID);
    let shown = keyward(&app, &["users", "show", "alice", "--json"], "");
    let shown: Value = serde_json::from_str(&stdout(&shown)).unwrap();
    assert_eq!(shown["sub"], DAVE_OBJECT_ID);

    // A refresh (one SQL statement reads the sub) keeps it too.
    let phone = app
        .register_client("phone", crate::support::endpoints::refreshing())
        .await;
    let first = app.tokens_for(&phone, "openid offline_access").await;
    let refreshed = app
        .refresh(&phone, &crate::support::endpoints::rt(&first), None)
        .await;
    let refreshed: Value = refreshed.json().await.unwrap();
    let renewed = refreshed["access_token"].as_str().unwrap();
    assert_eq!(
        crate::support::oauth::claims_of(renewed)["sub"],
        DAVE_OBJECT_ID
    );

    // A cut-off reaches a token whose sub is kept: disabled, it ends.
    let out = keyward(&app, &["users", "disable", "alice"], "");
    assert!(out.status.success());
    assert_eq!(
        app.userinfo(access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(app.introspect(&web, access).await["active"], false);

    // No client may be registered under her sub (its own tokens would carry her identity).
    let out = keyward(
        &app,
        &[
            "clients",
            "create",
            "--name",
            "X",
            "--id",
            DAVE_OBJECT_ID,
            "--grant",
            "client_credentials",
        ],
        "",
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("sub"), "{}", stderr(&out));
}
