//! `skiff-agent image ...`: import, export, list, inspect, remove, prune and
//! turn an image into a bundle `skiff run` can run.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::json;

use skiff_images::ingest::IngestOptions;
use skiff_images::manifest::Platform;
use skiff_images::oci_layout::{self, Location};
use skiff_images::registry::auth::Credentials;
use skiff_images::registry::pull::{self, Progress, PullOptions};
use skiff_images::registry::ClientOptions;
use skiff_images::runtime_spec::{self, SpecOptions};
use skiff_images::store::{ImageRecord, Store, DEFAULT_DATA_DIR};
use skiff_images::unpack::Limits;
use skiff_images::{snapshot, Reference};

#[derive(Args)]
pub struct ImageArgs {
    /// Where images are stored
    #[arg(long, global = true, default_value = DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: ImageCommand,
}

#[derive(Args)]
struct LimitArgs {
    /// Largest uncompressed layer accepted, in bytes
    #[arg(long, default_value_t = Limits::default().max_size)]
    max_layer_size: u64,
    /// Most entries accepted in one layer
    #[arg(long, default_value_t = Limits::default().max_entries)]
    max_entries: u64,
    /// Platform to pick from a multi-platform image (os/arch[/variant])
    #[arg(long)]
    platform: Option<String>,
}

