//! The image records: which references were pulled, and what they are made
//! of, one JSON file per reference under `images/` (named by the sha256 of
//! the normalised reference), written atomically.
//!
//! A record is written only once every blob it names is in the store and
//! every layer is unpacked, so a listed image can always be run.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::{create_dir_all, write_atomic, Error, Result};

/// One pulled image.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Image {
    /// The normalised reference it was pulled as (`docker.io/library/busybox:latest`).
    pub name: String,
    /// The digest of the manifest the reference resolved to.
    pub manifest: Digest,
    /// The digest of the index or manifest list the manifest was picked from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<Digest>,
    /// The image configuration blob; its digest is the image ID.
    pub config: Digest,
    /// Bottom-most first.
    pub layers: Vec<Layer>,
    /// When it was pulled (RFC 3339).
    pub pulled: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Layer {
    /// The blob as stored (compressed).
    pub digest: Digest,
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub size: u64,
    /// The digest of the uncompressed tar.
    #[serde(rename = "diffID")]
    pub diff_id: Digest,
    /// The chain ID naming the unpacked layer.
    #[serde(rename = "chainID")]
    pub chain: Digest,
}

impl Image {
    /// The short ID `image ls` prints: 12 hex digits of the config digest, as Docker does.
    pub fn short_id(&self) -> &str {
        &self.config.hex()[..12]
    }

    /// The chain IDs, top-most first (overlayfs' lowerdir order).
    pub fn chains_top_first(&self) -> Vec<Digest> {
        self.layers.iter().rev().map(|l| l.chain.clone()).collect()
    }

    /// Every blob the image needs: manifest, index, config, layers.
    pub fn blobs(&self) -> Vec<Digest> {
        let mut v = vec![self.manifest.clone(), self.config.clone()];
        v.extend(self.index.clone());
        v.extend(self.layers.iter().map(|l| l.digest.clone()));
        v
    }
}

/// The records under `<root>/images`.
#[derive(Clone, Debug)]
pub struct Images {
    dir: PathBuf,
}

impl Images {
    pub fn open(root: &Path) -> Result<Images> {
        let dir = root.join("images");
        create_dir_all(&dir)?;
        Ok(Images { dir })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{}.json", Digest::sha256_of(name.as_bytes()).hex()))
    }

    pub fn put(&self, image: &Image) -> Result<()> {
        let data = serde_json::to_vec_pretty(image).map_err(|e| Error::Json {
            op: "serialize image record".into(),
            path: self.path(&image.name),
            source: e,
        })?;
        write_atomic(&self.path(&image.name), &data)
    }

    /// The record of a normalised reference.
    pub fn get(&self, name: &str) -> Result<Option<Image>> {
        read(&self.path(name))
    }

    /// The image a user means: a normalised reference, or an image ID (the
    /// config digest, or a prefix of at least 4 hex digits of it, as Docker
    /// takes). Several images may share one ID; all are returned.
    pub fn find(&self, name: Option<&str>, id: &str) -> Result<Vec<Image>> {
        if let Some(name) = name {
            if let Some(img) = self.get(name)? {
                return Ok(vec![img]);
            }
        }
        let hex = id.strip_prefix("sha256:").unwrap_or(id);
        if hex.len() < 4 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(Vec::new());
        }
        let hex = hex.to_ascii_lowercase();
        Ok(self.list()?.into_iter().filter(|i| i.config.hex().starts_with(&hex)).collect())
    }

    /// Remove a record; false if there was none.
    pub fn remove(&self, name: &str) -> Result<bool> {
        let path = self.path(name);
        match std::fs::remove_file(&path) {
            Ok(()) => crate::sync_dir(&self.dir).map(|_| true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io("remove image record", path, e)),
        }
    }

    /// Every record, sorted by name.
    pub fn list(&self) -> Result<Vec<Image>> {
        let entries = std::fs::read_dir(&self.dir).map_err(|e| Error::io("read directory", &self.dir, e))?;
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("read directory", &self.dir, e))?;
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "json") {
                out.extend(read(&path)?);
            }
        }
        out.sort_by(|a: &Image, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

fn read(path: &Path) -> Result<Option<Image>> {
    match std::fs::read(path) {
        Ok(data) => serde_json::from_slice(&data).map(Some).map_err(|e| Error::Json {
            op: "parse image record".into(),
            path: path.to_owned(),
            source: e,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("read image record", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(name: &str, config: &str) -> Image {
        let d = |s: &str| Digest::sha256_of(s.as_bytes());
        Image {
            name: name.into(),
            manifest: d("m"),
            index: None,
            config: d(config),
            layers: vec![Layer {
                digest: d("l"),
                media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
                size: 3,
                diff_id: d("t"),
                chain: d("t"),
            }],
            pulled: "2026-11-23T00:00:00Z".into(),
        }
    }

    #[test]
    fn put_get_find_remove() {
        let dir = tempfile::tempdir().unwrap();
        let images = Images::open(dir.path()).unwrap();
        let a = image("docker.io/library/busybox:latest", "c1");
        let b = image("127.0.0.1:5000/busybox:1", "c1");
        images.put(&a).unwrap();
        images.put(&b).unwrap();
        assert_eq!(images.get(&a.name).unwrap().unwrap(), a);
        assert_eq!(images.list().unwrap(), vec![b.clone(), a.clone()]);
        assert_eq!(images.find(Some(&a.name), "x").unwrap(), vec![a.clone()]);
        assert_eq!(images.find(None, &a.config.hex()[..6]).unwrap().len(), 2);
        assert!(images.find(None, "abc").unwrap().is_empty(), "too short an ID prefix");
        assert!(images.remove(&a.name).unwrap());
        assert!(!images.remove(&a.name).unwrap());
        assert_eq!(images.list().unwrap(), vec![b]);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("images")).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp files left");
    }
}
