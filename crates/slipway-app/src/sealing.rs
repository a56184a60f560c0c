//! Encryption at rest for what is sensitive: the prediction log's inputs and outputs and the
//! labels uploaded for them, which are often personal data.
//!
//! Envelope encryption: values are sealed with AES-256-GCM under a random data key; data keys
//! are stored only wrapped (AES-256-GCM again) by the operator's master key, which the server
//! reads from a file or an environment variable and which never reaches the store. Rotating the
//! master key re-wraps the data keys and rewrites no data. Each server process seals under a
//! data key of its own, made at its first seal, so nonces (random, 96 bits) stay far below
//! NIST's bound per key; a value names the data key it was sealed under, and is bound to its
//! deployment, request and field (the AAD), so a sealed value moved to another row does not
//! open.
//!
//! A store opened without the master key still serves everything else; what is sealed is
//! refused with a message that says why, and nothing is written in clear to a store that
//! holds sealed values.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use base64::Engine as _;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use slipway_core::deployment::PredictionRecord;
use slipway_core::keys::DataKey;
use slipway_core::ports::MetadataStore;
use slipway_core::{Error, Result};

use crate::{App, now_ms};

/// The key a sealed value is an object of: `{"$sealed": "v1.<key id>.<base64>"}`. Inputs are
/// arrays and outputs the scoring protocol's objects, neither with this key.
pub const SEALED: &str = "$sealed";
const FORMAT: &str = "v1";
/// Seals under one data key before the next is made: random 96-bit nonces stay far from the
/// 2^32 messages NIST allows per key.
const SEALS_PER_KEY: u64 = 1 << 30;
const KEY_BYTES: usize = 32;

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

fn aead_key(bytes: &[u8]) -> Result<RandomizedNonceKey> {
    RandomizedNonceKey::new(&AES_256_GCM, bytes)
        .map_err(|_| Error::invalid(format!("a key must have {KEY_BYTES} bytes")))
}

fn seal_bytes(key: &RandomizedNonceKey, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
    let mut in_out = plaintext.to_vec();
    let nonce = key
        .seal_in_place_append_tag(Aad::from(aad), &mut in_out)
        .map_err(|_| Error::internal("sealing a value", std::fmt::Error))?;
    let mut sealed = nonce.as_ref().to_vec();
    sealed.extend_from_slice(&in_out);
    Ok(sealed)
}

fn open_bytes(key: &RandomizedNonceKey, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < NONCE_LEN {
        return None;
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut in_out = ciphertext.to_vec();
    let plain = key.open_in_place(nonce, Aad::from(aad), &mut in_out).ok()?;
    Some(plain.to_vec())
}

/// The operator's master key: it wraps the data keys and is never stored.
pub struct MasterKey {
    id: String,
    key: RandomizedNonceKey,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey({})", self.id)
    }
}

impl MasterKey {
    /// From its text: 32 bytes in base64, as `slipway keys generate` prints them.
    pub fn parse(text: &str) -> Result<MasterKey> {
        let bytes = b64().decode(text.trim()).map_err(|_| {
            Error::invalid(
                "a master key is 32 bytes in base64 (make one with `slipway keys generate`)",
            )
        })?;
        if bytes.len() != KEY_BYTES {
            return Err(Error::invalid(format!(
                "a master key is {KEY_BYTES} bytes in base64, this one has {} (make one with `slipway keys generate`)",
                bytes.len()
            )));
        }
        Ok(MasterKey {
            id: hex::encode(&Sha256::digest(&bytes)[..8]),
            key: aead_key(&bytes)?,
        })
    }

    /// A new random master key, in base64.
    pub fn generate() -> Result<String> {
        let mut bytes = [0u8; KEY_BYTES];
        getrandom::fill(&mut bytes).map_err(|e| Error::internal("drawing a key", e))?;
        Ok(b64().encode(bytes))
    }

    /// Names the key without revealing it (the first 8 bytes of its SHA-256).
    pub fn id(&self) -> &str {
        &self.id
    }

    fn aad(key_id: &str) -> Vec<u8> {
        format!("slipway data key {key_id}").into_bytes()
    }

    fn wrap(&self, key_id: &str, key: &[u8]) -> Result<String> {
        Ok(b64().encode(seal_bytes(&self.key, &Self::aad(key_id), key)?))
    }

    fn unwrap(&self, stored: &DataKey) -> Result<Vec<u8>> {
        let refused = || {
            Error::invalid(format!(
                "data key {} does not open with master key {}: the stored key is damaged, or was wrapped by another key under the same id",
                stored.id, self.id
            ))
        };
        let sealed = b64().decode(&stored.wrapped).map_err(|_| refused())?;
        open_bytes(&self.key, &Self::aad(&stored.id), &sealed).ok_or_else(refused)
    }
}

