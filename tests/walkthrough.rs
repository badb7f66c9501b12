//! The docs' walkthroughs, run as written: the README's (an app signs someone in) and the
//! migration from a hand-rolled Express auth (docs/relying-parties.md): their shell blocks, against
//! a real Keyward, with only the address, the binary and the database put in, and the browser
//! step (sign in, Allow, copy the code) done by the test's browser.

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::support::oauth::param;
use crate::support::{GOOD_PASSWORD, TestApp, location};

/// The `sh` blocks of `doc` between `heading` and the next top-level section (or the end).
fn sh_blocks(doc: &str, heading: &str) -> Vec<String> {
    let start = doc.find(heading).expect("the doc has the walkthrough");
    let end = doc[start + heading.len()..]
        .find("\n## ")
        .map_or(doc.len(), |n| start + heading.len() + n);
    let mut blocks = vec![];
    let mut rest = &doc[start..end];
    while let Some(open) = rest.find("```sh\n") {
        let body = &rest[open + 6..];
        let close = body.find("```").expect("a closed block");
        blocks.push(body[..close].to_owned());
        rest = &body[close..][3..];
    }
    blocks
}

/// Replaces `from` (which must be there: a README change must not silently skip a step).
fn put(script: &str, from: &str, to: &str) -> String {
    assert!(
        script.contains(from),
        "the walkthrough no longer has {from:?}"
    );
    script.replace(from, to)
}

/// The walkthrough as one bash script for `app`: its address, the binary under test at the
/// app's clock, the app's database, and the browser step handed to the test.
fn script_for(app: &TestApp) -> String {
    let blocks = sh_blocks(include_str!("../README.md"), "## Walkthrough");
    assert!(
        blocks.len() >= 3,
        "the code flow, refresh and client credentials"
    );
    let script = with_test_parts(app, &blocks.join("\n"));
    // What each step must have produced (the README shows it as comments).
    let checks = r"
[[ $SECRET != null && $SECRET2 != null && $BILLING != null ]]
[[ $ACCESS == eyJ* && $REFRESH == kwrf_* ]]
";
    format!("{PRELUDE}{script}{checks}")
}

/// Lets a script stop at its first failing command and hand the browser step to the test.
const PRELUDE: &str = r#"set -euo pipefail
exec 3>&1
# Asks the test to play the person at the browser; prints the code from the callback.
browser() { printf '@browser %s\n' "$1" >&3; read -r code; printf %s "$code"; }
"#;

/// `script` with the test's database, binary (at the app's clock) and address put in, and the
/// person at the browser played by the test.
fn with_test_parts(app: &TestApp, script: &str) -> String {
    let mut script = script.to_owned();
    let now = app.clock().now().unix_timestamp();
    let bin = env!("CARGO_BIN_EXE_keyward");
    script = put(
        &script,
        "export DATABASE_URL=$(make -s db)",
        &format!("export DATABASE_URL='{}'", app.env["DATABASE_URL"]),
    );
    script = put(
        &script,
        "K=./target/release/keyward",
        &format!("K='{bin} --now {now}'"),
    );
    script = put(&script, "http://127.0.0.1:8080", &app.base);
    // The person in the browser: the test signs alice in and presses Allow.
    script = put(
        &script,
        "CODE=paste-the-code-here",
        "CODE=$(browser \"$URL\")",
    );
    script
}

/// What a script printed, and how many times the test signed someone in for it.
struct Ran {
    output: String,
    codes: usize,
}

