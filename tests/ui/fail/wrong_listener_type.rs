#[tableflip::main]
async fn main(
    #[listener("tcp", "127.0.0.1:0")] http: String,
    #[listener("tcp", "127.0.0.1:1")] admin: std::vec::Vec<u8>,
) {
    drop((http, admin));
}
