//! Result rows, read by position in either database.

use sqlx::Postgres;
use sqlx::postgres::PgRow;

use crate::DbError;

/// A column type both databases decode: `String`, `i64`, `Vec<u8>`, `bool` and their
/// `Option`s.
pub trait Column: Sized + for<'r> sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres> {
    /// The value from a SQLite column.
    fn from_sqlite(value: &SqliteValue) -> Result<Self, DbError>;
}

fn wrong_type(value: &SqliteValue, wanted: &str) -> DbError {
    DbError::new(format!("a SQLite column holds {value:?}, not {wanted}"))
}

impl Column for String {
    fn from_sqlite(value: &SqliteValue) -> Result<Self, DbError> {
        match value {
            SqliteValue::Text(s) => Ok(s.clone()),
            other => Err(wrong_type(other, "text")),
        }
    }
}

impl Column for i64 {
    fn from_sqlite(value: &SqliteValue) -> Result<Self, DbError> {
        match value {
            SqliteValue::Integer(n) => Ok(*n),
            other => Err(wrong_type(other, "an integer")),
        }
    }
}

impl Column for Vec<u8> {
    fn from_sqlite(value: &SqliteValue) -> Result<Self, DbError> {
        match value {
            SqliteValue::Blob(b) => Ok(b.clone()),
            // An empty message may be stored as an empty text by other tools.
            SqliteValue::Text(s) if s.is_empty() => Ok(Vec::new()),
            other => Err(wrong_type(other, "bytes")),
        }
    }
}

impl Column for bool {
    fn from_sqlite(value: &SqliteValue) -> Result<Self, DbError> {
        match value {
            SqliteValue::Integer(n) => Ok(*n != 0),
            other => Err(wrong_type(other, "a boolean")),
        }
    }
}

impl<T: Column> Column for Option<T>
where
    Option<T>: for<'r> sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
{
    fn from_sqlite(value: &SqliteValue) -> Result<Self, DbError> {
        match value {
            SqliteValue::Null => Ok(None),
            other => T::from_sqlite(other).map(Some),
        }
    }
}

/// A SQLite value.
pub type SqliteValue = rusqlite::types::Value;

/// A result row.
pub enum Row {
    /// From SQLite: the columns' values.
    Sqlite(Vec<SqliteValue>),
    /// From PostgreSQL.
    Postgres(PgRow),
}

impl std::fmt::Debug for Row {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use sqlx::Row as _;
        let columns = match self {
            Row::Sqlite(row) => row.len(),
            Row::Postgres(row) => row.len(),
        };
        write!(f, "Row({columns} columns)")
    }
}

impl Row {
    /// The value of the column at `index`.
    pub fn get<T: Column>(&self, index: usize) -> Result<T, DbError> {
        use sqlx::Row as _;
        match self {
            Row::Sqlite(row) => match row.get(index) {
                Some(value) => T::from_sqlite(value),
                None => Err(DbError::new(format!("no column {index} in the row"))),
            },
            Row::Postgres(row) => Ok(row.try_get(index)?),
        }
    }
}

/// A row read in place, as the database holds it (see [`Db::fetch_with`](crate::Db::fetch_with)).
#[derive(Clone, Copy)]
pub enum RowRef<'r> {
    /// A SQLite row, valid until the statement steps on.
    Sqlite(&'r rusqlite::Row<'r>),
    /// A PostgreSQL row.
    Postgres(&'r PgRow),
}

impl std::fmt::Debug for RowRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RowRef::Sqlite(_) => "RowRef::Sqlite",
            RowRef::Postgres(_) => "RowRef::Postgres",
        })
    }
}

impl<'r> RowRef<'r> {
    /// Column `i` (from 0) as bytes, without a copy: a blob's bytes or a text's UTF-8;
    /// `None` for NULL.
    pub fn bytes(&self, i: usize) -> Result<Option<&'r [u8]>, DbError> {
        match self {
            RowRef::Sqlite(row) => match row.get_ref(i)? {
                rusqlite::types::ValueRef::Null => Ok(None),
                rusqlite::types::ValueRef::Blob(b) | rusqlite::types::ValueRef::Text(b) => {
                    Ok(Some(b))
                }
                other => Err(DbError::new(format!(
                    "column {i} holds {:?}, not bytes or text",
                    other.data_type()
                ))),
            },
            // Bytes and text alike: the binary protocol sends text as its UTF-8.
            RowRef::Postgres(row) => {
                use sqlx::Row as _;
                Ok(row.try_get_unchecked::<Option<&[u8]>, _>(i)?)
            }
        }
    }

    /// Column `i` (from 0) as text, without a copy; `None` for NULL.
    pub fn text(&self, i: usize) -> Result<Option<&'r str>, DbError> {
        self.bytes(i)?
            .map(|b| {
                std::str::from_utf8(b)
                    .map_err(|_| DbError::new(format!("column {i} is not UTF-8 text")))
            })
            .transpose()
    }
}
