//! Message properties (`name 0x01 value 0x02`...).
//!
//! Asserts: every decoded pair is one Java would keep (non-empty name without 0x01/0x02,
//! non-empty value without 0x02), names are unique and in first-seen order; `find_property`
//! gives each name's value; `decode_properties` keeps the last value `iter_properties`
//! yields per name; and encode -> decode gives the same pairs, encoding being a fixed point.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use rmqfast::codec::properties::{
    decode_properties, encode_properties, find_property, iter_properties,
    NAME_VALUE_SEPARATOR as NV, PROPERTY_SEPARATOR as PS,
};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let pairs = decode_properties(&text);

    // Last value per name, in first-seen order (hash-indexed: inputs may hold hundreds of pairs).
    let mut first_seen: Vec<(&str, &str)> = Vec::new();
    let mut slot_of: HashMap<&str, usize> = HashMap::new();
    for (n, v) in iter_properties(&text) {
        match slot_of.get(n) {
            Some(&i) => first_seen[i].1 = v,
            None => {
                slot_of.insert(n, first_seen.len());
                first_seen.push((n, v));
            }
        }
    }
    let as_refs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        as_refs, first_seen,
        "decode_properties vs iter_properties, last wins"
    );

    for (i, (n, v)) in pairs.iter().enumerate() {
        assert!(!n.is_empty() && !n.contains([NV, PS]), "name {n:?}");
        assert!(!v.is_empty() && !v.contains(PS), "value {v:?} of {n:?}");
        // find_property scans the whole text: ask for the first and last names only, so
        // hundreds of pairs do not make every run quadratic.
        if i < 8 || i + 8 >= pairs.len() {
            assert_eq!(
                find_property(&text, n),
                Some(v.as_str()),
                "find_property({n:?})"
            );
        }
    }

    let encoded = encode_properties(&pairs);
    let expected_len: usize = pairs.iter().map(|(n, v)| n.len() + v.len() + 2).sum();
    assert_eq!(encoded.len(), expected_len, "encoded length");
    let back = decode_properties(&encoded);
    assert_eq!(back, pairs, "properties round trip");
    assert_eq!(encode_properties(&back), encoded, "encoding is stable");
});
