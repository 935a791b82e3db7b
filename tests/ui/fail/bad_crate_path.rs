#[tableflip::main(crate = "not a path")]
async fn main(#[listener("tcp", ":8080")] http: String) {
    drop(http);
}
