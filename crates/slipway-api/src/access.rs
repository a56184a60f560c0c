//! Authentication and authorization for every route.
//!
//! Each route is declared together with its [`Rule`] (the `routes!` tables in `mlflow` and
//! `native`), so a route cannot exist without one; the middleware here finds the rule by the
//! matched path and method, authenticates the caller, and checks the rule with
//! [`Principal::allows`]. Only callers with per-resource permissions need the request's resource,
//! so only for them is the body read ahead of the handler (and the run or logged model looked
//! up); for everyone else the role decides and the request passes untouched.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::LazyLock;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::Deserialize;
use slipway_app::App;
use slipway_app::audit::RefusalKind;
use slipway_app::identity::{Credential, Secret};
use slipway_core::Error;
use slipway_core::auth::{Action, Principal, Resource, Role};
use slipway_core::tracking::{ExperimentId, RunId};

use crate::error::ApiError;

/// Where a route's resource comes from, for callers whose permissions differ per resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// No single resource: creation, search (results are filtered), server-wide endpoints.
    None,
    /// An `experiment_id` field.
    Experiment,
    /// An `experiment_name` field.
    ExperimentName,
    /// A `run_id` (or `run_uuid`) field: the run's experiment.
    Run,
    /// A `name` field: a registered model.
    Model,
    /// The `{model_id}` path segment: the logged model's experiment.
    LoggedModel,
    /// An `mlflow-artifacts` path, `<experiment id>/<run id>/artifacts/...`.
    ArtifactPath,
    /// The `{name}` path segment of a deployment: its registered model.
    Deployment,
    /// A `model_uri` field (`models:/NAME@ALIAS`, `models:/NAME/VERSION`): that registered model.
    ModelUri,
    /// The `{name}` path segment of a retraining trigger: the registered model it retrains.
    Trigger,
}

/// What a route needs from its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub action: Action,
    pub scope: Scope,
}

impl Rule {
    pub const fn new(action: Action, scope: Scope) -> Rule {
        Rule { action, scope }
    }

    /// Open to everyone, also without credentials: health and version probes.
    pub const PUBLIC: Rule = Rule::new(Action::Read, Scope::None);
}

/// One route: method, full path pattern (as axum matches it) and rule.
#[derive(Debug, Clone)]
pub struct RouteRule {
    pub method: Method,
    pub path: String,
    pub rule: Rule,
    /// Answered without credentials.
    pub public: bool,
}

/// Every route of the server with its rule. The routers are built from the same tables.
pub fn route_rules() -> Vec<RouteRule> {
    let mut rules = Vec::new();
    for prefix in crate::mlflow::API_PREFIXES {
        for (method, path, rule) in crate::mlflow::api_rules() {
            rules.push(RouteRule {
                method,
                path: format!("{prefix}{path}"),
                rule,
                public: false,
            });
        }
    }
    for prefix in crate::mlflow::PROXY_PREFIXES {
        for (method, path, rule) in crate::mlflow::proxy_rules() {
            rules.push(RouteRule {
                method,
                path: format!("{prefix}{path}"),
                rule,
                public: false,
            });
        }
    }
    for (method, path, rule) in crate::native::rules() {
        rules.push(RouteRule {
            method,
            path: format!("{}{path}", crate::native::PREFIX),
            rule,
            public: false,
        });
    }
    for (method, path, rule) in crate::plane_routes::plane_rules() {
        rules.push(RouteRule {
            method,
            path: path.to_owned(),
            rule,
            public: false,
        });
    }
    for (method, path, rule, public) in crate::server_rules() {
        rules.push(RouteRule {
            method,
            path: path.to_owned(),
            rule,
            public,
        });
    }
    rules
}

static RULES: LazyLock<HashMap<(Method, String), (Rule, bool)>> = LazyLock::new(|| {
    route_rules()
        .into_iter()
        .map(|route| ((route.method, route.path), (route.rule, route.public)))
        .collect()
});

/// The rule for a matched route; `HEAD` follows `GET` as axum routes it.
fn rule_for(method: &Method, path: &str) -> Option<(Rule, bool)> {
    let key = (method.clone(), path.to_owned());
    RULES.get(&key).copied().or_else(|| {
        (method == Method::HEAD)
            .then(|| RULES.get(&(Method::GET, path.to_owned())).copied())
            .flatten()
    })
}

/// The user a client certificate names, once the TLS listener has verified the certificate
/// against the server's client CA. The listener puts it on every request of the connection;
/// nothing a client sends can.
#[derive(Debug, Clone)]
pub struct PeerCertificate {
    pub user: String,
}