/// The data keys one process holds, unwrapped, and the one it seals under.
struct Active {
    id: String,
    key: Arc<RandomizedNonceKey>,
    seals: u64,
}

/// Encryption at rest as a server runs it: on with a master key, off without one.
pub struct Sealing {
    master: Option<MasterKey>,
    /// The store holds data keys, so some of what it holds is sealed.
    store_sealed: std::sync::atomic::AtomicBool,
    keys: RwLock<HashMap<String, Arc<RandomizedNonceKey>>>,
    active: Mutex<Option<Active>>,
}

impl Sealing {
    /// Encryption off, on a store that holds nothing sealed.
    pub fn off() -> Sealing {
        Sealing {
            master: None,
            store_sealed: false.into(),
            keys: RwLock::new(HashMap::new()),
            active: Mutex::new(None),
        }
    }

    /// Reads the store's data keys and opens them with `master`. A key wrapped by another
    /// master key is an error that says how to go on: a server that could not read part of
    /// the log must not start writing more under a key nobody planned for.
    pub async fn open(store: &dyn MetadataStore, master: Option<MasterKey>) -> Result<Sealing> {
        let stored = store.list_data_keys().await?;
        let sealing = Sealing {
            store_sealed: (!stored.is_empty()).into(),
            ..Sealing::off()
        };
        let Some(master) = master else {
            return Ok(sealing);
        };
        let foreign: Vec<&DataKey> = stored
            .iter()
            .filter(|key| key.master_key_id != master.id)
            .collect();
        if let Some(first) = foreign.first() {
            return Err(Error::invalid(format!(
                "{} of the store's data keys were wrapped by master key {}, not by the one given ({}): start with that key, or re-wrap them under the new one with `slipway keys rotate`",
                foreign.len(),
                first.master_key_id,
                master.id
            )));
        }
        let mut keys = HashMap::new();
        for key in &stored {
            keys.insert(key.id.clone(), Arc::new(aead_key(&master.unwrap(key)?)?));
        }
        Ok(Sealing {
            master: Some(master),
            keys: RwLock::new(keys),
            ..sealing
        })
    }

    /// Whether new values are sealed.
    pub fn enabled(&self) -> bool {
        self.master.is_some()
    }

    /// The master key's id, when encryption is on.
    pub fn master_key_id(&self) -> Option<&str> {
        self.master.as_ref().map(MasterKey::id)
    }

    /// Whether the store holds sealed values this process cannot open.
    pub fn locked(&self) -> bool {
        self.master.is_none() && self.store_sealed.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn key(&self, id: &str) -> Option<Arc<RandomizedNonceKey>> {
        self.keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    /// Picks up data keys other servers made since.
    async fn reload(&self, store: &dyn MetadataStore) -> Result<()> {
        let Some(master) = &self.master else {
            return Ok(());
        };
        for stored in store.list_data_keys().await? {
            if self.key(&stored.id).is_none() && stored.master_key_id == master.id {
                let key = Arc::new(aead_key(&master.unwrap(&stored)?)?);
                self.keys
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(stored.id.clone(), key);
            }
        }
        Ok(())
    }
}

/// What binds a sealed value to its place: the deployment, the request and the field.
fn aad(deployment: &str, request_id: &str, field: &str) -> Vec<u8> {
    format!("{deployment}\0{request_id}\0{field}").into_bytes()
}

/// The key id and bytes of a sealed value, or `None` for a value in clear.
fn sealed_parts(value: &Value) -> Option<Result<(String, Vec<u8>)>> {
    let text = value.as_object()?.get(SEALED)?.as_str();
    let damaged = || Error::invalid("a sealed value in the store is damaged");
    Some((|| {
        let mut parts = text.ok_or_else(damaged)?.splitn(3, '.');
        let (Some(FORMAT), Some(id), Some(data)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(damaged());
        };
        Ok((id.to_owned(), b64().decode(data).map_err(|_| damaged())?))
    })())
}

impl App {
    /// The same application with encryption at rest as `sealing` says.
    pub fn with_sealing(mut self, sealing: Arc<Sealing>) -> App {
        self.sealing = sealing;
        self
    }

    pub fn sealing(&self) -> &Sealing {
        &self.sealing
    }

    /// The data key to seal under: this process's, made (and stored, audited) at its first
    /// seal and again after [`SEALS_PER_KEY`] seals.
    async fn sealing_key(&self, seals: u64) -> Result<(String, Arc<RandomizedNonceKey>)> {
        {
            let mut active = self
                .sealing
                .active
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(active) = active.as_mut().filter(|a| a.seals + seals <= SEALS_PER_KEY) {
                active.seals += seals;
                return Ok((active.id.clone(), active.key.clone()));
            }
        }
        let master = self
            .sealing
            .master
            .as_ref()
            .ok_or_else(|| Error::invalid("encryption at rest is off on this server"))?;
        let mut bytes = [0u8; KEY_BYTES];
        getrandom::fill(&mut bytes).map_err(|e| Error::internal("drawing a data key", e))?;
        let mut id = [0u8; 8];
        getrandom::fill(&mut id).map_err(|e| Error::internal("drawing a key id", e))?;
        let id = hex::encode(id);
        let stored = DataKey {
            id: id.clone(),
            master_key_id: master.id.clone(),
            wrapped: master.wrap(&id, &bytes)?,
            created_ms: now_ms(),
        };
        self.audited(
            "keys.data_key.create",
            format!("data_key:{id}"),
            json!({ "master_key_id": master.id }),
        )
        .put_data_key(stored)
        .await?;
        let key = Arc::new(aead_key(&bytes)?);
        self.sealing
            .keys
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), key.clone());
        self.sealing
            .store_sealed
            .store(true, std::sync::atomic::Ordering::Relaxed);
        *self
            .sealing
            .active
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(Active {
            id: id.clone(),
            key: key.clone(),
            seals,
        });
        Ok((id, key))
    }

