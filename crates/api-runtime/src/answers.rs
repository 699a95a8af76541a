//! Methods a service answers with bytes already encoded (a stored image, a List page put
//! together from stored items; see [`yc_proto_types::encoded`]), on both transports from one
//! answer function: protobuf for gRPC, JSON for REST.

use std::future::Future;
use std::sync::Arc;

use yc_proto_types::encoded::{Encoded, Form, WithEncoded};
use yc_proto_types::google::rpc::Status;
use yc_proto_types::rpc::{RestService, Rpc};

use crate::Caller;

/// The encoded answers of a service `S` (shared by every call: one reference count each).
#[derive(Debug, Clone)]
pub struct EncodedAnswers<S> {
    service: Arc<S>,
}

impl<S: Send + Sync + 'static> EncodedAnswers<S> {
    /// Answers for `service`.
    pub fn new(service: S) -> Self {
        Self {
            service: Arc::new(service),
        }
    }

    /// `server` answering `rpc` with `answer(service, request, caller, Form::Protobuf)`.
    pub fn grpc<G, Req, Resp, F, Fut>(
        &self,
        server: WithEncoded<G>,
        rpc: Rpc<Req, Resp>,
        answer: F,
    ) -> WithEncoded<G>
    where
        Req: prost::Message + Default + Send + 'static,
        Resp: Send + 'static,
        F: Fn(Arc<S>, Req, Caller, Form) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<u8>, Status>> + Send + 'static,
    {
        let service = self.service.clone();
        server.method(rpc, move |request: tonic::Request<Req>| {
            let call = Caller::from_grpc(&request).map(|caller| {
                answer(
                    service.clone(),
                    request.into_inner(),
                    caller,
                    Form::Protobuf,
                )
            });
            async move {
                let bytes = call?.await?;
                Ok(tonic::Response::new(Encoded::new(bytes)))
            }
        })
    }

    /// `rest` answering `rpc` with `answer(service, request, caller, Form::Json)`.
    pub fn rest<Req, Resp, F, Fut>(&self, rest: &mut RestService, rpc: Rpc<Req, Resp>, answer: F)
    where
        Req: serde::de::DeserializeOwned + prost::Message + prost::Name + Send + 'static,
        F: Fn(Arc<S>, Req, Caller, Form) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<u8>, Status>> + Send + 'static,
    {
        let service = self.service.clone();
        rest.encoded(rpc, move |request: tonic::Request<Req>| {
            let call = Caller::from_grpc(&request)
                .map(|caller| answer(service.clone(), request.into_inner(), caller, Form::Json));
            async move { Ok(call?.await?) }
        });
    }
}
