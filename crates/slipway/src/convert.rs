//! `slipway models convert MODEL_URI`: a scikit-learn, XGBoost or LightGBM model logged with
//! MLflow becomes a registered ONNX version that `slipway serve` and deployments can run.
//!
//! The steps, in order, each failing with a message that says what to do:
//! 1. resolve the URI on the tracking server and fetch the model folder through its artifact
//!    proxy, every file checked against the version's registered content (the folder is
//!    unpickled below, so what runs must be what was registered);
//! 2. read the `MLmodel` file and pick the flavour, refusing any other before Python starts;
//! 3. make sure the virtual environment this command manages has the converters and the
//!    model's own library at the version the model was saved with (pip's output shows the
//!    progress), then run `convert.py` in it: load, convert, check against the original;
//! 4. write the ONNX MLflow model folder (`MLmodel` with the `onnx` flavour and the signature,
//!    `model.onnx`, the input example), upload it beside the original in the source run, and
//!    register it with `slipway.converted_from` and the check's result as version tags.
//!
//! The Python half is `convert.py`, embedded in the binary so that nothing is installed beside
//! it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use clap::Args;
use serde_json::{Value, json};

use crate::remote::{Client, urlencode};

const CONVERTER_SCRIPT: &str = include_str!("convert.py");
/// The flavours `convert.py` loads, in the order they are preferred when a model has several.
const FLAVOURS: [&str; 3] = ["sklearn", "lightgbm", "xgboost"];
/// A model folder is a handful of files; a listing far beyond that is not a model.
const MAX_MODEL_FILES: usize = 1000;
/// Packages whose version `convert.py` uses at the model's own pin: a pickle or a booster file
/// loads reliably only with the library (and numpy) that wrote it.
const PINNED_PACKAGES: [&str; 8] = [
    "scikit-learn",
    "numpy",
    "scipy",
    "pandas",
    "cloudpickle",
    "skops",
    "lightgbm",
    "xgboost",
];

#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// The model to convert: models:/NAME/VERSION, models:/NAME@ALIAS or runs:/RUN_ID/PATH.
    model_uri: String,
    /// Register the ONNX model under this registered model (default: the source's; required
    /// for runs:/ URIs). Created when it does not exist.
    #[arg(long)]
    name: Option<String>,
    /// The Python interpreter (3.9 or later) that creates the converter's virtual environment.
    #[arg(long, env = "SLIPWAY_CONVERT_PYTHON", default_value = "python3")]
    python: PathBuf,
    /// The virtual environment this command manages (default:
    /// $XDG_CACHE_HOME/slipway/convert-venv, else ~/.cache/slipway/convert-venv).
    #[arg(long, env = "SLIPWAY_CONVERT_VENV")]
    venv: Option<PathBuf>,
    /// Rows to check the converted model on: CSV with a header line, or JSON as
    /// /invocations takes it (default: the model's input example, else 100 random rows).
    #[arg(long)]
    sample_rows: Option<PathBuf>,
    /// The largest difference allowed between the original's and the ONNX model's
    /// probabilities (for regressors: predictions, relative to their size when above 1).
    #[arg(long, default_value_t = 1e-4)]
    tolerance: f64,
    /// Where the ONNX model goes in the source run's artifacts (default: the original's path
    /// with -onnx appended, numbered when taken).
    #[arg(long)]
    artifact_path: Option<String>,
    /// Print the result as JSON (`{source, model_class, library, converter, check, run_id,
    /// artifact_path, model_version: {name, version, model_uri}, tags, next}`).
    #[arg(long)]
    json: bool,
}

/// Where the model to convert is, as the tracking server knows it.
struct Source {
    /// The URI as the lineage tag records it: a version number, never an alias that moves.
    uri: String,
    /// The registered model and version, for models:/ URIs.
    registered: Option<(String, String)>,
    run_id: Option<String>,
    /// The folder in the artifact proxy's namespace (no leading slash).
    proxy_path: String,
    /// The folder's path inside its run's artifacts, when it is there (runs:/ sources).
    path_in_run: Option<String>,
}