/// The console's session cookie: a short-lived token its sign-in issued (HttpOnly,
/// SameSite=Strict).
pub const SESSION_COOKIE: &str = "slipway_session";

/// The header the console's scripts send with every request. A change made with the session
/// cookie must carry it: a page of another site can make a browser send the cookie (were it
/// not SameSite) but cannot add a header without a CORS preflight, which this server never
/// grants.
pub const CONSOLE_HEADER: &str = "x-slipway-console";

/// Where a request's credential came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialSource {
    None,
    Header,
    Certificate,
    SessionCookie,
}

/// The console session token in a request's cookies, if any.
pub fn session_cookie(headers: &axum::http::HeaderMap) -> Option<Secret> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| Secret::new(value.trim()))
        .filter(|token| !token.expose().is_empty())
}

/// The credential in an `Authorization` header, else a verified client certificate, else the
/// console's session cookie, if any. A header that is present but unreadable is an error, not
/// an anonymous request.
pub fn credential_of(
    headers: &axum::http::HeaderMap,
    extensions: &axum::http::Extensions,
) -> Result<(Option<Credential>, CredentialSource), Error> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        if let Some(peer) = extensions.get::<PeerCertificate>() {
            let user = peer.user.clone();
            return Ok((
                Some(Credential::Certificate { user }),
                CredentialSource::Certificate,
            ));
        }
        return Ok(match session_cookie(headers) {
            Some(token) => (
                Some(Credential::Bearer(token)),
                CredentialSource::SessionCookie,
            ),
            None => (None, CredentialSource::None),
        });
    };
    let malformed = || {
        Error::unauthenticated(
            "the Authorization header must be 'Basic <base64 of user:password>' or 'Bearer <token>'",
        )
    };
    let value = value.to_str().map_err(|_| malformed())?;
    let (scheme, rest) = value.split_once(' ').ok_or_else(malformed)?;
    let rest = rest.trim();
    let credential = if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .map_err(|_| malformed())?;
        let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
        let (user, password) = decoded.split_once(':').ok_or_else(malformed)?;
        Credential::Basic {
            user: user.to_owned(),
            password: Secret::new(password),
        }
    } else if scheme.eq_ignore_ascii_case("bearer") {
        Credential::Bearer(Secret::new(rest))
    } else {
        return Err(malformed());
    };
    Ok((Some(credential), CredentialSource::Header))
}

/// Whether a request with this credential may go on: a change made with the session cookie
/// must come from the console's own scripts (see [`CONSOLE_HEADER`]). A read by POST of the
/// tracking and registry API (MLflow's searches, which MLflow's own UI sends) changes nothing
/// and needs no header; inference and explanations do change things (the prediction log,
/// monitoring, rollouts' measurements), so they need it like any change.
pub fn cross_site_refusal(
    method: &Method,
    rule: Rule,
    headers: &axum::http::HeaderMap,
    source: CredentialSource,
) -> Option<Error> {
    let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
        || (rule.action == Action::Read && rule.scope != Scope::Deployment);
    (source == CredentialSource::SessionCookie && !safe && !headers.contains_key(CONSOLE_HEADER))
        .then(|| {
            Error::permission_denied(format!(
                "a change made with a console session must come from the console (it sends the \
                 {CONSOLE_HEADER} header); scripts should authenticate with a token instead"
            ))
        })
}

/// The client's address as the listener saw it.
pub fn client_address_of(extensions: &axum::http::Extensions) -> IpAddr {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |info| info.0.ip())
}

fn client_address(request: &Request) -> IpAddr {
    client_address_of(request.extensions())
}

/// The application acting for the authenticated caller, so that what the handler changes is
/// audited under their name and the request's id. Handlers take this instead of `State<App>`.
pub struct AppFor(pub App);

impl FromRequestParts<App> for AppFor {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        let request_id = request_id(&parts.headers);
        Ok(AppFor(match parts.extensions.get::<Principal>() {
            Some(principal) => app.for_principal(principal, request_id),
            None => app.for_caller("anonymous", request_id),
        }))
    }
}

