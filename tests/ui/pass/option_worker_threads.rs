//! `worker_threads` alone implies the multi-threaded runtime.

#[tableflip::main(worker_threads = 1)]
async fn main() {
    tokio::spawn(async {}).await.unwrap();
}
