//! Values in and out of statements, the same for both backends. Every integer column is a 64-bit
//! integer (booleans are 0/1); text is UTF-8; a list parameter (for `= ANY($n)`) is a PostgreSQL
//! array or, on SQLite, a JSON array read with `json_each`.

use std::error::Error;

use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

/// The type of a column, for a NULL that must still have one (rows inserted as arrays).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Int,
    Text,
}

/// Types whose values bind as one [`Kind`]; an absent one (`None`) still has that type.
pub trait SqlKind {
    const KIND: Kind;
}

impl SqlKind for i64 {
    const KIND: Kind = Kind::Int;
}
impl SqlKind for u64 {
    const KIND: Kind = Kind::Int;
}
impl SqlKind for usize {
    const KIND: Kind = Kind::Int;
}
impl SqlKind for bool {
    const KIND: Kind = Kind::Int;
}
impl SqlKind for str {
    const KIND: Kind = Kind::Text;
}
impl SqlKind for String {
    const KIND: Kind = Kind::Text;
}
impl<T: SqlKind + ?Sized> SqlKind for &T {
    const KIND: Kind = T::KIND;
}

/// A parameter value.
#[derive(Clone, Debug)]
pub enum Value<'a> {
    /// NULL, of a known type if it came from an absent typed value.
    Null(Option<Kind>),
    Int(i64),
    Text(&'a str),
    /// Text made for the statement (e.g. an event type's name).
    OwnedText(String),
    Texts(Vec<&'a str>),
    Ints(Vec<i64>),
    OptTexts(Vec<Option<String>>),
    OptInts(Vec<Option<i64>>),
}

/// Anything that binds to a statement parameter.
pub trait ToValue: Sync {
    fn to_value(&self) -> Value<'_>;
}

impl ToValue for i64 {
    fn to_value(&self) -> Value<'_> {
        Value::Int(*self)
    }
}

impl ToValue for u64 {
    fn to_value(&self) -> Value<'_> {
        Value::Int(i64::try_from(*self).unwrap_or(i64::MAX))
    }
}

impl ToValue for usize {
    fn to_value(&self) -> Value<'_> {
        Value::Int(i64::try_from(*self).unwrap_or(i64::MAX))
    }
}

impl ToValue for bool {
    fn to_value(&self) -> Value<'_> {
        Value::Int(i64::from(*self))
    }
}

impl ToValue for str {
    fn to_value(&self) -> Value<'_> {
        Value::Text(self)
    }
}

impl ToValue for String {
    fn to_value(&self) -> Value<'_> {
        Value::Text(self)
    }
}

impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> Value<'_> {
        (**self).to_value()
    }
}

impl<T: ToValue + SqlKind> ToValue for Option<T> {
    fn to_value(&self) -> Value<'_> {
        match self {
            Some(v) => v.to_value(),
            None => Value::Null(Some(T::KIND)),
        }
    }
}

impl ToValue for Value<'_> {
    fn to_value(&self) -> Value<'_> {
        self.clone()
    }
}

impl rusqlite::ToSql for Value<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, Value as Owned, ValueRef};
        let json = |v: serde_json::Result<String>| v.map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)));
        Ok(match self {
            Value::Null(_) => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Int(v) => ToSqlOutput::Borrowed(ValueRef::Integer(*v)),
            Value::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Value::OwnedText(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Value::Texts(list) => ToSqlOutput::Owned(Owned::Text(json(serde_json::to_string(list))?)),
            Value::Ints(list) => ToSqlOutput::Owned(Owned::Text(json(serde_json::to_string(list))?)),
            Value::OptTexts(list) => ToSqlOutput::Owned(Owned::Text(json(serde_json::to_string(list))?)),
            Value::OptInts(list) => ToSqlOutput::Owned(Owned::Text(json(serde_json::to_string(list))?)),
        })
    }
}

