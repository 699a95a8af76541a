//! Answers written from bytes a store already holds, without decoding and encoding them again.
//!
//! A List page is a response message with one repeated message field (the items) and a
//! `next_page_token`. A store keeps each item in both its forms, protobuf and proto3 JSON, so
//! a page in either form is the items' bytes put together: [`PageWriter`] writes exactly what
//! encoding the typed response would (a test checks this byte for byte for every List response
//! of the schema). The field numbers and JSON names come from the schema's descriptors
//! ([`PageShape::of`]), not from code.
//!
//! A page in protobuf form goes out over gRPC as an [`Encoded`] message through
//! [`WithEncoded`], which answers chosen methods of a generated server this way and leaves the
//! rest to it; in JSON form it is the REST answer ([`RestService::encoded`](crate::rpc::RestService::encoded)).

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, RwLock};
use std::task::{Context, Poll};

use prost::bytes::{Buf, BufMut};
use prost::encoding::{DecodeContext, WireType, encode_key, encode_varint};
use prost::{DecodeError, Message, Name};
use prost_reflect::{Cardinality, Kind};
use tonic::codegen::{BoxFuture, Service, http};
use tonic::server::NamedService;

use crate::rpc::Rpc;
use crate::validate::descriptor_pool;

/// The two forms of a message on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Form {
    /// Protobuf, for gRPC.
    Protobuf,
    /// Proto3 canonical JSON, for REST.
    Json,
}

/// A message of type `M` already encoded as protobuf: gRPC sends its bytes as they are.
/// Decoding into it keeps nothing (it is an answer, never a request).
pub struct Encoded<M> {
    bytes: Vec<u8>,
    _message: PhantomData<fn() -> M>,
}

impl<M> Encoded<M> {
    /// `bytes`, which must be the protobuf encoding of an `M`.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self {
            bytes,
            _message: PhantomData,
        }
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The message, decoded.
    pub fn decode(&self) -> Result<M, DecodeError>
    where
        M: Message + Default,
    {
        M::decode(self.bytes.as_slice())
    }
}

impl<M> Default for Encoded<M> {
    fn default() -> Self {
        Self::new(Vec::new())
    }
}

impl<M> fmt::Debug for Encoded<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Encoded({} bytes)", self.bytes.len())
    }
}

impl<M> Message for Encoded<M> {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.bytes);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        // An answer, never read: decoding skips every field.
        prost::encoding::skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        self.bytes.len()
    }

    fn clear(&mut self) {
        self.bytes.clear();
    }
}

/// Where a List response keeps its items and its next page token: field numbers and JSON
/// names, from the schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageShape {
    items_number: u32,
    items_json: String,
    token_number: u32,
    token_json: String,
}

impl PageShape {
    /// The shape of the response message `full_name` (`yandex.cloud.compute.v1.ListImagesResponse`),
    /// read from the schema: its one repeated message field and its `next_page_token`; `None`
    /// for a message that is not a List response so shaped. [`page_shape`] keeps each
    /// type's, read once.
    pub fn of(full_name: &str) -> Option<PageShape> {
        Self::read(full_name)
    }

    fn read(full_name: &str) -> Option<PageShape> {
        let message = descriptor_pool().get_message_by_name(full_name)?;
        let mut items = message.fields().filter(|f| {
            f.cardinality() == Cardinality::Repeated && matches!(f.kind(), Kind::Message(_))
        });
        let (items, None) = (items.next()?, items.next()) else {
            return None;
        };
        let token = message.get_field_by_name("next_page_token")?;
        if token.kind() != Kind::String || token.is_list() || message.fields().len() != 2 {
            return None;
        }
        Some(PageShape {
            items_number: items.number(),
            items_json: items.json_name().to_owned(),
            token_number: token.number(),
            token_json: token.json_name().to_owned(),
        })
    }