pub async fn convert(client: &Client, args: ConvertArgs) -> anyhow::Result<()> {
    if !(args.tolerance.is_finite() && args.tolerance >= 0.0) {
        bail!(
            "--tolerance {} must be a number of at least 0",
            args.tolerance
        );
    }
    if let Some(rows) = &args.sample_rows
        && !rows.is_file()
    {
        bail!("--sample-rows {}: no such file", rows.display());
    }
    if let Some(path) = &args.artifact_path {
        checked_artifact_path(path)?;
    }
    let source = resolve(client, &args.model_uri).await?;
    let target_name = match (&args.name, &source.registered) {
        (Some(name), _) => name.clone(),
        (None, Some((name, _))) => name.clone(),
        (None, None) => bail!(
            "{} is not a registered version: say which registered model the ONNX version joins with --name NAME",
            args.model_uri
        ),
    };

    let workdir = tempfile::Builder::new()
        .prefix("slipway-convert-")
        .tempdir()
        .context("creating a working folder")?;
    let original = workdir.path().join("original");
    progress(&format!("fetching {}", source.uri));
    fetch_folder(client, &source, &original).await?;

    let mlmodel_text = std::fs::read_to_string(original.join("MLmodel")).with_context(|| {
        format!(
            "{} has no MLmodel file: it is not an MLflow model folder",
            source.uri
        )
    })?;
    let mlmodel: Value = yaml_serde::from_str(&mlmodel_text)
        .with_context(|| format!("the MLmodel file of {} is not valid YAML", source.uri))?;
    let flavour = pick_flavour(&mlmodel, &source.uri)?;
    let pins = read_pins(&original.join("requirements.txt"));
    let packages = packages_for(flavour, &mlmodel["flavors"][flavour], &pins);

    let venv = args.venv.clone().unwrap_or_else(default_venv);
    let python = args.python.clone();
    let venv_python = tokio::task::spawn_blocking({
        let venv = venv.clone();
        move || ensure_venv(&python, &venv, &packages)
    })
    .await
    .context("the environment setup stopped")??;

    let converted = workdir.path().join("converted");
    std::fs::create_dir(&converted).context("creating the output folder")?;
    let example = input_example(&mlmodel, &original);
    let plan = json!({
        "flavor": flavour,
        "flavor_conf": mlmodel["flavors"][flavour],
        "model_dir": original,
        "signature_inputs": mlmodel["signature"]["inputs"].as_str().filter(|s| !s.trim().is_empty()),
        "input_example": example.as_ref().map(|(file, _)| original.join(file)),
        "sample_rows": args.sample_rows.as_ref().map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone())),
        "tolerance": args.tolerance,
        "out_dir": converted,
    });
    progress(&format!("converting the {flavour} model to ONNX"));
    let report = tokio::task::spawn_blocking({
        let workdir = workdir.path().to_path_buf();
        let venv = venv.clone();
        move || run_converter(&venv_python, &venv, &workdir, &plan)
    })
    .await
    .context("the converter stopped")??;
    let check = &report["check"];
    for warning in report["warnings"].as_array().into_iter().flatten() {
        eprintln!("warning: {}", warning.as_str().unwrap_or_default());
    }
    if check["passed"] != true {
        bail!(
            "the ONNX model does not match the original {}; nothing was logged or registered (check that the rows look like the model's data, or allow more with --tolerance)",
            describe_check(&report)
        );
    }

    // Where the ONNX folder goes: beside the original in its run, so the version's source run
    // is the one that trained it (its params, metrics and datasets are the lineage).
    let (run_id, run_root) = target_run(client, &source, &target_name).await?;
    let artifact_path = free_artifact_path(client, &run_root, &source, &args).await?;
    let tags = version_tags(&source, &report);
    write_model_folder(
        &converted,
        &original,
        &mlmodel,
        &report,
        example.as_ref(),
        &run_id,
        &artifact_path,
        &tags,
    )?;
    progress(&format!("logging to runs:/{run_id}/{artifact_path}"));
    upload_folder(client, &converted, &format!("{run_root}/{artifact_path}")).await?;

    let version = register(
        client,
        &target_name,
        &run_id,
        &artifact_path,
        &tags,
        &source,
    )
    .await?;
    let new_uri = format!("models:/{target_name}/{version}");
    let serve = format!("slipway serve -m {new_uri}");
    let deploy = format!(
        "slipway deploy create {} --model {new_uri}",
        deployment_name(&target_name)
    );
    if args.json {
        let out = json!({
            "source": { "model_uri": source.uri, "run_id": source.run_id },
            "model_class": report["model_class"],
            "library": report["library"],
            "converter": report["converter"],
            "check": check,
            "run_id": run_id,
            "artifact_path": artifact_path,
            "model_version": { "name": target_name, "version": version, "model_uri": new_uri },
            "tags": tags,
            "next": [serve, deploy],
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "converted {} ({}, {}) to ONNX with {}",
        source.uri,
        report["model_class"].as_str().unwrap_or_default(),
        report["library"].as_str().unwrap_or_default(),
        report["converter"].as_str().unwrap_or_default()
    );
    println!("checked {}", describe_check(&report));
    println!("logged to runs:/{run_id}/{artifact_path}");
    println!(
        "registered {new_uri} (slipway.converted_from = {})",
        source.uri
    );
    println!();
    println!("next:");
    println!("  {serve}");
    println!("  {deploy}");
    println!("  slipway lineage {new_uri}");
    Ok(())
}

fn progress(message: &str) {
    eprintln!("{message} ...");
}

/// "on 5 rows (the input example): max |difference| 3.1e-8 (tolerance 1e-4), labels agree 5/5".
fn describe_check(report: &Value) -> String {
    let check = &report["check"];
    let rows = check["rows"].as_u64().unwrap_or(0);
    let what = if report["kind"] == "regressor" {
        "predictions"
    } else {
        "probabilities"
    };
    let number = |value: &Value| match value.as_f64() {
        Some(0.0) => "0".to_owned(),
        Some(value) => format!("{value:.2e}"),
        None => "unknown".to_owned(),
    };
    let mut text = format!(
        "on {rows} rows ({}): max |difference| of {what} {} (tolerance {})",
        check["row_source"].as_str().unwrap_or_default(),
        number(&check["max_abs_diff"]),
        check["tolerance"]
    );
    if let Some(agree) = check["labels_agree"].as_u64() {
        text.push_str(&format!(", labels agree on {agree} of {rows}"));
    }
    if let Some(first) = check["first_difference"].as_str() {
        text.push_str(&format!("; first difference at {first}"));
    }
    text
}

/// A deployment name from a registered model's name (deployment names are stricter).
fn deployment_name(model: &str) -> String {
    let name: String = model
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let name = name.trim_matches('-');
    if name.is_empty() {
        "model".to_owned()
    } else {
        name.to_owned()
    }
}

/// `mlflow-artifacts:/path` or `mlflow-artifacts://host:port/path` as a path in the artifact
/// proxy; `None` for a location this server does not proxy.
fn proxy_path(location: &str) -> Option<String> {
    let rest = location.strip_prefix("mlflow-artifacts:")?;
    let path = match rest.strip_prefix("//") {
        Some(with_host) => with_host.split_once('/').map_or("", |(_, path)| path),
        None => rest,
    };
    Some(path.trim_matches('/').to_owned())
}

async fn run_artifact_root(client: &Client, run_id: &str) -> anyhow::Result<(Value, String)> {
    let run = client
        .call(
            reqwest::Method::GET,
            &format!("/api/2.0/mlflow/runs/get?run_id={}", urlencode(run_id)),
            None,
        )
        .await
        .with_context(|| format!("reading run {run_id}"))?;
    let info = run["run"]["info"].clone();
    let location = info["artifact_uri"].as_str().unwrap_or_default();
    let root = proxy_path(location).with_context(|| {
        format!(
            "run {run_id} keeps its artifacts at '{location}', which this server does not proxy"
        )
    })?;
    Ok((info, root))
}

async fn resolve(client: &Client, uri: &str) -> anyhow::Result<Source> {
    if let Some(rest) = uri.strip_prefix("runs:/") {
        let (run_id, path) = rest
            .split_once('/')
            .map(|(run, path)| (run, path.trim_matches('/')))
            .filter(|(run, path)| !run.is_empty() && !path.is_empty())
            .with_context(|| {
                format!("'{uri}': write runs:/RUN_ID/PATH, PATH being the model's folder in the run's artifacts")
            })?;
        let (_, root) = run_artifact_root(client, run_id).await?;
        return Ok(Source {
            uri: format!("runs:/{run_id}/{path}"),
            registered: None,
            run_id: Some(run_id.to_owned()),
            proxy_path: format!("{root}/{path}"),
            path_in_run: Some(path.to_owned()),
        });
    }
    let Some(rest) = uri.strip_prefix("models:/") else {
        bail!("'{uri}': write models:/NAME/VERSION, models:/NAME@ALIAS or runs:/RUN_ID/PATH");
    };
    let (name, answer) = if let Some((name, alias)) = rest.split_once('@') {
        let path = format!(
            "/api/2.0/mlflow/registered-models/alias?name={}&alias={}",
            urlencode(name),
            urlencode(alias)
        );
        (name, client.call(reqwest::Method::GET, &path, None).await?)
    } else if let Some((name, version)) = rest.rsplit_once('/') {
        let path = format!(
            "/api/2.0/mlflow/model-versions/get?name={}&version={}",
            urlencode(name),
            urlencode(version)
        );
        (name, client.call(reqwest::Method::GET, &path, None).await?)
    } else {
        bail!("'{uri}': write models:/NAME/VERSION or models:/NAME@ALIAS");
    };
    let version = &answer["model_version"];
    let number = version["version"].as_str().unwrap_or_default().to_owned();
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        bail!("the server answered version '{number}' for {uri}, which is not a version number");
    }
    let run_id = version["run_id"]
        .as_str()
        .filter(|id| !id.is_empty())
        .map(str::to_owned);
    let source = version["source"].as_str().unwrap_or_default();
    let (location, path_in_run) = if let Some(rest) = source.strip_prefix("runs:/") {
        let (run, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (_, root) = run_artifact_root(client, run).await?;
        let path = path.trim_matches('/');
        (
            format!("mlflow-artifacts:/{root}/{path}"),
            Some(path.to_owned()),
        )
    } else if let Some(model_id) = source.strip_prefix("models:/") {
        let model = client
            .call(
                reqwest::Method::GET,
                &format!("/api/2.0/mlflow/logged-models/{}", urlencode(model_id)),
                None,
            )
            .await?;
        let location = model["model"]["info"]["artifact_uri"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        (location, None)
    } else {
        (source.to_owned(), None)
    };
    let proxy_path = proxy_path(&location).with_context(|| {
        format!("version {number} of '{name}' lives at '{location}', which this server does not proxy; convert fetches mlflow-artifacts: locations")
    })?;
    Ok(Source {
        uri: format!("models:/{name}/{number}"),
        registered: Some((name.to_owned(), number)),
        run_id,
        proxy_path,
        path_in_run,
    })
}

fn encode_path(path: &str) -> String {
    path.split('/').map(urlencode).collect::<Vec<_>>().join("/")
}

/// Every file below `folder` in the artifact proxy, as paths relative to it.
async fn list_files(client: &Client, folder: &str) -> anyhow::Result<Vec<String>> {
    let mut files = Vec::new();
    let mut pending = vec![String::new()];
    while let Some(relative) = pending.pop() {
        let full = if relative.is_empty() {
            folder.to_owned()
        } else {
            format!("{folder}/{relative}")
        };
        let listing = client
            .call(
                reqwest::Method::GET,
                &format!(
                    "/api/2.0/mlflow-artifacts/artifacts?path={}",
                    urlencode(&full)
                ),
                None,
            )
            .await?;
        for entry in listing["files"].as_array().into_iter().flatten() {
            let Some(name) = entry["path"].as_str() else {
                continue;
            };
            let name = name.rsplit('/').next().unwrap_or(name);
            // The reply names local files below: nothing that climbs out of the folder.
            if name.is_empty() || name == "." || name == ".." || name.contains('\\') {
                bail!("the server listed a file named '{name}' in {full}; refusing it");
            }
            let path = if relative.is_empty() {
                name.to_owned()
            } else {
                format!("{relative}/{name}")
            };
            if entry["is_dir"] == true {
                pending.push(path);
            } else {
                files.push(path);
            }
            if files.len() + pending.len() > MAX_MODEL_FILES {
                bail!("{folder} holds more than {MAX_MODEL_FILES} files: it is not a model folder");
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Downloads the source's folder into `target`, every file checked against the registered
/// content when the source is a registered version whose files slipway stores.
async fn fetch_folder(client: &Client, source: &Source, target: &Path) -> anyhow::Result<()> {
    let files = list_files(client, &source.proxy_path).await?;
    if files.is_empty() {
        bail!(
            "{} is empty or missing (nothing at {} in the artifact store)",
            source.uri,
            source.proxy_path
        );
    }
    let manifest = match &source.registered {
        Some((name, version)) => registered_content(client, name, version).await?,
        None => None,
    };
    if manifest.is_none() && source.registered.is_some() {
        eprintln!(
            "warning: the server recorded no content digest for {}: its files are not verified",
            source.uri
        );
    }
    for relative in &files {
        let local = target.join(relative);
        if let Some(parent) = local.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        client
            .download(
                &encode_path(&format!("{}/{relative}", source.proxy_path)),
                &local,
            )
            .await?;
        if let Some(manifest) = &manifest {
            let bytes =
                std::fs::read(&local).with_context(|| format!("reading {}", local.display()))?;
            manifest
                .verify(relative, &bytes)
                .map_err(|error| anyhow::anyhow!("{}: {error}", source.uri))?;
        }
    }
    Ok(())
}

async fn registered_content(
    client: &Client,
    name: &str,
    version: &str,
) -> anyhow::Result<Option<slipway_core::registry::ContentManifest>> {
    let answer = client
        .call(
            reqwest::Method::GET,
            &format!(
                "/api/slipway/v1/model-versions/content?name={}&version={}",
                urlencode(name),
                urlencode(version)
            ),
            None,
        )
        .await;
    match answer {
        Ok(answer) if answer["files"].is_array() => Ok(Some(
            serde_json::from_value(json!({ "files": answer["files"] }))
                .context("the server answered a content manifest this client cannot read")?,
        )),
        Ok(_) => Ok(None),
        // Another MLflow server has no such route: nothing to check against.
        Err(error) if format!("{error:#}").contains("ENDPOINT_NOT_FOUND") => Ok(None),
        Err(error) => Err(error.context("reading the version's registered content")),
    }
}

fn pick_flavour(mlmodel: &Value, uri: &str) -> anyhow::Result<&'static str> {
    let flavours: Vec<&str> = mlmodel["flavors"]
        .as_object()
        .map(|map| map.keys().map(String::as_str).collect())
        .unwrap_or_default();
    if let Some(found) = FLAVOURS.iter().find(|f| flavours.contains(f)) {
        return Ok(found);
    }
    if flavours.contains(&"onnx") {
        if uri.starts_with("models:/") {
            bail!("{uri} is already an ONNX model: serve it as it is (slipway serve -m {uri})");
        }
        bail!(
            "{uri} is already an ONNX model: register it (mlflow.register_model) and serve the version (slipway serve -m models:/NAME/VERSION)"
        );
    }
    let listed = if flavours.is_empty() {
        "no flavour".to_owned()
    } else {
        format!("the flavour(s) {}", flavours.join(", "))
    };
    bail!(
        "{uri} is an MLflow model with {listed}; slipway models convert converts sklearn, xgboost and lightgbm models. Serving takes ONNX: export this model to ONNX with its framework's exporter and log it with mlflow.onnx.log_model"
    )
}

/// `name==version` lines of the model's requirements.txt, by normalised package name.
fn read_pins(path: &Path) -> BTreeMap<String, String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return BTreeMap::new();
    };
    text.lines()
        .filter_map(|line| {
            let line = line.split(['#', ';']).next()?.trim();
            let (name, version) = line.split_once("==")?;
            let name = name
                .split('[')
                .next()?
                .trim()
                .to_lowercase()
                .replace('_', "-");
            let version = version.trim();
            let valid = !version.is_empty()
                && version
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '!' | '-'));
            valid.then(|| (name, version.to_owned()))
        })
        .collect()
}

/// The pip requirements `convert.py` needs for this model, each `(package, specifier)`, the
/// specifier empty when any version will do.
fn packages_for(
    flavour: &str,
    conf: &Value,
    pins: &BTreeMap<String, String>,
) -> Vec<(String, String)> {
    let mut wanted: Vec<&str> = vec![
        "numpy",
        "pandas",
        "scikit-learn",
        "skl2onnx",
        "onnx",
        "onnxruntime",
    ];
    let serialization = conf["serialization_format"]
        .as_str()
        .unwrap_or(match flavour {
            "sklearn" => "pickle",
            _ => "cloudpickle",
        });
    // XGBoost always saves its own file format; LightGBM only for a Booster.
    let pickled = match flavour {
        "sklearn" => true,
        "lightgbm" => conf["model_class"]
            .as_str()
            .is_some_and(|class| !class.ends_with(".Booster")),
        _ => false,
    };
    if pickled {
        match serialization {
            "skops" => wanted.push("skops"),
            "cloudpickle" => wanted.push("cloudpickle"),
            _ => {}
        }
    }
    // A LightGBM or XGBoost estimator logged with mlflow.sklearn brings its library along in
    // the requirements mlflow inferred.
    for library in ["lightgbm", "xgboost", "xgboost-cpu"] {
        if flavour == library || pins.contains_key(library) {
            wanted.push(library.trim_end_matches("-cpu"));
            wanted.push("onnxmltools");
        }
    }
    if pins.contains_key("scipy") {
        wanted.push("scipy");
    }
    wanted.sort_unstable();
    wanted.dedup();
    wanted
        .into_iter()
        .map(|package| {
            if package == "xgboost" {
                return xgboost_package(pins);
            }
            let specifier = match pins.get(package) {
                Some(version) if PINNED_PACKAGES.contains(&package) => format!("=={version}"),
                _ => String::new(),
            };
            (package.to_owned(), specifier)
        })
        .collect()
}

/// XGBoost's Linux wheel brings CUDA libraries of several hundred MB that a conversion never
/// uses; `xgboost-cpu` (2.1 and later) is the same module without them.
fn xgboost_package(pins: &BTreeMap<String, String>) -> (String, String) {
    let pin = pins.get("xgboost-cpu").or_else(|| pins.get("xgboost"));
    let specifier = pin.map(|v| format!("=={v}")).unwrap_or_default();
    let has_cpu_wheel = pin.is_none_or(|version| {
        let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (2, 1)
    });
    if cfg!(target_os = "linux") && has_cpu_wheel {
        ("xgboost-cpu".to_owned(), specifier)
    } else {
        ("xgboost".to_owned(), specifier)
    }
}

fn default_venv() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    cache.join("slipway").join("convert-venv")
}

