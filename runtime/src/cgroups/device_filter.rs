//! Device access control on cgroup v2: an eBPF program.
//!
//! cgroup v1 had a `devices` controller that took `c 1:3 rwm` rules. v2 has
//! none; instead a small BPF program of type `BPF_PROG_TYPE_CGROUP_DEVICE`
//! is attached to the cgroup, and the kernel runs it on every open or mknod
//! of a device node by a process inside, passing the device type, major,
//! minor and the access asked for. The program returns 1 to allow, 0 to
//! deny. See bpf(2) and the kernel's Documentation/bpf/prog_cgroup_device
//! (and runc's libcontainer/cgroups/devices/devicefilter.go, whose scheme
//! this follows).
//!
//! The program is generated from the rules: one block per rule, checked from
//! the last rule to the first so that, as with v1, a later rule overrides an
//! earlier one; the first block that matches returns its verdict; falling
//! off the end denies.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use super::{CgroupError, Result};

/// One device rule, already normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// 'a' (all), 'b' or 'c'.
    pub kind: char,
    /// `None` is the `*` wildcard.
    pub major: Option<u32>,
    /// `None` is the `*` wildcard.
    pub minor: Option<u32>,
    /// Any of "rwm".
    pub access: String,
    /// Allow (`true`) or deny the access.
    pub allow: bool,
}

impl Rule {
    /// The rule as a v1 `devices.allow`/`devices.deny` line.
    pub fn line(&self) -> String {
        if self.kind == 'a' {
            return "a".into();
        }
        let n = |v: Option<u32>| v.map_or("*".to_string(), |v| v.to_string());
        format!(
            "{} {}:{} {}",
            self.kind,
            n(self.major),
            n(self.minor),
            self.access
        )
    }

    /// Parse a v1-style rule line (`c 1:3 rwm`, `a`), as the defaults are written.
    pub fn parse(line: &str, allow: bool) -> Option<Rule> {
        let mut it = line.split_whitespace();
        let kind = it.next()?.chars().next()?;
        if kind == 'a' {
            return Some(Rule {
                kind,
                major: None,
                minor: None,
                access: "rwm".into(),
                allow,
            });
        }
        let (maj, min) = it.next()?.split_once(':')?;
        let num = |s: &str| {
            if s == "*" {
                Some(None)
            } else {
                s.parse().ok().map(Some)
            }
        };
        Some(Rule {
            kind,
            major: num(maj)?,
            minor: num(min)?,
            access: it.next().unwrap_or("rwm").into(),
            allow,
        })
    }
}

// eBPF opcodes used (see linux/bpf.h and linux/bpf_common.h).
const LDX_MEM_W: u8 = 0x61; // dst = *(u32 *)(src + off)
const ALU32_AND_K: u8 = 0x54; // dst &= imm
const ALU32_RSH_K: u8 = 0x74; // dst >>= imm
const ALU32_MOV_X: u8 = 0xbc; // dst = src
const ALU64_MOV_K: u8 = 0xb7; // dst = imm
const JMP_JNE_K: u8 = 0x55; // if dst != imm goto +off
const JMP_JNE_X: u8 = 0x5d; // if dst != src goto +off
const JMP_EXIT: u8 = 0x95;

// struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }
// access_type = (access << 16) | type.
const DEVCG_DEV_BLOCK: i32 = 1;
const DEVCG_DEV_CHAR: i32 = 2;
const DEVCG_ACC_MKNOD: i32 = 1;
const DEVCG_ACC_READ: i32 = 2;
const DEVCG_ACC_WRITE: i32 = 4;

/// One `struct bpf_insn`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    regs: u8, // dst in the low nibble, src in the high nibble
    off: i16,
    imm: i32,
}

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | (dst & 0xf),
        off,
        imm,
    }
}

