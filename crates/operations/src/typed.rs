//! A typed view of an Operation: its metadata as `M`, its result as `Result<R, Status>`.

use std::fmt;

use prost::Name;
use yc_proto_types::google::protobuf::{Any, Timestamp};
use yc_proto_types::google::rpc::Status;
use yc_proto_types::yandex::cloud::operation::{Operation, operation};

/// An [`Operation`] whose metadata is an `M` and whose response is an `R`, for example
/// `TypedOperation<CreateImageMetadata, Image>` or `TypedOperation<DeleteImageMetadata, Empty>`.
#[derive(Debug, Clone, PartialEq)]
pub struct TypedOperation<M, R> {
    /// Id of the operation.
    pub id: String,
    /// What the operation does.
    pub description: String,
    /// When it started.
    pub created_at: Option<Timestamp>,
    /// The subject that started it.
    pub created_by: String,
    /// When it last changed.
    pub modified_at: Option<Timestamp>,
    /// Whether it has finished.
    pub done: bool,
    /// Its metadata, when it has any.
    pub metadata: Option<M>,
    /// Its outcome: once done, the response or the error; before, possibly an error while a
    /// failed operation rolls back.
    pub result: Option<Result<R, Status>>,
}

/// An Operation's metadata or response is not of the type asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackError {
    /// Id of the operation.
    pub operation_id: String,
    /// `metadata` or `response`.
    pub field: &'static str,
    /// The full name of the type asked for.
    pub expected: String,
    /// The type URL the operation carries.
    pub actual: String,
}

impl fmt::Display for UnpackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "operation {}: {} is {}, not the expected {}",
            self.operation_id, self.field, self.actual, self.expected
        )
    }
}

impl std::error::Error for UnpackError {}

fn unpack<T: Name + Default>(
    any: &Any,
    operation_id: &str,
    field: &'static str,
) -> Result<T, UnpackError> {
    any.to_msg::<T>().map_err(|_| UnpackError {
        operation_id: operation_id.to_owned(),
        field,
        expected: T::full_name(),
        actual: if any.type_url.is_empty() {
            "(no type)".into()
        } else if any.is::<T>() {
            format!("{} with bytes that do not decode", any.type_url)
        } else {
            any.type_url.clone()
        },
    })
}

impl<M: Name + Default, R: Name + Default> TypedOperation<M, R> {
    /// Unpacks an Operation, checking the types of its metadata and response.
    ///
    /// ```
    /// use yc_operations::TypedOperation;
    /// use yc_proto_types::google::protobuf::{Any, Empty};
    /// use yc_proto_types::yandex::cloud::compute::v1::{DeleteImageMetadata, Image};
    /// use yc_proto_types::yandex::cloud::operation::{Operation, operation};
    ///
    /// let op = Operation {
    ///     id: "fd8op".into(),
    ///     done: true,
    ///     metadata: Some(Any::from_msg(&DeleteImageMetadata { image_id: "fd8img".into() })),
    ///     result: Some(operation::Result::Response(Any::from_msg(&Empty {}))),
    ///     ..Default::default()
    /// };
    /// let typed = TypedOperation::<DeleteImageMetadata, Empty>::from_operation(&op).unwrap();
    /// assert_eq!(typed.metadata.unwrap().image_id, "fd8img");
    /// assert_eq!(typed.result, Some(Ok(Empty {})));
    ///
    /// let wrong = TypedOperation::<DeleteImageMetadata, Image>::from_operation(&op).unwrap_err();
    /// assert_eq!(wrong.expected, "yandex.cloud.compute.v1.Image");
    /// ```
    pub fn from_operation(op: &Operation) -> Result<Self, UnpackError> {
        let metadata = op
            .metadata
            .as_ref()
            .map(|m| unpack::<M>(m, &op.id, "metadata"))
            .transpose()?;
        let result = match &op.result {
            None => None,
            Some(operation::Result::Error(status)) => Some(Err(status.clone())),
            Some(operation::Result::Response(any)) => {
                Some(Ok(unpack::<R>(any, &op.id, "response")?))
            }
        };
        Ok(Self {
            id: op.id.clone(),
            description: op.description.clone(),
            created_at: op.created_at,
            created_by: op.created_by.clone(),
            modified_at: op.modified_at,
            done: op.done,
            metadata,
            result,
        })
    }
}
