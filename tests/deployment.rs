//! The shipped deployment, for real: Debian's nginx with `deploy/nginx.conf` (only its ports,
//! certificate and upstream address adapted) in front of Keyward, driven with curl from an
//! address nginx does not trust, as a browser or an app behind it would be.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::support::oauth::ClientSpec;
use crate::support::{GOOD_PASSWORD, TestApp, csrf_of, free_port};

/// The address curl sends from: loopback, but not the trusted proxy's 127.0.0.1.
const CLIENT_ADDRESS: &str = "127.0.0.2";

/// nginx running `deploy/nginx.conf` in a directory of its own, stopped when dropped.
struct Nginx {
    child: Child,
    dir: PathBuf,
    https_port: u16,
}

impl Nginx {
    /// Adapts the shipped config (ports, certificate, upstream, log file) and starts nginx in
    /// the foreground under `dir`.
    fn start(https_port: u16, upstream: std::net::SocketAddr) -> Self {
        let dir = std::env::temp_dir().join(format!("keyward-nginx-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("nginx dir");
        make_certificate(&dir);
        let shipped = include_str!("../deploy/nginx.conf");
        let adapted = shipped
            .replace("listen 80;", &format!("listen 127.0.0.1:{};", free_port()))
            .replace(
                "listen 443 ssl http2;",
                &format!("listen 127.0.0.1:{https_port} ssl http2;"),
            )
            .replace("server 127.0.0.1:8080;", &format!("server {upstream};"))
            .replace("/etc/ssl/keyward/", &format!("{}/", dir.display()))
            .replace("/var/log/nginx/", &format!("{}/", dir.display()));
        assert_ne!(
            adapted, shipped,
            "the shipped config has the expected lines"
        );
        std::fs::write(dir.join("keyward.conf"), adapted).expect("write config");
        // The main file a distribution would provide, with every path in the test's directory.
        let main = format!(
            "daemon off; pid {d}/nginx.pid; error_log {d}/error.log; events {{}}\n\
             http {{ client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
             include {d}/keyward.conf; }}\n",
            d = dir.display()
        );
        std::fs::write(dir.join("nginx.conf"), main).expect("write main config");
        let nginx = ["/usr/sbin/nginx", "nginx"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or("nginx");
        let child = Command::new(nginx)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx is installed (make test-deps)");
        Self {
            child,
            dir,
            https_port,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.https_port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A throwaway self-signed certificate at `dir/fullchain.pem`, `dir/privkey.pem`.
fn make_certificate(dir: &Path) {
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=127.0.0.1"])
        .arg("-keyout")
        .arg(dir.join("privkey.pem"))
        .arg("-out")
        .arg(dir.join("fullchain.pem"))
        .output()
        .expect("openssl is installed (make test-deps)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// curl from [`CLIENT_ADDRESS`] with a cookie jar: `-w` prints the status after the body.
fn curl(jar: &Path, args: &[&str]) -> (u16, String) {
    let out: Output = Command::new("curl")
        .args(["-sk", "--interface", CLIENT_ADDRESS, "-w", "\n%{http_code}"])
        .arg("-c")
        .arg(jar)
        .arg("-b")
        .arg(jar)
        .args(args)
        .output()
        .expect("curl is installed (make test-deps)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (status.trim().parse().unwrap_or(0), body.to_owned())
}

/// Keyward behind nginx, trusting only nginx (127.0.0.1), with a short header timeout so an
/// idle pooled connection outlives it. A port taken between choosing and binding it (by a test
/// running alongside) makes nginx exit: then both start again on other ports.
async fn behind_nginx() -> (TestApp, Nginx) {
    loop {
        let https_port = free_port();
        let issuer = format!("https://127.0.0.1:{https_port}");
        let app = TestApp::spawn_with(&[
            ("KEYWARD_ISSUER", &issuer),
            ("KEYWARD_TRUSTED_PROXIES", "127.0.0.1"),
            ("KEYWARD_HEADER_TIMEOUT", "1s"),
        ])
        .await;
        let mut nginx = Nginx::start(https_port, app.addr);
        if nginx.answers().await {
            return (app, nginx);
        }
    }
}

impl Nginx {
    /// Waits until nginx answers through to Keyward (true), or has exited (false).
    async fn answers(&mut self) -> bool {
        let jar = self.dir.join("probe.jar");
        let url = self.url("/healthz");
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            if self.child.try_wait().ok().flatten().is_some() {
                return false;
            }
            if curl(&jar, &[&url]).0 == 200 {
                return true;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "nginx never answered"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

/// The addresses of the sign-in events, oldest first.
async fn sign_in_addresses(app: &TestApp) -> Vec<Option<ipnet::IpNet>> {
    use keyward::db::schema::audit_events;
    let mut conn = keyward::db::connect(&app.state.db).await.unwrap();
    audit_events::table
        .filter(audit_events::kind.like("signin.%"))
        .order(audit_events::id.asc())
        .select(audit_events::ip)
        .load(&mut conn)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn behind_the_shipped_nginx_a_client_cannot_choose_its_address() {
    let (app, nginx) = behind_nginx().await;
    app.create_user("uri", GOOD_PASSWORD).await;
    let jar = nginx.dir.join("browser.jar");
    let (status, page) = curl(&jar, &[&nginx.url("/signin")]);
    assert_eq!(status, 200);
    let csrf = format!("csrf={}", csrf_of(&page));
    let url = nginx.url("/signin");
    // Each with a Forwarded and an X-Forwarded-For of the client's own making.
    let sign_in = |password: &str| {
        let password = format!("password={password}");
        let args = [
            "-H",
            "Forwarded: for=6.6.6.6",
            "-H",
            "X-Forwarded-For: 7.7.7.7",
            "--data-urlencode",
            &csrf,
            "--data-urlencode",
            "username=uri",
            "--data-urlencode",
            &password,
            &url,
        ];
        curl(&jar, &args).0
    };
    assert_eq!(sign_in("wrong-password"), 401);
    assert_eq!(sign_in(GOOD_PASSWORD), 303);
    let client: ipnet::IpNet = format!("{CLIENT_ADDRESS}/32").parse().unwrap();
    assert_eq!(
        sign_in_addresses(&app).await,
        [Some(client), Some(client)],
        "the address nginx saw, not the one the client wrote"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn behind_the_shipped_nginx_keyward_s_413_and_431_reach_the_client() {
    let (_app, nginx) = behind_nginx().await;
    let jar = nginx.dir.join("app.jar");
    // A 100 KiB form: within nginx's 1 MiB, over Keyward's 64 KiB.
    let body = format!(
        "grant_type=client_credentials&pad={}",
        "a".repeat(100 * 1024)
    );
    let (status, answer) = curl(&jar, &["-d", &body, &nginx.url("/token")]);
    assert_eq!(status, 413, "{answer}");
    assert!(answer.contains("invalid_request"), "{answer}");
    // A 20 KiB header: within nginx's buffers, over Keyward's 16 KiB.
    let header = format!("X-Big: {}", "b".repeat(20 * 1024));
    let (status, _) = curl(&jar, &["-H", &header, &nginx.url("/healthz")]);
    assert_eq!(status, 431);
}

#[tokio::test(flavor = "multi_thread")]
async fn behind_the_shipped_nginx_a_pooled_connection_idle_past_the_header_timeout_still_serves() {
    let (app, nginx) = behind_nginx().await;
    let spec = ClientSpec {
        scopes: "invoices:read",
        grants: vec!["client_credentials"],
        ..ClientSpec::default()
    };
    let client = app.register_client("billing", spec).await;
    let jar = nginx.dir.join("app.jar");
    let secret = client.secret.clone().unwrap();
    let user = format!("billing:{secret}");
    let token = || {
        let args = ["-u", &user, "-d", "grant_type=client_credentials"];
        let url = nginx.url("/token");
        let mut all: Vec<&str> = args.to_vec();
        all.push(&url);
        curl(&jar, &all).0
    };
    assert_eq!(token(), 200);
    // nginx keeps the upstream connection in its pool; idle past Keyward's 1 s header timeout
    // (hyper's header timer used to close it there), it is used again for a POST.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    for _ in 0..3 {
        assert_eq!(token(), 200);
    }
}

/// `deploy/deb/build` of the binary under test into a directory of its own: the `.deb`'s path.
fn build_deb(out: &std::path::Path) -> std::path::PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let built = std::process::Command::new(root.join("deploy/deb/build"))
        .arg(env!("CARGO_BIN_EXE_keyward"))
        .arg(out)
        // The debug binary is large: the fastest compression keeps this test quick.
        .env("DPKG_DEB_COMPRESSOR_TYPE", "gzip")
        .env("DPKG_DEB_COMPRESSOR_LEVEL", "1")
        .output()
        .expect("deploy/deb/build runs");
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    std::path::PathBuf::from(String::from_utf8(built.stdout).unwrap().trim())
}

fn dpkg_deb(args: &[&std::ffi::OsStr]) -> String {
    let out = std::process::Command::new("dpkg-deb")
        .args(args)
        .output()
        .expect("dpkg-deb runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_debian_package_holds_the_binary_the_unit_the_settings_and_sound_scripts() {
    let dir = std::env::temp_dir().join(format!("keyward-deb-{}", uuid::Uuid::new_v4()));
    let deb = build_deb(&dir);
    let os = |s: &str| std::ffi::OsString::from(s);
    let fields = dpkg_deb(&[&os("-f"), deb.as_os_str(), &os("Package"), &os("Version")]);
    assert_eq!(
        fields,
        format!("Package: keyward\nVersion: {}\n", env!("CARGO_PKG_VERSION"))
    );
    let listing = dpkg_deb(&[&os("-c"), deb.as_os_str()]);
    for (mode, path) in [
        ("-rwxr-xr-x root/root", "./usr/bin/keyward"),
        (
            "-rw-r--r-- root/root",
            "./lib/systemd/system/keyward.service",
        ),
        ("-rw-r----- root/root", "./etc/keyward/keyward.env"),
    ] {
        assert!(
            listing
                .lines()
                .any(|l| l.starts_with(mode) && l.ends_with(path)),
            "{path} ({mode}) in:\n{listing}"
        );
    }

    // Unpacked: the unit starts the packaged binary with the packaged settings; the settings
    // file is a conffile (an upgrade never overwrites the operator's); the binary runs.
    let tree = dir.join("tree");
    dpkg_deb(&[&os("-R"), deb.as_os_str(), tree.as_os_str()]);
    let unit = std::fs::read_to_string(tree.join("lib/systemd/system/keyward.service")).unwrap();
    for line in [
        "ExecStart=/usr/bin/keyward serve",
        "EnvironmentFile=/etc/keyward/keyward.env",
        "WorkingDirectory=/var/lib/keyward",
        "User=keyward",
    ] {
        assert!(unit.lines().any(|l| l == line), "{line} in the unit");
    }
    let conffiles = std::fs::read_to_string(tree.join("DEBIAN/conffiles")).unwrap();
    assert_eq!(conffiles, "/etc/keyward/keyward.env\n");
    let help = std::process::Command::new(tree.join("usr/bin/keyward"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(help.status.success());
    for script in ["postinst", "prerm", "postrm"] {
        let syntax = std::process::Command::new("sh")
            .arg("-n")
            .arg(tree.join("DEBIAN").join(script))
            .status()
            .unwrap();
        assert!(syntax.success(), "{script} parses");
    }
    run_postinst_with_recording_tools(&tree.join("DEBIAN/postinst"), &dir);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The postinst of a first install, run with every system tool it calls replaced by one that
/// records its arguments (nothing on this machine changes): it makes the user, the state
/// directory and the settings' owner, and starts nothing.
fn run_postinst_with_recording_tools(postinst: &std::path::Path, dir: &std::path::Path) {
    let tools = dir.join("tools");
    std::fs::create_dir_all(&tools).unwrap();
    let log = dir.join("calls.log");
    for tool in [
        "getent",
        "adduser",
        "install",
        "chown",
        "chmod",
        "systemctl",
    ] {
        // getent finds no `keyward` user yet (exit 2, as for an unknown key).
        let exit = if tool == "getent" { 2 } else { 0 };
        let path = tools.join(tool);
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\necho \"{tool} $*\" >> '{}'\nexit {exit}\n",
                log.display()
            ),
        )
        .unwrap();
        std::process::Command::new("chmod")
            .arg("+x")
            .arg(&path)
            .status()
            .unwrap();
    }
    let path = format!("{}:/usr/bin:/bin", tools.display());
    let out = std::process::Command::new("sh")
        .arg(postinst)
        .args(["configure", ""])
        .env("PATH", path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let calls = std::fs::read_to_string(&log).unwrap();
    for expected in [
        "adduser --system --group --home /var/lib/keyward",
        "install -d -m 0750 -o keyward -g keyward /var/lib/keyward",
        "chown root:keyward /etc/keyward/keyward.env",
        "chmod 0640 /etc/keyward/keyward.env",
    ] {
        assert!(calls.contains(expected), "{expected} in:\n{calls}");
    }
    assert!(
        !calls.contains("systemctl start") && !calls.contains("enable"),
        "{calls}"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("systemctl enable --now keyward"),
        "it tells the operator what to do next"
    );
}