/// Build the program for `rules` (in spec order).
pub fn program(rules: &[Rule]) -> Vec<Insn> {
    // r2 = device type, r3 = access requested, r4 = major, r5 = minor.
    let mut p = vec![
        insn(LDX_MEM_W, 2, 1, 0, 0),
        insn(ALU32_AND_K, 2, 0, 0, 0xffff),
        insn(LDX_MEM_W, 3, 1, 0, 0),
        insn(ALU32_RSH_K, 3, 0, 0, 16),
        insn(LDX_MEM_W, 4, 1, 4, 0),
        insn(LDX_MEM_W, 5, 1, 8, 0),
    ];
    for rule in rules.iter().rev() {
        let mut block = Vec::new();
        // Each check jumps past the rest of the block when it does not match;
        // the offsets are filled in once the block's length is known.
        let mut jumps = Vec::new();
        match rule.kind {
            'b' => {
                jumps.push(block.len());
                block.push(insn(JMP_JNE_K, 2, 0, 0, DEVCG_DEV_BLOCK));
            }
            'c' => {
                jumps.push(block.len());
                block.push(insn(JMP_JNE_K, 2, 0, 0, DEVCG_DEV_CHAR));
            }
            _ => {}
        }
        let mut bits = 0;
        for (c, b) in [
            ('r', DEVCG_ACC_READ),
            ('w', DEVCG_ACC_WRITE),
            ('m', DEVCG_ACC_MKNOD),
        ] {
            if rule.access.contains(c) {
                bits |= b;
            }
        }
        if bits != DEVCG_ACC_READ | DEVCG_ACC_WRITE | DEVCG_ACC_MKNOD {
            // The access asked for must be within the rule's: (r3 & bits) == r3.
            block.push(insn(ALU32_MOV_X, 1, 3, 0, 0));
            block.push(insn(ALU32_AND_K, 1, 0, 0, bits));
            jumps.push(block.len());
            block.push(insn(JMP_JNE_X, 1, 3, 0, 0));
        }
        if let Some(m) = rule.major {
            jumps.push(block.len());
            block.push(insn(JMP_JNE_K, 4, 0, 0, m as i32));
        }
        if let Some(m) = rule.minor {
            jumps.push(block.len());
            block.push(insn(JMP_JNE_K, 5, 0, 0, m as i32));
        }
        block.push(insn(ALU64_MOV_K, 0, 0, 0, i32::from(rule.allow)));
        block.push(insn(JMP_EXIT, 0, 0, 0, 0));
        let len = block.len();
        let unconditional = jumps.is_empty();
        for j in jumps {
            block[j].off = (len - j - 1) as i16;
        }
        p.extend(block);
        if unconditional {
            // This rule matches every access: earlier rules can never be
            // reached (and the verifier refuses unreachable code).
            return p;
        }
    }
    p.push(insn(ALU64_MOV_K, 0, 0, 0, 0));
    p.push(insn(JMP_EXIT, 0, 0, 0, 0));
    p
}

const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// The leading fields of `union bpf_attr` for BPF_PROG_LOAD (the rest zero).
#[repr(C)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// The fields of `union bpf_attr` for BPF_PROG_ATTACH.
#[repr(C)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

fn bpf_err(what: &str, path: &Path) -> CgroupError {
    CgroupError::Write {
        path: path.to_path_buf(),
        value: what.to_string(),
        err: std::io::Error::last_os_error(),
    }
}

