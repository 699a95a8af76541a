//! The Compute ImageService REST routes, at the documented paths:
//!
//! - `GET /compute/v1/images/{imageId}`, `GET /compute/v1/images:latestByFamily`
//! - `GET /compute/v1/images` (the request's fields as query parameters)
//! - `POST /compute/v1/images`, `PATCH /compute/v1/images/{imageId}` (JSON bodies)
//! - `DELETE /compute/v1/images/{imageId}`, `GET /compute/v1/images/{imageId}/operations`

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::routing::get;
use yc_operations::rest::{ApiError, body_message, json_response, query_message};
use yc_proto_types::yandex::cloud::compute::v1::{
    CreateImageRequest, DeleteImageRequest, GetImageLatestByFamilyRequest, GetImageRequest,
    ListImageOperationsRequest, ListImagesRequest, UpdateImageRequest,
};

use crate::service::{Caller, ComputeImages};

/// The routes, over the compute image service.
pub fn router(images: ComputeImages) -> Router {
    Router::new()
        .route("/compute/v1/images", get(list).post(create))
        .route("/compute/v1/images:latestByFamily", get(latest_by_family))
        .route(
            "/compute/v1/images/{image_id}",
            get(get_image).patch(update).delete(delete),
        )
        .route(
            "/compute/v1/images/{image_id}/operations",
            get(list_operations),
        )
        .with_state(images)
}

type Answer = Result<Response, ApiError>;

async fn get_image(
    State(images): State<ComputeImages>,
    caller: Caller,
    Path(image_id): Path<String>,
) -> Answer {
    let request = GetImageRequest { image_id };
    Ok(json_response(&images.get(&request, &caller).await?))
}

async fn latest_by_family(
    State(images): State<ComputeImages>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Answer {
    let request: GetImageLatestByFamilyRequest = query_message(query.as_deref())?;
    Ok(json_response(
        &images.latest_by_family(&request, &caller).await?,
    ))
}

async fn list(
    State(images): State<ComputeImages>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Answer {
    let request: ListImagesRequest = query_message(query.as_deref())?;
    Ok(json_response(&images.list(&request, &caller).await?))
}

async fn create(State(images): State<ComputeImages>, caller: Caller, body: Bytes) -> Answer {
    let request: CreateImageRequest = body_message(&body)?;
    Ok(json_response(&images.create(&request, &caller).await?))
}

async fn update(
    State(images): State<ComputeImages>,
    caller: Caller,
    Path(image_id): Path<String>,
    body: Bytes,
) -> Answer {
    let mut request: UpdateImageRequest = body_message(&body)?;
    request.image_id = image_id;
    Ok(json_response(&images.update(&request, &caller).await?))
}

async fn delete(
    State(images): State<ComputeImages>,
    caller: Caller,
    Path(image_id): Path<String>,
) -> Answer {
    let request = DeleteImageRequest { image_id };
    Ok(json_response(&images.delete(&request, &caller).await?))
}

async fn list_operations(
    State(images): State<ComputeImages>,
    caller: Caller,
    Path(image_id): Path<String>,
    RawQuery(query): RawQuery,
) -> Answer {
    let mut request: ListImageOperationsRequest = query_message(query.as_deref())?;
    request.image_id = image_id;
    Ok(json_response(
        &images.list_operations(&request, &caller).await?,
    ))
}
