//! Networking shared by the producer and the proxy: TLS on both sides (`tls`), connections as
//! boxed halves (`io`). Neither feature module imports the other; both stand on this one.

pub mod io;
pub mod tls;
