//! A resource as a store keeps it: the message, and its two wire forms as stored, so that Get
//! answers gRPC and REST with bytes already written instead of encoding the message again.

use yc_proto_types::encoded::Form;

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
    pub fn read(body: &[u8], json: Option<&[u8]>) -> Result<Self, String> {
        let message =
            M::decode(body).map_err(|e| format!("a stored message does not decode: {e}"))?;
        let json = match json {
            Some(json) => json.to_vec(),
            None => serde_json::to_vec(&message)
                .map_err(|e| format!("a stored message has no JSON form: {e}"))?,
        };
        Ok(Self {
            message,
            body: body.to_vec(),
            json,
        })
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
