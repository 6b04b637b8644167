//! Warp glue shared by the agent's RPC API and the manager's public API: problem+json replies and the rejection
//! handler that renders every failure through the one error table.

use backend_core::error::{Error, ErrorKind, Problem};
use std::convert::Infallible;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Rejection, Reply};

/// A rejection carrying an SDK error.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl warp::reject::Reject for ApiError {}

/// Turns an SDK error into a rejection.
pub fn reject(e: Error) -> Rejection {
    warp::reject::custom(ApiError(e))
}

/// A problem+json reply for an error kind and message.
pub fn problem_reply(status: u16, problem: &Problem) -> Response {
    let mut resp = warp::reply::json(problem).into_response();
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert("content-type", warp::http::HeaderValue::from_static("application/problem+json"));
    resp
}

/// The reply for an SDK error, for untrusted callers (internal details stay in the log).
pub fn error_reply(e: &Error) -> Response {
    if e.kind() == ErrorKind::Internal {
        tracing::error!(error = %e, "internal error");
    }
    problem_reply(e.kind().status(), &e.to_problem())
}

/// The reply for an SDK error with every detail, for trusted peers (the agent's RPC callers).
pub fn detailed_error_reply(e: &Error) -> Response {
    problem_reply(e.kind().status(), &e.to_detailed_problem())
}

/// Renders every rejection as problem+json with the status from the error table.
pub async fn recover(r: Rejection) -> Result<Response, Infallible> {
    let (kind, msg) = if let Some(ApiError(e)) = r.find::<ApiError>() {
        return Ok(error_reply(e));
    } else if r.is_not_found() {
        (ErrorKind::NotFound, "no such endpoint".to_owned())
    } else if let Some(e) = r.find::<warp::filters::body::BodyDeserializeError>() {
        (ErrorKind::InvalidParams, format!("malformed request body: {e}"))
    } else if let Some(e) = r.find::<warp::reject::InvalidQuery>() {
        (ErrorKind::InvalidParams, format!("malformed query string: {e}"))
    } else if let Some(e) = r.find::<warp::reject::PayloadTooLarge>() {
        (ErrorKind::PayloadTooLarge, e.to_string())
    } else if let Some(e) = r.find::<warp::reject::LengthRequired>() {
        (ErrorKind::InvalidParams, e.to_string())
    } else if let Some(e) = r.find::<warp::reject::UnsupportedMediaType>() {
        (ErrorKind::UnsupportedMediaType, e.to_string())
    } else if let Some(e) = r.find::<warp::reject::MissingHeader>() {
        (ErrorKind::AuthFailed, e.to_string())
    } else if let Some(e) = r.find::<warp::reject::InvalidHeader>() {
        (ErrorKind::InvalidParams, e.to_string())
    } else if r.find::<warp::reject::MethodNotAllowed>().is_some() {
        (ErrorKind::MethodNotAllowed, "method not allowed".to_owned())
    } else {
        tracing::warn!(rejection = ?r, "unhandled rejection");
        (ErrorKind::Internal, "unhandled rejection".to_owned())
    };
    Ok(problem_reply(kind.status(), &Problem { kind: kind.type_url(), title: kind.title().to_owned(), msg }))
}

/// A JSON request body of at most `limit` bytes that must be an object (serde would otherwise also fill a struct
/// from an array, field by field).
pub fn json_object<T: serde::de::DeserializeOwned + Send>(
    limit: u64,
) -> impl warp::Filter<Extract = (T,), Error = Rejection> + Clone {
    use warp::Filter;
    warp::body::content_length_limit(limit).and(warp::body::json::<serde_json::Value>()).and_then(
        |value: serde_json::Value| async move {
            if !value.is_object() {
                return Err(reject(Error::InvalidParams { msg: "the request body must be a JSON object".into() }));
            }
            serde_json::from_value(value)
                .map_err(|e| reject(Error::InvalidParams { msg: format!("malformed request body: {e}") }))
        },
    )
}

/// JSON reply with a status.
pub fn json_reply<T: serde::Serialize>(status: StatusCode, body: &T) -> Response {
    let mut resp = warp::reply::json(body).into_response();
    *resp.status_mut() = status;
    resp
}
