//! The frozen msgpack vectors (tests/vectors/msgpack), also read by pytest:
//! encoding, decoding, malformed input and content hashes of the Rust core.

use _native::codec::value::Value;
use _native::codec::{HARD_MAX_DEPTH, MAX_DEPTH};
use _native::error::Error;
use _native::hash::{sha256_digest, xxh3_128_digest, Xxh3Sink};
use serde_json::Value as Json;

const MANIFEST: &str = include_str!("../../tests/vectors/msgpack/vectors.json");

/// The `file` entries of the manifest, embedded at compile time.
fn file(name: &str) -> &'static [u8] {
    match name {
        "array32_bomb.bin" => include_bytes!("../../tests/vectors/msgpack/array32_bomb.bin"),
        "array_len65535.bin" => include_bytes!("../../tests/vectors/msgpack/array_len65535.bin"),
        "array_len65536.bin" => include_bytes!("../../tests/vectors/msgpack/array_len65536.bin"),
        "bin_len65535.bin" => include_bytes!("../../tests/vectors/msgpack/bin_len65535.bin"),
        "bin_len65536.bin" => include_bytes!("../../tests/vectors/msgpack/bin_len65536.bin"),
        "str_len65535.bin" => include_bytes!("../../tests/vectors/msgpack/str_len65535.bin"),
        "str_len65536.bin" => include_bytes!("../../tests/vectors/msgpack/str_len65536.bin"),
        "state_small.bin" => include_bytes!("../../tests/vectors/msgpack/state_small.bin"),
        "state_small_truncated.bin" => {
            include_bytes!("../../tests/vectors/msgpack/state_small_truncated.bin")
        }
        other => panic!("vector file {other} is not embedded: add it to file()"),
    }
}