    /// A page of this shape, written in `form` into a buffer of `capacity` bytes to start
    /// with (a page's items and their framing; growing the buffer copies what it holds).
    pub fn writer(&'static self, form: Form, capacity: usize) -> PageWriter {
        PageWriter {
            shape: self,
            form,
            out: Vec::with_capacity(capacity),
            items: 0,
        }
    }
}

/// A List response written from its items' stored bytes: the same bytes encoding the typed
/// response gives, in protobuf (field by field in number order) or in JSON (pbjson's: empty
/// fields left out).
#[derive(Debug)]
pub struct PageWriter {
    shape: &'static PageShape,
    form: Form,
    out: Vec<u8>,
    items: usize,
}

impl PageWriter {
    /// Adds an item: its protobuf encoding or its JSON, as the page's form is.
    pub fn push(&mut self, item: &[u8]) {
        match self.form {
            Form::Protobuf => {
                encode_key(
                    self.shape.items_number,
                    WireType::LengthDelimited,
                    &mut self.out,
                );
                encode_varint(item.len() as u64, &mut self.out);
            }
            Form::Json => {
                if self.items == 0 {
                    self.out.extend_from_slice(b"{");
                    push_json_string(&mut self.out, &self.shape.items_json);
                    self.out.extend_from_slice(b":[");
                } else {
                    self.out.push(b',');
                }
            }
        }
        self.out.extend_from_slice(item);
        self.items += 1;
    }

    /// The page, with `next_page_token` (empty on the last page).
    pub fn finish(mut self, next_page_token: &str) -> Vec<u8> {
        match self.form {
            Form::Protobuf => {
                if !next_page_token.is_empty() {
                    encode_key(
                        self.shape.token_number,
                        WireType::LengthDelimited,
                        &mut self.out,
                    );
                    encode_varint(next_page_token.len() as u64, &mut self.out);
                    self.out.extend_from_slice(next_page_token.as_bytes());
                }
            }
            Form::Json => {
                if self.items == 0 {
                    self.out.push(b'{');
                } else {
                    self.out.push(b']');
                }
                if !next_page_token.is_empty() {
                    if self.items > 0 {
                        self.out.push(b',');
                    }
                    push_json_string(&mut self.out, &self.shape.token_json);
                    self.out.push(b':');
                    push_json_string(&mut self.out, next_page_token);
                }
                self.out.push(b'}');
            }
        }
        self.out
    }
}

fn push_json_string(out: &mut Vec<u8>, s: &str) {
    // Writing a string into a Vec does not fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

type EncodedCall = Arc<
    dyn Fn(
            http::Request<tonic::body::Body>,
        ) -> BoxFuture<http::Response<tonic::body::Body>, Infallible>
        + Send
        + Sync,
>;

/// A generated gRPC server `S` with some unary methods answered from [`Encoded`] responses;
/// every other call goes to `S` as before, at no extra cost.
pub struct WithEncoded<S> {
    inner: S,
    /// By gRPC path; a few, so found by comparing paths rather than hashing them.
    methods: Arc<Vec<(&'static str, EncodedCall)>>,
    max_decoding: Option<usize>,
    limit_inner: fn(S, usize) -> S,
}

impl<S: Clone> Clone for WithEncoded<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            methods: self.methods.clone(),
            max_decoding: self.max_decoding,
            limit_inner: self.limit_inner,
        }
    }
}

impl<S> fmt::Debug for WithEncoded<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let methods: Vec<&str> = self.methods.iter().map(|(path, _)| *path).collect();
        f.debug_struct("WithEncoded")
            .field("methods", &methods)
            .finish_non_exhaustive()
    }
}

impl<S> WithEncoded<S> {
    /// `inner`, a generated server; `limit_inner` is its `max_decoding_message_size`, so that
    /// [`max_decoding_message_size`](Self::max_decoding_message_size) limits every method
    /// alike.
    pub fn new(inner: S, limit_inner: fn(S, usize) -> S) -> Self {
        Self {
            inner,
            methods: Arc::new(Vec::new()),
            max_decoding: None,
            limit_inner,
        }
    }

