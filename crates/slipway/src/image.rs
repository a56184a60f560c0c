//! `slipway image build`: an OCI image of slipway without Docker or a base image, written as an
//! OCI archive (a tar of an OCI image layout) that `skopeo copy oci-archive:FILE docker://...`
//! pushes anywhere.
//!
//! Four layers, lowest first, so a registry keeps the ones that did not change: the system files
//! (the shared libraries the binary and ONNX Runtime link against, found with `ldd`, the dynamic
//! loader, CA certificates, a passwd with the non-root user), ONNX Runtime's library, the
//! slipway binary, and optionally a model. Every timestamp is SOURCE_DATE_EPOCH (or 0) and every
//! entry is in a fixed order, so the same inputs give the same digests.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Where things live inside the image (the Kubernetes manifests name them too).
const BINARY: &str = "usr/local/bin/slipway";
const ONNXRUNTIME: &str = "usr/local/lib/slipway/libonnxruntime.so";
const MODEL_DIR: &str = "opt/slipway/model";
const DATA_DIR: &str = "var/lib/slipway";
/// The non-root user (and group) the image runs as: distroless's `nonroot`.
const USER_ID: u64 = 65532;

#[derive(Debug, Args)]
pub struct ImageArgs {
    #[command(subcommand)]
    command: ImageCommand,
}

#[derive(Debug, Subcommand)]
enum ImageCommand {
    /// Write an OCI image holding this slipway binary, ONNX Runtime and optionally a model, run
    /// as a non-root user. No Docker, no base image: the system libraries come from this
    /// machine. Push it with `skopeo copy oci-archive:FILE docker://REGISTRY/slipway:TAG`.
    Build(BuildArgs),
}

#[derive(Debug, Args)]
struct BuildArgs {
    /// The OCI archive to write (a tar of an OCI image layout).
    #[arg(long, short)]
    output: PathBuf,
    /// A model to bake in, served by default (`serve` on port 8080): models:/NAME@ALIAS or
    /// models:/NAME/VERSION from --tracking-uri (checked against its registered digest), or a
    /// local MLflow model folder or .onnx file. Without one the image runs `slipway server`.
    #[arg(long, value_name = "MODEL_URI")]
    model: Option<String>,
    /// The image's name in the archive (the reference skopeo and umoci take after the colon).
    #[arg(long, default_value = "latest")]
    tag: String,
    /// libonnxruntime to put in the image (default: $ORT_DYLIB_PATH, else where
    /// scripts/fetch-onnxruntime.sh puts it).
    #[arg(long, env = "ORT_DYLIB_PATH")]
    onnxruntime: Option<PathBuf>,
    /// The tracking server that resolves models:/ URIs (default: $MLFLOW_TRACKING_URI), with
    /// the mlflow client's MLFLOW_TRACKING_* credentials.
    #[arg(long, env = "MLFLOW_TRACKING_URI")]
    tracking_uri: Option<String>,
    /// Print `{"output", "digest", "tag", "layers": [{digest, size, what}]}` when done.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: ImageArgs) -> anyhow::Result<()> {
    match args.command {
        ImageCommand::Build(args) => build(args).await,
    }
}

/// One file of a layer: its content comes from `source` (or is `bytes`).
enum Content {
    File(PathBuf),
    Bytes(Vec<u8>),
    Dir,
}

struct Entry {
    path: String,
    mode: u32,
    owner: u64,
    content: Content,
}

impl Entry {
    fn file(path: &str, source: PathBuf, mode: u32) -> Entry {
        Entry {
            path: path.to_owned(),
            mode,
            owner: 0,
            content: Content::File(source),
        }
    }

    fn bytes(path: &str, bytes: impl Into<Vec<u8>>) -> Entry {
        Entry {
            path: path.to_owned(),
            mode: 0o644,
            owner: 0,
            content: Content::Bytes(bytes.into()),
        }
    }

    fn dir(path: &str, mode: u32, owner: u64) -> Entry {
        Entry {
            path: path.to_owned(),
            mode,
            owner,
            content: Content::Dir,
        }
    }
}

