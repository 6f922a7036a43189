//! The init must be a static, non-PIE x86_64 executable: the kernel runs
//! /init before any dynamic loader could exist in the initramfs.

use object::elf;
use object::read::elf::{ElfFile64, FileHeader, ProgramHeader};
use object::Endianness;

#[test]
fn init_is_static_x86_64_without_interpreter_or_dynamic_section() {
    let path = keel_tests::init_binary();
    let data = std::fs::read(&path).unwrap();
    let file = ElfFile64::<Endianness>::parse(&*data).expect("init is a 64-bit ELF");
    let header = file.elf_header();
    let endian = file.endian();
    assert_eq!(header.e_machine(endian), elf::EM_X86_64, "not x86_64");
    // ET_EXEC, not ET_DYN: a static-pie would be ET_DYN with a .dynamic.
    assert_eq!(
        header.e_type(endian),
        elf::ET_EXEC,
        "not a fixed-address executable"
    );
    for ph in header.program_headers(endian, &*data).unwrap() {
        let ty = ph.p_type(endian);
        assert_ne!(ty, elf::PT_INTERP, "{} has an interpreter", path.display());
        assert_ne!(
            ty,
            elf::PT_DYNAMIC,
            "{} has a dynamic section",
            path.display()
        );
    }
}