    fn seal_with(
        key_id: &str,
        key: &RandomizedNonceKey,
        value: &Value,
        aad: &[u8],
    ) -> Result<Value> {
        let plain = serde_json::to_vec(value).map_err(|e| Error::internal("encoding", e))?;
        let sealed = seal_bytes(key, aad, &plain)?;
        Ok(json!({ SEALED: format!("{FORMAT}.{key_id}.{}", b64().encode(sealed)) }))
    }

    /// Seals the records' inputs and outputs when encryption is on. Returns `false` when they
    /// must not be written at all: the store holds sealed values and this server has no key,
    /// so writing them in clear would undo the encryption.
    pub(crate) async fn seal_records(&self, records: &mut [PredictionRecord]) -> Result<bool> {
        if !self.sealing.enabled() {
            return self.may_write_in_clear().await;
        }
        if records.is_empty() {
            return Ok(true);
        }
        let (id, key) = self.sealing_key(2 * records.len() as u64).await?;
        for record in records {
            for (field, value) in [
                ("inputs", &mut record.inputs),
                ("outputs", &mut record.outputs),
            ] {
                *value = Self::seal_with(
                    &id,
                    &key,
                    value,
                    &aad(&record.deployment, &record.request_id, field),
                )?;
            }
        }
        Ok(true)
    }

    /// Seals labels (`(request id, label)`) like the predictions they belong to.
    pub(crate) async fn seal_labels(
        &self,
        deployment: &str,
        labels: &mut [(String, Value)],
    ) -> Result<bool> {
        if !self.sealing.enabled() {
            return self.may_write_in_clear().await;
        }
        if labels.is_empty() {
            return Ok(true);
        }
        let (id, key) = self.sealing_key(labels.len() as u64).await?;
        for (request_id, label) in labels {
            *label = Self::seal_with(&id, &key, label, &aad(deployment, request_id, "label"))?;
        }
        Ok(true)
    }