impl ToSql for Value<'_> {
    fn to_sql(&self, ty: &Type, out: &mut bytes::BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        match self {
            Value::Null(_) => Ok(IsNull::Yes),
            // Integers go to whatever integer type the statement wants (the schema's are BIGINT,
            // but PostgreSQL types some expressions narrower).
            Value::Int(v) => match *ty {
                Type::INT8 => v.to_sql(ty, out),
                Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
                Type::BOOL => (*v != 0).to_sql(ty, out),
                _ => Err(format!("cannot bind an integer to a {ty} parameter").into()),
            },
            Value::Text(s) => s.to_sql(ty, out),
            Value::OwnedText(s) => s.to_sql(ty, out),
            Value::Texts(list) => list.to_sql(ty, out),
            Value::Ints(list) => list.to_sql(ty, out),
            Value::OptTexts(list) => list.to_sql(ty, out),
            Value::OptInts(list) => list.to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// One column of rows to insert, as a PostgreSQL array (see `Conn::insert_rows`).
pub(crate) enum Column {
    Ints(Vec<Option<i64>>),
    Texts(Vec<Option<String>>),
}

impl Column {
    pub(crate) fn sql_type(&self) -> &'static str {
        match self {
            Column::Ints(_) => "BIGINT[]",
            Column::Texts(_) => "TEXT[]",
        }
    }
}

impl Column {
    pub(crate) fn into_value(self) -> Value<'static> {
        match self {
            Column::Ints(v) => Value::OptInts(v),
            Column::Texts(v) => Value::OptTexts(v),
        }
    }
}

/// Rows (each `width` values) turned into columns; a column's type is that of its first
/// non-NULL value.
pub(crate) fn columns(rows: &[Vec<&dyn ToValue>], width: usize) -> crate::StorageResult<Vec<Column>> {
    let mut out = Vec::with_capacity(width);
    for i in 0..width {
        let values: Vec<Value<'_>> =
            rows.iter().map(|row| row.get(i).map_or(Value::Null(None), |v| v.to_value())).collect();
        let texts =
            values.iter().any(|v| matches!(v, Value::Text(_) | Value::OwnedText(_) | Value::Null(Some(Kind::Text))));
        let column = if texts {
            Column::Texts(
                values
                    .iter()
                    .map(|v| match v {
                        Value::Text(s) => Ok(Some((*s).to_owned())),
                        Value::OwnedText(s) => Ok(Some(s.clone())),
                        Value::Null(_) => Ok(None),
                        _ => Err(crate::StorageError::Corrupt(format!("column {i} mixes text and other values"))),
                    })
                    .collect::<Result<_, _>>()?,
            )
        } else {
            Column::Ints(
                values
                    .iter()
                    .map(|v| match v {
                        Value::Int(n) => Ok(Some(*n)),
                        Value::Null(_) => Ok(None),
                        _ => Err(crate::StorageError::Corrupt(format!("column {i}: lists cannot be inserted"))),
                    })
                    .collect::<Result<_, _>>()?,
            )
        };
        out.push(column);
    }
    Ok(out)
}

/// Anything a column reads into.
pub trait FromColumn: Sized {
    fn from_sqlite(value: rusqlite::types::ValueRef<'_>) -> Result<Self, String>;
    fn from_postgres(row: &tokio_postgres::Row, idx: usize) -> Result<Self, String>;
}

fn pg_int(row: &tokio_postgres::Row, idx: usize) -> Result<Option<i64>, String> {
    let ty = row.columns().get(idx).ok_or("no such column")?.type_().clone();
    let err = |e: tokio_postgres::Error| e.to_string();
    Ok(match ty {
        Type::INT8 => row.try_get::<_, Option<i64>>(idx).map_err(err)?,
        Type::INT4 => row.try_get::<_, Option<i32>>(idx).map_err(err)?.map(i64::from),
        Type::INT2 => row.try_get::<_, Option<i16>>(idx).map_err(err)?.map(i64::from),
        Type::BOOL => row.try_get::<_, Option<bool>>(idx).map_err(err)?.map(i64::from),
        other => return Err(format!("expected an integer, found {other}")),
    })
}

impl FromColumn for Option<i64> {
    fn from_sqlite(value: rusqlite::types::ValueRef<'_>) -> Result<Self, String> {
        use rusqlite::types::ValueRef;
        match value {
            ValueRef::Null => Ok(None),
            ValueRef::Integer(v) => Ok(Some(v)),
            other => Err(format!("expected an integer, found {:?}", other.data_type())),
        }
    }