/// Load the program for `rules` and attach it to the cgroup directory `dir`.
pub fn attach(dir: &Path, rules: &[Rule]) -> Result<()> {
    crate::explain!("bpf(2)", "loading a BPF_PROG_TYPE_CGROUP_DEVICE program with {} rules and attaching it to {}: the kernel asks it before any device is opened", rules.len(), dir.display());
    let prog = program(rules);
    let mut name = [0u8; 16];
    name[..12].copy_from_slice(b"skiff_devcg\0");
    // Load without a verifier log first: with a log, some kernels fail a
    // load whose log does not fit (ENOSPC) although the program is fine.
    // Only on failure load again with a log, to say why.
    let load = |log: Option<&mut Vec<u8>>| -> i64 {
        let (log_level, log_size, log_buf) = match log {
            Some(l) => (1, l.len() as u32, l.as_mut_ptr() as u64),
            None => (0, 0, 0),
        };
        let attr = ProgLoadAttr {
            prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
            insn_cnt: prog.len() as u32,
            insns: prog.as_ptr() as u64,
            license: c"Apache".as_ptr() as u64,
            log_level,
            log_size,
            log_buf,
            kern_version: 0,
            prog_flags: 0,
            prog_name: name,
            prog_ifindex: 0,
            expected_attach_type: 0,
        };
        // SAFETY: bpf(2) reads `attr` and the program and license it points
        // to, and writes at most log_size bytes to the log buffer; all
        // outlive the call.
        unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_PROG_LOAD,
                &attr as *const ProgLoadAttr,
                std::mem::size_of::<ProgLoadAttr>(),
            )
        }
    };
    let mut fd = load(None);
    if fd < 0 {
        let mut e = bpf_err("load device filter program", dir);
        let mut log = vec![0u8; 1 << 16];
        fd = load(Some(&mut log));
        if fd < 0 {
            let verifier = String::from_utf8_lossy(&log)
                .trim_end_matches('\0')
                .trim()
                .to_string();
            if let CgroupError::Write { value, .. } = &mut e {
                if !verifier.is_empty() {
                    value.push_str(&format!(" (verifier: {verifier})"));
                }
            }
            return Err(e);
        }
    }
    // SAFETY: the kernel returned a new descriptor we now own.
    let prog_fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let cg = std::fs::File::open(dir).map_err(|err| CgroupError::Read {
        path: dir.to_path_buf(),
        err,
    })?;
    let attach = ProgAttachAttr {
        target_fd: cg.as_raw_fd() as u32,
        attach_bpf_fd: prog_fd.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        replace_bpf_fd: 0,
    };
    // SAFETY: as above, `attach` lives for the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_ATTACH,
            &attach as *const ProgAttachAttr,
            std::mem::size_of::<ProgAttachAttr>(),
        )
    };
    if rc < 0 {
        return Err(bpf_err("attach device filter program", dir));
    }
    // The attachment holds its own reference: the program lives as long as
    // the cgroup, and our descriptors can close.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Run the program on a context, interpreting the few opcodes it uses.
    fn eval(p: &[Insn], typ: i32, access: i32, major: u32, minor: u32) -> i64 {
        let ctx = [((access << 16) | typ) as u32, major, minor];
        let mut r = [0i64; 11];
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            pc += 1;
            match i.code {
                LDX_MEM_W => r[dst] = i64::from(ctx[(i.off / 4) as usize]),
                ALU32_AND_K => r[dst] = ((r[dst] as u32) & (i.imm as u32)) as i64,
                ALU32_RSH_K => r[dst] = ((r[dst] as u32) >> i.imm) as i64,
                ALU32_MOV_X => r[dst] = (r[src] as u32) as i64,
                ALU64_MOV_K => r[dst] = i64::from(i.imm),
                JMP_JNE_K if r[dst] != i64::from(i.imm) => pc += i.off as usize,
                JMP_JNE_X if r[dst] != r[src] => pc += i.off as usize,
                JMP_JNE_K | JMP_JNE_X => {}
                JMP_EXIT => return r[0],
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    #[test]
    fn later_rules_win_and_wildcards_match() {
        let rules = vec![
            Rule::parse("a", false).unwrap(),
            Rule::parse("c 1:3 rwm", true).unwrap(),
            Rule::parse("c 136:* rw", true).unwrap(),
            Rule::parse("b 8:0 r", true).unwrap(),
            Rule::parse("c 1:3 w", false).unwrap(),
        ];
        let p = program(&rules);
        let (c, b) = (DEVCG_DEV_CHAR, DEVCG_DEV_BLOCK);
        let (r, w, m) = (DEVCG_ACC_READ, DEVCG_ACC_WRITE, DEVCG_ACC_MKNOD);
        assert_eq!(eval(&p, c, r, 1, 3), 1, "read /dev/null");
        assert_eq!(
            eval(&p, c, w, 1, 3),
            0,
            "the last rule denies writes to /dev/null"
        );
        assert_eq!(eval(&p, c, r | w, 136, 7), 1, "any pty");
        assert_eq!(eval(&p, c, m, 136, 7), 0, "no mknod of ptys");
        assert_eq!(eval(&p, b, r, 8, 0), 1);
        assert_eq!(eval(&p, b, w, 8, 0), 0);
        assert_eq!(eval(&p, c, r, 10, 229), 0, "default deny");
        let allow_all = program(&[Rule::parse("a", true).unwrap()]);
        assert_eq!(eval(&allow_all, b, r | w | m, 259, 1), 1);
    }
}
