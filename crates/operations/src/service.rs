//! `yandex.cloud.operation.OperationService` over gRPC.

use tonic::{Request, Response};
use yc_proto_types::validate;
use yc_proto_types::yandex::cloud::operation::operation_service_server::{
    OperationService, OperationServiceServer,
};
use yc_proto_types::yandex::cloud::operation::{
    CancelOperationRequest, GetOperationRequest, Operation, operation_service_rpc,
};

use yc_api_runtime::Caller;

use crate::OperationRunner;

/// The gRPC OperationService over a runner.
#[derive(Clone)]
pub struct OperationGrpc {
    runner: OperationRunner,
}

impl OperationGrpc {
    /// The service, ready to add to a tonic server.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use yc_operations::{MemoryOperationStore, OperationGrpc, OperationRunner};
    ///
    /// let runner = OperationRunner::new(Arc::new(MemoryOperationStore::new()));
    /// let service = OperationGrpc::server(runner);
    /// ```
    pub fn server(runner: OperationRunner) -> OperationServiceServer<Self> {
        OperationServiceServer::new(Self { runner })
    }

    /// The service's REST methods, for the REST transcoder.
    pub fn rest(runner: OperationRunner) -> yc_proto_types::rpc::RestService {
        operation_service_rpc::rest(std::sync::Arc::new(Self { runner }))
    }
}

#[tonic::async_trait]
impl OperationService for OperationGrpc {
    async fn get(
        &self,
        request: Request<GetOperationRequest>,
    ) -> Result<Response<Operation>, tonic::Status> {
        let caller = Caller::from_grpc(&request)?;
        let request = request.into_inner();
        validate(&request)?;
        Ok(Response::new(
            self.runner.get_as(&request.operation_id, &caller).await?,
        ))
    }

    async fn cancel(
        &self,
        request: Request<CancelOperationRequest>,
    ) -> Result<Response<Operation>, tonic::Status> {
        let caller = Caller::from_grpc(&request)?;
        let request = request.into_inner();
        validate(&request)?;
        Ok(Response::new(
            self.runner
                .cancel_as(&request.operation_id, &caller)
                .await?,
        ))
    }
}
