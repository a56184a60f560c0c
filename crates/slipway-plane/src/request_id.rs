//! Request ids: every response carries one the server issued; a client's is set aside.

use axum::http::Request;

/// The longest client request id kept; longer ones are cut.
const CLIENT_REQUEST_ID_MAX: usize = 128;

/// The `x-request-id` a client sent, set aside: the server always issues its own id (in the
/// response, the logs and the audit log), since an id anyone can choose could make one request
/// look like another, or an attacker's like a well-known client's. Kept only sanitized (ASCII
/// letters, digits and `-_.:/`) and cut to [`CLIENT_REQUEST_ID_MAX`], to correlate with the
/// client's own logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRequestId(pub String);

impl ClientRequestId {
    fn sanitize(raw: &[u8]) -> Option<ClientRequestId> {
        let kept: String = raw
            .iter()
            .filter(|byte| byte.is_ascii_alphanumeric() || b"-_.:/".contains(byte))
            .take(CLIENT_REQUEST_ID_MAX)
            .map(|byte| char::from(*byte))
            .collect();
        (!kept.is_empty()).then_some(ClientRequestId(kept))
    }
}

/// Takes the client's `x-request-id` off the request before [`SetRequestIdLayer`] runs, which
/// would otherwise keep it as ours, and keeps it as a [`ClientRequestId`] extension.
pub async fn set_aside_client_request_id(
    mut request: Request<axum::body::Body>,
) -> Request<axum::body::Body> {
    if let Some(value) = request.headers_mut().remove("x-request-id")
        && let Some(client) = ClientRequestId::sanitize(value.as_bytes())
    {
        request.extensions_mut().insert(client);
    }
    request
}

/// Request ids: UUID v4 text from a per-thread generator. tower-http's `MakeRequestUuid` asks
/// the kernel for randomness on every request (a `getrandom` system call, a few percent of an
/// inference request's CPU); an id needs to be unique, not secret.
#[derive(Clone, Copy, Default)]
pub struct RequestIds;

impl tower_http::request_id::MakeRequestId for RequestIds {
    fn make_request_id<B>(
        &mut self,
        _request: &axum::http::Request<B>,
    ) -> Option<tower_http::request_id::RequestId> {
        let id = uuid::Builder::from_random_bytes(fastrand::u128(..).to_le_bytes()).into_uuid();
        let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let text = id.hyphenated().encode_lower(&mut text);
        axum::http::HeaderValue::from_str(text)
            .ok()
            .map(tower_http::request_id::RequestId::new)
    }
}
