//! Data keys for encryption at rest: stored, listed oldest first, and re-wrapped all at once
//! or not at all.

use slipway_core::Error;
use slipway_core::keys::DataKey;

use crate::common::Store;

contract!(data_keys_are_rewrapped_all_or_none_sqlite, data_keys_are_rewrapped_all_or_none_postgres => case_data_keys_are_rewrapped_all_or_none);

fn key(id: &str, master: &str, created_ms: i64) -> DataKey {
    DataKey {
        id: id.into(),
        master_key_id: master.into(),
        wrapped: format!("wrapped-{id}-by-{master}"),
        created_ms,
    }
}

async fn case_data_keys_are_rewrapped_all_or_none(store: &Store) {
    assert!(store.list_data_keys().await.unwrap().is_empty());
    store.put_data_key(key("b", "m1", 20)).await.unwrap();
    store.put_data_key(key("a", "m1", 10)).await.unwrap();
    assert!(store.put_data_key(key("a", "m1", 30)).await.is_err());
    let listed = store.list_data_keys().await.unwrap();
    assert_eq!(listed, vec![key("a", "m1", 10), key("b", "m1", 20)]);

    // One key that is gone: nothing is re-wrapped.
    assert_err!(
        store
            .rewrap_data_keys(vec![key("a", "m2", 10), key("gone", "m2", 5)])
            .await,
        Error::NotFound(_)
    );
    assert_eq!(store.list_data_keys().await.unwrap(), listed);

    store
        .rewrap_data_keys(vec![key("a", "m2", 10), key("b", "m2", 20)])
        .await
        .unwrap();
    assert_eq!(
        store.list_data_keys().await.unwrap(),
        vec![key("a", "m2", 10), key("b", "m2", 20)]
    );
}