fn request_id(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

/// Who a refused request claimed to be, for the audit log: never the secret, marked as a claim
/// and cut short, since anyone can send any name.
fn claimed_actor(credential: Option<&Credential>) -> String {
    match credential {
        Some(Credential::Basic { user, .. }) => {
            format!("claimed:{}", user.chars().take(64).collect::<String>())
        }
        Some(Credential::Bearer(token)) => token
            .expose()
            .strip_prefix("slw_")
            .and_then(|rest| rest.split_once('_'))
            .map_or_else(
                || "unknown-token".to_owned(),
                |(id, _)| format!("token:{id}"),
            ),
        Some(Credential::Certificate { user }) => {
            format!("certificate:{}", user.chars().take(64).collect::<String>())
        }
        None => "unauthenticated".to_owned(),
    }
}

/// What the audit log says about a refused request: taken from the request before any await,
/// so the middleware's future does not hold the request's body across one.
struct Refused {
    target: String,
    route: String,
    request_id: Option<String>,
    /// What the client called the request, kept apart from our id.
    client_request_id: Option<String>,
}

fn refused(request: &Request, resource: Option<&Resource>) -> Refused {
    let path = request.extensions().get::<MatchedPath>().map_or_else(
        || request.uri().path().to_owned(),
        |path| path.as_str().to_owned(),
    );
    let route = format!("{} {path}", request.method());
    Refused {
        target: resource.map_or_else(
            || format!("route:{route}"),
            |resource| format!("{}:{}", resource.kind.as_str(), resource.id),
        ),
        route,
        request_id: request_id(request.headers()),
        client_request_id: request
            .extensions()
            .get::<crate::ClientRequestId>()
            .map(|id| id.0.clone()),
    }
}

/// Writes a refused request to the audit log, or counts it into its address's summary (see
/// `slipway_app::audit`); a failure to record it is logged, and the refusal stands either way.
async fn record_denial(
    app: &App,
    actor: String,
    client: IpAddr,
    kind: RefusalKind,
    refused: Refused,
    reason: &str,
) {
    let app = app.for_caller(actor, refused.request_id);
    let reason = format!("{}: {reason}", refused.route);
    if let Err(error) = app
        .record_refusal(
            client,
            kind,
            refused.target,
            &reason,
            refused.client_request_id.as_deref(),
        )
        .await
    {
        tracing::error!(%error, "could not record a denied request in the audit log");
    }
}

const UNAUTHENTICATED: RefusalKind = RefusalKind::Unauthenticated;

fn unauthenticated(error: Error) -> Response {
    let mut response = ApiError::Core(error).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"slipway\", charset=\"UTF-8\""),
    );
    response
}

/// The middleware: authenticate, find the rule, check it, and hand the principal on.
pub async fn authorize(State(app): State<App>, request: Request, next: Next) -> Response {
    let matched = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned());
    let rule = matched
        .as_deref()
        .and_then(|path| rule_for(request.method(), path));
    let Some((rule, public)) = rule else {
        // A route without a rule is a bug; deny rather than guess.
        tracing::error!(method = %request.method(), path = ?matched, "route has no access rule");
        return ApiError::Core(Error::permission_denied(
            "this route has no access rule; it is denied to everyone",
        ))
        .into_response();
    };
    if public {
        return next.run(request).await;
    }
    let client = client_address(&request);
    let (credential, source) = match credential_of(request.headers(), request.extensions()) {
        Ok(found) => found,
        Err(error) => {
            let refused = refused(&request, None);
            let reason = error.to_string();
            record_denial(
                &app,
                "unknown".to_owned(),
                client,
                UNAUTHENTICATED,
                refused,
                &reason,
            )
            .await;
            return unauthenticated(error);
        }
    };
    let claimed = app
        .auth_enabled()
        .then(|| claimed_actor(credential.as_ref()));
    let principal = match app.authenticate(credential, client).await {
        Ok(principal) => principal,
        Err(error @ Error::Unauthenticated(_)) => {
            let refused = refused(&request, None);
            let actor = claimed.unwrap_or_default();
            let reason = error.to_string();
            record_denial(&app, actor, client, UNAUTHENTICATED, refused, &reason).await;
            return unauthenticated(error);
        }
        Err(error) => return ApiError::Core(error).into_response(),
    };
    if let Some(error) = cross_site_refusal(request.method(), rule, request.headers(), source) {
        let refused = refused(&request, None);
        let reason = error.to_string();
        let actor = principal.name.clone();
        record_denial(
            &app,
            actor,
            client,
            RefusalKind::PermissionDenied,
            refused,
            &reason,
        )
        .await;
        return ApiError::Core(error).into_response();
    }
    let (request, resource) = if principal.has_grants() && rule.scope != Scope::None {
        match resource_of(&app, rule.scope, request).await {
            Ok(found) => found,
            Err(response) => return response,
        }
    } else {
        (request, None)
    };
    if !principal.allows(rule.action, resource.as_ref()) {
        let asked = format!("{} {}", request.method(), request.uri().path());
        let message = denial(&principal, rule.action, resource.as_ref(), &asked);
        let refused = refused(&request, resource.as_ref());
        let actor = principal.name.clone();
        let kind = RefusalKind::PermissionDenied;
        record_denial(&app, actor, client, kind, refused, &message).await;
        return ApiError::Core(Error::permission_denied(message)).into_response();
    }
    let mut request = request;
    request.extensions_mut().insert(principal);
    next.run(request).await
}

