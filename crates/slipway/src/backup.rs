//! `slipway backup` and `slipway restore`: a consistent copy of the metadata store and the
//! artifacts, taken while servers keep serving, and rebuilt into an empty store.
//!
//! A backup destination (a folder, or an S3 prefix) holds:
//! - `blobs/sha256/<hex>`: every artifact's content, once per digest, so a backup after the
//!   first writes only what is new;
//! - `backups/<id>/metadata.sqlite` or `metadata.pgdump`: the metadata snapshot
//!   (`slipway_store::backup`);
//! - `backups/<id>/manifest.json`, written last: what the backup holds (the snapshot's digest,
//!   every artifact's path, size and digest). A backup without one did not finish.
//!
//! The metadata is copied first and the artifacts after, so every artifact the snapshot names
//! was written before the listing: the backup holds them all (and perhaps a few newer ones).

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use slipway_core::artifact_path::ArtifactPath;
use slipway_core::ports::{ArtifactStore, ByteStream};
use slipway_store::BackendUri;

use crate::config::{ArtifactsDestination, FileConfig};

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Where backups go: a folder, or s3://BUCKET/PREFIX (credentials from the AWS_* variables,
    /// as for artifacts). Artifacts are kept there once per content digest: each backup after
    /// the first writes only new contents.
    #[arg(long, value_name = "DIR|s3://BUCKET/PREFIX")]
    to: String,
    /// Metadata store, as for `slipway server` (default: the server's from slipway.toml, or
    /// ./slipway-data/slipway.db).
    #[arg(long, env = "SLIPWAY_BACKEND_STORE_URI")]
    backend_store_uri: Option<String>,
    /// Artifact store, as for `slipway server` (default: the server's from slipway.toml, or
    /// ./slipway-data/artifacts).
    #[arg(long, env = "SLIPWAY_ARTIFACTS_DESTINATION")]
    artifacts_destination: Option<String>,
    /// Print the backup's manifest summary as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Where the backups are (what `slipway backup --to` was given).
    #[arg(long, value_name = "DIR|s3://BUCKET/PREFIX")]
    from: String,
    /// The backup to restore (default: the newest; --list shows them).
    #[arg(long, value_name = "ID")]
    backup: Option<String>,
    /// List the finished backups instead of restoring.
    #[arg(long)]
    list: bool,
    /// The metadata store to rebuild: a SQLite file that does not exist yet, or an empty
    /// PostgreSQL database (made with createdb).
    #[arg(long, env = "SLIPWAY_BACKEND_STORE_URI")]
    backend_store_uri: Option<String>,
    /// The artifact store to rebuild (empty, or not there yet).
    #[arg(long, env = "SLIPWAY_ARTIFACTS_DESTINATION")]
    artifacts_destination: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ArtifactRecord {
    path: String,
    size: u64,
    sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Metadata {
    format: String,
    file: String,
    size: u64,
    sha256: String,
    schema_version: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Manifest {
    id: String,
    /// When the metadata snapshot began (epoch ms): every write acknowledged before is in it.
    started_ms: i64,
    finished_ms: i64,
    slipway_version: String,
    metadata: Metadata,
    artifacts: Vec<ArtifactRecord>,
    artifact_bytes: u64,
    /// Contents this backup added to the destination (the others were there already).
    new_blobs: u64,
    new_blob_bytes: u64,
}

async fn open_destination(raw: &str) -> anyhow::Result<Arc<dyn ArtifactStore>> {
    let destination = crate::config::artifact_folder(raw)?;
    Ok(Arc::new(destination.open().await?))
}

fn path(raw: &str) -> anyhow::Result<ArtifactPath> {
    ArtifactPath::parse(raw).map_err(|e| anyhow::anyhow!("{e}"))
}

fn file_stream(file: tokio::fs::File) -> ByteStream {
    Box::pin(tokio_util::io::ReaderStream::with_capacity(
        file,
        256 * 1024,
    ))
}

/// Every file under the artifact store, in path order.
async fn walk(store: &dyn ArtifactStore) -> anyhow::Result<Vec<(String, u64)>> {
    walk_under(store, "").await
}

/// Every file under `root` (all of them for ""), with paths from the store's root, in path
/// order.
pub(crate) async fn walk_under(
    store: &dyn ArtifactStore,
    root: &str,
) -> anyhow::Result<Vec<(String, u64)>> {
    let mut files = Vec::new();
    let root = root.trim_matches('/');
    let mut folders: Vec<Option<String>> = vec![(!root.is_empty()).then(|| root.to_owned())];
    while let Some(folder) = folders.pop() {
        let at = folder.as_deref().map(path).transpose()?;
        let Some(entries) = store
            .list(at.as_ref())
            .await
            .map_err(|e| anyhow::anyhow!("listing artifacts: {e}"))?
        else {
            continue;
        };
        for entry in entries {
            let full = match &folder {
                Some(folder) => format!("{folder}/{}", entry.name),
                None => entry.name.clone(),
            };
            if entry.is_dir {
                folders.push(Some(full));
            } else {
                files.push((full, entry.size.unwrap_or(0)));
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Streams `path` from `store` into a temporary file, hashing it; returns the file, its digest
/// and size.
async fn fetch_hashed(
    store: &dyn ArtifactStore,
    at: &ArtifactPath,
) -> anyhow::Result<Option<(tempfile::NamedTempFile, String, u64)>> {
    let Some(object) = store
        .get(at)
        .await
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", at.as_str()))?
    else {
        return Ok(None);
    };
    let spill = tempfile::NamedTempFile::new().context("creating a temporary file")?;
    let mut out = std::io::BufWriter::new(spill.reopen().context("opening a temporary file")?);
    let mut hash = Sha256::new();
    let mut size = 0u64;
    let mut body = object.body;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.with_context(|| format!("reading {}", at.as_str()))?;
        hash.update(&chunk);
        size += chunk.len() as u64;
        out.write_all(&chunk).context("writing a temporary file")?;
    }
    out.flush().context("writing a temporary file")?;
    Ok(Some((spill, hex(hash), size)))
}

fn hex(hash: Sha256) -> String {
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_file(file: &Path) -> anyhow::Result<(String, u64)> {
    let mut reader =
        std::fs::File::open(file).with_context(|| format!("reading {}", file.display()))?;
    let mut hash = Sha256::new();
    let mut buffer = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = std::io::Read::read(&mut reader, &mut buffer).context("hashing the snapshot")?;
        if n == 0 {
            break;
        }
        hash.update(&buffer[..n]);
        size += n as u64;
    }
    Ok((hex(hash), size))
}

async fn put_file(
    store: &dyn ArtifactStore,
    at: &ArtifactPath,
    file: &Path,
) -> anyhow::Result<u64> {
    let opened = tokio::fs::File::open(file)
        .await
        .with_context(|| format!("reading {}", file.display()))?;
    store
        .put(at, file_stream(opened))
        .await
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", at.as_str()))
}

fn bar(total: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total);
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{what} {{bar:30}} {{bytes}}/{{total_bytes}} {{msg}}"
        ))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

pub(crate) fn stores(
    config: Option<&Path>,
    backend: Option<String>,
    artifacts: Option<String>,
) -> anyhow::Result<(BackendUri, ArtifactsDestination)> {
    let file = FileConfig::load(config)?;
    let uri = crate::config::backend_store_uri(backend, &file.server);
    let uri = BackendUri::parse(&uri)?;
    let artifacts = crate::config::artifacts_destination(artifacts, &file.server)?;
    Ok((uri, artifacts))
}

pub async fn backup(config: Option<&Path>, args: BackupArgs) -> anyhow::Result<()> {
    let (uri, artifacts) = stores(config, args.backend_store_uri, args.artifacts_destination)?;
    let source = artifacts.open().await?;
    let destination = open_destination(&args.to).await?;
    let started_ms = slipway_app::now_ms();
    let id = format!(
        "{}-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ"),
        &uuid::Uuid::new_v4().simple().to_string()[..6]
    );

    // The metadata first: the artifacts listed after it include all it names.
    let work = tempfile::tempdir().context("creating a working folder")?;
    let snapshot_file = work.path().join("metadata");
    let snapshot = slipway_store::backup::snapshot(&uri, &snapshot_file)
        .await
        .with_context(|| format!("copying the metadata store {}", uri.redacted()))?;
    let file_name = match snapshot.format {
        "sqlite" => "metadata.sqlite",
        _ => "metadata.pgdump",
    };
    let (metadata_sha, metadata_size) = sha256_file(&snapshot_file)?;
    put_file(
        destination.as_ref(),
        &path(&format!("backups/{id}/{file_name}"))?,
        &snapshot_file,
    )
    .await?;

    let files = walk(&source).await?;
    let existing: BTreeSet<String> = match destination
        .list(Some(&path("blobs/sha256")?))
        .await
        .map_err(|e| anyhow::anyhow!("listing the backup's contents: {e}"))?
    {
        Some(entries) => entries.into_iter().map(|e| e.name).collect(),
        None => BTreeSet::new(),
    };
    let total: u64 = files.iter().map(|(_, size)| size).sum();
    let progress = bar(total, "artifacts");
    let mut records = Vec::with_capacity(files.len());
    let mut seen = existing;
    let (mut new_blobs, mut new_blob_bytes) = (0u64, 0u64);
    for (name, _) in files {
        let at = path(&name)?;
        // Deleted since it was listed: nothing to keep.
        let Some((spill, sha256, size)) = fetch_hashed(&source, &at).await? else {
            continue;
        };
        if seen.insert(sha256.clone()) {
            put_file(
                destination.as_ref(),
                &path(&format!("blobs/sha256/{sha256}"))?,
                spill.path(),
            )
            .await?;
            new_blobs += 1;
            new_blob_bytes += size;
        }
        progress.inc(size);
        records.push(ArtifactRecord {
            path: name,
            size,
            sha256,
        });
    }
    progress.finish_and_clear();
    let manifest = Manifest {
        id: id.clone(),
        started_ms,
        finished_ms: slipway_app::now_ms(),
        slipway_version: env!("CARGO_PKG_VERSION").to_owned(),
        metadata: Metadata {
            format: snapshot.format.to_owned(),
            file: file_name.to_owned(),
            size: metadata_size,
            sha256: metadata_sha,
            schema_version: snapshot.schema_version,
        },
        artifact_bytes: records.iter().map(|r| r.size).sum(),
        artifacts: records,
        new_blobs,
        new_blob_bytes,
    };
    // Last: a backup is finished when its manifest exists.
    let manifest_file = work.path().join("manifest.json");
    std::fs::write(
        &manifest_file,
        serde_json::to_vec_pretty(&manifest).context("encoding the manifest")?,
    )
    .context("writing the manifest")?;
    put_file(
        destination.as_ref(),
        &path(&format!("backups/{id}/manifest.json"))?,
        &manifest_file,
    )
    .await?;
    let summary = json!({
        "id": manifest.id,
        "to": args.to,
        "metadata": {"format": manifest.metadata.format, "bytes": manifest.metadata.size},
        "artifacts": manifest.artifacts.len(),
        "artifact_bytes": manifest.artifact_bytes,
        "new_blobs": manifest.new_blobs,
        "new_blob_bytes": manifest.new_blob_bytes,
        "seconds": (manifest.finished_ms - manifest.started_ms) as f64 / 1000.0,
    });
    if args.json {
        println!("{summary}");
    } else {
        println!(
            "backup {} written to {}: metadata ({}, {} bytes), {} artifacts ({} bytes, {} new contents)",
            manifest.id,
            args.to,
            manifest.metadata.format,
            manifest.metadata.size,
            manifest.artifacts.len(),
            manifest.artifact_bytes,
            manifest.new_blobs
        );
    }
    Ok(())
}

async fn read_manifest(store: &dyn ArtifactStore, id: &str) -> anyhow::Result<Option<Manifest>> {
    let Some((spill, _, _)) =
        fetch_hashed(store, &path(&format!("backups/{id}/manifest.json"))?).await?
    else {
        return Ok(None);
    };
    let bytes = std::fs::read(spill.path()).context("reading a manifest")?;
    Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
        format!("backup {id}: its manifest cannot be read")
    })?))
}

