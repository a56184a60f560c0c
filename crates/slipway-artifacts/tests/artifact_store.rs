//! The `ArtifactStore` contract, run against a real folder and against an in-memory object
//! store (which behaves like S3: no directories, only key prefixes), plus what only the local
//! folder can show: the layout on disk and the absence of leftovers.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use slipway_artifacts::ObjectArtifactStore;
use slipway_core::Error;
use slipway_core::artifact_path::ArtifactPath;
use slipway_core::ports::{ArtifactEntry, ArtifactStore, ByteStream};
use tempfile::TempDir;

const MIB: usize = 1024 * 1024;

fn p(raw: &str) -> ArtifactPath {
    ArtifactPath::parse(raw).unwrap()
}

/// Deterministic bytes that do not repeat with any small period, so a misplaced or dropped
/// chunk cannot compare equal.
fn pattern(offset: usize, len: usize) -> Vec<u8> {
    (offset..offset + len)
        .map(|i| (i ^ (i >> 8) ^ (i >> 16)).wrapping_mul(131) as u8)
        .collect()
}

/// `total` bytes of [`pattern`] generated lazily in `chunk`-sized pieces, as a client would send
/// them; `then_fail` appends an error instead of ending.
fn pattern_body(total: usize, chunk: usize, then_fail: bool) -> ByteStream {
    let chunks = (0..total)
        .step_by(chunk)
        .map(move |offset| Ok(Bytes::from(pattern(offset, chunk.min(total - offset)))));
    let tail = then_fail.then(|| Err(std::io::Error::other("client went away")));
    Box::pin(futures::stream::iter(chunks.chain(tail)))
}

fn bytes_body(data: &[u8]) -> ByteStream {
    let chunk = Bytes::copy_from_slice(data);
    Box::pin(futures::stream::iter([Ok(chunk)]))
}

async fn read(store: &ObjectArtifactStore, path: &str) -> Option<Vec<u8>> {
    let object = store.get(&p(path)).await.unwrap()?;
    let mut data = Vec::new();
    let mut body = object.body;
    while let Some(chunk) = body.next().await {
        data.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(
        data.len() as u64,
        object.size,
        "{path}: size disagrees with the body"
    );
    Some(data)
}

/// Streams the object and checks it against [`pattern`] chunk by chunk.
async fn assert_pattern(store: &ObjectArtifactStore, path: &str, total: usize) {
    let object = store.get(&p(path)).await.unwrap().expect("object exists");
    assert_eq!(object.size, total as u64);
    let (mut offset, mut body) = (0, object.body);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.unwrap();
        assert!(
            chunk == pattern(offset, chunk.len()),
            "{path}: bytes differ at {offset}"
        );
        offset += chunk.len();
    }
    assert_eq!(offset, total);
}

fn dir(name: &str) -> ArtifactEntry {
    ArtifactEntry {
        name: name.to_owned(),
        is_dir: true,
        size: None,
    }
}

fn file(name: &str, size: u64) -> ArtifactEntry {
    ArtifactEntry {
        name: name.to_owned(),
        is_dir: false,
        size: Some(size),
    }
}

async fn list(store: &ObjectArtifactStore, path: Option<&str>) -> Option<Vec<ArtifactEntry>> {
    store.list(path.map(p).as_ref()).await.unwrap()
}

async fn put(store: &ObjectArtifactStore, path: &str, data: &[u8]) {
    let written = store.put(&p(path), bytes_body(data)).await.unwrap();
    assert_eq!(written, data.len() as u64);
}

/// a.txt, dir/{b.txt, sub/{c.txt, deeper/d.txt}}, dirt.txt, dir2/x.txt
async fn tree(store: &ObjectArtifactStore) {
    for (path, data) in [
        ("a.txt", "a"),
        ("dir/b.txt", "bb"),
        ("dir/sub/c.txt", "ccc"),
        ("dir/sub/deeper/d.txt", "dddd"),
        ("dirt.txt", "t"),
        ("dir2/x.txt", "x"),
    ] {
        put(store, path, data.as_bytes()).await;
    }
}

fn assert_invalid(result: Result<u64, Error>) {
    assert!(
        matches!(result, Err(Error::InvalidParameter(_))),
        "{result:?}"
    );
}

