//! Users, tokens and permissions (admin only), and `whoami` (everyone).

use axum::Extension;
use axum::Json;
use axum::extract::Path;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use slipway_app::identity::{Secret, parse_lifetime};
use slipway_core::auth::{
    Grant, Permission, Principal, Resource, ResourceKind, Role, TokenInfo, User,
};

use crate::access::AppFor;
use crate::error::ApiResult;
use crate::extract::Message;
use crate::mlflow::{ok, required_str};

#[derive(Serialize)]
pub(crate) struct UserOut<'a> {
    name: &'a str,
    role: &'static str,
    created_at: i64,
    updated_at: i64,
}

impl<'a> From<&'a User> for UserOut<'a> {
    fn from(user: &'a User) -> Self {
        UserOut {
            name: &user.name,
            role: user.role.as_str(),
            created_at: user.created_at,
            updated_at: user.updated_at,
        }
    }
}

#[derive(Serialize)]
pub(crate) struct TokenOut<'a> {
    id: &'a str,
    user: &'a str,
    description: &'a str,
    created_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    revoked_at: Option<i64>,
}

impl<'a> From<&'a TokenInfo> for TokenOut<'a> {
    fn from(token: &'a TokenInfo) -> Self {
        TokenOut {
            id: &token.id,
            user: &token.user_name,
            description: &token.description,
            created_at: token.created_at,
            expires_at: token.expires_at,
            revoked_at: token.revoked_at,
        }
    }
}

#[derive(Serialize)]
pub(crate) struct PermissionOut<'a> {
    user: &'a str,
    resource_type: &'static str,
    resource_id: &'a str,
    permission: &'static str,
}

impl<'a> From<&'a Grant> for PermissionOut<'a> {
    fn from(grant: &'a Grant) -> Self {
        PermissionOut {
            user: &grant.user_name,
            resource_type: grant.resource.kind.as_str(),
            resource_id: &grant.resource.id,
            permission: grant.permission.as_str(),
        }
    }
}

pub async fn whoami(
    AppFor(app): AppFor,
    Extension(principal): Extension<Principal>,
) -> ApiResult<Json<Value>> {
    let permissions: Vec<Value> = principal
        .grants
        .iter()
        .map(|(resource, permission)| {
            json!({
                "resource_type": resource.kind.as_str(),
                "resource_id": resource.id,
                "permission": permission.as_str(),
            })
        })
        .collect();
    Ok(Json(json!({
        "user": principal.name,
        "role": principal.role.as_str(),
        "permissions": permissions,
        "auth_enabled": app.auth_enabled(),
    })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    name: Option<String>,
    role: Option<String>,
    password: Option<String>,
}

pub async fn create_user(
    AppFor(app): AppFor,
    Message(request): Message<CreateUser>,
) -> ApiResult<Json<Value>> {
    let name = required_str(request.name, "name")?;
    let role = Role::parse(&required_str(request.role, "role")?)?;
    let user = app
        .create_user(&name, role, request.password.map(Secret::new))
        .await?;
    Ok(Json(json!({ "user": UserOut::from(&user) })))
}

pub async fn list_users(AppFor(app): AppFor) -> ApiResult<Json<Value>> {
    let users = app.list_users().await?;
    let users: Vec<UserOut<'_>> = users.iter().map(UserOut::from).collect();
    Ok(Json(json!({ "users": users })))
}

pub async fn get_user(AppFor(app): AppFor, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    let user = app.get_user(&name).await?;
    Ok(Json(json!({ "user": UserOut::from(&user) })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    role: Option<String>,
    password: Option<String>,
}

pub async fn update_user(
    AppFor(app): AppFor,
    Path(name): Path<String>,
    Message(request): Message<UpdateUser>,
) -> ApiResult<Json<Value>> {
    let role = request.role.as_deref().map(Role::parse).transpose()?;
    let user = app
        .update_user(&name, role, request.password.map(Secret::new))
        .await?;
    Ok(Json(json!({ "user": UserOut::from(&user) })))
}

pub async fn delete_user(AppFor(app): AppFor, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    app.delete_user(&name).await?;
    Ok(ok())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    user: Option<String>,
    /// A lifetime such as `30d`; no lifetime means the token lives until revoked.
    expires_in: Option<String>,
    description: Option<String>,
}

pub async fn create_token(
    AppFor(app): AppFor,
    Message(request): Message<CreateToken>,
) -> ApiResult<Json<Value>> {
    let user = required_str(request.user, "user")?;
    let lifetime = request
        .expires_in
        .as_deref()
        .map(parse_lifetime)
        .transpose()?;
    let issued = app
        .create_token(
            &user,
            lifetime,
            request.description.as_deref().unwrap_or_default(),
        )
        .await?;
    Ok(Json(json!({
        "token": issued.token.expose(),
        "token_info": TokenOut::from(&issued.info),
    })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ListTokens {
    user: Option<String>,
}

pub async fn list_tokens(
    AppFor(app): AppFor,
    Message(request): Message<ListTokens>,
) -> ApiResult<Json<Value>> {
    let tokens = app.list_tokens(request.user.as_deref()).await?;
    let tokens: Vec<TokenOut<'_>> = tokens.iter().map(TokenOut::from).collect();
    Ok(Json(json!({ "tokens": tokens })))
}

pub async fn revoke_token(AppFor(app): AppFor, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let token = app.revoke_token(&id).await?;
    Ok(Json(json!({ "token_info": TokenOut::from(&token) })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PermissionRequest {
    user: Option<String>,
    resource_type: Option<String>,
    resource_id: Option<String>,
    permission: Option<String>,
}

fn resource(request: &PermissionRequest) -> ApiResult<Resource> {
    Ok(Resource {
        kind: ResourceKind::parse(&required_str(
            request.resource_type.clone(),
            "resource_type",
        )?)?,
        id: required_str(request.resource_id.clone(), "resource_id")?,
    })
}

pub async fn set_permission(
    AppFor(app): AppFor,
    Message(request): Message<PermissionRequest>,
) -> ApiResult<Json<Value>> {
    let resource = resource(&request)?;
    let user = required_str(request.user, "user")?;
    let permission = Permission::parse(&required_str(request.permission, "permission")?)?;
    app.set_permission(&user, resource, permission).await?;
    Ok(ok())
}

pub async fn delete_permission(
    AppFor(app): AppFor,
    Message(request): Message<PermissionRequest>,
) -> ApiResult<Json<Value>> {
    if request.permission.is_some() {
        return Err(slipway_core::Error::invalid(
            "a permission is deleted by user, resource_type and resource_id; leave out 'permission'",
        )
        .into());
    }
    let resource = resource(&request)?;
    let user = required_str(request.user, "user")?;
    app.delete_permission(&user, &resource).await?;
    Ok(ok())
}

pub async fn list_permissions(
    AppFor(app): AppFor,
    Message(request): Message<ListTokens>,
) -> ApiResult<Json<Value>> {
    let grants = app.list_permissions(request.user.as_deref()).await?;
    let permissions: Vec<PermissionOut<'_>> = grants.iter().map(PermissionOut::from).collect();
    Ok(Json(json!({ "permissions": permissions })))
}
