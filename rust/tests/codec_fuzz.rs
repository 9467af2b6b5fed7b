//! Random and adversarial bytes never panic the decoder; every decoded value
//! re-encodes to bytes that decode to the same value.

use _native::codec::value::Value;
use _native::codec::MAX_DEPTH;

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn check(data: &[u8]) {
    if let Ok(v) = Value::from_msgpack(data, MAX_DEPTH) {
        let again = v.to_msgpack(false).expect("a decoded value re-encodes");
        let back = Value::from_msgpack(&again, MAX_DEPTH).expect("re-encoded bytes decode");
        assert_eq!(back.to_msgpack(false).expect("encodes"), again);
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..20_000 {
        let len = rng.below(64);
        let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        check(&data);
    }
}

#[test]
fn mutated_states_never_panic() {
    let seed: &[u8] = include_bytes!("../../tests/vectors/msgpack/state_small.bin");
    let seed = &seed[..4096.min(seed.len())];
    let mut rng = Rng(42);
    for _ in 0..3_000 {
        let mut data = seed.to_vec();
        for _ in 0..1 + rng.below(4) {
            if data.is_empty() {
                break;
            }
            let at = rng.below(data.len());
            match rng.below(4) {
                0 => data[at] ^= 1 << rng.below(8),
                1 => data[at] = rng.next() as u8,
                2 => data.truncate(at),
                _ => data.insert(at, [0xc1, 0xdd, 0xdf, 0xdb, 0xc6, 0xff, 0x00][rng.below(7)]),
            }
        }
        check(&data);
    }
}

#[test]
fn adversarial_headers_fail_without_allocating() {
    // 16- and 32-bit length claims with nothing behind them
    for marker in [0xc6u8, 0xdb, 0xdd, 0xdf, 0xc5, 0xda, 0xdc, 0xde] {
        for len in [[0xff; 4], [0x7f, 0xff, 0xff, 0xff], [0, 0, 0, 1]] {
            let mut data = vec![marker];
            data.extend_from_slice(&len);
            assert!(Value::from_msgpack(&data, MAX_DEPTH).is_err());
        }
    }
    // nesting of maps and arrays far past the limit
    let mut deep = Vec::new();
    for i in 0..100_000 {
        deep.extend_from_slice(if i % 2 == 0 { &[0x91] } else { &[0x81, 0xa0] });
    }
    assert!(Value::from_msgpack(&deep, MAX_DEPTH).is_err());
}