/// A layer written: its blob in a temporary file, with both digests.
struct Layer {
    what: &'static str,
    blob: tempfile::NamedTempFile,
    /// sha256 of the gzip blob (the manifest's digest).
    digest: String,
    size: u64,
    /// sha256 of the uncompressed tar (the config's diff_id).
    diff_id: String,
}

/// Hashes what passes through on its way to `inner`.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn hashing<W>(inner: W) -> Hashing<W> {
    Hashing {
        inner,
        hash: Sha256::new(),
        bytes: 0,
    }
}

fn hex(hash: Sha256) -> String {
    format!("sha256:{}", hex_bytes(&hash.finalize()))
}

fn hex_bytes(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SOURCE_DATE_EPOCH (reproducible builds' convention), else the epoch.
fn timestamp() -> u64 {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn rfc3339(seconds: u64) -> String {
    chrono::DateTime::from_timestamp(i64::try_from(seconds).unwrap_or(0), 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Every parent folder of every entry, as directories (tar readers do not invent them with
/// the right owner and mode), then the entries in path order.
fn with_parents(mut entries: Vec<Entry>) -> Vec<Entry> {
    let mut dirs: BTreeMap<String, ()> = BTreeMap::new();
    for entry in &entries {
        let mut parent = Path::new(&entry.path).parent();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            dirs.insert(p.to_string_lossy().into_owned(), ());
            parent = p.parent();
        }
    }
    let explicit: Vec<String> = entries
        .iter()
        .filter(|e| matches!(e.content, Content::Dir))
        .map(|e| e.path.clone())
        .collect();
    for dir in dirs.into_keys() {
        if !explicit.contains(&dir) {
            entries.push(Entry::dir(&dir, 0o755, 0));
        }
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    entries
}

fn write_layer(what: &'static str, entries: Vec<Entry>, mtime: u64) -> anyhow::Result<Layer> {
    let blob = tempfile::NamedTempFile::new().context("creating a temporary layer file")?;
    let compressed = hashing(std::io::BufWriter::new(
        blob.reopen().context("opening the layer file")?,
    ));
    let gzip = flate2::GzBuilder::new()
        .mtime(0)
        .write(compressed, flate2::Compression::default());
    let mut tar = tar::Builder::new(hashing(gzip));
    for entry in with_parents(entries) {
        let mut header = tar::Header::new_gnu();
        header.set_mtime(mtime);
        header.set_uid(entry.owner);
        header.set_gid(entry.owner);
        header.set_mode(entry.mode);
        match entry.content {
            Content::Dir => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                tar.append_data(&mut header, format!("{}/", entry.path), std::io::empty())
                    .with_context(|| format!("writing {} into the layer", entry.path))?;
            }
            Content::Bytes(bytes) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(bytes.len() as u64);
                tar.append_data(&mut header, &entry.path, bytes.as_slice())
                    .with_context(|| format!("writing {} into the layer", entry.path))?;
            }
            Content::File(source) => {
                let file = std::fs::File::open(&source)
                    .with_context(|| format!("reading {}", source.display()))?;
                let size = file
                    .metadata()
                    .with_context(|| format!("reading {}", source.display()))?
                    .len();
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(size);
                tar.append_data(&mut header, &entry.path, file.take(size))
                    .with_context(|| format!("writing {} into the layer", entry.path))?;
            }
        }
    }
    let uncompressed = tar.into_inner().context("finishing the layer's tar")?;
    let diff_id = hex(uncompressed.hash);
    let mut compressed = uncompressed
        .inner
        .finish()
        .context("finishing the layer's gzip")?;
    compressed.flush().context("writing the layer")?;
    Ok(Layer {
        what,
        blob,
        digest: hex(compressed.hash),
        size: compressed.bytes,
        diff_id,
    })
}

/// The shared libraries `binary` loads (and the dynamic loader), as `ldd` resolves them here.
fn shared_libraries(binary: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let output = std::process::Command::new("ldd")
        .arg(binary)
        .output()
        .context(
            "running ldd to find the shared libraries the image needs (is glibc's ldd installed?)",
        )?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        if text.contains("not a dynamic executable")
            || String::from_utf8_lossy(&output.stderr).contains("not a dynamic executable")
        {
            return Ok(Vec::new());
        }
        bail!(
            "ldd {} failed: {}",
            binary.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let mut found = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.contains("not found") {
            bail!(
                "{} needs a library this machine lacks: {line}",
                binary.display()
            );
        }
        let path = match line.split_once("=>") {
            Some((_, resolved)) => resolved.trim().split(' ').next().unwrap_or_default(),
            None => line.split(' ').next().unwrap_or_default(),
        };
        if path.starts_with('/') {
            found.push(PathBuf::from(path));
        }
    }
    Ok(found)
}

fn system_entries(binary: &Path, onnxruntime: &Path) -> anyhow::Result<Vec<Entry>> {
    let mut libraries: Vec<PathBuf> = shared_libraries(binary)?;
    libraries.extend(shared_libraries(onnxruntime)?);
    libraries.sort();
    libraries.dedup();
    let mut entries: Vec<Entry> = libraries
        .into_iter()
        .map(|path| {
            // The file's content at the path the loader asks for (a symlink here is a file
            // there: the image has no other copy to point at).
            let inside = path.to_string_lossy().trim_start_matches('/').to_owned();
            Entry::file(&inside, path, 0o755)
        })
        .collect();
    let certificates = Path::new("/etc/ssl/certs/ca-certificates.crt");
    if certificates.is_file() {
        // TLS to object storage, webhooks and receivers.
        entries.push(Entry::file(
            "etc/ssl/certs/ca-certificates.crt",
            certificates.to_path_buf(),
            0o644,
        ));
    }
    entries.push(Entry::bytes(
        "etc/passwd",
        format!(
            "root:x:0:0:root:/root:/sbin/nologin\nslipway:x:{USER_ID}:{USER_ID}:slipway:/{DATA_DIR}:/sbin/nologin\n"
        ),
    ));
    entries.push(Entry::bytes(
        "etc/group",
        format!("root:x:0:\nslipway:x:{USER_ID}:\n"),
    ));
    entries.push(Entry::bytes("etc/nsswitch.conf", "hosts: files dns\n"));
    entries.push(Entry::dir("tmp", 0o1777, 0));
    entries.push(Entry::dir(DATA_DIR, 0o750, USER_ID));
    Ok(entries)
}

/// The model's files: an MLflow model folder's MLmodel and its .onnx, or a lone .onnx.
async fn model_entries(
    uri: &str,
    tracking_uri: Option<String>,
) -> anyhow::Result<(Vec<Entry>, Option<crate::serve::Fetched>)> {
    let (onnx, fetched) = if uri.starts_with("models:/") {
        let client = crate::remote::Client::for_uri(tracking_uri)?;
        let fetched = crate::serve::fetch_registered(uri, &client).await?;
        (fetched.file.clone(), Some(fetched))
    } else {
        (crate::serve::model_file(uri)?, None)
    };
    let mut entries = vec![Entry::file(
        &format!("{MODEL_DIR}/model.onnx"),
        onnx.clone(),
        0o644,
    )];
    if let Some(mlmodel) = onnx.parent().map(|p| p.join("MLmodel"))
        && mlmodel.is_file()
    {
        entries.push(Entry::file(&format!("{MODEL_DIR}/MLmodel"), mlmodel, 0o644));
    }
    Ok((entries, fetched))
}

fn architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn json_blob(value: &Value) -> (Vec<u8>, String) {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    let digest = hex(Sha256::new_with_prefix(&bytes));
    (bytes, digest)
}

async fn build(args: BuildArgs) -> anyhow::Result<()> {
    if args.tag.is_empty()
        || !args
            .tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        bail!(
            "--tag '{}': use letters, digits, '.', '_' and '-' only",
            args.tag
        );
    }
    let binary = std::env::current_exe().context("finding this slipway binary")?;
    let onnxruntime = args
        .onnxruntime
        .clone()
        .unwrap_or_else(slipway_serving::runtime::default_library_path);
    if !onnxruntime.is_file() {
        bail!(
            "ONNX Runtime is not at {}: run scripts/fetch-onnxruntime.sh or pass --onnxruntime",
            onnxruntime.display()
        );
    }
    let mtime = timestamp();
    let created = rfc3339(mtime);
    let model = match &args.model {
        Some(uri) => Some(model_entries(uri, args.tracking_uri.clone()).await?),
        None => None,
    };
    let progress = indicatif::ProgressBar::new_spinner();
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        progress.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    progress.enable_steady_tick(std::time::Duration::from_millis(120));
    let mut plan: Vec<(&'static str, Vec<Entry>)> = vec![
        ("system libraries", system_entries(&binary, &onnxruntime)?),
        (
            "onnxruntime",
            vec![Entry::file(ONNXRUNTIME, onnxruntime.clone(), 0o755)],
        ),
        ("slipway", vec![Entry::file(BINARY, binary.clone(), 0o755)]),
    ];
    let has_model = model.is_some();
    let _fetched = model.map(|(entries, fetched)| {
        plan.push(("model", entries));
        fetched
    });
    let mut layers = Vec::new();
    for (what, entries) in plan {
        progress.set_message(format!("layer: {what}"));
        let layer = tokio::task::spawn_blocking(move || write_layer(what, entries, mtime))
            .await
            .context("writing a layer")??;
        layers.push(layer);
    }
    let cmd: Vec<String> = if has_model {
        [
            "serve",
            "-m",
            &format!("/{MODEL_DIR}"),
            "--host",
            "0.0.0.0",
            "--port",
            "8080",
            "--insecure-no-auth",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    } else {
        [
            "server",
            "--host",
            "0.0.0.0",
            "--port",
            "5000",
            "--auth",
            "--backend-store-uri",
            &format!("sqlite:////{DATA_DIR}/slipway.db"),
            "--artifacts-destination",
            &format!("/{DATA_DIR}/artifacts"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let version = env!("CARGO_PKG_VERSION");
    let mut labels = json!({
        "org.opencontainers.image.title": "slipway",
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.created": created,
    });
    if let Some(uri) = &args.model {
        labels["io.slipway.model"] = json!(uri);
    }
    let config = json!({
        "created": created,
        "architecture": architecture(),
        "os": "linux",
        "config": {
            "User": format!("{USER_ID}:{USER_ID}"),
            "Env": [
                "PATH=/usr/local/bin:/usr/bin:/bin",
                format!("ORT_DYLIB_PATH=/{ONNXRUNTIME}"),
            ],
            "Entrypoint": [format!("/{BINARY}")],
            "Cmd": cmd,
            "WorkingDir": format!("/{DATA_DIR}"),
            "ExposedPorts": if has_model { json!({"8080/tcp": {}}) } else { json!({"5000/tcp": {}}) },
            "Labels": labels,
        },
        "rootfs": {
            "type": "layers",
            "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>(),
        },
        "history": layers.iter().map(|l| json!({
            "created": created,
            "created_by": format!("slipway image build: {}", l.what),
        })).collect::<Vec<_>>(),
    });
    let (config_bytes, config_digest) = json_blob(&config);
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config_bytes.len(),
        },
        "layers": layers.iter().map(|l| json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": l.digest,
            "size": l.size,
        })).collect::<Vec<_>>(),
        "annotations": {
            "org.opencontainers.image.version": version,
            "org.opencontainers.image.created": created,
        },
    });
    let (manifest_bytes, manifest_digest) = json_blob(&manifest);
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest_bytes.len(),
            "platform": {"architecture": architecture(), "os": "linux"},
            "annotations": {"org.opencontainers.image.ref.name": args.tag},
        }],
    });
    progress.set_message("writing the archive");
    let output = args.output.clone();
    let summary: Vec<Value> = layers
        .iter()
        .map(|l| json!({"digest": l.digest, "size": l.size, "what": l.what}))
        .collect();
    let blobs = [
        (config_digest, config_bytes),
        (manifest_digest.clone(), manifest_bytes),
    ];
    tokio::task::spawn_blocking(move || write_archive(&output, &index, &blobs, &layers, mtime))
        .await
        .context("writing the archive")??;
    progress.finish_and_clear();
    if args.json {
        println!(
            "{}",
            json!({
                "output": args.output,
                "digest": manifest_digest,
                "tag": args.tag,
                "layers": summary,
            })
        );
    } else {
        println!(
            "wrote {} ({manifest_digest}, tag {}); push it with: skopeo copy oci-archive:{}:{} docker://REGISTRY/slipway:{}",
            args.output.display(),
            args.tag,
            args.output.display(),
            args.tag,
            args.tag
        );
    }
    Ok(())
}

