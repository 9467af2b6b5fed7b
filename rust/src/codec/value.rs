//! A plain-Rust state tree: what the Rust tests and vectors decode into and
//! encode from, with the same rules as the Python path.

use super::read::{decode, utf8_error, Build};
use super::write::{self, Sink, TooLong};
use crate::error::{Error, Result};

/// A decoded msgpack value of a state tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Nil,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Bin(Vec<u8>),
    Array(Vec<Value>),
    /// Entries in wire order.
    Map(Vec<(String, Value)>),
}

struct ValueBuilder;

impl Build for ValueBuilder {
    type Value = Value;
    type Key = String;
    type Array = Vec<Value>;
    type Map = Vec<(String, Value)>;
    type Error = Error;

    fn nil(&mut self) -> Result<Value> {
        Ok(Value::Nil)
    }
    fn bool(&mut self, v: bool) -> Result<Value> {
        Ok(Value::Bool(v))
    }
    fn int(&mut self, v: i64) -> Result<Value> {
        Ok(Value::Int(v))
    }
    fn uint(&mut self, v: u64) -> Result<Value> {
        Ok(Value::UInt(v))
    }
    fn float(&mut self, v: f64) -> Result<Value> {
        Ok(Value::Float(v))
    }
    fn str(&mut self, v: &[u8], offset: usize) -> Result<Value> {
        Ok(Value::Str(self.key(v, offset)?))
    }
    fn bin(&mut self, v: &[u8]) -> Result<Value> {
        Ok(Value::Bin(v.to_vec()))
    }
    fn key(&mut self, v: &[u8], offset: usize) -> Result<String> {
        match std::str::from_utf8(v) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => Err(utf8_error(v, offset)),
        }
    }
    fn begin_array(&mut self, len: usize) -> Result<Vec<Value>> {
        // `len` is already capped by the bytes left in the input.
        Ok(Vec::with_capacity(len))
    }
    fn push(&mut self, array: &mut Vec<Value>, _index: usize, v: Value) -> Result<()> {
        array.push(v);
        Ok(())
    }
    fn end_array(&mut self, array: Vec<Value>) -> Result<Value> {
        Ok(Value::Array(array))
    }
    fn begin_map(&mut self, len: usize) -> Result<Vec<(String, Value)>> {
        Ok(Vec::with_capacity(len))
    }
    fn insert(&mut self, map: &mut Vec<(String, Value)>, k: String, v: Value) -> Result<()> {
        map.push((k, v));
        Ok(())
    }
    fn end_map(&mut self, map: Vec<(String, Value)>) -> Result<Value> {
        Ok(Value::Map(map))
    }
}

impl Value {
    /// Decode one value (see [`decode`] for the rules).
    pub fn from_msgpack(data: &[u8], max_depth: usize) -> Result<Value> {
        decode(data, max_depth, &mut ValueBuilder)
    }

    /// Encode as msgpack; `canonical` sorts map keys by their UTF-8 bytes
    /// (the same order as Python's `sorted` on str).
    pub fn to_msgpack(&self, canonical: bool) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.write_to(&mut out, canonical)?;
        Ok(out)
    }

    /// Encode into any sink.
    pub fn write_to<S: Sink>(&self, s: &mut S, canonical: bool) -> Result<()> {
        let too_long = |TooLong(n)| Error::Unserializable {
            path: String::new(),
            message: format!(
                "a container or string of {n} entries/bytes exceeds msgpack's 2^32-1 limit"
            ),
        };
        match self {
            Value::Nil => write::write_nil(s),
            Value::Bool(v) => write::write_bool(s, *v),
            Value::Int(v) => write::write_int(s, *v),
            Value::UInt(v) => write::write_uint(s, *v),
            Value::Float(v) => write::write_f64(s, *v),
            Value::Str(v) => write::write_str(s, v.as_bytes()).map_err(too_long)?,
            Value::Bin(v) => write::write_bin(s, v).map_err(too_long)?,
            Value::Array(items) => {
                write::write_array_header(s, items.len()).map_err(too_long)?;
                for item in items {
                    item.write_to(s, canonical)?;
                }
            }
            Value::Map(entries) => {
                write::write_map_header(s, entries.len()).map_err(too_long)?;
                if canonical {
                    let mut sorted: Vec<&(String, Value)> = entries.iter().collect();
                    sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
                    for (k, v) in sorted {
                        write::write_str(s, k.as_bytes()).map_err(too_long)?;
                        v.write_to(s, canonical)?;
                    }
                } else {
                    for (k, v) in entries {
                        write::write_str(s, k.as_bytes()).map_err(too_long)?;
                        v.write_to(s, canonical)?;
                    }
                }
            }
        }
        Ok(())
    }
}
