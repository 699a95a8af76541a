//! The Container Registry ImageService REST routes:
//!
//! - `GET /container-registry/v1/images` (the request's fields as query parameters)
//! - `GET /container-registry/v1/images/{imageId}`
//! - `DELETE /container-registry/v1/images/{imageId}`

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::routing::get;
use yc_operations::rest::{ApiError, json_response, query_message};
use yc_proto_types::yandex::cloud::containerregistry::v1::{
    DeleteImageRequest, GetImageRequest, ListImagesRequest,
};

use crate::service::{Caller, RegistryImages};

/// The routes, over the registry image service.
pub fn router(images: RegistryImages) -> Router {
    Router::new()
        .route("/container-registry/v1/images", get(list))
        .route(
            "/container-registry/v1/images/{image_id}",
            get(get_image).delete(delete),
        )
        .with_state(images)
}

async fn list(
    State(images): State<RegistryImages>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let request: ListImagesRequest = query_message(query.as_deref())?;
    Ok(json_response(&images.list(&request, &caller).await?))
}

async fn get_image(
    State(images): State<RegistryImages>,
    caller: Caller,
    Path(image_id): Path<String>,
) -> Result<Response, ApiError> {
    let request = GetImageRequest { image_id };
    Ok(json_response(&images.get(&request, &caller).await?))
}

async fn delete(
    State(images): State<RegistryImages>,
    caller: Caller,
    Path(image_id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(json_response(
        &images
            .delete(&DeleteImageRequest { image_id }, &caller)
            .await?,
    ))
}
