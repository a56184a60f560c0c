//! The web console `slipway server` serves at `/`: runs and their charts, the registry and
//! its promotions, deployments with their rollouts, monitoring, the audit trail and delivery
//! metrics.
//!
//! Pages are rendered here, on the server, from the same use-cases the API calls (askama
//! templates, checked at compile time), so a page shows what the signed-in user may read and
//! nothing else, and answers without a round of API calls from the browser. Scripts only add
//! to a page: charts (uPlot, vendored), live updates (fragments of the same templates,
//! re-fetched), and the buttons, which call the HTTP API itself so that a click is judged by
//! the same access rules, approvals and audit as the CLI.
//!
//! Module map:
//! - `session`: signing in and out (a console session is a 12-hour token of the user's,
//!   kept in an HttpOnly, SameSite=Strict cookie) and `Viewer`, the signed-in user of a
//!   page request.
//! - [`assets`]: the embedded scripts, styles and uPlot.
//! - `runs`, `registry`, `deployments`, `monitoring`, `audit`, `delivery`, `home`: the pages.
//! - [`view`]: formatting shared by the pages.

mod assets;
mod audit;
mod delivery;
mod deployments;
mod home;
mod monitoring;
mod registry;
mod runs;
mod session;
mod view;

use askama::Template;
use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use slipway_app::App;
use slipway_core::Error;

/// How the console is served.
#[derive(Debug, Clone, Default)]
pub struct ConsoleConfig {
    /// Mark the session cookie `Secure` (the server listens on HTTPS, or behind a proxy that
    /// does).
    pub secure_cookies: bool,
}

#[derive(Clone)]
pub(crate) struct Console {
    pub app: App,
    pub config: ConsoleConfig,
    /// The server's rollout controller and data plane, for the live windows.
    pub deployments: Option<slipway_api::Deployments>,
}

/// The console's routes, to merge beside the API's.
pub fn router(
    app: App,
    config: ConsoleConfig,
    deployments: Option<slipway_api::Deployments>,
) -> Router {
    Router::new()
        .route("/", get(home::home))
        .route("/login", get(session::form).post(session::sign_in))
        .route("/logout", post(session::sign_out))
        .route("/static/{*path}", get(assets::serve))
        .route("/experiments", get(runs::experiments))
        .route("/experiments/{id}", get(runs::runs))
        .route("/runs/{id}", get(runs::run))
        .route("/runs/{id}/metrics.json", get(runs::metrics_json))
        .route("/runs/{id}/artifact", get(runs::artifact))
        .route("/compare", get(runs::compare))
        .route("/models", get(registry::models))
        .route("/models/{name}", get(registry::model))
        .route("/models/{name}/versions/{version}", get(registry::version))
        .route(
            "/models/{name}/versions/{version}/card",
            get(registry::card),
        )
        .route("/promotions", get(registry::promotions))
        .route("/deployments", get(deployments::list))
        .route("/deployments/{name}", get(deployments::detail))
        .route("/deployments/{name}/live", get(deployments::live))
        .route(
            "/deployments/{name}/monitoring",
            get(monitoring::deployment),
        )
        .route("/alerts", get(monitoring::alerts))
        .route("/audit", get(audit::trail))
        .route("/delivery", get(delivery::report))
        .with_state(Console {
            app,
            config,
            deployments,
        })
}

/// The headers every page carries: scripts and styles only from here, no framing.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; \
                   base-uri 'none'; form-action 'self'";

pub(crate) fn secure_headers(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// A rendered page.
pub(crate) fn page(template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => {
            let mut response = Html(html).into_response();
            secure_headers(&mut response);
            response
        }
        Err(error) => {
            tracing::error!(%error, "a console template failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page failed to render",
            )
                .into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    nav: view::Nav,
    status: u16,
    title: &'static str,
    message: String,
}

/// A use-case's error as a page, with the status the API would give it.
pub(crate) struct PageError {
    nav: view::Nav,
    error: Error,
}

impl PageError {
    pub fn new(nav: &view::Nav, error: Error) -> PageError {
        PageError {
            nav: nav.clone(),
            error,
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, title) = match &self.error {
            Error::NotFound(_) => (StatusCode::NOT_FOUND, "Not found"),
            Error::InvalidParameter(_) | Error::AlreadyExists(_) => {
                (StatusCode::BAD_REQUEST, "Not understood")
            }
            Error::PermissionDenied(_) => (StatusCode::FORBIDDEN, "Not allowed"),
            Error::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "Sign in first"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "Something failed"),
        };
        let message = if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %self.error, "a console page failed");
            "the server could not build this page; its log says why".to_owned()
        } else {
            self.error.to_string()
        };
        let mut response = page(&ErrorPage {
            nav: self.nav,
            status: status.as_u16(),
            title,
            message,
        });
        *response.status_mut() = status;
        response
    }
}

pub(crate) type PageResult = Result<Response, PageError>;
