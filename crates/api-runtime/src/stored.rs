//! A resource as a store keeps it: the message, and its two wire forms as stored, so that Get
//! answers gRPC and REST with bytes already written instead of encoding the message again.

use yc_proto_types::encoded::Form;
use yc_sql::{Db, DbError, Query};

/// The JSON of the message stored as `body`, for a row stored before its JSON was kept (or
/// whose JSON was cleared): the body decoded and written as JSON.
pub fn json_from_body<M>(body: &[u8]) -> Result<Vec<u8>, DbError>
where
    M: prost::Message + Default + serde::Serialize,
{
    json_of(&decode::<M>(body)?)
}

fn json_of<M: serde::Serialize>(message: &M) -> Result<Vec<u8>, DbError> {
    serde_json::to_vec(message)
        .map_err(|e| DbError::new(format!("a stored message has no JSON form: {e}")))
}

fn decode<M: prost::Message + Default>(body: &[u8]) -> Result<M, DbError> {
    M::decode(body).map_err(|e| DbError::new(format!("a stored message does not decode: {e}")))
}

/// A stored message `M` with its protobuf encoding (the `body` column) and its proto3 JSON
/// (the `json` column, see [`list::sql::stored_forms`](crate::list::sql::stored_forms)).
#[derive(Debug, Clone, PartialEq)]
pub struct Stored<M> {
    message: M,
    body: Vec<u8>,
    json: Vec<u8>,
}

impl<M> Stored<M>
where
    M: prost::Message + Default + serde::Serialize,
{
    /// Reads a stored row: its body, and its JSON (written from the message where the row has
    /// none, as a row stored before JSON was kept). `Err` says why the body does not decode.
    pub fn read(body: &[u8], json: Option<&[u8]>) -> Result<Self, DbError> {
        let message = decode::<M>(body)?;
        let json = match json {
            Some(json) => json.to_vec(),
            None => json_of(&message)?,
        };
        Ok(Self {
            message,
            body: body.to_vec(),
            json,
        })
    }

    /// The one row of `q`, whose columns are `body, json`, read as [`read`](Self::read) reads
    /// it; `None` without a row.
    pub async fn fetch(db: &Db, q: &Query) -> Result<Option<Self>, DbError> {
        let found = db
            .fetch_with(q, |row| {
                Self::read(row.bytes(0)?.unwrap_or_default(), row.bytes(1)?)
            })
            .await?;
        Ok(found.into_iter().next())
    }

    /// The message.
    pub fn message(&self) -> &M {
        &self.message
    }

    /// The message, taken out.
    pub fn into_message(self) -> M {
        self.message
    }

    /// The message's bytes in `form`.
    pub fn bytes(&self, form: Form) -> &[u8] {
        match form {
            Form::Protobuf => &self.body,
            Form::Json => &self.json,
        }
    }
}