// --- the contract, for every backend ---

async fn small_round_trip(store: &ObjectArtifactStore) {
    put(store, "1/run/artifacts/hello.txt", b"hello").await;
    assert_eq!(
        read(store, "1/run/artifacts/hello.txt").await.unwrap(),
        b"hello"
    );
    put(store, "empty.txt", b"").await;
    assert_eq!(read(store, "empty.txt").await.unwrap(), b"");
    let nothing: ByteStream = Box::pin(futures::stream::empty());
    assert_eq!(store.put(&p("nothing.txt"), nothing).await.unwrap(), 0);
    assert_eq!(read(store, "nothing.txt").await.unwrap(), b"");
}

async fn large_streamed_round_trip(store: &ObjectArtifactStore) {
    // An odd chunk size so chunks straddle part boundaries.
    let total = 20 * MIB + 12_345;
    let written = store
        .put(
            &p("run/artifacts/model.bin"),
            pattern_body(total, 100_003, false),
        )
        .await
        .unwrap();
    assert_eq!(written, total as u64);
    assert_pattern(store, "run/artifacts/model.bin", total).await;
    assert_eq!(
        list(store, Some("run/artifacts")).await.unwrap(),
        [file("model.bin", total as u64)]
    );
}

async fn overwrite(store: &ObjectArtifactStore) {
    put(store, "m.bin", b"first").await;
    let total = 9 * MIB;
    store
        .put(&p("m.bin"), pattern_body(total, MIB, false))
        .await
        .unwrap();
    assert_pattern(store, "m.bin", total).await;
    put(store, "m.bin", b"small again").await;
    assert_eq!(read(store, "m.bin").await.unwrap(), b"small again");
    assert_eq!(list(store, None).await.unwrap(), [file("m.bin", 11)]);
}

async fn empty_root_lists_empty(store: &ObjectArtifactStore) {
    assert_eq!(list(store, None).await, Some(vec![]));
}

async fn list_root_dir_file_missing(store: &ObjectArtifactStore) {
    tree(store).await;
    let root = [
        file("a.txt", 1),
        dir("dir"),
        dir("dir2"),
        file("dirt.txt", 1),
    ];
    assert_eq!(list(store, None).await.unwrap(), root);
    assert_eq!(
        list(store, Some("dir")).await.unwrap(),
        [file("b.txt", 2), dir("sub")]
    );
    assert_eq!(
        list(store, Some("dir/")).await.unwrap(),
        [file("b.txt", 2), dir("sub")]
    );
    assert_eq!(
        list(store, Some("dir/sub")).await.unwrap(),
        [file("c.txt", 3), dir("deeper")]
    );
    assert_eq!(
        list(store, Some("dir/sub/deeper")).await.unwrap(),
        [file("d.txt", 4)]
    );
    for nothing_listable in [
        "a.txt",
        "dir/sub/c.txt",
        "missing",
        "di",
        "a.txt/below",
        "dir/nope/x",
    ] {
        assert_eq!(
            list(store, Some(nothing_listable)).await,
            None,
            "{nothing_listable}"
        );
    }
}

async fn get_finds_files_only(store: &ObjectArtifactStore) {
    tree(store).await;
    for not_a_file in [
        "dir",
        "dir/sub",
        "missing",
        "a.txt/below",
        "dir/b.txt/x",
        "di",
    ] {
        assert!(
            store.get(&p(not_a_file)).await.unwrap().is_none(),
            "{not_a_file}"
        );
    }
    assert_eq!(read(store, "dir/sub/deeper/d.txt").await.unwrap(), b"dddd");
}

async fn delete_file(store: &ObjectArtifactStore) {
    tree(store).await;
    store.delete(&p("dir/b.txt")).await.unwrap();
    assert!(store.get(&p("dir/b.txt")).await.unwrap().is_none());
    assert_eq!(list(store, Some("dir")).await.unwrap(), [dir("sub")]);
    store.delete(&p("dir/sub/deeper/d.txt")).await.unwrap();
    // Nothing is under `deeper` any more, so it is gone, not an empty directory.
    assert_eq!(
        list(store, Some("dir/sub")).await.unwrap(),
        [file("c.txt", 3)]
    );
    assert_eq!(list(store, Some("dir/sub/deeper")).await, None);
    for missing in ["dir/b.txt", "nope", "a.txt/below", "nope/deeper"] {
        store.delete(&p(missing)).await.unwrap();
    }
    assert_eq!(read(store, "a.txt").await.unwrap(), b"a");
}

