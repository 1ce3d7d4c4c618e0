//! ELF facts the entrypoint check needs: the image architecture's machine
//! and default library directories, and a bounded parse of a file's class,
//! machine, `PT_INTERP`, `DT_NEEDED`, `DT_RPATH` and `DT_RUNPATH`.

use object::read::elf::{Dyn as _, FileHeader, ProgramHeader as _};
use object::{Endianness, ReadCache, ReadRef, elf};

use super::error::ElfError;
use super::{MAX_DYNAMIC, ReadSeek};

/// What the image's architecture expects of an ELF file.
#[derive(Clone, Copy, Debug)]
pub(super) struct Machine {
    pub(super) machine: u16,
    pub(super) class64: bool,
    pub(super) triplet: &'static str,
}

pub(super) fn machine_of(arch: &str) -> Option<Machine> {
    let (machine, class64, triplet) = match arch {
        "amd64" => (elf::EM_X86_64, true, "x86_64-linux-gnu"),
        "arm64" => (elf::EM_AARCH64, true, "aarch64-linux-gnu"),
        "arm" => (elf::EM_ARM, false, "arm-linux-gnueabihf"),
        "386" => (elf::EM_386, false, "i386-linux-gnu"),
        "ppc64le" => (elf::EM_PPC64, true, "powerpc64le-linux-gnu"),
        "s390x" => (elf::EM_S390, true, "s390x-linux-gnu"),
        "riscv64" => (elf::EM_RISCV, true, "riscv64-linux-gnu"),
        _ => return None,
    };
    Some(Machine {
        machine,
        class64,
        triplet,
    })
}

pub(super) fn machine_name(m: u16) -> String {
    match m {
        elf::EM_X86_64 => "x86-64".into(),
        elf::EM_AARCH64 => "aarch64".into(),
        elf::EM_ARM => "arm".into(),
        elf::EM_386 => "i386".into(),
        elf::EM_PPC64 => "ppc64".into(),
        elf::EM_S390 => "s390".into(),
        elf::EM_RISCV => "riscv".into(),
        other => format!("machine {other}"),
    }
}

/// The architecture's default library directories, in search order.
pub(super) fn default_dirs(m: &Machine) -> Vec<String> {
    let mut d = vec![
        format!("/lib/{}", m.triplet),
        format!("/usr/lib/{}", m.triplet),
    ];
    if m.class64 {
        d.extend(["/lib64".to_string(), "/usr/lib64".to_string()]);
    }
    d.extend(["/lib".to_string(), "/usr/lib".to_string()]);
    d
}

/// What the dynamic loader needs from one ELF object.
#[derive(Debug, Default)]
pub(super) struct ElfInfo {
    pub(super) machine: u16,
    pub(super) class64: bool,
    pub(super) e_type: u16,
    pub(super) interp: Option<String>,
    pub(super) needed: Vec<String>,
    pub(super) rpath: Vec<String>,
    pub(super) runpath: Vec<String>,
}

/// Parses the loader-relevant parts of an ELF file, reading only what it needs.
pub(super) fn parse_elf(r: Box<dyn ReadSeek + '_>) -> Result<ElfInfo, ElfError> {
    let cache = ReadCache::new(r);
    let data = &cache;
    let ident = data.read_bytes_at(0, 16).map_err(|_| ElfError::TooShort)?;
    match ident[4] {
        elf::ELFCLASS64 => parse_elf_as::<elf::FileHeader64<Endianness>, _>(data),
        elf::ELFCLASS32 => parse_elf_as::<elf::FileHeader32<Endianness>, _>(data),
        c => Err(ElfError::UnknownClass(c)),
    }
}

pub(super) fn parse_elf_as<'d, H: FileHeader<Endian = Endianness>, R: ReadRef<'d>>(
    data: R,
) -> Result<ElfInfo, ElfError> {
    let bad = ElfError::Malformed;
    let h = H::parse(data).map_err(bad)?;
    let e = h.endian().map_err(bad)?;
    let mut info = ElfInfo {
        machine: h.e_machine(e),
        class64: h.is_class_64(),
        e_type: h.e_type(e),
        ..ElfInfo::default()
    };
    let phdrs = h.program_headers(e, data).map_err(bad)?;
    let mut dynamic = None;
    for ph in phdrs {
        match ph.p_type(e) {
            elf::PT_INTERP => {
                let (_, size) = ph.file_range(e);
                if size > 4096 {
                    return Err(ElfError::LongInterp);
                }
                let i = ph.interpreter(e, data).map_err(bad)?.unwrap_or_default();
                info.interp = Some(String::from_utf8_lossy(i).into_owned());
            }
            elf::PT_DYNAMIC => {
                let (_, size) = ph.file_range(e);
                if size > MAX_DYNAMIC {
                    return Err(ElfError::LargeDynamic);
                }
                dynamic = ph.dynamic(e, data).map_err(bad)?;
            }
            _ => {}
        }
    }
    let Some(dynamic) = dynamic else {
        return Ok(info);
    };
    let (mut strtab, mut strsz) = (None, 0u64);
    for d in dynamic {
        let tag: u64 = d.d_tag(e).into();
        let val: u64 = d.d_val(e).into();
        match tag as u32 {
            elf::DT_STRTAB if tag <= u64::from(u32::MAX) => strtab = Some(val),
            elf::DT_STRSZ if tag <= u64::from(u32::MAX) => strsz = val,
            _ => {}
        }
    }
    let Some(addr) = strtab else {
        return Ok(info);
    };
    if strsz > MAX_DYNAMIC {
        return Err(ElfError::LargeStrtab);
    }
    // The table's file offset, from the PT_LOAD that maps it: only the
    // table is read, never the whole segment.
    let mut strings: Option<&[u8]> = None;
    for ph in phdrs {
        let vaddr: u64 = ph.p_vaddr(e).into();
        let filesz: u64 = ph.p_filesz(e).into();
        if ph.p_type(e) == elf::PT_LOAD
            && addr >= vaddr
            && addr.saturating_add(strsz) <= vaddr.saturating_add(filesz)
        {
            let offset: u64 = ph.p_offset(e).into();
            strings = data.read_bytes_at(offset + (addr - vaddr), strsz).ok();
            break;
        }
    }
    let strings = strings.ok_or(ElfError::StrtabOutside)?;
    let get = |off: u64| -> Result<String, ElfError> {
        let tail = usize::try_from(off)
            .ok()
            .and_then(|o| strings.get(o..))
            .ok_or(ElfError::StringOutside)?;
        let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
        Ok(String::from_utf8_lossy(&tail[..end]).into_owned())
    };
    for d in dynamic {
        let tag: u64 = d.d_tag(e).into();
        if tag > u64::from(u32::MAX) {
            continue;
        }
        let val: u64 = d.d_val(e).into();
        match tag as u32 {
            elf::DT_NEEDED => info.needed.push(get(val)?),
            elf::DT_RPATH => info.rpath.extend(get(val)?.split(':').map(str::to_string)),
            elf::DT_RUNPATH => info
                .runpath
                .extend(get(val)?.split(':').map(str::to_string)),
            _ => {}
        }
    }
    Ok(info)
}