    fn from_postgres(row: &tokio_postgres::Row, idx: usize) -> Result<Self, String> {
        pg_int(row, idx)
    }
}

impl FromColumn for i64 {
    fn from_sqlite(value: rusqlite::types::ValueRef<'_>) -> Result<Self, String> {
        Option::<i64>::from_sqlite(value)?.ok_or_else(|| "unexpected NULL".to_owned())
    }

    fn from_postgres(row: &tokio_postgres::Row, idx: usize) -> Result<Self, String> {
        pg_int(row, idx)?.ok_or_else(|| "unexpected NULL".to_owned())
    }
}

/// Non-negative integers (counts, timestamps); a negative value reads as 0.
impl FromColumn for u64 {
    fn from_sqlite(value: rusqlite::types::ValueRef<'_>) -> Result<Self, String> {
        i64::from_sqlite(value).map(|v| v.max(0) as u64)
    }

    fn from_postgres(row: &tokio_postgres::Row, idx: usize) -> Result<Self, String> {
        i64::from_postgres(row, idx).map(|v| v.max(0) as u64)
    }
}

impl FromColumn for Option<u64> {
    fn from_sqlite(value: rusqlite::types::ValueRef<'_>) -> Result<Self, String> {
        Option::<i64>::from_sqlite(value).map(|v| v.map(|v| v.max(0) as u64))
    }

    fn from_postgres(row: &tokio_postgres::Row, idx: usize) -> Result<Self, String> {
        pg_int(row, idx).map(|v| v.map(|v| v.max(0) as u64))
    }
}

/// Floating-point results (search ranks).
impl FromColumn for f64 {
    fn from_sqlite(value: rusqlite::types::ValueRef<'_>) -> Result<Self, String> {
        use rusqlite::types::ValueRef;
        match value {
            ValueRef::Real(v) => Ok(v),
            ValueRef::Integer(v) => Ok(v as f64),
            other => Err(format!("expected a number, found {:?}", other.data_type())),
        }
    }

    fn from_postgres(row: &tokio_postgres::Row, idx: usize) -> Result<Self, String> {
        let ty = row.columns().get(idx).ok_or("no such column")?.type_().clone();
        let err = |e: tokio_postgres::Error| e.to_string();
        match ty {
            Type::FLOAT8 => row.try_get::<_, f64>(idx).map_err(err),
            Type::FLOAT4 => row.try_get::<_, f32>(idx).map(f64::from).map_err(err),
            _ => pg_int(row, idx)?.map(|v| v as f64).ok_or_else(|| "unexpected NULL".to_owned()),
        }
    }
}

impl FromColumn for bool {
    fn from_sqlite(value: rusqlite::types::ValueRef<'_>) -> Result<Self, String> {
        i64::from_sqlite(value).map(|v| v != 0)
    }

    fn from_postgres(row: &tokio_postgres::Row, idx: usize) -> Result<Self, String> {
        i64::from_postgres(row, idx).map(|v| v != 0)
    }
}

/// The text of an SQLite column, borrowed (`None` for NULL).
fn sqlite_text(value: rusqlite::types::ValueRef<'_>) -> Result<Option<&str>, String> {
    use rusqlite::types::ValueRef;
    match value {
        ValueRef::Null => Ok(None),
        ValueRef::Text(bytes) => std::str::from_utf8(bytes).map(Some).map_err(|e| e.to_string()),
        other => Err(format!("expected text, found {:?}", other.data_type())),
    }
}

/// The text of a PostgreSQL column, borrowed (`None` for NULL).
fn postgres_text(row: &tokio_postgres::Row, idx: usize) -> Result<Option<&str>, String> {
    row.try_get::<_, Option<&str>>(idx).map_err(|e| e.to_string())
}

fn not_null<T>(value: Option<T>) -> Result<T, String> {
    value.ok_or_else(|| "unexpected NULL".to_owned())
}

impl FromColumn for Option<String> {
    fn from_sqlite(value: rusqlite::types::ValueRef<'_>) -> Result<Self, String> {
        Ok(sqlite_text(value)?.map(str::to_owned))
    }