async fn delete_directory(store: &ObjectArtifactStore) {
    tree(store).await;
    store.delete(&p("dir")).await.unwrap();
    // Siblings sharing the name as a prefix are untouched.
    let root = [file("a.txt", 1), dir("dir2"), file("dirt.txt", 1)];
    assert_eq!(list(store, None).await.unwrap(), root);
    assert_eq!(list(store, Some("dir")).await, None);
    assert!(store.get(&p("dir/sub/c.txt")).await.unwrap().is_none());
    for path in ["a.txt", "dirt.txt", "dir2"] {
        store.delete(&p(path)).await.unwrap();
    }
    assert_eq!(list(store, None).await, Some(vec![]));
}

async fn failed_large_upload_leaves_nothing(store: &ObjectArtifactStore) {
    // Past one part, so the multipart upload had started when the body broke off.
    let result = store
        .put(&p("x/y/big.bin"), pattern_body(10 * MIB, MIB, true))
        .await;
    assert_invalid(result);
    assert!(store.get(&p("x/y/big.bin")).await.unwrap().is_none());
    assert_eq!(list(store, None).await, Some(vec![]));
    assert_eq!(list(store, Some("x/y")).await, None);
}

async fn failed_small_upload_leaves_nothing(store: &ObjectArtifactStore) {
    assert_invalid(
        store
            .put(&p("x/small.bin"), pattern_body(1000, 100, true))
            .await,
    );
    assert!(store.get(&p("x/small.bin")).await.unwrap().is_none());
    assert_eq!(list(store, None).await, Some(vec![]));
}

async fn failed_overwrite_keeps_the_old_object(store: &ObjectArtifactStore) {
    put(store, "d/m.bin", b"old").await;
    for size in [1000, 10 * MIB] {
        assert_invalid(
            store
                .put(&p("d/m.bin"), pattern_body(size, MIB, true))
                .await,
        );
        assert_eq!(read(store, "d/m.bin").await.unwrap(), b"old");
    }
    assert_eq!(list(store, Some("d")).await.unwrap(), [file("m.bin", 3)]);
}

async fn unusual_names_round_trip(store: &ObjectArtifactStore) {
    let names = [
        "dir with space/na%me #x (1).txt",
        "模型/ü+&=?.bin",
        "a#b/c#d.txt",
    ];
    for name in names {
        put(store, name, name.as_bytes()).await;
        assert_eq!(read(store, name).await.unwrap(), name.as_bytes(), "{name}");
    }
    assert_eq!(
        list(store, None).await.unwrap(),
        [dir("a#b"), dir("dir with space"), dir("模型")]
    );
    let size = names[0].len() as u64;
    assert_eq!(
        list(store, Some("dir with space")).await.unwrap(),
        [file("na%me #x (1).txt", size)]
    );
}

macro_rules! contract {
    ($($test:ident),* $(,)?) => {
        mod local_folder {
            $(
                #[tokio::test]
                async fn $test() {
                    let (folder, store) = super::local_store();
                    super::$test(&store).await;
                    drop(folder);
                }
            )*
        }
        mod in_memory {
            $(
                #[tokio::test]
                async fn $test() {
                    let store = super::memory_store();
                    super::$test(&store).await;
                }
            )*
        }
        #[cfg(feature = "s3")]
        mod s3 {
            $(
                #[tokio::test]
                async fn $test() {
                    if let Some(store) = super::s3_store().await {
                        super::$test(&store).await;
                    }
                }
            )*
        }
    };
}

contract!(
    small_round_trip,
    large_streamed_round_trip,
    overwrite,
    empty_root_lists_empty,
    list_root_dir_file_missing,
    get_finds_files_only,
    delete_file,
    delete_directory,
    failed_large_upload_leaves_nothing,
    failed_small_upload_leaves_nothing,
    failed_overwrite_keeps_the_old_object,
    unusual_names_round_trip,
);

