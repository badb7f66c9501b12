//! A fresh database per test, cloned from a template migrated once per migration set.

use diesel::sql_types::Text;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use url::Url;

/// Any fixed number: the advisory lock every test process takes around template creation.
const TEMPLATE_LOCK: i64 = 0x6b65_7977_6172_6400;

/// The server's URL from `make test`.
pub fn base_url() -> Url {
    let raw = std::env::var("DATABASE_URL").expect(
        "DATABASE_URL is not set: run the tests with `make test`, which provisions PostgreSQL",
    );
    Url::parse(&raw).expect("DATABASE_URL is a URL")
}

/// The URL of database `name` on the same server.
pub fn url_for(name: &str) -> String {
    let mut url = base_url();
    url.set_path(&format!("/{name}"));
    url.to_string()
}

/// The template's name changes with the migrations, so an edited migration never reuses a
/// template built from its old text.
fn template_name() -> String {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let mut files = walk(&dir);
    files.sort();
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for f in files {
        ctx.update(f.to_string_lossy().as_bytes());
        ctx.update(&std::fs::read(&f).expect("migration file is readable"));
    }
    let digest = ctx.finish();
    let hex = digest.as_ref()[..6]
        .iter()
        .fold(String::new(), |mut acc, b| {
            use std::fmt::Write as _;
            let _ = write!(acc, "{b:02x}");
            acc
        });
    format!("keyward_tpl_{hex}")
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("migrations directory exists") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[derive(diesel::QueryableByName)]
struct Exists {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    exists: bool,
}

async fn database_exists(conn: &mut AsyncPgConnection, name: &str) -> bool {
    diesel::sql_query("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS exists")
        .bind::<Text, _>(name)
        .get_result::<Exists>(conn)
        .await
        .expect("query pg_database")
        .exists
}

async fn exec(conn: &mut AsyncPgConnection, sql: &str) {
    diesel::sql_query(sql)
        .execute(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Creates `kwt_<random>` from the migrated template and returns its name.
pub async fn create_test_database() -> String {
    let template = template_name();
    let mut admin = AsyncPgConnection::establish(&url_for("postgres"))
        .await
        .expect("connect to the test PostgreSQL (is `make test` running it?)");
    exec(
        &mut admin,
        &format!("SELECT pg_advisory_lock({TEMPLATE_LOCK})"),
    )
    .await;
    if !database_exists(&mut admin, &template).await {
        // Built under another name and renamed when complete: a crash mid-way leaves no
        // half-migrated template behind under the real name.
        let building = format!("{template}_building");
        exec(
            &mut admin,
            &format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)"),
        )
        .await;
        exec(&mut admin, &format!("CREATE DATABASE {building}")).await;
        keyward::db::run_migrations(&url_for(&building))
            .await
            .expect("migrate the template database");
        exec(
            &mut admin,
            &format!("ALTER DATABASE {building} RENAME TO {template}"),
        )
        .await;
    }
    let name = format!("kwt_{}", uuid::Uuid::new_v4().simple());
    exec(
        &mut admin,
        &format!("CREATE DATABASE {name} TEMPLATE {template} STRATEGY FILE_COPY"),
    )
    .await;
    exec(
        &mut admin,
        &format!("SELECT pg_advisory_unlock({TEMPLATE_LOCK})"),
    )
    .await;
    name
}

/// Drops a test database, closing whatever connections it still has.
pub fn drop_test_database(name: &str) {
    let name = name.to_owned();
    // Drop runs outside any async context we can rely on: use a runtime of our own.
    let dropper = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            if let Ok(mut admin) = AsyncPgConnection::establish(&url_for("postgres")).await {
                let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut admin)
                    .await;
            }
        });
    });
    let _ = dropper.join();
}

#[derive(diesel::QueryableByName)]
struct Pid {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    pid: i32,
}

/// Holds `LOCK TABLE table` in a transaction of its own while `request` runs; the moment one of
/// the app's connections waits on that lock, PostgreSQL terminates it (SQLSTATE 57P01, as when
/// an operator or a failover ends sessions), so the request meets a server that hangs up in the
/// middle of its query, at exactly that step.
pub async fn terminate_when_blocked<F: std::future::Future>(
    database_url: &str,
    table: &str,
    request: F,
) -> F::Output {
    let mut locker = AsyncPgConnection::establish(database_url)
        .await
        .expect("connect the locker");
    diesel::sql_query("BEGIN")
        .execute(&mut locker)
        .await
        .unwrap();
    diesel::sql_query(format!("LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
        .execute(&mut locker)
        .await
        .unwrap();
    let mut admin = AsyncPgConnection::establish(database_url)
        .await
        .expect("connect the terminator");
    tokio::pin!(request);
    // Every backend that queues behind the lock is terminated, until the request answers: the
    // app's housekeeping may queue there too, and must not be mistaken for the request.
    let mut terminated = 0;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
    let out = loop {
        tokio::select! {
            out = &mut request => break out,
            () = tokio::time::sleep(std::time::Duration::from_millis(20)) => {
                terminated += terminate_waiting(&mut admin).await;
                assert!(tokio::time::Instant::now() < deadline, "the request never answered");
            }
        }
    };
    assert!(
        terminated > 0,
        "the request finished without ever waiting on {table}"
    );
    diesel::sql_query("ROLLBACK")
        .execute(&mut locker)
        .await
        .unwrap();
    out
}

/// Terminates the backends of this database that wait on a lock; returns how many.
async fn terminate_waiting(admin: &mut AsyncPgConnection) -> usize {
    let waiting: Vec<Pid> = diesel::sql_query(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
         AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()",
    )
    .load(admin)
    .await
    .unwrap();
    for p in &waiting {
        diesel::sql_query("SELECT pg_terminate_backend($1)")
            .bind::<diesel::sql_types::Integer, _>(p.pid)
            .execute(admin)
            .await
            .unwrap();
    }
    waiting.len()
}

/// An empty database of its own (another app's, say), dropped when this goes.
pub struct ScratchDatabase {
    /// Its name.
    pub name: String,
    /// Its URL.
    pub url: String,
}

impl ScratchDatabase {
    /// Creates `kwt_<random>`, empty.
    pub async fn create() -> Self {
        let name = format!("kwt_{}", uuid::Uuid::new_v4().simple());
        let mut admin = AsyncPgConnection::establish(&url_for("postgres"))
            .await
            .expect("connect to the test PostgreSQL");
        exec(&mut admin, &format!("CREATE DATABASE {name}")).await;
        Self {
            url: url_for(&name),
            name,
        }
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        drop_test_database(&self.name);
    }
}