async fn finished_backups(store: &dyn ArtifactStore) -> anyhow::Result<Vec<Manifest>> {
    let Some(entries) = store
        .list(Some(&path("backups")?))
        .await
        .map_err(|e| anyhow::anyhow!("listing backups: {e}"))?
    else {
        return Ok(Vec::new());
    };
    let mut manifests = Vec::new();
    for entry in entries.into_iter().filter(|e| e.is_dir) {
        if let Some(manifest) = read_manifest(store, &entry.name).await? {
            manifests.push(manifest);
        }
    }
    manifests.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(manifests)
}

pub async fn restore(config: Option<&Path>, args: RestoreArgs) -> anyhow::Result<()> {
    let from = open_destination(&args.from).await?;
    let backups = finished_backups(from.as_ref()).await?;
    if args.list {
        if args.json {
            let listed: Vec<_> = backups
                .iter()
                .map(|m| {
                    json!({"id": m.id, "started_ms": m.started_ms, "format": m.metadata.format,
                           "artifacts": m.artifacts.len(), "artifact_bytes": m.artifact_bytes})
                })
                .collect();
            println!("{}", json!({ "backups": listed }));
        } else {
            for m in &backups {
                println!(
                    "{}  {}  {} artifacts, {} bytes",
                    m.id,
                    m.metadata.format,
                    m.artifacts.len(),
                    m.artifact_bytes
                );
            }
        }
        return Ok(());
    }
    let manifest = match &args.backup {
        Some(id) => backups
            .iter()
            .find(|m| &m.id == id)
            .with_context(|| format!("no finished backup {id} in {} (see --list)", args.from))?,
        None => backups
            .last()
            .with_context(|| format!("no finished backup in {}", args.from))?,
    };
    let (uri, artifacts) = stores(config, args.backend_store_uri, args.artifacts_destination)?;
    let known = slipway_store::schema_version(match &uri {
        BackendUri::Sqlite(_) => slipway_store::Backend::Sqlite,
        BackendUri::Postgres(_) => slipway_store::Backend::Postgres,
    });
    if manifest.metadata.schema_version > known {
        bail!(
            "backup {} was taken by a newer slipway (schema {}; this one knows {known}): restore it with that version",
            manifest.id,
            manifest.metadata.schema_version
        );
    }
    let target = artifacts.open().await?;
    if !walk(&target).await?.is_empty() {
        bail!("the artifact destination {artifacts} is not empty: restore into an empty one");
    }
    let started = std::time::Instant::now();

    // Artifacts first, the metadata last: until it is in place no server sees a half store.
    let progress = bar(manifest.artifact_bytes, "artifacts");
    for record in &manifest.artifacts {
        let blob = path(&format!("blobs/sha256/{}", record.sha256))?;
        let (spill, sha256, _) = fetch_hashed(from.as_ref(), &blob)
            .await?
            .with_context(|| format!("the backup lacks the content of {}", record.path))?;
        if sha256 != record.sha256 {
            bail!(
                "the backup's copy of {} is damaged (digest {sha256}, recorded {})",
                record.path,
                record.sha256
            );
        }
        put_file(&target, &path(&record.path)?, spill.path()).await?;
        progress.inc(record.size);
    }
    progress.finish_and_clear();

    let metadata = path(&format!(
        "backups/{}/{}",
        manifest.id, manifest.metadata.file
    ))?;
    let (spill, sha256, _) = fetch_hashed(from.as_ref(), &metadata)
        .await?
        .with_context(|| format!("backup {} lacks its metadata", manifest.id))?;
    if sha256 != manifest.metadata.sha256 {
        bail!("backup {}: its metadata snapshot is damaged", manifest.id);
    }
    slipway_store::backup::restore(&uri, spill.path(), &manifest.metadata.format)
        .await
        .with_context(|| format!("restoring the metadata into {}", uri.redacted()))?;

    // Open it as a server would (migrations brought forward), and check the audit chain.
    let store = slipway_store::SqlStore::open(
        &uri,
        slipway_store::StoreOptions {
            create_if_missing: false,
            ..slipway_store::StoreOptions::default()
        },
    )
    .await
    .with_context(|| format!("opening the restored store {}", uri.redacted()))?;
    let app = slipway_app::App::new(
        Arc::new(store.clone()),
        Arc::new(slipway_artifacts::ObjectArtifactStore::in_memory()),
        slipway_app::AppSettings::default(),
    );
    let report = app.verify_audit(|_| {}).await?;
    store.close().await;
    let seconds = started.elapsed().as_secs_f64();
    if let Some(broken) = &report.broken {
        bail!(
            "restored backup {}, but its audit chain breaks at entry {}: {}",
            manifest.id,
            broken.seq,
            broken.reason
        );
    }
    let summary = json!({
        "id": manifest.id,
        "metadata": uri.redacted(),
        "artifacts": manifest.artifacts.len(),
        "artifact_bytes": manifest.artifact_bytes,
        "audit_entries_checked": report.checked,
        "seconds": seconds,
    });
    if args.json {
        println!("{summary}");
    } else {
        println!(
            "restored backup {} into {} and {artifacts} in {seconds:.1}s: {} artifacts ({} bytes); audit chain intact ({} entries)",
            manifest.id,
            uri.redacted(),
            manifest.artifacts.len(),
            manifest.artifact_bytes,
            report.checked
        );
    }
    Ok(())
}
