//! Rotations of current refresh tokens that arrive together, sent to PostgreSQL as one statement.
//!
//! A rotation is one short UPDATE, so what it costs is mostly per statement, not per row: the
//! round trip, PostgreSQL's executor start-up and its durable commit (a WAL flush). Under load
//! many rotations wait at the same moment; one statement for all of them pays those costs once.
//! Nothing waits on purpose: a rotation asked for while no statement is out goes out alone at
//! once, and the ones asked for while a statement is out go together in the next (the way
//! PostgreSQL groups the commits that wait for one WAL flush). No crate does this for diesel, and
//! the loop is short.

use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::db::{self, DbError, DbPool};
use crate::tokens::refresh::{self, Rotated, Rotation};

/// The most rotations in one statement (its arrays stay a few kilobytes).
const MOST_PER_STATEMENT: usize = 64;

/// What a rotation comes back with: its row, `None` when it was not rotated (the caller's
/// transaction decides why), or the database failure of its statement, shared by every rotation
/// in it.
pub type RotationAnswer = Result<Option<Rotated>, Arc<DbError>>;

struct Job {
    rotation: Rotation,
    reply: oneshot::Sender<RotationAnswer>,
}

/// Hands rotations to the task that gathers them.
#[derive(Debug)]
pub struct Rotations {
    jobs: mpsc::UnboundedSender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("family", &self.rotation.family_id)
            .finish_non_exhaustive()
    }
}

impl Rotations {
    /// Starts the gathering task on `pool`. At most `statements` statements are out at once
    /// (each on its own connection); the queue itself is bounded by the callers, who each wait
    /// for their answer (the token endpoint admits a bounded number of rotations at a time).
    #[must_use]
    pub fn start(pool: DbPool, statements: usize) -> Self {
        let (jobs, queue) = mpsc::unbounded_channel();
        tokio::spawn(gather(
            pool,
            queue,
            Arc::new(Semaphore::new(statements.max(1))),
        ));
        Self { jobs }
    }

    /// Rotates the current token of a live family (see [`refresh::rotate_unused`]), together
    /// with whatever other rotations are waiting. Queued at once, before the answer is awaited;
    /// dropping the answer before its statement goes out withdraws the rotation.
    pub fn rotate(&self, rotation: Rotation) -> impl Future<Output = RotationAnswer> + use<> {
        let (reply, answer) = oneshot::channel();
        let queued = self.jobs.send(Job { rotation, reply });
        async move {
            queued.map_err(|_| Arc::new(DbError::Stopped))?;
            answer.await.unwrap_or(Err(Arc::new(DbError::Stopped)))
        }
    }
}

/// Takes what waits into a statement whenever one may go out, until every sender is gone.
async fn gather(pool: DbPool, mut queue: mpsc::UnboundedReceiver<Job>, out: Arc<Semaphore>) {
    loop {
        let Ok(permit) = Arc::clone(&out).acquire_owned().await else {
            return;
        };
        let Some(first) = queue.recv().await else {
            return;
        };
        let mut batch = Vec::with_capacity(MOST_PER_STATEMENT);
        let waiting = std::iter::once(first).chain(std::iter::from_fn(|| queue.try_recv().ok()));
        // A caller that gave up (its client went away) is not rotated for: nobody would receive
        // the successor, and the spent token would look like reuse on the client's retry.
        for job in waiting.filter(|job| !job.reply.is_closed()) {
            batch.push(job);
            if batch.len() == MOST_PER_STATEMENT {
                break;
            }
        }
        if batch.is_empty() {
            continue;
        }
        let pool = pool.clone();
        tokio::spawn(async move {
            run(&pool, batch).await;
            drop(permit);
        });
    }
}

/// Sends one statement for `batch` and answers each job.
async fn run(pool: &DbPool, batch: Vec<Job>) {
    let (rotations, replies): (Vec<Rotation>, Vec<_>) =
        batch.into_iter().map(|j| (j.rotation, j.reply)).unzip();
    let answers = match db::connect(pool).await {
        Ok(mut conn) => refresh::rotate_unused(&mut conn, &rotations)
            .await
            .map_err(DbError::from),
        Err(e) => Err(e),
    };
    match answers {
        Ok(rows) => {
            for (reply, row) in replies.into_iter().zip(rows) {
                // A caller gone by now: its rotation stands, as it would have alone.
                let _ = reply.send(Ok(row));
            }
        }
        Err(e) => {
            let e = Arc::new(e);
            for reply in replies {
                let _ = reply.send(Err(Arc::clone(&e)));
            }
        }
    }
}
