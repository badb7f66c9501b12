//! What Keyward mints and must remember: opaque secrets and their hashes, authorization codes,
//! refresh families, signed JWTs, and the list of revoked access tokens.

pub mod codes;
pub mod jwt;
pub mod opaque;
pub mod refresh;
pub mod revoked;
pub mod rotations;
