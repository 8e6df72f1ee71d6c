//! The subscription API's handlers (`/v1/subscriptions`), JSON in and out; served by
//! [`crate::http::Server`].
//! Every answer that is not a success carries `{"error": "<what to do>"}`; a refused subscribe
//! writes nothing. Keys are never echoed whole and never logged.

use super::cache::Lookup;
use super::validate::{self, Invalid};
use super::{Holder, Put, StoreError, Subscriptions};
use crate::aws::credentials::{CredentialsError, Roles};
use crate::aws::diagnose;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use secrecy::SecretString;
use serde_json::{json, Value};
use std::sync::Arc;

pub mod limits;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// What the API handlers share.
pub struct ApiState {
    pub subscriptions: Arc<Subscriptions>,
    /// Present when subscribe must assume the role first (`subscriptions.verify_role`).
    pub verifier: Option<Arc<Roles>>,
    /// This node's worker cache, told when a subscription changes here.
    pub lookup: Option<Arc<Lookup>>,
    /// Request limits and the bound on role checks at once.
    pub limits: limits::Limits,
}

/// The API's routes.
pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route(
            "/v1/subscriptions",
            post(subscribe).delete(unsubscribe).get(list),
        )
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "no such route; see /v1/subscriptions",
            )
        })
        .method_not_allowed_fallback(|| async {
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed; use POST, DELETE or GET",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            limit,
        ))
        .layer(axum::middleware::from_fn(guard))
        .with_state(state)
}

/// How long one request may take, body included.
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Refuses a body announced larger than the limit before reading it, and ends requests that
/// take longer than [`REQUEST_TIMEOUT`] (a client trickling its body).
pub async fn guard(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("the body is larger than {MAX_BODY_BYTES} bytes"),
        );
    }
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => error(
            StatusCode::REQUEST_TIMEOUT,
            "the request took too long to arrive",
        ),
    }
}

/// Applies the request limits before anything else is done: POST and DELETE per client and in
/// total, GET per API key; 429 with `Retry-After` (whole seconds, rounded up) when over.
async fn limit(
    State(state): State<Arc<ApiState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use axum::http::Method;
    let now = std::time::Instant::now();
    let verdict = match *request.method() {
        Method::POST | Method::DELETE => {
            let peer = request
                .extensions()
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0);
            let client = state.limits.client(request.headers(), peer);
            state.limits.write(&client, now)
        }
        Method::GET => match bearer(request.headers()) {
            Some(key) => state.limits.read(&super::fingerprint(&key), now),
            None => Ok(()),
        },
        _ => Ok(()),
    };
    match verdict {
        Ok(()) => next.run(request).await,
        Err(refused) => {
            metrics::counter!(crate::metrics::API_THROTTLED, "limit" => refused.limit).increment(1);
            let seconds =
                refused.retry_after.as_secs() + u64::from(refused.retry_after.subsec_nanos() > 0);
            let what = match refused.limit {
                "client" => "requests from your address",
                "total" => "requests to this API",
                _ => "requests with this apiKey",
            };
            (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, seconds.max(1).to_string())],
                Json(json!({ "error": format!("too many {what}; retry after {} s", seconds.max(1)) })),
            )
                .into_response()
        }
    }
}

