//! What differs between the two databases, for statements to say where they are written.

/// Which database a statement is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// The column types of a dialect, for schema statements:
/// `format!("CREATE TABLE t (id {text} PRIMARY KEY, n {int}, b {bytes})")`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColumnTypes {
    /// Text, compared and sorted by code point.
    pub text: &'static str,
    /// A 64-bit integer.
    pub int: &'static str,
    /// Bytes.
    pub bytes: &'static str,
}

impl Dialect {
    /// The column types of this dialect. Text sorts by code point in both: SQLite's default
    /// `BINARY` collation, PostgreSQL's `"C"`.
    pub fn types(self) -> ColumnTypes {
        match self {
            Dialect::Sqlite => ColumnTypes {
                text: "TEXT",
                int: "INTEGER",
                bytes: "BLOB",
            },
            Dialect::Postgres => ColumnTypes {
                text: "TEXT COLLATE \"C\"",
                int: "BIGINT",
                bytes: "BYTEA",
            },
        }
    }

    /// ` FOR UPDATE` on PostgreSQL, where a transaction locks the rows it reads to decide on;
    /// nothing on SQLite, whose write transactions hold the whole database.
    pub fn for_update(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_and_locks_differ_as_the_databases_need() {
        assert_eq!(Dialect::Sqlite.types().text, "TEXT");
        assert_eq!(Dialect::Postgres.types().text, "TEXT COLLATE \"C\"");
        assert_eq!(Dialect::Postgres.types().int, "BIGINT");
        assert_eq!(Dialect::Postgres.types().bytes, "BYTEA");
        assert_eq!(Dialect::Sqlite.for_update(), "");
        assert_eq!(Dialect::Postgres.for_update(), " FOR UPDATE");
    }
}
