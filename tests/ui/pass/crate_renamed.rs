//! `crate = "..."` when the facade is reachable under another name.

extern crate tableflip as renamed;

#[renamed::main(crate = "renamed", drain_timeout = "1s")]
async fn main(
    #[listener("tcp", "127.0.0.1:0")] http: tokio::net::TcpListener,
    tf: renamed::Handle,
) {
    drop((http, tf));
}
