//! `images.json`: which names point at which manifest, and `prune`, which
//! removes the blobs and layers no record (and no bundle) refers to.

use std::collections::BTreeSet;
use std::fs;

use super::*;

impl Store {
    fn images_path(&self) -> PathBuf {
        self.root.join("images.json")
    }

    fn load_images(&self) -> Result<Images> {
        let p = self.images_path();
        match fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| StoreError::Corrupt {
                path: p,
                err: e.to_string(),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Images::default()),
            Err(e) => Err(io_err("read", &p)(e)),
        }
    }

    fn save_images(&self, imgs: &Images) -> Result<()> {
        let p = self.images_path();
        let tmp = self.root.join("tmp").join(tmp_name("images"));
        let data = serde_json::to_vec_pretty(imgs).expect("image records serialise");
        let mut f = File::create(&tmp).map_err(io_err("create", &tmp))?;
        f.write_all(&data)
            .and_then(|_| f.sync_all())
            .map_err(io_err("write", &tmp))?;
        fs::rename(&tmp, &p).map_err(io_err("rename", &p))
    }

    /// All images, sorted by name.
    pub fn images(&self) -> Result<Vec<ImageRecord>> {
        let mut v = self.load_images()?.images;
        v.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(v)
    }

    /// The image called `name` (normalised), or the only one whose manifest
    /// digest starts with `name` (as `sha256:...` or bare hex, at least 12
    /// digits).
    pub fn find(&self, name: &str) -> Result<ImageRecord> {
        let imgs = self.images()?;
        if let Some(i) = imgs.iter().find(|i| i.name == name) {
            return Ok(i.clone());
        }
        let hex = name.strip_prefix("sha256:").unwrap_or(name);
        if hex.len() >= 12 && hex.bytes().all(|c| c.is_ascii_hexdigit()) {
            let hits: Vec<_> = imgs
                .iter()
                .filter(|i| i.manifest.hex().starts_with(hex))
                .collect();
            if let [one] = hits.as_slice() {
                return Ok((*one).clone());
            }
        }
        Err(StoreError::NoImage(name.to_string()))
    }

    /// Add or replace the record for `rec.name`.
    pub fn put_image(&self, rec: ImageRecord) -> Result<()> {
        let mut imgs = self.load_images()?;
        imgs.images.retain(|i| i.name != rec.name);
        imgs.images.push(rec);
        self.save_images(&imgs)
    }

    /// Forget the image called `name`; its blobs and layers stay until `prune`.
    pub fn remove_image(&self, name: &str) -> Result<ImageRecord> {
        let rec = self.find(name)?;
        let mut imgs = self.load_images()?;
        imgs.images.retain(|i| i.name != rec.name);
        self.save_images(&imgs)?;
        Ok(rec)
    }

    /// Remove every blob and layer no image and no live bundle refers to.
    /// Callers hold [`Store::gc_exclusive`] (then [`Store::lock`]), so no
    /// pull, import or bundle is under way.
    pub fn prune(&self) -> Result<Pruned> {
        let imgs = self.load_images()?;
        let mut blobs = BTreeSet::new();
        let mut layers = BTreeSet::new();
        for i in &imgs.images {
            blobs.insert(i.manifest.hex().to_string());
            blobs.insert(i.config.hex().to_string());
            if let Some(ix) = &i.index {
                blobs.insert(ix.hex().to_string());
            }
            blobs.extend(i.layers.iter().map(|d| d.hex().to_string()));
            layers.extend(i.chain.iter().map(|d| d.hex().to_string()));
        }
        layers.extend(self.bundle_layers());
        let mut out = Pruned::default();
        for (dir, keep, list) in [
            ("blobs/sha256", &blobs, &mut out.blobs),
            ("layers", &layers, &mut out.layers),
        ] {
            let d = self.root.join(dir);
            for e in fs::read_dir(&d).map_err(io_err("read", &d))?.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if keep.contains(&name) {
                    continue;
                }
                remove_tree(&e.path()).map_err(io_err("remove", &e.path()))?;
                if let Ok(dg) = Digest::parse(&format!("sha256:{name}")) {
                    list.push(dg);
                }
            }
        }
        Ok(out)
    }
}
