//! The metadata file: a `wire` envelope (with its checksum) around [`Meta`], written with
//! [`durable::write_atomic`] (a crash leaves the old file or the new one).

use std::fs;
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
    durable::write_atomic(p, &bytes, 0o644).with_context(|| format!("writing metadata {}", p.display()))
}