async fn subscribe(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let mut body = match json_body(&headers, body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let sample_key = match take_sample_key(&mut body) {
        Ok(k) => k,
        Err(r) => return *r,
    };
    let request = match validate::subscribe_request(&body) {
        Ok(r) => r,
        Err(invalid) => return bad_request(&invalid),
    };
    let bucket = request.bucket_name.as_str();
    // Refuse another owner's bucket before spending an STS call on it: a verified one always,
    // a pending one unless this request can prove ownership with a sample read.
    let can_prove = sample_key.is_some() && state.verifier.is_some();
    match state.subscriptions.holder(bucket, &request.api_key).await {
        Ok(Holder::Nobody | Holder::This) => {}
        Ok(Holder::OtherPending) if can_prove => {}
        Ok(Holder::OtherPending) => return conflict_pending(bucket),
        Ok(Holder::OtherVerified) => return conflict(bucket),
        Err(e) => return store_error(&e),
    }
    if let Some(roles) = &state.verifier {
        // Bounded: a flood waits here (up to the request timeout) instead of reaching STS.
        let Ok(_permit) = state.limits.role_checks.acquire().await else {
            return error(StatusCode::SERVICE_UNAVAILABLE, "shutting down; try again");
        };
        if let Err(r) = check_role(roles, &request, sample_key.as_deref()).await {
            return *r;
        }
    }
    match state
        .subscriptions
        .subscribe_proven(&request, can_prove, unix_now())
        .await
    {
        Ok((put, subscription)) => {
            if let Some(lookup) = &state.lookup {
                lookup.forget(bucket);
            }
            let status = match put {
                Put::Created | Put::TookOver => StatusCode::CREATED,
                Put::Updated => StatusCode::OK,
            };
            tracing::info!(bucket, outcome = ?put, pending = subscription.pending, "subscription saved");
            (status, Json(subscription.redacted())).into_response()
        }
        Err(StoreError::Conflict { .. }) => conflict(bucket),
        Err(e) => store_error(&e),
    }
}

async fn unsubscribe(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match json_body(&headers, body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let request = match validate::unsubscribe_request(&body) {
        Ok(r) => r,
        Err(invalid) => return bad_request(&invalid),
    };
    let bucket = request.bucket_name.as_str();
    match state
        .subscriptions
        .unsubscribe(&request.api_key, bucket)
        .await
    {
        Ok(true) => {
            if let Some(lookup) = &state.lookup {
                lookup.forget(bucket);
            }
            tracing::info!(bucket, "subscription removed");
            StatusCode::NO_CONTENT.into_response()
        }
        // The same answer for "no such bucket" and "not yours": existence is not revealed.
        Ok(false) => error(
            StatusCode::NOT_FOUND,
            &format!("no subscription for bucket {bucket} with this apiKey"),
        ),
        Err(e) => store_error(&e),
    }
}

async fn list(State(state): State<Arc<ApiState>>, headers: HeaderMap) -> Response {
    let Some(api_key) = bearer(&headers) else {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Json(
                json!({"error": "send your BigPanda API key as `Authorization: Bearer <apiKey>`"}),
            ),
        )
            .into_response();
    };
    match state.subscriptions.list(Some(&api_key)).await {
        Ok(subs) => {
            let subs: Vec<_> = subs.iter().map(|s| s.redacted()).collect();
            Json(json!({ "subscriptions": subs })).into_response()
        }
        Err(e) => store_error(&e),
    }
}

fn bearer(headers: &HeaderMap) -> Option<SecretString> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && validate::check_key(token).is_ok())
        .then(|| SecretString::from(token))
}

/// The body as JSON, or the response refusing it: 413 when too large, 415 when not declared
/// JSON, 400 when not parseable.
fn json_body(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Value, Box<Response>> {
    let body = body.map_err(|rejection| {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            Box::new(error(
                status,
                &format!("the body is larger than {MAX_BODY_BYTES} bytes"),
            ))
        } else {
            Box::new(error(
                status,
                &format!("cannot read the body: {}", rejection.body_text()),
            ))
        }
    })?;
    if !declares_json(headers) {
        return Err(Box::new(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the body as JSON with `Content-Type: application/json`",
        )));
    }
    serde_json::from_slice(&body).map_err(|e| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            &format!("the body is not valid JSON: {e}"),
        ))
    })
}

fn declares_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn bad_request(invalid: &Invalid) -> Response {
    let summary: Vec<String> = invalid
        .0
        .iter()
        .map(|e| format!("{} {}", e.field, e.message))
        .collect();
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "error": summary.join("; "), "errors": invalid.0 })),
    )
        .into_response()
}

fn conflict(bucket: &str) -> Response {
    error(
        StatusCode::CONFLICT,
        &format!("bucket {bucket} is already subscribed and verified with another apiKey; only that key can change or remove it"),
    )
}

fn conflict_pending(bucket: &str) -> Response {
    error(
        StatusCode::CONFLICT,
        &format!("bucket {bucket} is held by another apiKey's pending (unverified) subscription; \
                  to take it over, prove the bucket is yours: POST again with \"sample_key\", the key \
                  of an existing log file of the bucket, which your role reads"),
    )
}

