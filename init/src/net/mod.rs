//! Network links. Naming, selectors and configuration build on this.

use std::path::Path;

/// Names of the links the kernel has, from `<sys_root>/class/net`, sorted.
pub fn link_names(sys_root: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(sys_root.join("class/net"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_names_from_fixture() {
        let t = tempfile::tempdir().unwrap();
        for l in ["lo", "eth1", "eth0"] {
            std::fs::create_dir_all(t.path().join("class/net").join(l)).unwrap();
        }
        assert_eq!(link_names(t.path()), vec!["eth0", "eth1", "lo"]);
        assert!(link_names(Path::new("/nonexistent")).is_empty());
    }
}