    fn from_postgres(row: &tokio_postgres::Row, idx: usize) -> Result<Self, String> {
        row.try_get::<_, Option<String>>(idx).map_err(|e| e.to_string())
    }
}

impl FromColumn for String {
    fn from_sqlite(value: rusqlite::types::ValueRef<'_>) -> Result<Self, String> {
        Option::<String>::from_sqlite(value)?.ok_or_else(|| "unexpected NULL".to_owned())
    }

    fn from_postgres(row: &tokio_postgres::Row, idx: usize) -> Result<Self, String> {
        Option::<String>::from_postgres(row, idx)?.ok_or_else(|| "unexpected NULL".to_owned())
    }
}

/// A text column parsed into a type (ids, names), straight from the row's bytes; a value that
/// does not parse is corrupt data.
fn parsed<T, E: std::fmt::Display>(text: &str, parse: impl FnOnce(&str) -> Result<T, E>) -> Result<T, String> {
    parse(text).map_err(|e| format!("{:?}: {e}", text.chars().take(80).collect::<String>()))
}

/// Types stored as text and read back by parsing it.
macro_rules! text_type {
    ($owned:ty, $borrowed:ty, $parse:expr) => {
        impl ToValue for $borrowed {
            fn to_value(&self) -> Value<'_> {
                Value::Text(self.as_str())
            }
        }
        impl SqlKind for $borrowed {
            const KIND: Kind = Kind::Text;
        }
        impl ToValue for $owned {
            fn to_value(&self) -> Value<'_> {
                Value::Text(self.as_str())
            }
        }
        impl SqlKind for $owned {
            const KIND: Kind = Kind::Text;
        }
        impl FromColumn for $owned {
            fn from_sqlite(value: rusqlite::types::ValueRef<'_>) -> Result<Self, String> {
                parsed(not_null(sqlite_text(value)?)?, $parse)
            }
            fn from_postgres(row: &tokio_postgres::Row, idx: usize) -> Result<Self, String> {
                parsed(not_null(postgres_text(row, idx)?)?, $parse)
            }
        }
        impl FromColumn for Option<$owned> {
            fn from_sqlite(value: rusqlite::types::ValueRef<'_>) -> Result<Self, String> {
                sqlite_text(value)?.map(|t| parsed(t, $parse)).transpose()
            }
            fn from_postgres(row: &tokio_postgres::Row, idx: usize) -> Result<Self, String> {
                postgres_text(row, idx)?.map(|t| parsed(t, $parse)).transpose()
            }
        }
    };
}

use myelin_core::types::{
    DeviceId, EventId, OwnedDeviceId, OwnedEventId, OwnedRoomAliasId, OwnedRoomId, OwnedServerName, OwnedTransactionId,
    OwnedUserId, RoomAliasId, RoomId, ServerName, TransactionId, UserId,
};

text_type!(OwnedUserId, UserId, |s: &str| OwnedUserId::try_from(s));
text_type!(OwnedRoomId, RoomId, |s: &str| OwnedRoomId::try_from(s));
text_type!(OwnedEventId, EventId, |s: &str| OwnedEventId::try_from(s));
text_type!(OwnedServerName, ServerName, |s: &str| OwnedServerName::try_from(s));
text_type!(OwnedRoomAliasId, RoomAliasId, |s: &str| OwnedRoomAliasId::try_from(s));
text_type!(OwnedDeviceId, DeviceId, |s: &str| Ok::<_, std::convert::Infallible>(OwnedDeviceId::from(s)));
text_type!(OwnedTransactionId, TransactionId, |s: &str| Ok::<_, std::convert::Infallible>(OwnedTransactionId::from(s)));

/// Types stored as their name and read back with `FromStr`/`From<String>`.
macro_rules! named_type {
    ($ty:ty, $name:expr, $parse:expr) => {
        impl ToValue for $ty {
            fn to_value(&self) -> Value<'_> {
                $name(self)
            }
        }
        impl SqlKind for $ty {
            const KIND: Kind = Kind::Text;
        }
        impl FromColumn for $ty {
            fn from_sqlite(value: rusqlite::types::ValueRef<'_>) -> Result<Self, String> {
                parsed(not_null(sqlite_text(value)?)?, $parse)
            }
            fn from_postgres(row: &tokio_postgres::Row, idx: usize) -> Result<Self, String> {
                parsed(not_null(postgres_text(row, idx)?)?, $parse)
            }
        }
    };
}