    /// The largest request message any method decodes.
    pub fn max_decoding_message_size(mut self, limit: usize) -> Self {
        self.inner = (self.limit_inner)(self.inner, limit);
        self.max_decoding = Some(limit);
        self
    }

    /// Answers `rpc` with `call`, whose response is already encoded.
    pub fn method<Req, Resp, F, Fut>(mut self, rpc: Rpc<Req, Resp>, call: F) -> Self
    where
        Req: Message + Default + Send + 'static,
        Resp: Send + 'static,
        F: Fn(tonic::Request<Req>) -> Fut + Send + Sync + 'static,
        Fut:
            Future<Output = Result<tonic::Response<Encoded<Resp>>, tonic::Status>> + Send + 'static,
    {
        struct Unary<F>(Arc<F>);
        impl<Req, Resp, F, Fut> tonic::server::UnaryService<Req> for Unary<F>
        where
            F: Fn(tonic::Request<Req>) -> Fut + Send + Sync + 'static,
            Fut: Future<Output = Result<tonic::Response<Encoded<Resp>>, tonic::Status>>
                + Send
                + 'static,
        {
            type Response = Encoded<Resp>;
            type Future = Fut;
            fn call(&mut self, request: tonic::Request<Req>) -> Fut {
                (self.0)(request)
            }
        }
        let call = Arc::new(call);
        let max_decoding = self.max_decoding;
        let answer: EncodedCall = Arc::new(move |request| {
            let call = call.clone();
            Box::pin(async move {
                let codec = tonic_prost::ProstCodec::<Encoded<Resp>, Req>::default();
                let mut grpc = tonic::server::Grpc::new(codec)
                    .apply_max_message_size_config(max_decoding, None);
                Ok(grpc.unary(Unary(call), request).await)
            })
        });
        let mut methods = Vec::clone(&self.methods);
        methods.retain(|(path, _)| *path != rpc.grpc_path());
        methods.push((rpc.grpc_path(), answer));
        self.methods = Arc::new(methods);
        self
    }
}

impl<S: NamedService> NamedService for WithEncoded<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<tonic::body::Body>> for WithEncoded<S>
where
    S: Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = Infallible,
        >,
    S::Future: Unpin,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Answer<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let path = request.uri().path();
        match self.methods.iter().find(|(method, _)| *method == path) {
            Some((_, answer)) => Answer::Encoded(answer(request)),
            None => Answer::Inner(self.inner.call(request)),
        }
    }
}

/// The answer of a [`WithEncoded`] call: the generated server's or an encoded one.
pub enum Answer<F> {
    /// By the generated server.
    Inner(F),
    /// From an encoded response.
    Encoded(BoxFuture<http::Response<tonic::body::Body>, Infallible>),
}

impl<F> fmt::Debug for Answer<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Answer::Inner(_) => "Answer::Inner",
            Answer::Encoded(_) => "Answer::Encoded",
        })
    }
}

impl<F> Future for Answer<F>
where
    F: Future<Output = Result<http::Response<tonic::body::Body>, Infallible>> + Unpin,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        match self.get_mut() {
            Answer::Inner(f) => Pin::new(f).poll(cx),
            Answer::Encoded(f) => f.as_mut().poll(cx),
        }
    }
}

/// A message type's [`PageShape`], read from the schema on first use and kept: a List call
/// finds it by the type's static package and name, without allocating or a lock it waits on.
pub fn page_shape<M: Name>() -> Option<&'static PageShape> {
    type Shapes = HashMap<(&'static str, &'static str), Option<&'static PageShape>>;
    static SHAPES: OnceLock<RwLock<Shapes>> = OnceLock::new();
    let shapes = SHAPES.get_or_init(RwLock::default);
    let key = (M::PACKAGE, M::NAME);
    if let Some(shape) = shapes
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(&key)
    {
        return *shape;
    }
    // Read and kept under the write lock, so that two first calls at once keep one copy.
    *shapes
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .entry(key)
        .or_insert_with(|| PageShape::of(&M::full_name()).map(|shape| &*Box::leak(Box::new(shape))))
}
