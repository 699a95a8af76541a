//! The ceiling for `cargo xtask bench`: a bare tonic and axum server on one address that
//! answers the Compute ImageService's Get and List, over gRPC and REST, with fixed answers
//! built from the same images the benchmarked server is seeded with, and does nothing else.
//! What it serves per second is the most any server can on this machine with this stack.
//!
//! ```text
//! cargo run --release -p yc-images --example ceiling -- <images.json> [<listen address>]
//! ```
//!
//! `images.json` is an array of Compute images in their REST JSON form: Get answers the
//! first, List the first ten with a page token. The address served is printed on standard
//! output.

use std::net::SocketAddr;

/// The allocator `yc-images` uses, so that the ceiling differs from it only in the work a call
/// does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::serve::ListenerExt as _;
use tonic::{Request, Response, Status};
use yc_proto_types::yandex::cloud::access::{
    ListAccessBindingsRequest, ListAccessBindingsResponse, SetAccessBindingsRequest,
    UpdateAccessBindingsRequest,
};
use yc_proto_types::yandex::cloud::compute::v1::image_service_server::{
    ImageService, ImageServiceServer,
};
use yc_proto_types::yandex::cloud::compute::v1::{
    CreateImageRequest, DeleteImageRequest, GetImageLatestByFamilyRequest, GetImageRequest, Image,
    ListImageOperationsRequest, ListImageOperationsResponse, ListImagesRequest, ListImagesResponse,
    UpdateImageRequest,
};
use yc_proto_types::yandex::cloud::operation::Operation;

/// The fixed answers.
#[derive(Clone)]
struct Fixed {
    image: Image,
    list: ListImagesResponse,
}

type Answer<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl ImageService for Fixed {
    async fn get(&self, _: Request<GetImageRequest>) -> Answer<Image> {
        Ok(Response::new(self.image.clone()))
    }
    async fn get_latest_by_family(
        &self,
        _: Request<GetImageLatestByFamilyRequest>,
    ) -> Answer<Image> {
        Err(Status::unimplemented("the ceiling answers Get and List"))
    }
    async fn list(&self, _: Request<ListImagesRequest>) -> Answer<ListImagesResponse> {
        Ok(Response::new(self.list.clone()))
    }
    async fn create(&self, _: Request<CreateImageRequest>) -> Answer<Operation> {
        Err(Status::unimplemented("the ceiling answers Get and List"))
    }
    async fn update(&self, _: Request<UpdateImageRequest>) -> Answer<Operation> {
        Err(Status::unimplemented("the ceiling answers Get and List"))
    }
    async fn delete(&self, _: Request<DeleteImageRequest>) -> Answer<Operation> {
        Err(Status::unimplemented("the ceiling answers Get and List"))
    }
    async fn list_operations(
        &self,
        _: Request<ListImageOperationsRequest>,
    ) -> Answer<ListImageOperationsResponse> {
        Err(Status::unimplemented("the ceiling answers Get and List"))
    }
    async fn list_access_bindings(
        &self,
        _: Request<ListAccessBindingsRequest>,
    ) -> Answer<ListAccessBindingsResponse> {
        Err(Status::unimplemented("the ceiling answers Get and List"))
    }
    async fn set_access_bindings(&self, _: Request<SetAccessBindingsRequest>) -> Answer<Operation> {
        Err(Status::unimplemented("the ceiling answers Get and List"))
    }
    async fn update_access_bindings(
        &self,
        _: Request<UpdateAccessBindingsRequest>,
    ) -> Answer<Operation> {
        Err(Status::unimplemented("the ceiling answers Get and List"))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        anyhow::bail!("usage: ceiling <images.json> [<listen address>]");
    };
    let listen: SocketAddr = args.next().as_deref().unwrap_or("127.0.0.1:0").parse()?;
    let images: Vec<Image> = serde_json::from_slice(&std::fs::read(&path)?)?;
    let Some(image) = images.first().cloned() else {
        anyhow::bail!("{path} holds no image");
    };
    let list = ListImagesResponse {
        images: images.iter().take(10).cloned().collect(),
        next_page_token: "eyJrIjoiZmQ4MDAwMDAwMDAwMDAwMDAwMDA5In0".into(),
    };
    let image_json = serde_json::to_vec(&image)?;
    let list_json = serde_json::to_vec(&list)?;
    let fixed = Fixed { image, list };

    let app = tonic::service::Routes::new(ImageServiceServer::new(fixed))
        .prepare()
        .into_axum_router()
        .route(
            "/compute/v1/images/{id}",
            axum::routing::get(move || {
                let body = image_json.clone();
                async move { ([(CONTENT_TYPE, "application/json")], body).into_response() }
            }),
        )
        .route(
            "/compute/v1/images",
            axum::routing::get(move || {
                let body = list_json.clone();
                async move { ([(CONTENT_TYPE, "application/json")], body).into_response() }
            }),
        );
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("ceiling listening on {}", listener.local_addr()?);
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await?;
    Ok(())
}