#[derive(Subcommand)]
enum ImageCommand {
    /// Pull an image from a registry (busybox, 127.0.0.1:5000/team/app:v1, name@sha256:...)
    Pull {
        reference: String,
        #[command(flatten)]
        limits: LimitArgs,
        /// Reach this registry (host[:port]) over plain HTTP; loopback ones always are
        #[arg(long)]
        insecure: Vec<String>,
        /// Per-registry CA and client certificates: DIR/<host[:port]>/{ca.crt,client.cert,client.key}
        #[arg(long, default_value = "/etc/skiff/certs.d")]
        hosts_dir: PathBuf,
        /// Credentials as user:password (default: from ~/.docker/config.json)
        #[arg(long)]
        creds: Option<String>,
        /// No progress bars
        #[arg(short, long)]
        quiet: bool,
        /// Layers downloaded at once
        #[arg(long, default_value_t = 4)]
        parallel: usize,
    },
    /// Import an image from an OCI layout (oci:DIR[:TAG]) or archive (oci-archive:FILE[:TAG])
    Import {
        location: String,
        /// Name to store it under (default: localhost/<dir name>:<tag>)
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Export an image to an OCI layout (oci:DIR[:TAG]) or archive (oci-archive:FILE[:TAG])
    Export { image: String, location: String },
    /// List images
    #[command(alias = "list")]
    Ls {
        /// Names only
        #[arg(short, long)]
        quiet: bool,
        /// table or json
        #[arg(long, default_value = "table", value_parser = ["table", "json"])]
        format: String,
    },
    /// Show an image's record, manifest and config as JSON
    Inspect { image: String },
    /// Remove images (their layers stay until prune)
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Remove blobs and layers no image uses
    Prune,
    /// Write an OCI bundle (rootfs + config.json) for an image into DIR
    Bundle {
        image: String,
        dir: PathBuf,
        /// Copy the files instead of mounting an overlay
        #[arg(long)]
        copy: bool,
        /// Hostname for the container
        #[arg(long)]
        hostname: Option<String>,
        /// Allocate a terminal
        #[arg(short, long)]
        tty: bool,
        /// Leave out the default seccomp profile
        #[arg(long)]
        no_seccomp: bool,
        /// Arguments replacing the image's Cmd
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Undo `bundle`: unmount the rootfs and remove the bundle
    Unbundle { dir: PathBuf },
}

pub fn run(a: &ImageArgs) -> Result<()> {
    let store = Store::open(&a.data_dir)?;
    match &a.command {
        ImageCommand::Pull {
            reference,
            limits,
            insecure,
            hosts_dir,
            creds,
            quiet,
            parallel,
        } => {
            let r = Reference::parse(reference)?;
            let creds = match creds {
                Some(c) => Some(Credentials::parse(c).context("--creds: want user:password")?),
                None => None,
            };
            let opts = PullOptions {
                client: ClientOptions {
                    insecure: insecure.clone(),
                    hosts_dir: Some(hosts_dir.clone()),
                    creds,
                    docker_config: None,
                    attempts: 4,
                },
                ingest: ingest_options(limits)?,
                progress: if *quiet {
                    Progress::Quiet
                } else {
                    Progress::Auto
                },
                parallel: *parallel,
            };
            let rec = pull::pull(&store, &r, &opts)?;
            println!("{} {}", rec.name, rec.manifest);
        }
        ImageCommand::Import {
            location,
            name,
            limits,
        } => {
            let loc = Location::parse(location)?;
            let name = match name {
                Some(n) => Reference::parse(n)?.to_string(),
                None => default_name(&loc)?,
            };
            let opts = ingest_options(limits)?;
            let _gc = store.gc_guard()?;
            let _lock = store.lock()?;
            let rec = oci_layout::import(&store, &loc, &name, &opts)?;
            println!("{} {}", rec.name, rec.manifest);
        }
        ImageCommand::Export { image, location } => {
            let rec = find(&store, image)?;
            let loc = Location::parse(location)?;
            let tag = Reference::parse(&rec.name)
                .ok()
                .and_then(|r| r.tag)
                .unwrap_or_else(|| "latest".into());
            oci_layout::export(&store, &rec, &loc, &tag)?;
        }
        ImageCommand::Ls { quiet, format } => {
            let images = store.images()?;
            // Manifests and configs are small: each is checked against its
            // digest, so an edited or truncated one is reported here, not
            // when a container is made from it.
            let mut damaged = 0;
            for i in &images {
                if let Err(e) = store
                    .read_blob(&i.manifest)
                    .and_then(|_| store.read_blob(&i.config))
                {
                    eprintln!("image {}: {e}", i.name);
                    damaged += 1;
                }
            }
            if *quiet {
                for i in &images {
                    println!("{}", i.name);
                }
            } else if format == "json" {
                println!("{}", serde_json::to_string_pretty(&images)?);
            } else {
                println!("{:<50} {:<14} {:>10}  STORED", "NAME", "MANIFEST", "SIZE");
                for i in &images {
                    println!(
                        "{:<50} {:<14} {:>10}  {}",
                        i.name,
                        &i.manifest.hex()[..12],
                        human(i.size),
                        i.stored
                    );
                }
            }
            if damaged > 0 {
                bail!("{damaged} damaged image(s) in {}", store.root().display());
            }
        }
        ImageCommand::Inspect { image } => {
            let rec = find(&store, image)?;
            let manifest: serde_json::Value =
                serde_json::from_slice(&store.read_blob(&rec.manifest)?)
                    .with_context(|| format!("parse manifest blob {}", rec.manifest))?;
            let config: serde_json::Value = serde_json::from_slice(&store.read_blob(&rec.config)?)
                .with_context(|| format!("parse config blob {}", rec.config))?;
            let out = json!({"record": rec, "manifest": manifest, "config": config});
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        ImageCommand::Rm { images } => {
            let _lock = store.lock()?;
            for i in images {
                let rec = store.remove_image(&lookup_name(i))?;
                println!("{}", rec.name);
            }
        }
        ImageCommand::Prune => {
            let _gc = store.gc_exclusive()?;
            let _lock = store.lock()?;
            let p = store.prune()?;
            for d in &p.layers {
                println!("layer {d}");
            }
            for d in &p.blobs {
                println!("blob {d}");
            }
        }
        ImageCommand::Bundle {
            image,
            dir,
            copy,
            hostname,
            tty,
            no_seccomp,
            args,
        } => bundle(
            &store,
            image,
            dir,
            *copy,
            hostname.clone(),
            *tty,
            *no_seccomp,
            args,
        )?,
        ImageCommand::Unbundle { dir } => {
            snapshot::release(dir)?;
            store.remove_bundle_ref(&std::path::absolute(dir)?);
        }
    }
    Ok(())
}

fn ingest_options(l: &LimitArgs) -> Result<IngestOptions> {
    Ok(IngestOptions {
        platform: match &l.platform {
            Some(p) => Platform::parse(p)?,
            None => Platform::host(),
        },
        limits: Limits {
            max_size: l.max_layer_size,
            max_entries: l.max_entries,
        },
    })
}

/// `localhost/<last path component>:<tag or latest>` for an unnamed import.
fn default_name(loc: &Location) -> Result<String> {
    let (path, tag) = match loc {
        Location::Dir { path, tag } | Location::Archive { path, tag } => (path, tag),
    };
    let base = path
        .file_stem()
        .map(|s| s.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let base: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let name = format!(
        "localhost/{}:{}",
        base.trim_matches('-'),
        tag.as_deref().unwrap_or("latest")
    );
    Ok(Reference::parse(&name)
        .with_context(|| {
            format!(
                "cannot make an image name from {}: give one with --name",
                path.display()
            )
        })?
        .to_string())
}

/// A name as given, normalised if it parses as a reference (so `busybox`
/// finds `docker.io/library/busybox:latest`); digests pass through.
fn lookup_name(s: &str) -> String {
    Reference::parse(s)
        .map(|r| r.to_string())
        .unwrap_or_else(|_| s.to_string())
}

fn find(store: &Store, image: &str) -> Result<ImageRecord> {
    match store.find(&lookup_name(image)) {
        Ok(r) => Ok(r),
        Err(_) => Ok(store.find(image)?),
    }
}

fn human(n: u64) -> String {
    let mut v = n as f64;
    for unit in ["B", "kB", "MB", "GB"] {
        if v < 1000.0 {
            return format!("{v:.1} {unit}");
        }
        v /= 1000.0;
    }
    format!("{v:.1} TB")
}

fn cgroup_v2() -> bool {
    nix::sys::statfs::statfs("/sys/fs/cgroup")
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
}

#[allow(clippy::too_many_arguments)]
fn bundle(
    store: &Store,
    image: &str,
    dir: &Path,
    copy: bool,
    hostname: Option<String>,
    terminal: bool,
    no_seccomp: bool,
    args: &[String],
) -> Result<()> {
    let _gc = store.gc_guard()?;
    // Relative to where we were called from, whatever changes later.
    let dir = &std::path::absolute(dir).with_context(|| format!("bundle {}", dir.display()))?;
    let rec = find(store, image)?;
    store.read_blob(&rec.manifest)?;
    let config: oci_spec::image::ImageConfiguration =
        serde_json::from_slice(&store.read_blob(&rec.config)?)
            .with_context(|| format!("parse config blob {}", rec.config))?;
    let rootfs = snapshot::prepare(store, &rec, dir, copy)?;
    let written = (|| -> Result<()> {
        let opts = SpecOptions {
            args: (!args.is_empty()).then(|| args.to_vec()),
            hostname,
            cgroup_v2: cgroup_v2(),
            terminal,
            image_name: Some(rec.name.clone()),
        };
        let mut spec = runtime_spec::from_image(&config, &rootfs, &opts)?;
        if !no_seccomp {
            spec = skiff_runtime::spec::with_default_seccomp(spec);
        }
        let path = dir.join("config.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&spec)?)
            .with_context(|| format!("write {}", path.display()))?;
        Ok(())
    })();
    if let Err(e) = written {
        let _ = snapshot::release(dir);
        bail!(e);
    }
    // Its layers stay until `unbundle`, whatever `rm` and `prune` do.
    store.add_bundle_ref(dir, &rec.chain)?;
    Ok(())
}