fn venv_python(venv: &Path) -> PathBuf {
    if cfg!(windows) {
        venv.join("Scripts").join("python.exe")
    } else {
        venv.join("bin").join("python")
    }
}

/// What the virtual environment holds, as this command installed it.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct VenvState {
    /// The version of the interpreter that created it: another `--python` makes a new one.
    python_version: String,
    /// Package -> the specifier it was installed with ("" for any version).
    packages: BTreeMap<String, String>,
}

const STATE_FILE: &str = "slipway-convert.json";

/// Creates or updates the virtual environment so that it has `packages`; answers its
/// interpreter. Runs pip only for what is missing or pinned differently, with pip's own
/// progress on stderr.
fn ensure_venv(
    python: &Path,
    venv: &Path,
    packages: &[(String, String)],
) -> anyhow::Result<PathBuf> {
    let parent = venv.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    // Two conversions at once would run pip over each other in one environment.
    let lock_path = parent.join(format!(
        "{}.lock",
        venv.file_name().and_then(|n| n.to_str()).unwrap_or("venv")
    ));
    let lock = std::fs::File::create(&lock_path)
        .with_context(|| format!("creating {}", lock_path.display()))?;
    lock.lock()
        .with_context(|| format!("locking {}", lock_path.display()))?;

    let version = python_version(python)?;
    let interpreter = venv_python(venv);
    let state_path = venv.join(STATE_FILE);
    let mut state: VenvState = std::fs::read(&state_path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .filter(|state: &VenvState| state.python_version == version && interpreter.is_file())
        .unwrap_or_default();
    if state.python_version.is_empty() {
        if venv.exists() {
            std::fs::remove_dir_all(venv)
                .with_context(|| format!("removing the outdated {}", venv.display()))?;
        }
        eprintln!(
            "creating the converter's Python environment in {} (Python {version}) ...",
            venv.display()
        );
        let status = Command::new(python)
            .args(["-m", "venv"])
            .arg(venv)
            .stdin(Stdio::null())
            .stdout(std::io::stderr())
            .status()
            .with_context(|| format!("running {}", python.display()))?;
        if !status.success() {
            bail!(
                "{} -m venv {} failed ({status}): install Python's venv module (python3-venv on Debian and Ubuntu) or pass --python",
                python.display(),
                venv.display()
            );
        }
        state.python_version = version;
        write_state(&state_path, &state)?;
    }
    let missing: Vec<&(String, String)> = packages
        .iter()
        .filter(|(package, specifier)| match state.packages.get(package) {
            Some(installed) => !specifier.is_empty() && installed != specifier,
            None => true,
        })
        .collect();
    if missing.is_empty() {
        return Ok(interpreter);
    }
    let requirements: Vec<String> = missing
        .iter()
        .map(|(package, specifier)| format!("{package}{specifier}"))
        .collect();
    eprintln!(
        "installing into {} (once; later conversions reuse it): {} ...",
        venv.display(),
        requirements.join(" ")
    );
    let status = Command::new(&interpreter)
        .args(["-m", "pip", "install", "--disable-pip-version-check"])
        .args(&requirements)
        .stdin(Stdio::null())
        .stdout(std::io::stderr())
        .status()
        .with_context(|| format!("running pip in {}", venv.display()))?;
    if !status.success() {
        bail!(
            "pip could not install {} into {} ({status}; its output is above). Pinned versions are the ones the model was saved with: an older --python may have wheels for them",
            requirements.join(" "),
            venv.display()
        );
    }
    for (package, specifier) in missing {
        state.packages.insert(package.clone(), specifier.clone());
    }
    write_state(&state_path, &state)?;
    Ok(interpreter)
}

fn write_state(path: &Path, state: &VenvState) -> anyhow::Result<()> {
    std::fs::write(path, serde_json::to_vec_pretty(state)?)
        .with_context(|| format!("writing {}", path.display()))
}

/// "3.11.7" for the interpreter, which must be 3.9 or later.
fn python_version(python: &Path) -> anyhow::Result<String> {
    let output = Command::new(python)
        .args([
            "-c",
            "import sys; print('%d.%d.%d' % sys.version_info[:3])",
        ])
        .stdin(Stdio::null())
        .output()
        .with_context(|| {
            format!(
                "cannot run the Python interpreter '{}': install Python 3.9 or later, or name one with --python",
                python.display()
            )
        })?;
    let version = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let parts: Vec<u32> = version.split('.').filter_map(|p| p.parse().ok()).collect();
    if !output.status.success() || parts.len() != 3 {
        bail!(
            "'{}' is not a working Python interpreter: {}",
            python.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    if (parts[0], parts[1]) < (3, 9) {
        bail!(
            "'{}' is Python {version}; the converters need 3.9 or later (--python)",
            python.display()
        );
    }
    Ok(version)
}

/// Runs `convert.py` and answers its report; a refusal becomes the error it describes.
fn run_converter(
    interpreter: &Path,
    venv: &Path,
    workdir: &Path,
    plan: &Value,
) -> anyhow::Result<Value> {
    let script = workdir.join("convert.py");
    let plan_path = workdir.join("plan.json");
    let report_path = workdir.join("report.json");
    std::fs::write(&script, CONVERTER_SCRIPT).context("writing the converter script")?;
    std::fs::write(&plan_path, serde_json::to_vec(plan)?).context("writing the plan")?;
    // Kept after the working folder is gone, for a converter that fails unexpectedly.
    let log_path = venv.join("last-convert.log");
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let status = Command::new(interpreter)
        .arg(&script)
        .arg(&plan_path)
        .arg(&report_path)
        .env("PYTHONNOUSERSITE", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()
        .with_context(|| format!("running {}", interpreter.display()))?;
    let report: Option<Value> = std::fs::read(&report_path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    match (status.code(), report) {
        (Some(0), Some(report)) => Ok(report),
        (Some(2), Some(report)) => bail!(
            "{}",
            report["error"]
                .as_str()
                .unwrap_or("the converter refused the model")
        ),
        _ => {
            let output = std::fs::read_to_string(&log_path).unwrap_or_default();
            let last = output
                .lines()
                .rev()
                .find(|line| !line.trim().is_empty())
                .unwrap_or("no output");
            bail!(
                "the converter failed ({status}): {last} (its full output is in {}; deleting {} makes the next conversion install its environment afresh)",
                log_path.display(),
                venv.display()
            )
        }
    }
}

/// The input example files the MLmodel names, when the folder has them: (example, serving
/// example).
fn input_example(mlmodel: &Value, folder: &Path) -> Option<(String, Option<String>)> {
    let info = &mlmodel["saved_input_example_info"];
    let plain = |key: &str| {
        info[key]
            .as_str()
            .filter(|name| {
                !name.is_empty()
                    && !name.contains(['/', '\\'])
                    && name != &".."
                    && folder.join(name).is_file()
            })
            .map(str::to_owned)
    };
    Some((plain("artifact_path")?, plain("serving_input_path")))
}

/// The source run when it still exists, else a new run; answers (run id, its artifact root).
async fn target_run(
    client: &Client,
    source: &Source,
    model_name: &str,
) -> anyhow::Result<(String, String)> {
    let mut experiment_id = "0".to_owned();
    if let Some(run_id) = &source.run_id {
        match run_artifact_root(client, run_id).await {
            Ok((info, root)) if info["lifecycle_stage"] != "deleted" => {
                return Ok((run_id.clone(), root));
            }
            Ok((info, _)) => {
                experiment_id = info["experiment_id"].as_str().unwrap_or("0").to_owned();
            }
            Err(error) if format!("{error:#}").contains("RESOURCE_DOES_NOT_EXIST") => {}
            Err(error) => return Err(error),
        }
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let created = client
        .call(
            reqwest::Method::POST,
            "/api/2.0/mlflow/runs/create",
            Some(json!({
                "experiment_id": experiment_id,
                "run_name": format!("convert-{}", deployment_name(model_name)),
                "start_time": now,
                "tags": [{ "key": "slipway.converted_from", "value": source.uri }],
            })),
        )
        .await
        .context("creating a run for the ONNX model (the source run is gone)")?;
    let info = &created["run"]["info"];
    let run_id = info["run_id"].as_str().unwrap_or_default().to_owned();
    client
        .call(
            reqwest::Method::POST,
            "/api/2.0/mlflow/runs/update",
            Some(json!({ "run_id": run_id, "status": "FINISHED", "end_time": now })),
        )
        .await?;
    let location = info["artifact_uri"].as_str().unwrap_or_default();
    let root = proxy_path(location).with_context(|| {
        format!("the new run keeps its artifacts at '{location}', which this server does not proxy")
    })?;
    Ok((run_id, root))
}

/// An artifact path in the run that holds nothing yet: a registered version's folder is
/// frozen, and files mixed into another model's folder would not be a model.
async fn free_artifact_path(
    client: &Client,
    run_root: &str,
    source: &Source,
    args: &ConvertArgs,
) -> anyhow::Result<String> {
    let taken = |path: String| async move {
        let listing = client
            .call(
                reqwest::Method::GET,
                &format!(
                    "/api/2.0/mlflow-artifacts/artifacts?path={}",
                    urlencode(&format!("{run_root}/{path}"))
                ),
                None,
            )
            .await?;
        anyhow::Ok(listing["files"].as_array().is_some_and(|f| !f.is_empty()))
    };
    if let Some(path) = &args.artifact_path {
        let path = checked_artifact_path(path)?;
        if taken(path.to_owned()).await? {
            bail!("--artifact-path {path} already holds files in the run; choose another");
        }
        return Ok(path.to_owned());
    }
    let base = format!(
        "{}-onnx",
        source
            .path_in_run
            .as_deref()
            .and_then(|p| p.rsplit('/').next())
            .filter(|p| !p.is_empty())
            .unwrap_or("model")
    );
    for attempt in 1..100 {
        let candidate = if attempt == 1 {
            base.clone()
        } else {
            format!("{base}-{attempt}")
        };
        if !taken(candidate.clone()).await? {
            return Ok(candidate);
        }
    }
    bail!("the run already holds {base} to {base}-99; name a path with --artifact-path")
}

fn checked_artifact_path(path: &str) -> anyhow::Result<&str> {
    let path = path.trim_matches('/');
    if path.is_empty()
        || path
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == ".." || part.contains('\\'))
    {
        bail!("--artifact-path '{path}' must be a relative path such as model-onnx");
    }
    Ok(path)
}

fn version_tags(source: &Source, report: &Value) -> Vec<(String, String)> {
    let mut tags = vec![
        ("slipway.converted_from".to_owned(), source.uri.clone()),
        (
            "slipway.converter".to_owned(),
            format!(
                "{} ({})",
                report["converter"].as_str().unwrap_or_default(),
                report["library"].as_str().unwrap_or_default()
            ),
        ),
        (
            "slipway.conversion_check".to_owned(),
            describe_check(report),
        ),
    ];
    if let Some(run_id) = &source.run_id {
        tags.push(("slipway.source_run".to_owned(), run_id.clone()));
    }
    tags
}

/// Writes MLmodel (the `onnx` and `python_function` flavours, the checked signature),
/// requirements.txt and the input example beside the `model.onnx` the converter wrote.
#[allow(clippy::too_many_arguments)]
fn write_model_folder(
    folder: &Path,
    original: &Path,
    mlmodel: &Value,
    report: &Value,
    example: Option<&(String, Option<String>)>,
    run_id: &str,
    artifact_path: &str,
    tags: &[(String, String)],
) -> anyhow::Result<()> {
    let mut document = json!({
        "artifact_path": artifact_path,
        "flavors": {
            "onnx": {
                "code": null,
                "data": "model.onnx",
                "onnx_version": report["onnx_version"],
                "providers": ["CPUExecutionProvider"],
            },
            "python_function": {
                "data": "model.onnx",
                "loader_module": "mlflow.onnx",
                "python_version": report["python_version"],
            },
        },
        "metadata": tags.iter().cloned().collect::<BTreeMap<_, _>>(),
        "model_uuid": report["model_uuid"],
        "run_id": run_id,
        "signature": {
            "inputs": report["signature_inputs"],
            "outputs": report["signature_outputs"],
            "params": null,
        },
        "utc_time_created": report["utc_time_created"],
    });
    if let Some(version) = mlmodel["mlflow_version"].as_str() {
        document["mlflow_version"] = json!(version);
    }
    if let Some((file, serving)) = example {
        std::fs::copy(original.join(file), folder.join(file))
            .with_context(|| format!("copying the input example {file}"))?;
        let mut info = mlmodel["saved_input_example_info"].clone();
        match serving {
            Some(serving) => {
                std::fs::copy(original.join(serving), folder.join(serving))
                    .with_context(|| format!("copying the serving input example {serving}"))?;
            }
            None => {
                if let Some(info) = info.as_object_mut() {
                    info.remove("serving_input_path");
                }
            }
        }
        document["saved_input_example_info"] = info;
    }
    let text = yaml_serde::to_string(&document).context("writing MLmodel")?;
    // The folder is for `slipway serve`: what it cannot read must not be registered.
    slipway_serving::Signature::from_mlmodel(&text)
        .map_err(|error| anyhow::anyhow!("the MLmodel written for the ONNX model: {error}"))?;
    std::fs::write(folder.join("MLmodel"), text).context("writing MLmodel")?;
    std::fs::write(
        folder.join("requirements.txt"),
        format!(
            "mlflow\nonnx=={}\nonnxruntime=={}\n",
            report["onnx_version"].as_str().unwrap_or_default(),
            report["onnxruntime_version"].as_str().unwrap_or_default()
        ),
    )
    .context("writing requirements.txt")?;
    Ok(())
}

async fn upload_folder(client: &Client, folder: &Path, destination: &str) -> anyhow::Result<()> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(folder)
        .with_context(|| format!("reading {}", folder.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.is_file())
        .collect();
    // MLmodel last: a reader that finds it finds a complete folder.
    files.sort_by_key(|path| (path.file_name() == Some("MLmodel".as_ref()), path.clone()));
    for path in files {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .context("a file name that is not UTF-8")?;
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        client
            .upload(&encode_path(&format!("{destination}/{name}")), bytes)
            .await?;
    }
    Ok(())
}

async fn register(
    client: &Client,
    name: &str,
    run_id: &str,
    artifact_path: &str,
    tags: &[(String, String)],
    source: &Source,
) -> anyhow::Result<String> {
    if source
        .registered
        .as_ref()
        .is_none_or(|(from, _)| from != name)
    {
        let created = client
            .call(
                reqwest::Method::POST,
                "/api/2.0/mlflow/registered-models/create",
                Some(json!({ "name": name })),
            )
            .await;
        match created {
            Ok(_) => {}
            Err(error) if format!("{error:#}").contains("RESOURCE_ALREADY_EXISTS") => {}
            Err(error) => return Err(error.context(format!("creating registered model '{name}'"))),
        }
    }
    let answer = client
        .call(
            reqwest::Method::POST,
            "/api/2.0/mlflow/model-versions/create",
            Some(json!({
                "name": name,
                "source": format!("runs:/{run_id}/{artifact_path}"),
                "run_id": run_id,
                "description": format!("ONNX conversion of {}, checked against it", source.uri),
                "tags": tags.iter().map(|(key, value)| json!({ "key": key, "value": value })).collect::<Vec<_>>(),
            })),
        )
        .await
        .with_context(|| format!("registering the ONNX model as a version of '{name}'"))?;
    answer["model_version"]["version"]
        .as_str()
        .map(str::to_owned)
        .context("the server registered the version but did not say its number")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pins(text: &str) -> BTreeMap<String, String> {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("requirements.txt");
        std::fs::write(&path, text).unwrap();
        read_pins(&path)
    }

    #[test]
    fn requirements_pin_the_model_library_and_leave_converters_free() {
        let pins = pins(
            "mlflow==3.17.2\nscikit-learn==1.7.2\nnumpy==2.3.1 ; python_version >= '3.10'\ncloudpickle==3.1.1\nlightgbm>=4\nskl2onnx==1.0\nbad==1;rm -rf\n",
        );
        let packages = packages_for(
            "sklearn",
            &json!({ "serialization_format": "cloudpickle" }),
            &pins,
        );
        let got: Vec<String> = packages.iter().map(|(p, s)| format!("{p}{s}")).collect();
        assert_eq!(
            got,
            [
                "cloudpickle==3.1.1",
                "numpy==2.3.1",
                "onnx",
                "onnxruntime",
                "pandas",
                "scikit-learn==1.7.2",
                "skl2onnx",
            ]
        );
    }

    #[test]
    fn a_lightgbm_booster_needs_no_pickle_library_but_onnxmltools() {
        let packages = packages_for(
            "lightgbm",
            &json!({ "data": "model.lgb", "model_class": "lightgbm.basic.Booster" }),
            &pins("lightgbm==4.6.0\n"),
        );
        let got: Vec<String> = packages.iter().map(|(p, s)| format!("{p}{s}")).collect();
        assert!(got.contains(&"lightgbm==4.6.0".to_owned()), "{got:?}");
        assert!(got.contains(&"onnxmltools".to_owned()), "{got:?}");
        assert!(
            !got.iter()
                .any(|p| p.starts_with("cloudpickle") || p.starts_with("skops")),
            "{got:?}"
        );
    }

    #[test]
    fn xgboost_installs_without_cuda_where_a_cpu_wheel_exists() {
        let packages = packages_for(
            "xgboost",
            &json!({ "data": "model.ubj", "model_class": "xgboost.sklearn.XGBClassifier" }),
            &pins("xgboost==3.0.2\n"),
        );
        let expected = if cfg!(target_os = "linux") {
            "xgboost-cpu==3.0.2"
        } else {
            "xgboost==3.0.2"
        };
        assert!(
            packages.iter().any(|(p, s)| format!("{p}{s}") == expected),
            "{packages:?}"
        );
        assert_eq!(
            xgboost_package(&pins("xgboost==1.7.6\n")),
            ("xgboost".to_owned(), "==1.7.6".to_owned())
        );
    }

    #[test]
    fn an_unsupported_flavour_is_named_in_the_refusal() {
        let mlmodel = json!({ "flavors": { "python_function": {}, "pytorch": {} } });
        let error = pick_flavour(&mlmodel, "models:/m/1")
            .unwrap_err()
            .to_string();
        assert!(error.contains("python_function, pytorch"), "{error}");
        assert!(error.contains("sklearn, xgboost and lightgbm"), "{error}");
        let onnx = json!({ "flavors": { "onnx": {}, "python_function": {} } });
        let error = pick_flavour(&onnx, "models:/m/1").unwrap_err().to_string();
        assert!(error.contains("already an ONNX model"), "{error}");
        let both = json!({ "flavors": { "python_function": {}, "lightgbm": {}, "sklearn": {} } });
        assert_eq!(pick_flavour(&both, "models:/m/1").unwrap(), "sklearn");
    }

    #[test]
    fn proxy_paths_drop_the_scheme_and_host() {
        assert_eq!(
            proxy_path("mlflow-artifacts:/1/abc/artifacts").as_deref(),
            Some("1/abc/artifacts")
        );
        assert_eq!(
            proxy_path("mlflow-artifacts://host:5000/1/abc/artifacts/").as_deref(),
            Some("1/abc/artifacts")
        );
        assert_eq!(proxy_path("s3://bucket/1"), None);
    }

    #[test]
    fn deployment_names_are_lowercase_words() {
        assert_eq!(deployment_name("Fraud Model_v2"), "fraud-model-v2");
        assert_eq!(deployment_name("__"), "model");
    }
}
