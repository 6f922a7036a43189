//! Keel's multi-call binary: PID 1, the kernel's modprobe helper, or the
//! operator CLI, chosen by how it was started. All logic lives in the library.

fn main() {
    keel::entry(std::env::args_os().collect())
}
