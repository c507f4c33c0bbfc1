//! `GET /api/v1/openapi.json`: the OpenAPI document of every route, generated from the
//! `#[utoipa::path]` attribute beside each handler. A route added to the router without an
//! attribute listed here fails the integration test `openapi` (it compares the router's routes
//! with this document, and probes each documented operation against a running app).
//!
//! Request and response bodies are described loosely (any JSON) where docs/ is the
//! reference; the error body, which every route shares, is described exactly.

use axum::Json;
use utoipa::{OpenApi, ToSchema};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "bq-backup",
        description = "Back up Google BigQuery datasets to object storage and restore them. \
            Request bodies and reports are described in docs/ (backup.md, restore.md, http-api.md)."
    ),
    paths(
        super::health::healthz,
        super::health::readyz,
        super::metrics::scrape,
        spec,
        super::backup::start_backup,
        super::restore::start_restore,
        super::recover::start_recover,
        super::jobs::list,
        super::jobs::show,
        super::jobs::cancel,
        super::backups::list,
        super::backups::show,
        super::backups::action,
        super::backups::copy,
        super::backups::delete,
        super::backups::prune,
        super::schedules::list,
    ),
    components(schemas(ErrorResponse, FieldError)),
    tags(
        (name = "operations", description = "Health, readiness, metrics and this document"),
        (name = "backup", description = "Start backups and restores (run as jobs)"),
        (name = "jobs", description = "Follow and cancel jobs"),
        (name = "backups", description = "The catalog of a backup repository"),
    )
)]
pub(crate) struct ApiDoc;

/// The body of every error response: the Java service's shape, plus `details` and `requestId`.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)] // Describes the JSON written by `error::render_errors`; never built.
pub(crate) struct ErrorResponse {
    /// `VALIDATION_ERROR`, `UNAUTHENTICATED`, `PERMISSION_DENIED`, `RESOURCE_NOT_FOUND`,
    /// `RESOURCE_CONFLICT`, `PAYLOAD_TOO_LARGE`, `TOO_MANY_REQUESTS`, `UPSTREAM_ERROR`,
    /// `UPSTREAM_UNAVAILABLE`, `BACKUP_DAMAGED`, `SERVICE_ERROR`, `METHOD_NOT_ALLOWED` or
    /// `REQUEST_TIMEOUT`.
    #[schema(example = "VALIDATION_ERROR")]
    error_code: String,
    /// What went wrong, for humans.
    message: String,
    /// When (RFC 3339, UTC).
    timestamp: String,
    /// The request path.
    path: String,
    /// One entry per invalid input field.
    details: Vec<FieldError>,
    /// The request's `x-request-id`.
    request_id: Option<String>,
}

/// One problem with one input field.
#[derive(ToSchema)]
#[allow(dead_code)] // Describes `crate::error::FieldError` as serialized; never built.
pub(crate) struct FieldError {
    /// The field's JSON path (`backupStorage.gcsOptions.uri`) or query parameter.
    #[schema(example = "uri")]
    field: String,
    message: String,
}

#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "operations",
    operation_id = "openapi",
    summary = "This OpenAPI document",
    responses((status = 200, description = "The OpenAPI 3.1 document of every route", body = serde_json::Value)),
)]
pub(crate) async fn spec() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
