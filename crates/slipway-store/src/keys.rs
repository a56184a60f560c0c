//! Data keys for encryption at rest, stored wrapped (see `slipway_core::keys`).

use slipway_core::keys::DataKey;
use slipway_core::{Error, Result};

use crate::SqlStore;
use crate::sql::{db_err, get_i64, get_str};

pub(crate) async fn put(store: &SqlStore, key: DataKey) -> Result<()> {
    store
        .writer
        .write(move |tx| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO data_keys (id, master_key_id, wrapped, created_ms) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(key.id)
                .bind(key.master_key_id)
                .bind(key.wrapped)
                .bind(key.created_ms)
                .execute(&mut *tx)
                .await
                .map_err(db_err("storing a data key"))?;
                Ok(())
            })
        })
        .await
}

pub(crate) async fn list(store: &SqlStore) -> Result<Vec<DataKey>> {
    let rows = sqlx::query("SELECT * FROM data_keys ORDER BY created_ms, id")
        .fetch_all(&store.read)
        .await
        .map_err(db_err("reading the data keys"))?;
    rows.iter()
        .map(|row| {
            Ok(DataKey {
                id: get_str(row, "id")?,
                master_key_id: get_str(row, "master_key_id")?,
                wrapped: get_str(row, "wrapped")?,
                created_ms: get_i64(row, "created_ms")?,
            })
        })
        .collect()
}

pub(crate) async fn rewrap(store: &SqlStore, keys: Vec<DataKey>) -> Result<()> {
    store
        .writer
        .write(move |tx| {
            Box::pin(async move {
                for key in keys {
                    let updated = sqlx::query(
                        "UPDATE data_keys SET master_key_id = $1, wrapped = $2 WHERE id = $3",
                    )
                    .bind(key.master_key_id)
                    .bind(key.wrapped)
                    .bind(key.id.clone())
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err("re-wrapping a data key"))?;
                    if updated.rows_affected() != 1 {
                        // The whole rotation is one transaction: nothing is re-wrapped.
                        return Err(Error::NotFound(format!("data key {} is gone", key.id)));
                    }
                }
                Ok(())
            })
        })
        .await
}
