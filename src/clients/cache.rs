//! The clients this instance has authenticated, kept in memory so that the token endpoint needs
//! no database to know who is calling; forgotten whenever `client_set_version` moves (polled every
//! reload interval), so a change made anywhere takes effect on every instance within it.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::clients::Client;
use crate::db::schema::client_set_version;
use crate::db::{self, DbError, DbPool};

/// At most this many clients are remembered; beyond it, the rest are read from the database
/// each time (memory stays bounded whatever the registry's size).
pub const MAX_CACHED: usize = 10_000;

/// Clients by id, as of `client_set_version = version`.
#[derive(Clone)]
pub struct ClientCache {
    inner: Arc<RwLock<Inner>>,
    /// How long the cache may go unchecked before it is not trusted: when the version cannot be
    /// read (the database is down or every connection busy), a change made meanwhile would
    /// otherwise go unseen, a deleted client working on for as long as that lasts.
    max_unchecked: Duration,
}

struct Inner {
    /// The database's version when this instance last looked.
    version: i64,
    /// When it last looked successfully.
    checked_at: Instant,
    /// Bumped whenever the map is emptied: a lookup that began before may hold an older row
    /// than the database now has, and must not put it back.
    epoch: u64,
    clients: HashMap<String, Arc<Client>>,
}

impl std::fmt::Debug for ClientCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCache")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

/// The version bumped by a trigger on every change to `clients`.
pub async fn current_version(conn: &mut AsyncPgConnection) -> QueryResult<i64> {
    client_set_version::table
        .select(client_set_version::version)
        .first(conn)
        .await
}

impl ClientCache {
    /// An empty cache as of the database's current version, trusted for `max_unchecked` after
    /// each successful [`ClientCache::refresh`].
    pub async fn load(conn: &mut AsyncPgConnection, max_unchecked: Duration) -> QueryResult<Self> {
        Ok(Self {
            inner: Arc::new(RwLock::new(Inner {
                version: current_version(conn).await?,
                checked_at: Instant::now(),
                epoch: 0,
                clients: HashMap::new(),
            })),
            max_unchecked,
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        // Nothing panics while holding the lock; a poisoned map is still a valid map.
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many clients are remembered.
    #[must_use]
    pub fn len(&self) -> usize {
        self.read().clients.len()
    }

    /// Whether none is.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The remembered client `id`, if any and if the cache was checked recently enough; never
    /// touches the database.
    #[must_use]
    pub fn cached(&self, id: &str) -> Option<Arc<Client>> {
        let inner = self.read();
        if inner.checked_at.elapsed() > self.max_unchecked {
            return None;
        }
        inner.clients.get(id).cloned()
    }

    /// Client `id` from the database, remembered (replacing what was) unless the cache was
    /// emptied while it was read. Unknown ids are not remembered: they cost a read each time, as
    /// they always did, and the token endpoint's failure limits bound them.
    pub async fn fetch(&self, pool: &DbPool, id: &str) -> Result<Option<Arc<Client>>, DbError> {
        let epoch = self.read().epoch;
        let found = {
            let mut conn = db::connect(pool).await?;
            super::find(&mut conn, id).await?.map(Arc::new)
        };
        if let Some(client) = &found {
            let mut inner = self.write();
            let room = inner.clients.len() < MAX_CACHED || inner.clients.contains_key(id);
            if inner.epoch == epoch && room {
                inner.clients.insert(id.to_owned(), Arc::clone(client));
            }
        }
        Ok(found)
    }

    /// Forgets every client when the database's version moved; returns whether it did.
    pub async fn refresh(&self, conn: &mut AsyncPgConnection) -> QueryResult<bool> {
        let version = current_version(conn).await?;
        let mut inner = self.write();
        inner.checked_at = Instant::now();
        if inner.version == version {
            return Ok(false);
        }
        inner.version = version;
        inner.epoch += 1;
        inner.clients.clear();
        Ok(true)
    }
}
