//! The shape of the configuration, read from its `Deserialize` implementations: every key of
//! every table, including the keys of optional tables and those the serializer leaves out.
//!
//! A deserializer that answers every request with a plausible value and records the struct
//! fields it is asked for. Serializing `Config::default()` would miss keys whose default is
//! unset (an `Option` that is `None`, a table that is absent), so a new key could go
//! undocumented; asking the deserializer misses nothing the file could contain.

use std::{cell::RefCell, fmt, rc::Rc};

use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer as _, Visitor};

/// One key of the configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    /// Dotted path, e.g. `output.jsonl.max_size`.
    pub path: String,
    /// A table (a struct), rather than a value.
    pub table: bool,
    /// Unset by default: an `Option` (or inside an optional table).
    pub optional: bool,
}

#[derive(Debug)]
pub struct TraceError(String);

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TraceError {}

impl de::Error for TraceError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        TraceError(msg.to_string())
    }
}

type Keys = Rc<RefCell<Vec<Key>>>;

/// Every key of `T`'s tables, in declaration order. `T` must be a struct.
pub fn keys<'de, T: serde::Deserialize<'de>>() -> Result<Vec<Key>, TraceError> {
    let keys: Keys = Rc::default();
    T::deserialize(Tracer { keys: Some(keys.clone()), path: String::new(), optional: false })?;
    Ok(keys.take())
}

/// Answers one value at `path`; `keys` is `None` inside arrays (an array is one key).
struct Tracer {
    keys: Option<Keys>,
    path: String,
    optional: bool,
}

impl Tracer {
    fn leaf(&self) {
        if let Some(k) = &self.keys
            && !self.path.is_empty()
        {
            k.borrow_mut().push(Key { path: self.path.clone(), table: false, optional: self.optional });
        }
    }

    fn silent(&self) -> Tracer {
        Tracer { keys: None, path: self.path.clone(), optional: self.optional }
    }
}

macro_rules! leaf {
    ($($method:ident => $visit:ident($($value:expr)?)),* $(,)?) => {
        $(fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
            self.leaf();
            visitor.$visit($($value)?)
        })*
    };
}

impl<'de> Deserializer<'de> for Tracer {
    type Error = TraceError;

    leaf! {
        deserialize_bool => visit_bool(false),
        deserialize_i8 => visit_i8(1),
        deserialize_i16 => visit_i16(1),
        deserialize_i32 => visit_i32(1),
        deserialize_i64 => visit_i64(1),
        deserialize_u8 => visit_u8(1),
        deserialize_u16 => visit_u16(1),
        deserialize_u32 => visit_u32(1),
        deserialize_u64 => visit_u64(1),
        deserialize_f32 => visit_f32(1.0),
        deserialize_f64 => visit_f64(1.0),
        deserialize_char => visit_char('a'),
        deserialize_str => visit_str("1"),
        deserialize_string => visit_str("1"),
        deserialize_bytes => visit_bytes(b"1"),
        deserialize_byte_buf => visit_bytes(b"1"),
        deserialize_unit => visit_unit(),
        deserialize_ignored_any => visit_unit(),
        // Self-describing values (untagged enums, sizes that are a number or a string): a
        // string is what most of them accept.
        deserialize_any => visit_str("1"),
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        visitor.visit_some(Tracer { optional: true, ..self })
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, _: &'static str, visitor: V) -> Result<V::Value, TraceError> {
        self.leaf();
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _: &'static str, visitor: V) -> Result<V::Value, TraceError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        self.leaf();
        // One element, so that its type is exercised too; its keys are the array's.
        visitor.visit_seq(de::value::SeqDeserializer::new(std::iter::once(self.silent())))
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, TraceError> {
        self.leaf();
        let silent = self.silent();
        let items: Vec<Tracer> = (0..len).map(|_| silent.silent()).collect();
        visitor.visit_seq(de::value::SeqDeserializer::new(items.into_iter()))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, TraceError> {
        self.deserialize_tuple(len, visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        // A map with free keys is one value (its keys are data, not settings).
        self.leaf();
        visitor.visit_map(de::value::MapDeserializer::new(std::iter::empty::<(String, String)>()))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, TraceError> {
        let Tracer { keys, path, optional } = self;
        if let Some(k) = &keys
            && !path.is_empty()
        {
            k.borrow_mut().push(Key { path: path.clone(), table: true, optional });
        }
        visitor.visit_map(Fields { keys, path, optional, fields: fields.iter(), next: None })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, TraceError> {
        self.leaf();
        let first = variants.first().copied().unwrap_or_default();
        visitor.visit_enum(first.into_deserializer())
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        visitor.visit_str("1")
    }
}

/// A struct's fields, each answered by a tracer at its own path.
struct Fields {
    keys: Option<Keys>,
    path: String,
    optional: bool,
    fields: std::slice::Iter<'static, &'static str>,
    next: Option<&'static str>,
}

impl<'de> de::MapAccess<'de> for Fields {
    type Error = TraceError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, TraceError> {
        let Some(field) = self.fields.next() else { return Ok(None) };
        self.next = Some(field);
        seed.deserialize(de::value::StrDeserializer::<TraceError>::new(field)).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, TraceError> {
        let field = self.next.take().ok_or_else(|| TraceError("a value before its key".into()))?;
        let path = if self.path.is_empty() { field.to_owned() } else { format!("{}.{field}", self.path) };
        seed.deserialize(Tracer { keys: self.keys.clone(), path, optional: self.optional })
    }
}

impl<'de> de::IntoDeserializer<'de, TraceError> for Tracer {
    type Deserializer = Tracer;

    fn into_deserializer(self) -> Tracer {
        self
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Deserialize)]
    #[allow(dead_code)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        a: u32,
        inner: Inner,
        maybe: Option<Inner>,
        list: Vec<Inner>,
        kind: Kind,
        size: crate::config::ByteSize,
    }

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        b: String,
        c: Option<std::path::PathBuf>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Kind {
        One,
    }

    #[test]
    fn every_key_is_found_with_its_kind() {
        let keys = keys::<Outer>().unwrap();
        let shown: Vec<String> = keys
            .iter()
            .map(|k| format!("{}{}{}", k.path, if k.table { "/" } else { "" }, if k.optional { "?" } else { "" }))
            .collect();
        assert_eq!(
            shown,
            ["a", "inner/", "inner.b", "inner.c?", "maybe/?", "maybe.b?", "maybe.c?", "list", "kind", "size"]
        );
    }
}
