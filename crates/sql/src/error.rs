//! How a database fails.

/// A database failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbError {
    message: String,
    unique_violation: bool,
}

impl DbError {
    /// A failure with this message: for what a caller of the database finds wrong in what it
    /// read (a stored value that does not decode).
    pub fn new(message: impl Into<String>) -> Self {
        DbError {
            message: message.into(),
            unique_violation: false,
        }
    }

    /// Whether a unique index or primary key refused the change.
    pub fn is_unique_violation(&self) -> bool {
        self.unique_violation
    }
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DbError {}

impl From<sqlx::Error> for DbError {
    fn from(e: sqlx::Error) -> Self {
        let unique_violation = matches!(&e, sqlx::Error::Database(db) if db.is_unique_violation());
        DbError {
            message: e.to_string(),
            unique_violation,
        }
    }
}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        let unique_violation = matches!(
            &e,
            rusqlite::Error::SqliteFailure(f, _)
                if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
        );
        DbError {
            message: e.to_string(),
            unique_violation,
        }
    }
}
