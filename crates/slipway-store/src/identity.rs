//! Users, API tokens and per-resource permissions. Every change bumps `identity_state` in the
//! same transaction, so servers sharing the database know to drop cached credentials.

use slipway_core::auth::{
    Grant, Permission, Resource, ResourceKind, Role, TokenCredentials, TokenInfo, User,
    UserCredentials,
};
use slipway_core::{Error, Result};

use crate::SqlStore;
use crate::conn::{Tx, read_all};

fn user_not_found(name: &str) -> Error {
    Error::not_found(format!("user '{name}' does not exist"))
}

fn token_not_found(id: &str) -> Error {
    Error::not_found(format!("token '{id}' does not exist"))
}

async fn bump_generation(tx: &mut Tx<'_>) -> Result<()> {
    let sql = tx.sql("UPDATE identity_state SET generation = generation + 1 WHERE id = 1");
    tx.execute(&sql, "bumping the identity generation").await?;
    Ok(())
}

type UserRow = (String, String, Option<String>, i64, i64);

const USER_COLUMNS: &str = "name, role, password_hash, created_at, updated_at";

fn user_from_row(
    (name, role, password_hash, created_at, updated_at): UserRow,
) -> Result<UserCredentials> {
    Ok(UserCredentials {
        user: User {
            name,
            // A role written by a newer slipway reads as the least one, never as more.
            role: Role::parse(&role).unwrap_or(Role::Viewer),
            created_at,
            updated_at,
        },
        password_hash,
    })
}

async fn require_user(tx: &mut Tx<'_>, name: &str) -> Result<UserCredentials> {
    let mut sql = tx.sql(&format!("SELECT {USER_COLUMNS} FROM users WHERE name = "));
    sql.bind(name);
    let row = tx
        .fetch_optional::<UserRow>(&sql, "reading a user")
        .await?
        .ok_or_else(|| user_not_found(name))?;
    user_from_row(row)
}

pub(crate) async fn create_user(
    store: &SqlStore,
    user: User,
    password_hash: Option<String>,
) -> Result<()> {
    store
        .writer
        .write_tx(move |mut tx| {
            Box::pin(async move {
                let mut sql = tx.sql(
                    "INSERT INTO users (name, role, password_hash, created_at, updated_at) VALUES (",
                );
                sql.bind(user.name.as_str())
                    .push(", ")
                    .bind(user.role.as_str())
                    .push(", ")
                    .bind(password_hash)
                    .push(", ")
                    .bind(user.created_at)
                    .push(", ")
                    .bind(user.updated_at)
                    .push(") ON CONFLICT (name) DO NOTHING");
                if tx.execute(&sql, "creating a user").await? == 0 {
                    return Err(Error::already_exists(format!(
                        "user '{}' already exists",
                        user.name
                    )));
                }
                bump_generation(&mut tx).await
            })
        })
        .await
}

pub(crate) async fn get_user_credentials(store: &SqlStore, name: &str) -> Result<UserCredentials> {
    let mut sql = store.sql(&format!("SELECT {USER_COLUMNS} FROM users WHERE name = "));
    sql.bind(name);
    let row = read_all::<UserRow>(&store.read, &sql, "reading a user")
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| user_not_found(name))?;
    user_from_row(row)
}

