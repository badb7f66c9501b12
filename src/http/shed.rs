//! Load shedding by class of work: writes that rotate tokens may hold at most three quarters of
//! the database pool, so under overload they are shed (503) while the light database work
//! (client lookups for `client_credentials`, introspection, userinfo) still finds a connection,
//! and the endpoints that need none (JWKS, discovery) never wait at all.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::AppError;

/// The bounded classes of work, with the wait before a request of a full class is shed.
#[derive(Clone, Debug)]
pub struct WorkClasses {
    rotation: Arc<Semaphore>,
    wait: Duration,
}

impl WorkClasses {
    /// Rotation gets `pool_size - max(1, pool_size / 4)` slots (at least one).
    #[must_use]
    pub fn new(pool_size: usize, wait: Duration) -> Self {
        let reserve = (pool_size / 4).max(1);
        Self {
            rotation: Arc::new(Semaphore::new(pool_size.saturating_sub(reserve).max(1))),
            wait,
        }
    }

    /// A slot for a code redemption or a refresh rotation, or [`AppError::Shed`] after the wait.
    pub async fn rotation(&self) -> Result<OwnedSemaphorePermit, AppError> {
        match tokio::time::timeout(self.wait, self.rotation.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) | Err(_) => Err(AppError::Shed(crate::error::Shed::Rotation)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_class_sheds_after_the_wait_and_frees_with_its_permits() {
        let classes = WorkClasses::new(4, Duration::from_millis(1));
        let held: Vec<_> = [
            classes.rotation().await.expect("1"),
            classes.rotation().await.expect("2"),
            classes.rotation().await.expect("3"),
        ]
        .into();
        assert!(matches!(classes.rotation().await, Err(AppError::Shed(_))));
        drop(held);
        assert!(classes.rotation().await.is_ok());
    }
}
