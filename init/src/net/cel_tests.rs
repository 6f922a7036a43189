//! Selectors on the sysfs fixture trees (`init/tests/fixtures/sysfs/`), and
//! the errors for what Keel's subset does not evaluate.

use std::path::PathBuf;

use super::*;
use crate::net::sysfs::read_links;

fn links(case: &str) -> Vec<LinkFacts> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/sysfs")
        .join(case);
    read_links(&root)
        .into_iter()
        .filter(|l| l.is_physical())
        .collect()
}

/// Names of the physical links of `case` the selector matches.
fn selected(case: &str, expr: &str) -> Vec<String> {
    let e = Expr::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
    links(case)
        .into_iter()
        .filter(|l| e.matches(l))
        .map(|l| l.name)
        .collect()
}

#[test]
fn selectors_on_fixture_trees() {
    // (tree, selector, links it selects)
    let cases: &[(&str, &str, &[&str])] = &[
        // Talos's documented examples.
        (
            "multifunction",
            r#"mac(link.permanent_addr) == "a0:36:9f:00:00:11""#,
            &["eth1"],
        ),
        (
            "multifunction",
            r#"glob("a0:36:9f:*", mac(link.permanent_addr))"#,
            &["eth0", "eth1"],
        ),
        (
            "multifunction",
            r#"link.driver == "igb""#,
            &["eth0", "eth1"],
        ),
        ("usb-pci", r#"link.driver == "igb""#, &[]),
        ("usb-pci", r#"link.driver == "r8152""#, &["eth0"]),
        // hardware_addr is the current MAC; a random one has no
        // permanent address in sysfs.
        (
            "random-mac",
            r#"mac(link.hardware_addr) == "6a:1c:3e:55:01:02""#,
            &["eth0"],
        ),
        (
            "random-mac",
            r#"mac(link.permanent_addr) == "6a:1c:3e:55:01:02""#,
            &[],
        ),
        // Fields, operators, methods.
        (
            "q35-virtio",
            r#"link.pciid == "1AF4:1000" && link.type == 1 && link.kind == """#,
            &["eth0"],
        ),
        ("q35-virtio", r#"link.pci_id.startsWith("1AF4")"#, &["eth0"]),
        (
            "q35-virtio",
            r#"link.bus_path.endsWith("00:02.0") || false"#,
            &["eth0"],
        ),
        ("q35-virtio", r#"!(link.driver.contains("virtio"))"#, &[]),
        (
            "multifunction",
            r#"link.bus_path != "0000:03:00.0" && glob("*0:11", mac(link.hardware_addr))"#,
            &["eth1"],
        ),
        ("multifunction", "true", &["eth0", "eth1"]),
    ];
    for (case, expr, want) in cases {
        assert_eq!(selected(case, expr), *want, "{case}: {expr}");
    }
}

#[test]
fn selector_errors_name_the_part() {
    // (selector, substring of the error, character it points at)
    let cases: &[(&str, &str, usize)] = &[
        (
            "link.speed == 1000",
            "`link.speed` is not a field Keel evaluates",
            6,
        ),
        ("link.driver < \"a\"", "operator `<` is not supported", 13),
        (
            "size(link.driver) == 3",
            "function `size` is not supported",
            1,
        ),
        (
            "link.driver.matches(\"^e\")",
            "method `matches` is not supported",
            13,
        ),
        (
            "link.driver",
            "the selector is a string, expected a bool",
            1,
        ),
        (
            "link.type == \"1\"",
            "cannot compare a int with a string",
            1,
        ),
        (
            "mac(link.driver) == \"x\"",
            "mac() takes a bytes, got a string",
            1,
        ),
        ("link.driver == \"e1000", "unterminated string", 16),
        ("(link.driver == \"a\"", "expected `)`", 20),
        ("link.driver ==", "the selector ends too early", 15),
        (
            "node.name == \"x\"",
            "unknown name `node`, expected `link`",
            1,
        ),
        ("glob(\"a\")", "glob() takes 2 arguments, got 1", 1),
        ("link.driver == 'a' @", "unexpected character '@'", 20),
    ];
    for (expr, want, at) in cases {
        match Expr::parse(expr) {
            Ok(_) => panic!("{expr}: parsed"),
            Err(e) => {
                assert!(e.message.contains(want), "{expr}: {e}");
                assert_eq!(e.at, *at, "{expr}: {e}");
            }
        }
    }
}

#[test]
fn glob_like_go_glob() {
    // (pattern, subject, matches)
    let cases = [
        ("", "", true),
        ("", "a", false),
        ("abc", "abc", true),
        ("abc", "abcd", false),
        ("*", "", true),
        ("a*", "abc", true),
        ("*c", "abc", true),
        ("a*c", "ac", true),
        ("a*b*c", "axxbyyc", true),
        ("a*b*c", "acb", false),
        ("ab*ba", "aba", false),
        ("00:1a:*", "00:1a:2b:3c:4d:5e", true),
    ];
    for (p, s, want) in cases {
        assert_eq!(glob(p, s), want, "glob({p:?}, {s:?})");
    }
}
