//! Load generator and ceilings benchmark (see the README's Performance section).

fn main() {
    eprintln!("identity-bench: not built yet");
    std::process::exit(2);
}
