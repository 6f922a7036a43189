//! Every YAML example in the README and in examples/ must be a valid
//! config: the documentation cannot drift from the parser.

use std::path::Path;

fn yaml_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_start()) {
            (None, l) if l.starts_with("```yaml") => current = Some(String::new()),
            (Some(_), l) if l.starts_with("```") => blocks.push(current.take().unwrap()),
            (Some(b), _) => {
                b.push_str(line);
                b.push('\n');
            }
            _ => {}
        }
    }
    blocks
}

#[test]
fn readme_and_example_configs_validate() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let mut docs: Vec<(String, String)> = yaml_blocks(&readme)
        .into_iter()
        .enumerate()
        .map(|(i, b)| (format!("README.md yaml block {i}"), b))
        .collect();
    assert!(!docs.is_empty(), "the README has no yaml example");
    for e in std::fs::read_dir(root.join("examples")).unwrap().flatten() {
        if e.path().extension().is_some_and(|x| x == "yaml") {
            docs.push((
                e.path().display().to_string(),
                std::fs::read_to_string(e.path()).unwrap(),
            ));
        }
    }
    for (name, text) in docs {
        if let Err(e) = keel::config::parse(&text) {
            panic!("{name} does not validate:\n{e}");
        }
    }
}