pub(crate) async fn list_users(store: &SqlStore) -> Result<Vec<User>> {
    let sql = store.sql(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY name"));
    read_all::<UserRow>(&store.read, &sql, "listing users")
        .await?
        .into_iter()
        .map(|row| user_from_row(row).map(|credentials| credentials.user))
        .collect()
}

pub(crate) async fn update_user(
    store: &SqlStore,
    name: &str,
    role: Option<Role>,
    password_hash: Option<String>,
    now_ms: i64,
) -> Result<User> {
    let name = name.to_owned();
    store
        .writer
        .write_tx(move |mut tx| {
            Box::pin(async move {
                let mut current = require_user(&mut tx, &name).await?.user;
                let mut sql = tx.sql("UPDATE users SET updated_at = ");
                sql.bind(now_ms);
                if let Some(role) = role {
                    sql.push(", role = ").bind(role.as_str());
                    current.role = role;
                }
                if let Some(hash) = password_hash {
                    sql.push(", password_hash = ").bind(hash);
                }
                sql.push(" WHERE name = ").bind(name.as_str());
                tx.execute(&sql, "updating a user").await?;
                bump_generation(&mut tx).await?;
                current.updated_at = now_ms;
                Ok(current)
            })
        })
        .await
}

/// Deletes the user with their tokens and permissions.
pub(crate) async fn delete_user(store: &SqlStore, name: &str) -> Result<()> {
    let name = name.to_owned();
    store
        .writer
        .write_tx(move |mut tx| {
            Box::pin(async move {
                require_user(&mut tx, &name).await?;
                for table in ["api_tokens", "resource_permissions", "users"] {
                    let column = if table == "users" {
                        "name"
                    } else {
                        "user_name"
                    };
                    let mut sql = tx.sql(&format!("DELETE FROM {table} WHERE {column} = "));
                    sql.bind(name.as_str());
                    tx.execute(&sql, "deleting a user").await?;
                }
                bump_generation(&mut tx).await
            })
        })
        .await
}

type TokenRow = (String, String, String, i64, Option<i64>, Option<i64>);

const TOKEN_COLUMNS: &str = "token_id, user_name, description, created_at, expires_at, revoked_at";

fn token_from_row(
    (id, user_name, description, created_at, expires_at, revoked_at): TokenRow,
) -> TokenInfo {
    TokenInfo {
        id,
        user_name,
        description,
        created_at,
        expires_at,
        revoked_at,
    }
}

pub(crate) async fn create_token(
    store: &SqlStore,
    token: TokenInfo,
    secret_hash: String,
) -> Result<()> {
    store
        .writer
        .write_tx(move |mut tx| {
            Box::pin(async move {
                require_user(&mut tx, &token.user_name).await?;
                let mut sql = tx.sql(
                    "INSERT INTO api_tokens (token_id, user_name, secret_hash, description, \
                     created_at, expires_at, revoked_at) VALUES (",
                );
                sql.bind(token.id.as_str())
                    .push(", ")
                    .bind(token.user_name.as_str())
                    .push(", ")
                    .bind(secret_hash)
                    .push(", ")
                    .bind(token.description.as_str())
                    .push(", ")
                    .bind(token.created_at)
                    .push(", ")
                    .bind(token.expires_at)
                    .push(", NULL)");
                // No generation bump: a new token is in no server's cache, so nothing cached
                // goes stale (a bump would make every server re-check every credential).
                tx.execute(&sql, "creating a token").await?;
                Ok(())
            })
        })
        .await
}

pub(crate) async fn get_token_credentials(store: &SqlStore, id: &str) -> Result<TokenCredentials> {
    let mut sql = store.sql(&format!(
        "SELECT {TOKEN_COLUMNS}, secret_hash FROM api_tokens WHERE token_id = "
    ));
    sql.bind(id);
    type Row = (
        String,
        String,
        String,
        i64,
        Option<i64>,
        Option<i64>,
        String,
    );
    let (token_id, user_name, description, created_at, expires_at, revoked_at, secret_hash) =
        read_all::<Row>(&store.read, &sql, "reading a token")
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| token_not_found(id))?;
    Ok(TokenCredentials {
        info: token_from_row((
            token_id,
            user_name,
            description,
            created_at,
            expires_at,
            revoked_at,
        )),
        secret_hash,
    })
}

pub(crate) async fn list_tokens(
    store: &SqlStore,
    user_name: Option<&str>,
) -> Result<Vec<TokenInfo>> {
    let mut sql = store.sql(&format!("SELECT {TOKEN_COLUMNS} FROM api_tokens"));
    if let Some(user_name) = user_name {
        sql.push(" WHERE user_name = ").bind(user_name);
    }
    sql.push(" ORDER BY created_at, token_id");
    Ok(read_all::<TokenRow>(&store.read, &sql, "listing tokens")
        .await?
        .into_iter()
        .map(token_from_row)
        .collect())
}

pub(crate) async fn revoke_token(store: &SqlStore, id: &str, now_ms: i64) -> Result<TokenInfo> {
    let id = id.to_owned();
    store
        .writer
        .write_tx(move |mut tx| {
            Box::pin(async move {
                let mut sql = tx.sql(&format!(
                    "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE token_id = "
                ));
                sql.bind(id.as_str());
                let mut token = token_from_row(
                    tx.fetch_optional::<TokenRow>(&sql, "reading a token")
                        .await?
                        .ok_or_else(|| token_not_found(&id))?,
                );
                if token.revoked_at.is_none() {
                    let mut sql = tx.sql("UPDATE api_tokens SET revoked_at = ");
                    sql.bind(now_ms)
                        .push(" WHERE token_id = ")
                        .bind(id.as_str());
                    tx.execute(&sql, "revoking a token").await?;
                    bump_generation(&mut tx).await?;
                    token.revoked_at = Some(now_ms);
                }
                Ok(token)
            })
        })
        .await
}

