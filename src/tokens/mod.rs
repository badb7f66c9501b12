//! What Keyward mints: opaque random tokens, and the hashes that stand in for them at rest.

pub mod jwt;
pub mod opaque;
pub mod refresh;
