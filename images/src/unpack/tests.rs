//! Layer unpacking against crafted archives (run as root: ownership, device
//! nodes and trusted.* xattrs need it).

use super::*;
use std::os::unix::fs::MetadataExt;

/// A header for `path` written byte for byte (tar::Builder refuses `..`,
/// which is exactly what hostile layers contain).
fn raw_header(path: &str, kind: tar::EntryType, size: u64, link: Option<&str>) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    {
        let name = &mut h.as_old_mut().name;
        name[..path.len()].copy_from_slice(path.as_bytes());
    }
    if let Some(l) = link {
        let ln = &mut h.as_old_mut().linkname;
        ln[..l.len()].copy_from_slice(l.as_bytes());
    }
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(if kind == tar::EntryType::Directory {
        0o755
    } else {
        0o644
    });
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_600_000_000);
    h.set_cksum();
    h
}

struct Tar(tar::Builder<Vec<u8>>);

impl Tar {
    fn new() -> Tar {
        Tar(tar::Builder::new(Vec::new()))
    }
    fn raw(mut self, path: &str, kind: tar::EntryType, data: &[u8], link: Option<&str>) -> Tar {
        let h = raw_header(path, kind, data.len() as u64, link);
        self.0.append(&h, data).unwrap();
        self
    }
    fn dir(self, p: &str) -> Tar {
        self.raw(p, tar::EntryType::Directory, b"", None)
    }
    fn file(self, p: &str, data: &[u8]) -> Tar {
        self.raw(p, tar::EntryType::Regular, data, None)
    }
    fn symlink(self, p: &str, target: &str) -> Tar {
        self.raw(p, tar::EntryType::Symlink, b"", Some(target))
    }
    fn hardlink(self, p: &str, target: &str) -> Tar {
        self.raw(p, tar::EntryType::Link, b"", Some(target))
    }
    fn bytes(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

/// A scratch area: `layer/` to unpack into and `outside/` next to it, which
/// must never change.
struct Scratch {
    _dir: tempfile::TempDir,
    layer: PathBuf,
    outside: PathBuf,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        let layer = dir.path().join("layer");
        let outside = dir.path().join("outside");
        std::fs::create_dir(&layer).unwrap();
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), "precious").unwrap();
        Scratch {
            _dir: dir,
            layer,
            outside,
        }
    }

    fn unpack(&self, tar: &[u8]) -> Result<Unpacked, UnpackError> {
        unpack(tar, Compression::None, &self.layer, &Limits::default())
    }

    fn outside_untouched(&self) {
        let names: Vec<_> = std::fs::read_dir(&self.outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["keep"]);
        assert_eq!(
            std::fs::read_to_string(self.outside.join("keep")).unwrap(),
            "precious"
        );
    }
}

#[test]
fn ordinary_entries_keep_their_metadata() {
    let s = Scratch::new();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o750);
    h.set_uid(1000);
    h.set_gid(1001);
    h.set_mtime(1_500_000_000);
    h.set_size(0);
    b.append_data(&mut h, "etc/", &[][..]).unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o4755);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_400_000_000);
    h.set_size(5);
    b.append_pax_extensions([("SCHILY.xattr.trusted.skiff", &b"yes"[..])])
        .unwrap();
    b.append_data(&mut h, "etc/suid", &b"hello"[..]).unwrap();
    let tar = Tar(b)
        .symlink("etc/link", "/nowhere")
        .hardlink("etc/hard", "etc/suid")
        .raw("dev-null", tar::EntryType::Char, b"", None)
        .raw("fifo", tar::EntryType::Fifo, b"", None)
        .file("implicit/parents/file", b"x")
        .bytes();
    let out = s.unpack(&tar).unwrap();
    assert_eq!(out.diff_id, Digest::of(&tar));
    assert_eq!(out.size, tar.len() as u64);
    let l = &s.layer;
    let m = std::fs::metadata(l.join("etc")).unwrap();
    assert_eq!(
        (m.mode() & 0o7777, m.uid(), m.gid(), m.mtime()),
        (0o750, 1000, 1001, 1_500_000_000)
    );
    let m = std::fs::metadata(l.join("etc/suid")).unwrap();
    assert_eq!((m.mode() & 0o7777, m.mtime()), (0o4755, 1_400_000_000));
    assert_eq!(std::fs::read(l.join("etc/suid")).unwrap(), b"hello");
    let x = xattr_get(&l.join("etc/suid"), "trusted.skiff");
    assert_eq!(x.as_deref(), Some(&b"yes"[..]));
    assert_eq!(
        std::fs::read_link(l.join("etc/link")).unwrap(),
        Path::new("/nowhere")
    );
    assert_eq!(
        std::fs::metadata(l.join("etc/hard")).unwrap().ino(),
        m.ino()
    );
    assert!(std::fs::metadata(l.join("fifo"))
        .unwrap()
        .file_type()
        .is_fifo_like());
    assert_eq!(
        std::fs::read(l.join("implicit/parents/file")).unwrap(),
        b"x"
    );
    s.outside_untouched();
}

trait FifoLike {
    fn is_fifo_like(&self) -> bool;
}
impl FifoLike for std::fs::FileType {
    fn is_fifo_like(&self) -> bool {
        std::os::unix::fs::FileTypeExt::is_fifo(self)
    }
}

fn xattr_get(p: &Path, name: &str) -> Option<Vec<u8>> {
    let path = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: valid C strings and a buffer of the given length.
    let r = unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            n.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    (r >= 0).then(|| buf[..r as usize].to_vec())
}