pub(crate) async fn set_grant(store: &SqlStore, grant: Grant) -> Result<()> {
    store
        .writer
        .write_tx(move |mut tx| {
            Box::pin(async move {
                require_user(&mut tx, &grant.user_name).await?;
                let mut sql = tx.sql(
                    "INSERT INTO resource_permissions (user_name, resource_type, resource_id, permission) VALUES (",
                );
                sql.bind(grant.user_name.as_str())
                    .push(", ")
                    .bind(grant.resource.kind.as_str())
                    .push(", ")
                    .bind(grant.resource.id.as_str())
                    .push(", ")
                    .bind(grant.permission.as_str())
                    .push(
                        ") ON CONFLICT (user_name, resource_type, resource_id) \
                         DO UPDATE SET permission = excluded.permission",
                    );
                tx.execute(&sql, "setting a permission").await?;
                bump_generation(&mut tx).await
            })
        })
        .await
}

pub(crate) async fn delete_grant(
    store: &SqlStore,
    user_name: &str,
    resource: &Resource,
) -> Result<()> {
    let user_name = user_name.to_owned();
    let resource = resource.clone();
    store
        .writer
        .write_tx(move |mut tx| {
            Box::pin(async move {
                let mut sql = tx.sql("DELETE FROM resource_permissions WHERE user_name = ");
                sql.bind(user_name.as_str())
                    .push(" AND resource_type = ")
                    .bind(resource.kind.as_str())
                    .push(" AND resource_id = ")
                    .bind(resource.id.as_str());
                if tx.execute(&sql, "deleting a permission").await? == 0 {
                    return Err(Error::not_found(format!(
                        "user '{user_name}' has no permission of its own on {resource}"
                    )));
                }
                bump_generation(&mut tx).await
            })
        })
        .await
}

pub(crate) async fn list_grants(store: &SqlStore, user_name: Option<&str>) -> Result<Vec<Grant>> {
    let mut sql = store
        .sql("SELECT user_name, resource_type, resource_id, permission FROM resource_permissions");
    if let Some(user_name) = user_name {
        sql.push(" WHERE user_name = ").bind(user_name);
    }
    sql.push(" ORDER BY user_name, resource_type, resource_id");
    read_all::<(String, String, String, String)>(&store.read, &sql, "listing permissions")
        .await?
        .into_iter()
        .map(|(user_name, kind, id, permission)| {
            Ok(Grant {
                user_name,
                resource: Resource {
                    kind: ResourceKind::parse(&kind)?,
                    id,
                },
                permission: Permission::parse(&permission)?,
            })
        })
        .collect()
}

pub(crate) async fn generation(store: &SqlStore) -> Result<i64> {
    let sql = store.sql("SELECT generation FROM identity_state WHERE id = 1");
    Ok(
        read_all::<(i64,)>(&store.read, &sql, "reading the identity generation")
            .await?
            .into_iter()
            .next()
            .map_or(0, |(generation,)| generation),
    )
}

/// Keeps registered-model permissions attached to a model across a rename.
pub(crate) async fn rename_model_grants(tx: &mut Tx<'_>, old: &str, new: &str) -> Result<()> {
    let mut sql = tx.sql("UPDATE resource_permissions SET resource_id = ");
    sql.bind(new)
        .push(" WHERE resource_type = 'registered_model' AND resource_id = ")
        .bind(old);
    if tx.execute(&sql, "renaming model permissions").await? > 0 {
        bump_generation(tx).await?;
    }
    Ok(())
}

/// Drops every user's permission on a resource that is gone.
pub(crate) async fn delete_resource_grants(tx: &mut Tx<'_>, kind: &str, id: &str) -> Result<()> {
    let mut sql = tx.sql("DELETE FROM resource_permissions WHERE resource_type = ");
    sql.bind(kind).push(" AND resource_id = ").bind(id);
    if tx
        .execute(&sql, "deleting permissions of a deleted resource")
        .await?
        > 0
    {
        bump_generation(tx).await?;
    }
    Ok(())
}