fn local_store() -> (TempDir, ObjectArtifactStore) {
    let folder = tempfile::tempdir().unwrap();
    let store = ObjectArtifactStore::local(folder.path()).unwrap();
    (folder, store)
}

fn memory_store() -> ObjectArtifactStore {
    ObjectArtifactStore::new(Arc::new(object_store::memory::InMemory::new()))
}

/// A fresh prefix of the bucket `SLIPWAY_TEST_S3_URL` names; `None`, said once per test,
/// without one. scripts/test.sh starts moto's S3 server once its Python environment is ready
/// and runs these tests again with it (failing under CI=true when it cannot): the workspace's
/// first test run comes before that.
#[cfg(feature = "s3")]
async fn s3_store() -> Option<ObjectArtifactStore> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let Ok(base) = std::env::var("SLIPWAY_TEST_S3_URL") else {
        eprintln!("skipped: SLIPWAY_TEST_S3_URL is not set (scripts/test.sh sets it)");
        return None;
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let url = format!(
        "{}/t{nanos}-{}-{n}",
        base.trim_end_matches('/'),
        std::process::id()
    );
    Some(ObjectArtifactStore::s3(&url).await.unwrap())
}

// --- what only a folder on disk shows ---

/// Every file and directory under `root`, relative, sorted.
fn walk(root: &Path) -> Vec<String> {
    fn visit(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            out.push(
                path.strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            );
            if path.is_dir() {
                visit(root, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    visit(root, root, &mut out);
    out.sort();
    out
}

#[tokio::test]
async fn local_root_is_created_and_reopened() {
    let parent = tempfile::tempdir().unwrap();
    let root: PathBuf = parent.path().join("not/yet/there");
    let store = ObjectArtifactStore::local(&root).unwrap();
    put(&store, "a/b.txt", b"b").await;
    let reopened = ObjectArtifactStore::local(&root).unwrap();
    assert_eq!(read(&reopened, "a/b.txt").await.unwrap(), b"b");
}

#[tokio::test]
async fn files_on_disk_are_the_artifact_paths() {
    let (folder, store) = local_store();
    put(
        &store,
        "1/abc/artifacts/dir with space/na%me #x.txt",
        b"verbatim",
    )
    .await;
    put(&store, "1/abc/artifacts/模型.bin", b"unicode").await;
    let artifacts = folder.path().join("1/abc/artifacts");
    assert_eq!(
        std::fs::read(artifacts.join("dir with space/na%me #x.txt")).unwrap(),
        b"verbatim"
    );
    assert_eq!(
        std::fs::read(artifacts.join("模型.bin")).unwrap(),
        b"unicode"
    );
    // Files put there by other tools (an existing mlruns folder) are served as they are.
    std::fs::write(artifacts.join("external.txt"), b"outside").unwrap();
    assert_eq!(
        read(&store, "1/abc/artifacts/external.txt").await.unwrap(),
        b"outside"
    );
}

#[tokio::test]
async fn failed_uploads_leave_no_file_or_directory_on_disk() {
    let (folder, store) = local_store();
    assert_invalid(
        store
            .put(&p("x/y/big.bin"), pattern_body(10 * MIB, MIB, true))
            .await,
    );
    assert_invalid(
        store
            .put(&p("x/y/small.bin"), pattern_body(1000, 100, true))
            .await,
    );
    assert_eq!(walk(folder.path()), Vec::<String>::new());

    put(&store, "keep/old.bin", b"old").await;
    assert_invalid(
        store
            .put(&p("keep/old.bin"), pattern_body(10 * MIB, MIB, true))
            .await,
    );
    assert_invalid(
        store
            .put(&p("keep/new/new.bin"), pattern_body(10 * MIB, MIB, true))
            .await,
    );
    assert_eq!(walk(folder.path()), ["keep", "keep/old.bin"]);
}

#[tokio::test]
async fn deleting_prunes_emptied_directories_on_disk() {
    let (folder, store) = local_store();
    tree(&store).await;
    store.delete(&p("dir/sub")).await.unwrap();
    store.delete(&p("dir2/x.txt")).await.unwrap();
    assert_eq!(
        walk(folder.path()),
        ["a.txt", "dir", "dir/b.txt", "dirt.txt"]
    );
    store.delete(&p("dir")).await.unwrap();
    assert_eq!(walk(folder.path()), ["a.txt", "dirt.txt"]);
}

#[tokio::test]
async fn a_reader_keeps_the_object_it_opened_across_an_overwrite() {
    let (_folder, store) = local_store();
    let total = 3 * MIB;
    store
        .put(&p("m.bin"), pattern_body(total, MIB, false))
        .await
        .unwrap();
    let opened = store.get(&p("m.bin")).await.unwrap().unwrap();
    put(&store, "m.bin", b"replaced").await;
    let mut old = Vec::new();
    let mut body = opened.body;
    while let Some(chunk) = body.next().await {
        old.extend_from_slice(&chunk.unwrap());
    }
    assert!(
        old == pattern(0, total),
        "the opened object changed under its reader"
    );
    assert_eq!(read(&store, "m.bin").await.unwrap(), b"replaced");
}

#[tokio::test]
async fn an_upload_in_progress_is_invisible() {
    let (folder, store) = local_store();
    put(&store, "run/model.bin", b"old").await;
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(2);
    let body: ByteStream = Box::pin(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }));
    let uploading = {
        let store = store.clone();
        tokio::spawn(async move { store.put(&p("run/model.bin"), body).await })
    };
    let total = 12 * MIB;
    for offset in (0..9 * MIB).step_by(MIB) {
        tx.send(Ok(pattern(offset, MIB).into())).await.unwrap();
    }
    // Past one part: the multipart upload is writing a staging file next to the target.
    let mut waited = Duration::ZERO;
    while !walk(folder.path()).iter().any(|path| path.contains('#')) {
        assert!(waited < Duration::from_secs(20), "no staging file appeared");
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += Duration::from_millis(10);
    }
    assert_eq!(read(&store, "run/model.bin").await.unwrap(), b"old");
    assert_eq!(
        list(&store, Some("run")).await.unwrap(),
        [file("model.bin", 3)]
    );

    for offset in (9 * MIB..total).step_by(MIB) {
        tx.send(Ok(pattern(offset, MIB).into())).await.unwrap();
    }
    drop(tx);
    assert_eq!(uploading.await.unwrap().unwrap(), total as u64);
    assert_pattern(&store, "run/model.bin", total).await;
    assert_eq!(walk(folder.path()), ["run", "run/model.bin"]);
}

#[tokio::test]
async fn writing_over_a_directory_or_below_a_file_is_refused() {
    let (folder, store) = local_store();
    tree(&store).await;
    let before = walk(folder.path());
    for size in [10, 10 * MIB] {
        assert_invalid(store.put(&p("dir"), pattern_body(size, MIB, false)).await);
        assert_invalid(
            store
                .put(&p("a.txt/x.bin"), pattern_body(size, MIB, false))
                .await,
        );
        assert_invalid(
            store
                .put(&p("dir/b.txt/deeper/x.bin"), pattern_body(size, MIB, false))
                .await,
        );
    }
    assert_eq!(walk(folder.path()), before);
}

#[tokio::test]
async fn staging_file_names_are_reserved() {
    let (folder, store) = local_store();
    assert_invalid(store.put(&p("model#1"), bytes_body(b"x")).await);
    assert_invalid(store.put(&p("a/model#b#12"), bytes_body(b"x")).await);
    assert!(store.get(&p("model#1")).await.unwrap().is_none());
    // A stray staging file (a crash mid-upload) stays hidden and cannot be read or clobbered.
    std::fs::write(folder.path().join("m.bin#1"), b"partial").unwrap();
    std::fs::write(folder.path().join("a#b#2"), b"partial").unwrap();
    assert_eq!(list(&store, None).await, Some(vec![]));
    assert!(store.get(&p("m.bin#1")).await.unwrap().is_none());
    store.delete(&p("m.bin#1")).await.unwrap();
    // `#` elsewhere is an ordinary character, and directories may be named anything.
    put(&store, "model#1/v#2.onnx", b"ok").await;
    assert_eq!(
        list(&store, Some("model#1")).await.unwrap(),
        [file("v#2.onnx", 2)]
    );
}
