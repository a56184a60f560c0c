//! Signing in and out, and who a page request is for.
//!
//! A console session is an ordinary token of the user's (`slipway tokens list` shows it, an
//! admin can revoke it), issued for 12 hours when the password checks out and kept in an
//! HttpOnly, SameSite=Strict cookie. Every request then authenticates as the API's do, with
//! the same cache, throttling and identity generation; the API accepts the cookie too, so the
//! console's buttons call it directly.

use askama::Template;
use axum::Form;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use slipway_api::access::{self, SESSION_COOKIE};
use slipway_app::App;
use slipway_app::identity::Secret;
use slipway_core::Error;
use slipway_core::auth::{Action, Principal};

use crate::view::Nav;
use crate::{Console, page};

/// The signed-in user of a page request, and the application acting for them.
pub struct Viewer {
    pub app: App,
    pub principal: Principal,
    /// Whether the server authenticates at all (without --auth everyone is the anonymous
    /// admin, as on the API).
    pub auth: bool,
}

impl Viewer {
    pub fn nav(&self, active: &'static str) -> Nav {
        Nav::new(&self.principal, self.auth, active)
    }

    pub fn may(&self, action: Action) -> bool {
        self.principal.allows(action, None)
    }

    /// Whether the user may read this resource (their per-resource permissions included).
    pub fn may_read(&self, resource: &slipway_core::auth::Resource) -> bool {
        self.principal.allows(Action::Read, Some(resource))
    }
}

/// Where a page request without a session goes: the sign-in page, back here after.
pub struct SignInFirst(Response);

impl IntoResponse for SignInFirst {
    fn into_response(self) -> Response {
        self.0
    }
}

/// Only paths of this console come back from the sign-in page, never another site.
fn safe_next(next: &str) -> String {
    // Browsers drop tabs and newlines from a Location (`/\t/evil` is `//evil`) and read `\`
    // as `/`: a path with any of them, or not plainly local, goes home instead. Spaces and
    // other characters a header cannot carry (a search's filter) are percent-encoded.
    let plain = next.chars().all(|c| !c.is_control() && c != '\\');
    if !(plain && next.starts_with('/') && !next.starts_with("//")) {
        return "/".to_owned();
    }
    let mut out = String::with_capacity(next.len());
    for c in next.chars() {
        if c.is_ascii_graphic() {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for byte in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{byte:02X}"));
            }
        }
    }
    out
}

impl FromRequestParts<Console> for Viewer {
    type Rejection = SignInFirst;

    async fn from_request_parts(
        parts: &mut Parts,
        console: &Console,
    ) -> Result<Self, Self::Rejection> {
        let app = &console.app;
        let client = access::client_address_of(&parts.extensions);
        let next = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let to_sign_in = || {
            SignInFirst(
                Redirect::to(&format!("/login?next={}", crate::view::encode(&next)))
                    .into_response(),
            )
        };
        let (credential, _) =
            access::credential_of(&parts.headers, &parts.extensions).map_err(|_| to_sign_in())?;
        let principal = match app.authenticate(credential, client).await {
            Ok(principal) => principal,
            Err(Error::Unauthenticated(_)) => return Err(to_sign_in()),
            Err(error) => {
                tracing::error!(%error, "authenticating a console request");
                return Err(SignInFirst(
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "authentication failed; retry",
                    )
                        .into_response(),
                ));
            }
        };
        if !principal.allows(Action::Read, None) {
            return Err(SignInFirst(
                crate::PageError::new(
                    &Nav::new(&principal, app.auth_enabled(), ""),
                    Error::permission_denied(format!(
                        "user '{}' (role {}) may not read: the console is for people",
                        principal.name,
                        principal.role.as_str()
                    )),
                )
                .into_response(),
            ));
        }
        let request_id = parts
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok(Viewer {
            app: app.for_principal(&principal, request_id),
            principal,
            auth: app.auth_enabled(),
        })
    }
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    nav: Nav,
    next: String,
    error: Option<String>,
    user: String,
}

#[derive(Deserialize)]
pub struct Next {
    next: Option<String>,
}

pub async fn form(State(console): State<Console>, Query(query): Query<Next>) -> Response {
    let next = safe_next(query.next.as_deref().unwrap_or("/"));
    if !console.app.auth_enabled() {
        return Redirect::to(&next).into_response();
    }
    page(&LoginPage {
        nav: Nav::anonymous(),
        next,
        error: None,
        user: String::new(),
    })
}

#[derive(Deserialize)]
pub struct SignIn {
    user: String,
    password: String,
    next: Option<String>,
}

fn cookie(value: &str, max_age_s: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("slipway_session=; Max-Age=0"))
}

pub async fn sign_in(
    State(console): State<Console>,
    headers: HeaderMap,
    extensions: Extensions,
    Form(form): Form<SignIn>,
) -> Response {
    let next = safe_next(form.next.as_deref().unwrap_or("/"));
    let client = access::client_address_of(&extensions);
    let request_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let app = console.app.for_caller(form.user.clone(), request_id);
    match app
        .sign_in(&form.user, Secret::new(form.password), client)
        .await
    {
        Ok((_, issued)) => {
            let mut response = Redirect::to(&next).into_response();
            let lifetime = slipway_app::identity::SESSION_LIFETIME.as_secs();
            response.headers_mut().insert(
                header::SET_COOKIE,
                cookie(
                    issued.token.expose(),
                    lifetime,
                    console.config.secure_cookies,
                ),
            );
            response
        }
        Err(error) => {
            let status = match error {
                Error::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
                Error::InvalidParameter(_) => StatusCode::BAD_REQUEST,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            let message = if status == StatusCode::INTERNAL_SERVER_ERROR {
                tracing::error!(%error, "console sign-in failed");
                "signing in failed on the server; its log says why".to_owned()
            } else {
                error.to_string()
            };
            let mut response = page(&LoginPage {
                nav: Nav::anonymous(),
                next,
                error: Some(message),
                user: form.user,
            });
            *response.status_mut() = status;
            response
        }
    }
}

/// Ends the session: its token revoked, the cookie cleared. A form post from the console's
/// own pages (SameSite=Strict keeps other sites' posts from carrying the cookie).
pub async fn sign_out(
    State(console): State<Console>,
    headers: HeaderMap,
    viewer: Viewer,
) -> Response {
    if let Some(token) = access::session_cookie(&headers)
        && let Err(error) = viewer.app.sign_out(&token).await
    {
        tracing::warn!(%error, "ending a console session");
    }
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        cookie("", 0, console.config.secure_cookies),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn only_local_paths_come_back_after_sign_in() {
        assert_eq!(safe_next("/runs/abc?x=1"), "/runs/abc?x=1");
        assert_eq!(
            safe_next("/experiments/1?filter=a > 1"),
            "/experiments/1?filter=a%20>%201"
        );
        assert_eq!(safe_next("//evil.example/"), "/");
        assert_eq!(safe_next("https://evil.example/"), "/");
        assert_eq!(safe_next("/\\evil.example"), "/");
        assert_eq!(safe_next("/\t/evil.example"), "/");
        assert_eq!(safe_next("/\n/evil.example"), "/");
        assert_eq!(safe_next("/models/café"), "/models/caf%C3%A9");
    }
}
