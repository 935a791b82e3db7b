#[tableflip::main]
async fn main(tf: tokio::runtime::Handle) {
    drop(tf);
}