/// The optional `sample_key` field: an existing log file's key, read with the role's
/// credentials to prove the whole set-up before saving. Removed from the body so the rest is
/// validated as the reference request.
fn take_sample_key(body: &mut Value) -> Result<Option<String>, Box<Response>> {
    let Some(map) = body.as_object_mut() else {
        return Ok(None);
    };
    match map.remove("sample_key") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(k)) if !k.is_empty() && k.len() <= 1024 => Ok(Some(k)),
        Some(_) => {
            let invalid = Invalid(vec![validate::FieldError {
                field: "sample_key".into(),
                message: "must be an object key of 1 to 1024 characters".into(),
            }]);
            Err(Box::new(bad_request(&invalid)))
        }
    }
}

/// Assumes the role (and reads the sample key, if given); the 422 says what to fix.
async fn check_role(
    roles: &Roles,
    request: &validate::SubscribeRequest,
    sample_key: Option<&str>,
) -> Result<(), Box<Response>> {
    let (bucket, role) = (request.bucket_name.as_str(), request.iam_role_arn.as_str());
    let external_id = request.iam_role_external_id.as_str();
    let our_account = roles.our_account().await;
    let refusal =
        |e: &CredentialsError| Box::new(role_error(bucket, external_id, our_account.as_deref(), e));
    roles
        .verify(role, external_id)
        .await
        .map_err(|e| refusal(&e))?;
    let Some(key) = sample_key else {
        return Ok(());
    };
    let region = request.bucket_region.as_str();
    let owner = request.bucket_owner();
    let read = roles
        .read_sample(role, external_id, region, bucket, key, &owner)
        .await
        .map_err(|e| refusal(&e))?;
    match diagnose::sample(&read, bucket, key, region) {
        None => Ok(()),
        Some(mut sentence) => {
            tracing::info!(
                bucket,
                ?read,
                "subscription refused: sample key not readable"
            );
            if read == diagnose::SampleRead::Denied {
                // S3 answers a wrong ExpectedBucketOwner with the same AccessDenied.
                sentence.push_str(&format!(
                    "; or the bucket is not owned by account {owner}: we only read a bucket of \
                     the account that owns it, which is the role's account unless \
                     bucket_account_id names another"
                ));
            }
            let body = json!({
                "error": sentence,
                "cause": format!("{read:?}"),
                "expected_bucket_owner": owner,
            });
            Err(Box::new(
                (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response(),
            ))
        }
    }
}

fn role_error(
    bucket: &str,
    external_id: &str,
    our_account: Option<&str>,
    e: &CredentialsError,
) -> Response {
    match e {
        // Our own credentials are broken: not the customer's to fix.
        CredentialsError::Refused { code, .. }
            if matches!(
                code.as_str(),
                "InvalidClientTokenId" | "ExpiredToken" | "SignatureDoesNotMatch"
            ) =>
        {
            tracing::error!(bucket, code = %code, "role check failed: the daemon's own AWS credentials are invalid");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the integration's own AWS credentials are not valid; nothing is wrong on your side, try again later",
            )
        }
        CredentialsError::Refused {
            role,
            code,
            message,
        } => {
            tracing::info!(bucket, role = %role, code = %code, "subscription refused: role cannot be assumed");
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({
                    "error": diagnose::refused(role, external_id, our_account, code),
                    "aws_error_code": code,
                    "aws_error_message": message,
                })),
            )
                .into_response()
        }
        CredentialsError::Unavailable { .. } => {
            tracing::warn!(bucket, error = %e, "role check failed: STS unavailable");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot reach AWS STS to check the role; try again shortly",
            )
        }
    }
}

fn store_error(e: &StoreError) -> Response {
    tracing::error!(error = %e, "subscription store failed");
    match e {
        StoreError::Conflict { bucket } => conflict(bucket),
        StoreError::Unavailable { .. } => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the subscription store is unavailable; try again shortly",
        ),
        StoreError::Corrupt { bucket, .. } => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("the stored subscription of {bucket} is unreadable; contact support"),
        ),
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