#[test]
fn whiteouts_become_overlayfs_whiteouts() {
    let s = Scratch::new();
    let tar = Tar::new()
        .dir("etc")
        .file("etc/.wh.passwd", b"")
        .dir("var/cache")
        .file("var/cache/.wh..wh..opq", b"")
        .bytes();
    s.unpack(&tar).unwrap();
    let m = std::fs::symlink_metadata(s.layer.join("etc/passwd")).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(
        &m.file_type()
    ));
    assert_eq!(m.rdev(), 0);
    assert!(!s.layer.join("etc/.wh.passwd").exists());
    assert_eq!(
        xattr_get(&s.layer.join("var/cache"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert!(!s.layer.join("var/cache/.wh..wh..opq").exists());
}

#[test]
fn compressed_layers_have_the_uncompressed_diff_id() {
    use std::io::Write;
    let tar = Tar::new().file("a", b"some content").bytes();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    let zst = zstd::encode_all(&tar[..], 3).unwrap();
    for (blob, c) in [(&gz, Compression::Gzip), (&zst, Compression::Zstd)] {
        assert_eq!(Compression::sniff(blob), c);
        let s = Scratch::new();
        let out = unpack(&blob[..], c, &s.layer, &Limits::default()).unwrap();
        assert_eq!(out.diff_id, Digest::of(&tar));
        assert_eq!(std::fs::read(s.layer.join("a")).unwrap(), b"some content");
    }
}

/// Each hostile archive is refused with an error naming the entry, and
/// nothing outside the layer directory changes.
#[test]
fn escapes_are_refused() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "../outside/evil",
            Tar::new().file("../outside/evil", b"x").bytes(),
        ),
        (
            "a/../../outside/evil",
            Tar::new()
                .dir("a")
                .file("a/../../outside/evil", b"x")
                .bytes(),
        ),
        (
            "link/evil",
            Tar::new()
                .symlink("link", "../outside")
                .file("link/evil", b"x")
                .bytes(),
        ),
        (
            "abs/keep",
            Tar::new()
                .symlink("abs", "/")
                .file("abs/keep", b"x")
                .bytes(),
        ),
        (
            "dir/sub/evil",
            Tar::new()
                .dir("dir")
                .symlink("dir/sub", "../..")
                .file("dir/sub/evil", b"x")
                .bytes(),
        ),
        ("hl", Tar::new().hardlink("hl", "../outside/keep").bytes()),
        (
            "hl2",
            Tar::new()
                .symlink("up", "..")
                .hardlink("hl2", "up/outside/keep")
                .bytes(),
        ),
        ("hl3", Tar::new().hardlink("hl3", "/etc/passwd").bytes()),
        ("x/.wh..", Tar::new().dir("x").file("x/.wh..", b"").bytes()),
        (
            "dev/evil",
            Tar::new()
                .symlink("dev", "../outside")
                .raw("dev/evil", tar::EntryType::Fifo, b"", None)
                .bytes(),
        ),
    ];
    for (entry, tar) in cases {
        let s = Scratch::new();
        let err = s.unpack(&tar).expect_err(entry).to_string();
        assert!(err.contains(entry), "{entry}: {err}");
        s.outside_untouched();
    }
}

#[test]
fn decompression_bombs_stop_at_the_limit() {
    use std::io::Write;
    let big = vec![0u8; 8 << 20];
    let tar = Tar::new().file("zeros", &big).bytes();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    assert!(gz.len() < 64 << 10, "a bomb: {} bytes compressed", gz.len());
    let s = Scratch::new();
    let limits = Limits {
        max_size: 1 << 20,
        max_entries: 100,
    };
    let err = unpack(&gz[..], Compression::Gzip, &s.layer, &limits).unwrap_err();
    assert!(matches!(err, UnpackError::TooLarge(_)), "{err}");

    let mut many = Tar::new();
    for i in 0..20 {
        many = many.file(&format!("f{i}"), b"");
    }
    let limits = Limits {
        max_size: 1 << 20,
        max_entries: 10,
    };
    let s = Scratch::new();
    let err = unpack(&many.bytes()[..], Compression::None, &s.layer, &limits).unwrap_err();
    assert!(matches!(err, UnpackError::TooManyEntries(10)), "{err}");
}

#[test]
fn sparse_files_stay_sparse() {
    let mut data = vec![0u8; 4 << 20];
    data.extend_from_slice(b"end");
    let s = Scratch::new();
    s.unpack(&Tar::new().file("sparse", &data).bytes()).unwrap();
    let m = std::fs::metadata(s.layer.join("sparse")).unwrap();
    assert_eq!(m.len(), data.len() as u64);
    assert!(
        m.blocks() * 512 < 1 << 20,
        "{} blocks allocated",
        m.blocks()
    );
}

#[test]
fn later_entries_replace_earlier_ones() {
    let s = Scratch::new();
    let tar = Tar::new()
        .file("a", b"old")
        .file("a", b"new")
        .dir("d")
        .file("d/inner", b"x")
        .file("d", b"now a file")
        .symlink("l", "a")
        .file("l", b"plain")
        .bytes();
    s.unpack(&tar).unwrap();
    assert_eq!(std::fs::read(s.layer.join("a")).unwrap(), b"new");
    assert_eq!(std::fs::read(s.layer.join("d")).unwrap(), b"now a file");
    assert_eq!(std::fs::read(s.layer.join("l")).unwrap(), b"plain");
    assert!(!std::fs::symlink_metadata(s.layer.join("l"))
        .unwrap()
        .file_type()
        .is_symlink());
}
