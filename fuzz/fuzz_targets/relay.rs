//! The relay's decision step (`Relay`: policy, in-flight tracking, deadlines, local replies,
//! draining, idleness) driven by a script of events and checked against a model of what a
//! client may rely on; the script format and the properties are in
//! `rust/src/proxy/relay/script.rs`, which the unit tests run too.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    rmqfast::proxy::fuzz_relay_script(data);
});