    /// Whether a server without a key may write values in clear: not once the store holds a
    /// data key, which another server with the key may have made since this one started.
    async fn may_write_in_clear(&self) -> Result<bool> {
        if !self.sealing.locked() && !self.store().list_data_keys().await?.is_empty() {
            self.sealing
                .store_sealed
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(!self.sealing.locked())
    }

    /// Opens a value in place if it is sealed; a value in clear is left as it is.
    pub(crate) async fn unseal(
        &self,
        value: &mut Value,
        deployment: &str,
        request_id: &str,
        field: &str,
    ) -> Result<()> {
        let Some(parts) = sealed_parts(value) else {
            return Ok(());
        };
        let (id, sealed) = parts?;
        if !self.sealing.enabled() {
            return Err(Error::invalid(format!(
                "the prediction log of deployment '{deployment}' is encrypted, and this server was started without the master key (--encryption-key): it cannot be read here"
            )));
        }
        if self.sealing.key(&id).is_none() {
            self.sealing.reload(self.store().as_ref()).await?;
        }
        let key = self.sealing.key(&id).ok_or_else(|| {
            Error::invalid(format!(
                "a value of deployment '{deployment}' is sealed under data key {id}, which the store does not hold"
            ))
        })?;
        let plain = open_bytes(&key, &aad(deployment, request_id, field), &sealed).ok_or_else(
            || {
                Error::invalid(format!(
                    "a sealed {field} of deployment '{deployment}' (request {request_id}) does not open: it was altered or moved"
                ))
            },
        )?;
        *value = serde_json::from_slice(&plain)
            .map_err(|e| Error::internal("decoding an opened value", e))?;
        Ok(())
    }

    pub(crate) async fn unseal_record(&self, record: &mut PredictionRecord) -> Result<()> {
        let (deployment, request_id) = (record.deployment.clone(), record.request_id.clone());
        self.unseal(&mut record.inputs, &deployment, &request_id, "inputs")
            .await?;
        self.unseal(&mut record.outputs, &deployment, &request_id, "outputs")
            .await
    }

    /// Re-wraps every data key from `from` to `to` in one transaction (audited); the sealed
    /// values are not touched. Returns how many keys were re-wrapped.
    pub async fn rotate_master_key(&self, from: &MasterKey, to: &MasterKey) -> Result<usize> {
        let stored = self.store.list_data_keys().await?;
        let mut rewrapped = Vec::with_capacity(stored.len());
        for key in &stored {
            if key.master_key_id == to.id {
                continue;
            }
            if key.master_key_id != from.id {
                return Err(Error::invalid(format!(
                    "data key {} was wrapped by master key {}, neither the old key given ({}) nor the new one",
                    key.id, key.master_key_id, from.id
                )));
            }
            let bytes = from.unwrap(key)?;
            rewrapped.push(DataKey {
                master_key_id: to.id.clone(),
                wrapped: to.wrap(&key.id, &bytes)?,
                ..key.clone()
            });
        }
        let count = rewrapped.len();
        if count > 0 {
            self.audited(
                "keys.rotate",
                "data_keys",
                json!({ "from": from.id, "to": to.id, "data_keys": count }),
            )
            .rewrap_data_keys(rewrapped)
            .await?;
        }
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_opens_only_where_it_was_sealed() {
        let key = aead_key(&[7u8; 32]).unwrap();
        let sealed = App::seal_with("k1", &key, &json!([[1.5, 2.0]]), b"d\0r1\0inputs").unwrap();
        let (id, bytes) = sealed_parts(&sealed).unwrap().unwrap();
        assert_eq!(id, "k1");
        let plain = open_bytes(&key, b"d\0r1\0inputs", &bytes).unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&plain).unwrap(),
            json!([[1.5, 2.0]])
        );
        // Moved to another request or field, it does not open.
        assert!(open_bytes(&key, b"d\0r2\0inputs", &bytes).is_none());
        assert!(open_bytes(&key, b"d\0r1\0outputs", &bytes).is_none());
        let mut flipped = bytes.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(open_bytes(&key, b"d\0r1\0inputs", &flipped).is_none());
        // The same value twice seals differently (random nonces).
        let again = App::seal_with("k1", &key, &json!([[1.5, 2.0]]), b"d\0r1\0inputs").unwrap();
        assert_ne!(sealed, again);
        // Values in clear are not mistaken for sealed ones.
        assert!(sealed_parts(&json!({"predictions": [1]})).is_none());
        assert!(sealed_parts(&json!([[1.0]])).is_none());
    }

    #[test]
    fn master_keys_wrap_and_name_themselves() {
        let text = MasterKey::generate().unwrap();
        let master = MasterKey::parse(&format!("{text}\n")).unwrap();
        assert_eq!(master.id().len(), 16);
        let wrapped = master.wrap("k1", &[9u8; 32]).unwrap();
        let stored = DataKey {
            id: "k1".into(),
            master_key_id: master.id().into(),
            wrapped,
            created_ms: 0,
        };
        assert_eq!(master.unwrap(&stored).unwrap(), vec![9u8; 32]);
        let other = MasterKey::parse(&MasterKey::generate().unwrap()).unwrap();
        assert_ne!(other.id(), master.id());
        assert!(other.unwrap(&stored).is_err());
        // Under another id, the wrapped key does not open either.
        let renamed = DataKey {
            id: "k2".into(),
            ..stored
        };
        assert!(master.unwrap(&renamed).is_err());
        let short = MasterKey::parse("c2hvcnQ=").unwrap_err().to_string();
        assert!(short.contains("32 bytes"), "{short}");
        assert!(MasterKey::parse("not base64!").is_err());
        assert!(!format!("{master:?}").contains(&text));
    }
}