fn manifest() -> Json {
    serde_json::from_str(MANIFEST).expect("vectors.json parses")
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn bytes_of(entry: &Json) -> Vec<u8> {
    match (entry.get("hex"), entry.get("file")) {
        (Some(h), _) => hex(h.as_str().expect("hex str")),
        (_, Some(f)) => file(f.as_str().expect("file str")).to_vec(),
        _ => panic!("vector without bytes: {entry}"),
    }
}

fn count(v: &Json) -> usize {
    v.as_u64().expect("count") as usize
}

/// The typed JSON form of tests/vectors/README.md -> a Value.
fn typed(v: &Json) -> Value {
    let obj = match v {
        Json::Null => return Value::Nil,
        Json::Bool(b) => return Value::Bool(*b),
        Json::Object(o) => o,
        other => panic!("bad typed value {other}"),
    };
    let (tag, arg) = obj.iter().next().expect("one tag");
    match tag.as_str() {
        "int" => {
            let s = arg.as_str().expect("int str");
            match s.parse::<i64>() {
                Ok(i) => Value::Int(i),
                Err(_) => Value::UInt(s.parse::<u64>().expect("u64")),
            }
        }
        "float" => Value::Float(
            arg.as_str()
                .expect("float str")
                .parse::<f64>()
                .expect("f64"),
        ),
        "str" => Value::Str(arg.as_str().expect("str").to_owned()),
        "bin" => Value::Bin(hex(arg.as_str().expect("bin hex"))),
        "array" => Value::Array(arg.as_array().expect("array").iter().map(typed).collect()),
        "map" => Value::Map(
            arg.as_array()
                .expect("map")
                .iter()
                .map(|kv| (kv[0].as_str().expect("key").to_owned(), typed(&kv[1])))
                .collect(),
        ),
        "str_repeat" => Value::Str(arg[0].as_str().expect("unit").repeat(count(&arg[1]))),
        "bin_repeat" => Value::Bin(hex(arg[0].as_str().expect("unit")).repeat(count(&arg[1]))),
        "array_repeat" => Value::Array(vec![typed(&arg[0]); count(&arg[1])]),
        "nest" => {
            let mut out = typed(&arg[1]);
            for _ in 0..count(&arg[0]) {
                out = Value::Array(vec![out]);
            }
            out
        }
        other => panic!("unknown tag {other}"),
    }
}

#[test]
fn valid_vectors_encode_and_decode() {
    let m = manifest();
    let valid = m["valid"].as_array().expect("valid");
    assert!(valid.len() > 50);
    for entry in valid {
        let name = entry["name"].as_str().expect("name");
        let canonical = entry["canonical"].as_bool().expect("canonical");
        let expected = bytes_of(entry);
        let value = typed(&entry["value"]);
        let encoded = value.to_msgpack(canonical).expect("encodes");
        assert_eq!(to_hex(&encoded), to_hex(&expected), "vector {name}");
        let decoded = Value::from_msgpack(&expected, MAX_DEPTH).expect("decodes");
        // re-encoding keeps wire order and float bits (NaN != NaN, so compare bytes)
        assert_eq!(
            decoded.to_msgpack(false).expect("re-encodes"),
            expected,
            "vector {name}"
        );
        // streaming the encoding into the hasher equals hashing the bytes
        let mut sink = Xxh3Sink::new();
        value.write_to(&mut sink, canonical).expect("hashes");
        assert_eq!(sink.finish(), xxh3_128_digest(&expected), "vector {name}");
    }
}

#[test]
fn malformed_vectors_fail_at_their_offset() {
    let m = manifest();
    let malformed = m["malformed"].as_array().expect("malformed");
    assert!(malformed.len() > 20);
    for entry in malformed {
        let name = entry["name"].as_str().expect("name");
        let data = bytes_of(entry);
        match Value::from_msgpack(&data, count(&entry["max_depth"])) {
            Ok(v) => panic!("vector {name} decoded to {v:?}"),
            Err(Error::Corrupt { offset, message }) => {
                assert_eq!(offset, count(&entry["offset"]), "vector {name}: {message}");
                let part = entry["error"].as_str().expect("error");
                assert!(
                    message.contains(part),
                    "vector {name}: {message:?} lacks {part:?}"
                );
            }
            Err(other) => panic!("vector {name}: wrong error {other:?}"),
        }
    }
}

#[test]
fn state_vectors_round_trip_and_hash() {
    let m = manifest();
    for entry in m["states"].as_array().expect("states") {
        let data = bytes_of(entry);
        let hash = entry["content_hash"].as_str().expect("hash");
        let state = Value::from_msgpack(&data, MAX_DEPTH).expect("decodes");
        assert_eq!(state.to_msgpack(true).expect("encodes"), data);
        assert_eq!(to_hex(&xxh3_128_digest(&data)), hash);
        assert_eq!(
            to_hex(&sha256_digest(&data)),
            entry["sha256"].as_str().expect("sha")
        );
        let mut sink = Xxh3Sink::new();
        state.write_to(&mut sink, true).expect("hashes");
        assert_eq!(to_hex(&sink.finish()), hash);
    }
}

#[test]
fn every_prefix_of_a_state_is_corrupt() {
    let data = file("state_small.bin");
    for cut in (0..data.len()).step_by(7) {
        match Value::from_msgpack(&data[..cut], MAX_DEPTH) {
            Err(Error::Corrupt { offset, .. }) => assert!(offset <= cut),
            other => panic!("prefix {cut}: {other:?}"),
        }
    }
}

#[test]
fn deepest_allowed_nesting_decodes() {
    let mut data = vec![0x91u8; HARD_MAX_DEPTH];
    data.push(0xc0);
    assert!(Value::from_msgpack(&data, HARD_MAX_DEPTH).is_ok());
    let err = Value::from_msgpack(&data, HARD_MAX_DEPTH - 1).err();
    assert_eq!(err.and_then(|e| e.offset()), Some(HARD_MAX_DEPTH - 1));
}
