struct Server;

impl Server {
    #[tableflip::main]
    async fn main(self, #[listener("tcp", ":8080")] http: tokio::net::TcpListener) {
        drop(http);
    }
}

fn main() {}