/// Runs `script` with bash in `dir`, with the app's settings (and `env`), signing `who` (name,
/// password) in whenever it asks for the browser; asserts it succeeded.
async fn run_script(
    app: &TestApp,
    script: &str,
    dir: &std::path::Path,
    env: &[(&str, &str)],
    who: (&str, &str),
) -> Ran {
    let mut child = tokio::process::Command::new("bash")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .envs(
            app.env
                .iter()
                .filter(|(k, _)| **k != "DATABASE_URL")
                .map(|(k, v)| (*k, v.as_str())),
        )
        .envs(env.iter().copied())
        .env("KEYWARD_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("bash runs");
    let mut answers = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut ran = Ran {
        output: String::new(),
        codes: 0,
    };
    while let Some(line) = lines.next_line().await.unwrap() {
        if let Some(url) = line.strip_prefix("@browser ") {
            let path = url
                .strip_prefix(&app.base)
                .expect("an authorize URL of ours");
            let resp = app.browser.authorize(path, who.0, who.1, true).await;
            let to = url::Url::parse(location(&resp)).expect("back to the app");
            assert!(
                to.as_str().starts_with("http://127.0.0.1:3000/callback?"),
                "{to}"
            );
            let params: Vec<(String, String)> = to.query_pairs().into_owned().collect();
            assert_eq!(param(&params, "state"), Some("xyz"));
            let code = param(&params, "code").expect("a code in the callback");
            answers
                .write_all(format!("{code}\n").as_bytes())
                .await
                .unwrap();
            ran.codes += 1;
        } else {
            ran.output.push_str(&line);
            ran.output.push('\n');
        }
    }
    let status = child.wait().await.unwrap();
    assert!(
        status.success(),
        "the walkthrough failed; it printed:\n{}",
        ran.output
    );
    ran
}

#[tokio::test(flavor = "multi_thread")]
async fn the_readme_walkthrough_runs_as_written_twice_in_a_row() {
    let app = TestApp::spawn().await;
    app.create_user("alice", GOOD_PASSWORD).await;
    let full = script_for(&app);
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    // Twice in a row, as an operator trying it again would: the second run starts over cleanly.
    let first = run_script(&app, &full, repo, &[], ("alice", GOOD_PASSWORD)).await;
    assert_eq!(first.codes, 2, "two sign-ins: demo, then demo2");
    let Ran { output, codes } = run_script(&app, &full, repo, &[], ("alice", GOOD_PASSWORD)).await;
    assert_eq!(codes, 2, "two sign-ins: demo, then demo2");
    // The outputs the README promises, step by step.
    for expected in [
        r#""preferred_username":"alice""#,
        r#""refresh_token":"kwrf_"#,
        r#""active":true"#,
        r#""client_id":"demo2""#,
        "200\n",
        "revoked by the client",
        r#""token_type":"Bearer""#,
    ] {
        assert!(
            output.contains(expected),
            "{expected:?} missing from:\n{output}"
        );
    }
}

/// The id the old app gave alice, which her tokens must carry as `sub`.
const ALICE_OLD_ID: &str = "0b7e4f3c-5d2a-4e61-9c8f-2a1d3e4b5c6d";

/// The old Express app's database: its `users` table as the tutorials make it, the passwords
/// hashed by Node's `bcryptjs` at cost 10.
async fn old_app_database() -> crate::support::db::ScratchDatabase {
    use diesel::sql_types::Text;
    use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl as _};
    let old = crate::support::db::ScratchDatabase::create().await;
    let mut conn = AsyncPgConnection::establish(&old.url).await.unwrap();
    diesel::sql_query(
        "CREATE TABLE users (id uuid PRIMARY KEY, username text NOT NULL UNIQUE, \
         email text NOT NULL, password text NOT NULL, role text NOT NULL)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    for (id, name, password, role) in [
        (ALICE_OLD_ID, "alice", "alice's old password", "admin"),
        (
            "6a1f0e2d-3c4b-4a59-8e7d-1f2e3d4c5b6a",
            "bob",
            "bob's old password",
            "user",
        ),
    ] {
        diesel::sql_query("INSERT INTO users VALUES ($1::uuid, $2, $3, $4, $5)")
            .bind::<Text, _>(id)
            .bind::<Text, _>(name)
            .bind::<Text, _>(format!("{name}@example.com"))
            .bind::<Text, _>(crate::import::bcryptjs(password, 10))
            .bind::<Text, _>(role)
            .execute(&mut conn)
            .await
            .unwrap();
    }
    old
}

#[tokio::test(flavor = "multi_thread")]
async fn the_migration_walkthrough_runs_as_written() {
    let app = TestApp::spawn().await;
    let old = old_app_database().await;
    let doc = include_str!("../docs/relying-parties.md");
    let blocks = sh_blocks(doc, "## Migrating from a hand-rolled Express auth");
    let script = format!("{PRELUDE}{}", with_test_parts(&app, &blocks.join("\n")));
    // It writes users.jsonl where it runs: somewhere of its own.
    let dir = std::env::temp_dir().join(format!("keyward-migration-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let env = [("OLD_DATABASE_URL", old.url.as_str())];
    let ran = run_script(&app, &script, &dir, &env, ("alice", "alice's old password")).await;
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(ran.codes, 1, "alice signs in once");
    let lines: Vec<&str> = ran.output.lines().collect();
    let imported: Vec<&str> = lines.iter().filter_map(|l| l.split('\t').nth(1)).collect();
    assert_eq!(
        imported,
        ["created", "created", "skipped", "skipped"],
        "{}",
        ran.output
    );
    assert!(
        lines.contains(&ALICE_OLD_ID),
        "her old id is her sub:\n{}",
        ran.output
    );
    assert!(lines.contains(&r#"["admin"]"#), "{}", ran.output);
    let alice = app.user_named("alice").await.unwrap();
    assert!(
        alice.password_hash.starts_with("$argon2id$"),
        "rehashed at the sign-in"
    );
    let bob = app.user_named("bob").await.unwrap();
    assert!(
        bob.password_hash.starts_with("$2"),
        "bob has not signed in yet"
    );
}