/// Why a request was refused, naming the request itself (`asked`: method and path): the
/// action class alone misleads where one class covers different acts (rolling a deployment
/// back is not approving a promotion, though both need an approver).
fn denial(
    principal: &Principal,
    action: Action,
    resource: Option<&Resource>,
    asked: &str,
) -> String {
    if action == Action::Report && principal.role != Role::Replica {
        return format!(
            "user '{}' has role {}; {asked} reports measurements and predictions, which only a replica's credential (role replica) may do: create one with `slipway users create NAME --role replica` and a token for it",
            principal.name, principal.role
        );
    }
    if action == Action::Work && principal.role != Role::Worker {
        return format!(
            "user '{}' has role {}; {asked} claims a retrain or reports its progress, which only a retraining worker's credential (role worker) may do: create one with `slipway users create NAME --role worker` and a token for it",
            principal.name, principal.role
        );
    }
    if principal.role == Role::Replica && action != Action::Read {
        return format!(
            "user '{}' is a replica (role replica): it may read what it serves and report, not {asked}",
            principal.name,
        );
    }
    match resource {
        Some(resource) => format!(
            "user '{}' (role {}, permission {} on {resource}) may not {asked} ({} access)",
            principal.name,
            principal.role,
            principal.permission_on(resource),
            action.as_str()
        ),
        None => format!(
            "user '{}' has role {}; {asked} needs role {} or above",
            principal.name,
            principal.role,
            action.least_role()
        ),
    }
}

/// The `path` of an artifact listing.
#[derive(Debug, Default, Deserialize)]
struct ArtifactQuery {
    path: Option<String>,
}

/// The request fields that name a resource; everything else in the message is ignored here.
#[derive(Debug, Default, Deserialize)]
struct ScopeFields {
    experiment_id: Option<serde_json::Value>,
    experiment_name: Option<String>,
    run_id: Option<String>,
    run_uuid: Option<String>,
    name: Option<String>,
    model_uri: Option<String>,
}

/// Reads the resource a request is about. GET requests carry their fields in the query, others
/// in a JSON body, which is read here and put back for the handler. A request that names no
/// resource, or one that does not exist, is decided by the role alone; its handler refuses it
/// anyway. A lookup that fails refuses the request (see [`found`]).
async fn resource_of(
    app: &App,
    scope: Scope,
    request: Request,
) -> Result<(Request, Option<Resource>), Response> {
    let (mut parts, body) = request.into_parts();
    let mut fields = ScopeFields::default();
    let mut body_bytes = Bytes::new();
    // Path parameters as the handler will see them: percent-decoded, so `%31` cannot name
    // experiment 1 past this check.
    let params = RawPathParams::from_request_parts(&mut parts, &())
        .await
        .ok();
    let param = |name: &str| {
        params.as_ref().and_then(|params| {
            params
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.to_owned())
        })
    };
    let first_segment = |path: String| {
        path.trim_start_matches('/')
            .split('/')
            .next()
            .map(str::to_owned)
    };
    match scope {
        Scope::None
        | Scope::LoggedModel
        | Scope::ArtifactPath
        | Scope::Deployment
        | Scope::Trigger => {}
        _ if parts.method == Method::GET => {
            if let Some(query) = parts.uri.query() {
                fields = crate::extract::from_query(query).unwrap_or_default();
            }
        }
        _ => {
            body_bytes = axum::body::to_bytes(body, crate::extract::MAX_JSON_BODY)
                .await
                .map_err(|_| {
                    ApiError::PayloadTooLarge("the request body is too large".into())
                        .into_response()
                })?;
            fields = serde_json::from_slice(&body_bytes).unwrap_or_default();
            let request = Request::from_parts(parts, Body::from(body_bytes.clone()));
            let resource = resolve(app, scope, fields, None).await?;
            return Ok((request, resource));
        }
    }
    let hint = match scope {
        // /api/2.0/mlflow/logged-models/{model_id}/...
        Scope::LoggedModel => param("model_id"),
        // /deployments/{name}/..., /v2/models/{name}/..., /api/slipway/v1/deployments/{name}
        Scope::Deployment | Scope::Trigger => param("name"),
        // /api/2.0/mlflow-artifacts/artifacts/<experiment id>/..., or for a listing
        // /api/2.0/mlflow-artifacts/artifacts?path=<experiment id>/...
        Scope::ArtifactPath => param("path").and_then(first_segment).or_else(|| {
            parts.uri.query().and_then(|query| {
                crate::extract::from_query::<ArtifactQuery>(query)
                    .ok()
                    .and_then(|q| q.path)
                    .and_then(first_segment)
            })
        }),
        _ => None,
    };
    let resource = resolve(app, scope, fields, hint).await?;
    let body = if body_bytes.is_empty() {
        body
    } else {
        Body::from(body_bytes)
    };
    Ok((Request::from_parts(parts, body), resource))
}

