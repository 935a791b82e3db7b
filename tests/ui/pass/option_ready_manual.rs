//! `ready = "manual"`: the body says when.

#[tableflip::main(ready = "manual")]
async fn main(
    #[listener("tcp", "127.0.0.1:0")] http: tokio::net::TcpListener,
    tf: tableflip::Handle,
) -> Result<(), tableflip::Error> {
    drop(http);
    tf.ready()
}