use myelin_core::{
    Membership, StreamPos,
    types::{RoomVersionId, StateEventType, TimelineEventType},
};

named_type!(Membership, |m: &Membership| Value::Text(m.as_str()), |s: &str| s.parse::<Membership>());
named_type!(TimelineEventType, |t: &TimelineEventType| Value::OwnedText(t.to_string()), |s: &str| {
    Ok::<_, std::convert::Infallible>(TimelineEventType::from(s))
});
named_type!(StateEventType, |t: &StateEventType| Value::OwnedText(t.to_string()), |s: &str| {
    Ok::<_, std::convert::Infallible>(StateEventType::from(s))
});
named_type!(RoomVersionId, |v: &RoomVersionId| Value::OwnedText(v.as_str().to_owned()), |s: &str| {
    RoomVersionId::try_from(s)
});

impl ToValue for StreamPos {
    fn to_value(&self) -> Value<'_> {
        Value::Int(self.0)
    }
}

impl SqlKind for StreamPos {
    const KIND: Kind = Kind::Int;
}

impl FromColumn for StreamPos {
    fn from_sqlite(value: rusqlite::types::ValueRef<'_>) -> Result<Self, String> {
        i64::from_sqlite(value).map(StreamPos)
    }

    fn from_postgres(row: &tokio_postgres::Row, idx: usize) -> Result<Self, String> {
        i64::from_postgres(row, idx).map(StreamPos)
    }
}

impl FromColumn for Option<StreamPos> {
    fn from_sqlite(value: rusqlite::types::ValueRef<'_>) -> Result<Self, String> {
        Option::<i64>::from_sqlite(value).map(|v| v.map(StreamPos))
    }

    fn from_postgres(row: &tokio_postgres::Row, idx: usize) -> Result<Self, String> {
        pg_int(row, idx).map(|v| v.map(StreamPos))
    }
}

/// A list of ids, names or numbers, bound for `= ANY($n)`.
impl<T: ToValue> ToValue for Vec<T> {
    fn to_value(&self) -> Value<'_> {
        self.as_slice().to_value()
    }
}

/// A list of ids, names or numbers, bound for `= ANY($n)`.
impl<T: ToValue> ToValue for [T] {
    fn to_value(&self) -> Value<'_> {
        let values: Vec<Value<'_>> = self.iter().map(ToValue::to_value).collect();
        if values.iter().all(|v| matches!(v, Value::Text(_))) {
            return Value::Texts(
                values.into_iter().filter_map(|v| if let Value::Text(s) = v { Some(s) } else { None }).collect(),
            );
        }
        if values.iter().all(|v| matches!(v, Value::Int(_))) {
            return Value::Ints(
                values.into_iter().filter_map(|v| if let Value::Int(n) = v { Some(n) } else { None }).collect(),
            );
        }
        // Names made for the statement (event types, room versions), or a mix: as owned text,
        // NULL for anything else, never dropped.
        Value::OptTexts(
            values
                .into_iter()
                .map(|v| match v {
                    Value::Text(s) => Some(s.to_owned()),
                    Value::OwnedText(s) => Some(s),
                    Value::Int(n) => Some(n.to_string()),
                    _ => None,
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use myelin_core::types::TimelineEventType;

    use super::{ToValue, Value};

    #[test]
    fn lists_bind_every_element() {
        let ids = vec!["a".to_owned(), "b".to_owned()];
        assert!(matches!(ids.to_value(), Value::Texts(t) if t == ["a", "b"]));
        assert!(matches!(vec![1i64, 2].to_value(), Value::Ints(n) if n == [1, 2]));
        let types = vec![TimelineEventType::RoomMessage, TimelineEventType::from("org.example.custom")];
        match types.to_value() {
            Value::OptTexts(t) => {
                assert_eq!(t, [Some("m.room.message".to_owned()), Some("org.example.custom".to_owned())]);
            }
            _ => panic!("event types bind as text"),
        }
        assert!(matches!(Vec::<String>::new().to_value(), Value::Texts(t) if t.is_empty()));
    }
}
