//! Users, tokens, per-resource permissions and the identity generation.

use slipway_core::Error;
use slipway_core::auth::{Grant, Permission, Resource, Role, TokenInfo, User};

use crate::common::Store;

contract!(users_sqlite, users_postgres => case_users);
contract!(tokens_sqlite, tokens_postgres => case_tokens);
contract!(grants_sqlite, grants_postgres => case_grants);

fn user(name: &str, role: Role) -> User {
    User {
        name: name.into(),
        role,
        created_at: 1_000,
        updated_at: 1_000,
    }
}

fn token(id: &str, user_name: &str, expires_at: Option<i64>) -> TokenInfo {
    TokenInfo {
        id: id.into(),
        user_name: user_name.into(),
        description: "ci".into(),
        created_at: 2_000,
        expires_at,
        revoked_at: None,
    }
}

async fn case_users(store: &Store) {
    let start = store.identity_generation().await.unwrap();
    store
        .create_user(user("bob", Role::Viewer), Some("$argon2id$hash-b".into()))
        .await
        .unwrap();
    store
        .create_user(user("alice", Role::Editor), None)
        .await
        .unwrap();
    assert_err!(
        store.create_user(user("bob", Role::Admin), None).await,
        Error::AlreadyExists(_)
    );
    let names: Vec<(String, Role)> = store
        .list_users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| (u.name, u.role))
        .collect();
    assert_eq!(
        names,
        [("alice".into(), Role::Editor), ("bob".into(), Role::Viewer)]
    );
    let bob = store.get_user_credentials("bob").await.unwrap();
    assert_eq!(bob.password_hash.as_deref(), Some("$argon2id$hash-b"));
    assert_eq!(bob.user.role, Role::Viewer);
    assert!(
        store
            .get_user_credentials("alice")
            .await
            .unwrap()
            .password_hash
            .is_none()
    );

    let updated = store
        .update_user(
            "bob",
            Some(Role::Approver),
            Some("$argon2id$hash-2".into()),
            5_000,
        )
        .await
        .unwrap();
    assert_eq!(
        (updated.role, updated.updated_at, updated.created_at),
        (Role::Approver, 5_000, 1_000)
    );
    let bob = store.get_user_credentials("bob").await.unwrap();
    assert_eq!(bob.password_hash.as_deref(), Some("$argon2id$hash-2"));
    assert_eq!(bob.user.role, Role::Approver);
    assert_err!(
        store
            .update_user("carol", Some(Role::Admin), None, 5_000)
            .await,
        Error::NotFound(_)
    );

    store.delete_user("alice").await.unwrap();
    assert_err!(
        store.get_user_credentials("alice").await,
        Error::NotFound(_)
    );
    assert_err!(store.delete_user("alice").await, Error::NotFound(_));
    // Every change moved the generation: 2 creates, 1 update, 1 delete.
    assert_eq!(store.identity_generation().await.unwrap(), start + 4);
}

async fn case_tokens(store: &Store) {
    store
        .create_user(user("svc", Role::Editor), None)
        .await
        .unwrap();
    store
        .create_user(user("other", Role::Viewer), None)
        .await
        .unwrap();
    assert_err!(
        store
            .create_token(token("0000000000000001", "ghost", None), "h".into())
            .await,
        Error::NotFound(_)
    );
    store
        .create_token(
            token("00000000000000aa", "svc", Some(9_000)),
            "$argon2id$t1".into(),
        )
        .await
        .unwrap();
    store
        .create_token(
            token("00000000000000bb", "other", None),
            "$argon2id$t2".into(),
        )
        .await
        .unwrap();
    let stored = store
        .get_token_credentials("00000000000000aa")
        .await
        .unwrap();
    assert_eq!(stored.secret_hash, "$argon2id$t1");
    assert_eq!(stored.info, token("00000000000000aa", "svc", Some(9_000)));
    assert!(stored.info.is_usable(8_999));
    assert!(!stored.info.is_usable(9_000));

    let mine: Vec<String> = store
        .list_tokens(Some("svc"))
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(mine, ["00000000000000aa"]);
    assert_eq!(store.list_tokens(None).await.unwrap().len(), 2);

    let before = store.identity_generation().await.unwrap();
    // A new token makes nothing cached stale: the generation stays (sign-ins create tokens).
    store
        .create_token(
            TokenInfo {
                id: "00000000000000cc".into(),
                ..store
                    .get_token_credentials("00000000000000aa")
                    .await
                    .unwrap()
                    .info
            },
            "hash".into(),
        )
        .await
        .unwrap();
    assert_eq!(store.identity_generation().await.unwrap(), before);
    let revoked = store.revoke_token("00000000000000aa", 7_000).await.unwrap();
    assert_eq!(revoked.revoked_at, Some(7_000));
    assert!(!revoked.is_usable(1));
    // Revoking again keeps the first time and changes nothing.
    let again = store.revoke_token("00000000000000aa", 8_000).await.unwrap();
    assert_eq!(again.revoked_at, Some(7_000));
    assert_eq!(store.identity_generation().await.unwrap(), before + 1);
    assert_err!(
        store.revoke_token("ffffffffffffffff", 1).await,
        Error::NotFound(_)
    );
    assert_err!(
        store.get_token_credentials("ffffffffffffffff").await,
        Error::NotFound(_)
    );

    // Deleting a user deletes their tokens.
    store.delete_user("other").await.unwrap();
    assert_err!(
        store.get_token_credentials("00000000000000bb").await,
        Error::NotFound(_)
    );
}

async fn case_grants(store: &Store) {
    store
        .create_user(user("dana", Role::Viewer), None)
        .await
        .unwrap();
    let experiment = Resource::experiment("7");
    let model = Resource::registered_model("fraud");
    assert_err!(
        store
            .set_grant(Grant {
                user_name: "ghost".into(),
                resource: experiment.clone(),
                permission: Permission::Read,
            })
            .await,
        Error::NotFound(_)
    );
    for (resource, permission) in [
        (experiment.clone(), Permission::Read),
        (experiment.clone(), Permission::Edit),
        (model.clone(), Permission::NoPermissions),
    ] {
        store
            .set_grant(Grant {
                user_name: "dana".into(),
                resource,
                permission,
            })
            .await
            .unwrap();
    }
    let grants = store.list_grants(Some("dana")).await.unwrap();
    assert_eq!(
        grants
            .iter()
            .map(|g| (g.resource.clone(), g.permission))
            .collect::<Vec<_>>(),
        [
            (experiment.clone(), Permission::Edit),
            (model.clone(), Permission::NoPermissions)
        ]
    );

    // A renamed model keeps its permissions.
    store
        .create_registered_model("fraud", None, &[], 1)
        .await
        .unwrap();
    store
        .rename_registered_model("fraud", "fraud-v2", 2)
        .await
        .unwrap();
    let grants = store.list_grants(None).await.unwrap();
    assert!(
        grants
            .iter()
            .any(|g| g.resource == Resource::registered_model("fraud-v2")),
        "{grants:?}"
    );

    store.delete_grant("dana", &experiment).await.unwrap();
    assert_err!(
        store.delete_grant("dana", &experiment).await,
        Error::NotFound(_)
    );
    assert_eq!(store.list_grants(Some("dana")).await.unwrap().len(), 1);
    store.delete_user("dana").await.unwrap();
    assert!(store.list_grants(None).await.unwrap().is_empty());
}