/// A lookup made for the access check: `None` when the resource does not exist (its handler
/// answers 404), the error for any other failure, which refuses the request. Falling back to
/// the role there would fail open: a store hiccup would let an editor past a `NO_PERMISSIONS`
/// grant.
fn found<T>(lookup: Result<T, Error>) -> Result<Option<T>, Error> {
    match lookup {
        Ok(value) => Ok(Some(value)),
        Err(Error::NotFound(_)) => Ok(None),
        Err(error) => Err(error),
    }
}

fn lookup_failed(error: Error) -> Response {
    ApiError::Core(error).into_response()
}

async fn resolve(
    app: &App,
    scope: Scope,
    fields: ScopeFields,
    path_hint: Option<String>,
) -> Result<Option<Resource>, Response> {
    // Ids as the handlers will read them (" 1", "01" and "+1" are experiment 1), so a grant
    // on "1" cannot be sidestepped by spelling.
    let experiment = |raw: &str| ExperimentId::parse(raw).ok().map(|id| id.to_string());
    let experiment_field = |value: &serde_json::Value| match value {
        serde_json::Value::String(id) => experiment(id),
        serde_json::Value::Number(id) => experiment(&id.to_string()),
        _ => None,
    };
    let store = app.store();
    Ok(match scope {
        Scope::None => None,
        // Without an id, run creation goes to the Default experiment, 0.
        Scope::Experiment => match fields.experiment_id.as_ref() {
            None => Some(Resource::experiment("0")),
            Some(serde_json::Value::String(id)) if id.trim().is_empty() => {
                Some(Resource::experiment("0"))
            }
            Some(value) => experiment_field(value).map(Resource::experiment),
        },
        Scope::ExperimentName => match fields.experiment_name {
            Some(name) => found(store.get_experiment_by_name(&name).await)
                .map_err(lookup_failed)?
                .map(|experiment| Resource::experiment(experiment.experiment_id.to_string())),
            None => None,
        },
        Scope::Run => {
            let raw = fields
                .run_id
                .filter(|id| !id.is_empty())
                .or(fields.run_uuid);
            match raw.and_then(|raw| RunId::parse(&raw).ok()) {
                Some(run_id) => found(store.get_run(&run_id).await)
                    .map_err(lookup_failed)?
                    .map(|run| Resource::experiment(run.info.experiment_id.to_string())),
                None => None,
            }
        }
        Scope::Model => fields.name.map(Resource::registered_model),
        Scope::ModelUri => fields
            .model_uri
            .as_deref()
            .and_then(|uri| slipway_app::deployments::ModelRef::parse(uri).ok())
            .map(|model| Resource::registered_model(model.model_name().to_owned())),
        Scope::LoggedModel => match path_hint {
            Some(model_id) => found(store.get_logged_model(&model_id).await)
                .map_err(lookup_failed)?
                .map(|model| Resource::experiment(model.experiment_id.to_string())),
            None => None,
        },
        Scope::Deployment => match path_hint {
            Some(name) => found(store.get_deployment(&name).await)
                .map_err(lookup_failed)?
                .map(|deployment| Resource::registered_model(deployment.model_name)),
            None => None,
        },
        // A trigger that does not exist is decided by the role; its handler answers 404.
        Scope::Trigger => match path_hint {
            Some(name) => app
                .trigger_config()
                .await
                .map_err(lookup_failed)?
                .config
                .trigger(&name)
                .map(|trigger| Resource::registered_model(trigger.model.clone())),
            None => None,
        },
        Scope::ArtifactPath => path_hint
            .as_deref()
            .and_then(experiment)
            .map(Resource::experiment),
    })
}
