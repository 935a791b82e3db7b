//! `flavor = "multi_thread"` with `worker_threads`.

#[tableflip::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    tokio::task::spawn_blocking(|| ()).await.unwrap();
}