/// The OCI image layout as one tar, written next to `output` and renamed over it: a failed
/// build leaves no half archive.
fn write_archive(
    output: &Path,
    index: &Value,
    json_blobs: &[(String, Vec<u8>)],
    layers: &[Layer],
    mtime: u64,
) -> anyhow::Result<()> {
    let folder = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let partial = tempfile::NamedTempFile::new_in(folder)
        .with_context(|| format!("creating a file in {}", folder.display()))?;
    let mut tar = tar::Builder::new(std::io::BufWriter::new(
        partial.reopen().context("opening the archive")?,
    ));
    let mut add = |path: &str, size: u64, reader: &mut dyn Read| -> anyhow::Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_mtime(mtime);
        header.set_mode(0o644);
        header.set_size(size);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, path, reader)
            .with_context(|| format!("writing {path} into the archive"))
    };
    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
    add("oci-layout", layout.len() as u64, &mut layout.as_slice())?;
    let index = serde_json::to_vec(index).unwrap_or_default();
    add("index.json", index.len() as u64, &mut index.as_slice())?;
    let blob_path = |digest: &str| format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"));
    for (digest, bytes) in json_blobs {
        add(
            &blob_path(digest),
            bytes.len() as u64,
            &mut bytes.as_slice(),
        )?;
    }
    for layer in layers {
        let mut file = layer.blob.reopen().context("reading a layer back")?;
        add(&blob_path(&layer.digest), layer.size, &mut file)?;
    }
    let mut written = tar.into_inner().context("finishing the archive")?;
    written.flush().context("writing the archive")?;
    written
        .get_ref()
        .sync_all()
        .context("writing the archive to disk")?;
    partial
        .persist(output)
        .with_context(|| format!("writing {}", output.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_come_first_and_once() {
        let entries = with_parents(vec![
            Entry::bytes("usr/local/bin/slipway", "x"),
            Entry::bytes("usr/lib/a.so", "y"),
            Entry::dir("var/lib/slipway", 0o750, USER_ID),
        ]);
        let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "usr",
                "usr/lib",
                "usr/lib/a.so",
                "usr/local",
                "usr/local/bin",
                "usr/local/bin/slipway",
                "var",
                "var/lib",
                "var/lib/slipway",
            ]
        );
        // The data folder keeps its owner; invented parents are root's.
        let data = entries
            .iter()
            .find(|e| e.path == "var/lib/slipway")
            .unwrap();
        assert_eq!(data.owner, USER_ID);
    }

    #[test]
    fn the_same_files_make_the_same_layer() {
        let make = || {
            write_layer(
                "t",
                vec![Entry::bytes("etc/passwd", "root:x:0:0::/:/x\n")],
                0,
            )
            .unwrap()
        };
        let (a, b) = (make(), make());
        assert_eq!(a.digest, b.digest);
        assert_eq!(a.diff_id, b.diff_id);
        assert_ne!(a.digest, a.diff_id);
    }
}
