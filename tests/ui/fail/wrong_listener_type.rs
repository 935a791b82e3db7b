#[tableflip::main]
async fn main(#[listener("tcp", "127.0.0.1:0")] http: String) {
    drop(http);
}
