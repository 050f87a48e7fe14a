//! The metadata file: a `wire` envelope (with its checksum) around [`Meta`], written
//! atomically: temp file, fsync, rename, fsync the directory.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use blockrepl::Meta;

const META_KIND: u8 = 0x43;

pub(crate) fn path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.meta"))
}

pub(crate) fn load(p: &Path) -> anyhow::Result<Option<Meta>> {
    let bytes = match fs::read(p) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading metadata {}", p.display())),
    };
    let meta: Meta = wire::decode(META_KIND, &bytes).with_context(|| {
        format!("metadata {} is corrupt; restore it or recreate the volume on this node", p.display())
    })?;
    if meta.version != blockrepl::META_VERSION {
        bail!(
            "metadata {} has layout version {}, this build reads {}",
            p.display(),
            meta.version,
            blockrepl::META_VERSION
        );
    }
    Ok(Some(meta))
}

pub(crate) fn store(p: &Path, meta: &Meta) -> anyhow::Result<()> {
    let bytes = wire::encode(META_KIND, meta).context("encoding metadata")?;
    let tmp = p.with_extension("meta.tmp");
    let mut f = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(&bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, p).with_context(|| format!("renaming to {}", p.display()))?;
    if let Some(dir) = p.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}
