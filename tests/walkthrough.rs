//! The README's walkthrough, run as written: its shell blocks, against a real Keyward, with only
//! the address, the binary and the database put in, and the browser step (sign in, Allow, copy
//! the code) done by the test's browser.

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::support::oauth::param;
use crate::support::{GOOD_PASSWORD, TestApp, location};

/// The `sh` blocks between the walkthrough's heading and the next top-level section.
fn walkthrough_blocks() -> Vec<String> {
    let readme = include_str!("../README.md");
    let start = readme
        .find("## Walkthrough")
        .expect("the README has a walkthrough");
    let end = start
        + readme[start..]
            .find("\n## Settings")
            .expect("then Settings");
    let mut blocks = vec![];
    let mut rest = &readme[start..end];
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
    let blocks = walkthrough_blocks();
    assert!(
        blocks.len() >= 3,
        "the code flow, refresh and client credentials"
    );
    let mut script = blocks.join("\n");
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
    // What each step must have produced (the README shows it as comments).
    let checks = r"
[[ $SECRET != null && $SECRET2 != null && $BILLING != null ]]
[[ $ACCESS == eyJ* && $REFRESH == kwrt_* ]]
";
    let prelude = r#"set -euo pipefail
exec 3>&1
# Asks the test to play the person at the browser; prints the code from the callback.
browser() { printf '@browser %s\n' "$1" >&3; read -r code; printf %s "$code"; }
"#;
    format!("{prelude}{script}{checks}")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_readme_walkthrough_runs_as_written() {
    let app = TestApp::spawn().await;
    app.create_user("alice", GOOD_PASSWORD).await;
    let full = script_for(&app);

    let mut child = tokio::process::Command::new("bash")
        .arg("-c")
        .arg(&full)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .envs(
            app.env
                .iter()
                .filter(|(k, _)| **k != "DATABASE_URL")
                .map(|(k, v)| (*k, v.as_str())),
        )
        .env("KEYWARD_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("bash runs");
    let mut answers = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut output = String::new();
    let mut codes = 0;
    while let Some(line) = lines.next_line().await.unwrap() {
        if let Some(url) = line.strip_prefix("@browser ") {
            let path = url
                .strip_prefix(&app.base)
                .expect("an authorize URL of ours");
            let resp = app
                .browser
                .authorize(path, "alice", GOOD_PASSWORD, true)
                .await;
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
            codes += 1;
        } else {
            output.push_str(&line);
            output.push('\n');
        }
    }
    let status = child.wait().await.unwrap();
    assert!(
        status.success(),
        "the walkthrough failed; it printed:\n{output}"
    );
    assert_eq!(codes, 2, "two sign-ins: demo, then demo2");
    // The outputs the README promises, step by step.
    for expected in [
        r#""preferred_username":"alice""#,
        r#""refresh_token":"kwrt_"#,
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
