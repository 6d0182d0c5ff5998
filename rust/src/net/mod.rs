//! Networking shared by the producer and the proxy: TLS on both sides (`tls`), connections as
//! boxed halves (`io`), framed reads and vectored writes (`frames`), and the one multiplexed
//! remoting client (`client`). Neither feature module
//! imports the other; both stand on this one.

pub mod addr;
pub mod client;
pub mod frames;
pub mod io;
pub mod tls;
