#[tableflip::main]
async fn main() -> impl std::fmt::Debug {
    0
}
