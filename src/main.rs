fn main() {
    println!("pulp-entrypoint");
}
