//! Data keys: what the prediction log and labels are encrypted under at rest. Each is a random
//! AES-256 key stored only wrapped (encrypted) by the operator's master key, which never
//! reaches the store; rotating the master key re-wraps these rows and leaves the data alone.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataKey {
    /// Random hex id; sealed values name the key they were sealed under.
    pub id: String,
    /// Which master key wrapped it: the first 8 bytes of the master key's SHA-256, in hex.
    pub master_key_id: String,
    /// The key encrypted under the master key, base64 (nonce, ciphertext and tag).
    pub wrapped: String,
    pub created_ms: i64,
}
