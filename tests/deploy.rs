//! The deployment files: the systemd unit (`systemd/`) and the Kubernetes manifests
//! (`config/kubernetes/`). Each is checked against what the daemon really does: the settings it
//! accepts (`cloudtrail-changes config check`, the built binary), its shutdown grace, its admin
//! port and probe paths.
//!
//! Tools: `systemd-analyze verify` and `security` (Debian package `systemd`). The manifests are
//! parsed with PyYAML from the project's venv (`scripts/moto.sh install` creates it; the test
//! fails without it), and validated against the Kubernetes schemas by `kubernetes-validate`
//! (`CTC_KUBERNETES_VALIDATE`, the venv, or `PATH`). A missing tool fails the test with `CI`
//! set (CI installs both) and is reported as `SKIPPED:` elsewhere (tests/common/prerequisite.rs).

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

#[path = "common/prerequisite.rs"]
mod prerequisite;

const UNIT: &str = "systemd/cloudtrail-changes.service";
const ENV_EXAMPLE: &str = "systemd/cloudtrail-changes.env.example";
const MANIFESTS: &str = "config/kubernetes";
/// 32 zero bytes in base64: a valid stand-in for the encryption key from the Secret.
const SAMPLE_KEY: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    let path = repo().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A file in a fresh directory of its own (tests run in parallel), removed when dropped.
struct Scratch {
    dir: PathBuf,
    path: PathBuf,
}

impl Scratch {
    fn new(name: &str, contents: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "deploy-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create a scratch directory");
        let path = dir.join(name);
        std::fs::write(&path, contents).expect("write a scratch file");
        Self { dir, path }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `cloudtrail-changes [--config overlay] config check` with only `env` set (no CTC__ variable
/// of the caller leaks in): the effective settings as JSON, as the daemon would load them.
fn config_check(overlay: Option<&Path>, env: &[(String, String)]) -> Value {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cloudtrail-changes"));
    cmd.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    if let Some(path) = overlay {
        cmd.arg("--config").arg(path);
    }
    let out = cmd
        .args(["config", "check"])
        .output()
        .expect("run cloudtrail-changes config check");
    assert!(
        out.status.success(),
        "the daemon refuses these settings (overlay {overlay:?}, env {env:?}): {}",
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("config check prints JSON")
}

fn grace_seconds(settings: &Value) -> u64 {
    settings["worker"]["shutdown_grace_seconds"]
        .as_u64()
        .expect("worker.shutdown_grace_seconds in the effective settings")
}

/// `"0.0.0.0:9464"` -> 9464.
fn port_of(listen: &str) -> u16 {
    listen
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or_else(|| panic!("{listen:?} is no HOST:PORT"))
}

/// A `CTC__SECTION__KEY` variable's `section.key`.
fn setting_of(var: &str) -> Option<String> {
    let rest = var.strip_prefix("CTC__")?;
    let (section, key) = rest.split_once("__")?;
    Some(format!(
        "{}.{}",
        section.to_ascii_lowercase(),
        key.to_ascii_lowercase()
    ))
}

// ---------------------------------------------------------------------------------------------
// systemd

/// A unit file: `(section, key, value)` in order, comments and blank lines dropped, continued
/// lines joined.
struct Unit(Vec<(String, String, String)>);

impl Unit {
    fn parse(text: &str) -> Self {
        let mut entries = Vec::new();
        let mut section = String::new();
        let mut pending = String::new();
        for raw in text.lines() {
            let line = raw.trim();
            if pending.is_empty() && (line.is_empty() || line.starts_with(['#', ';'])) {
                continue;
            }
            if let Some(body) = line.strip_suffix('\\') {
                pending.push_str(body);
                pending.push(' ');
                continue;
            }
            let line = std::mem::take(&mut pending) + line;
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.to_owned();
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("{UNIT}: not KEY=VALUE: {line:?}"));
            entries.push((
                section.clone(),
                key.trim().to_owned(),
                value.trim().to_owned(),
            ));
        }
        assert!(pending.is_empty(), "{UNIT} ends in a continued line");
        Self(entries)
    }

    fn all(&self, section: &str, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(s, k, _)| s == section && k == key)
            .map(|(_, _, v)| v.as_str())
            .collect()
    }

    /// The value in force: the last assignment.
    fn get(&self, key: &str) -> &str {
        self.all("Service", key)
            .last()
            .copied()
            .unwrap_or_else(|| panic!("{UNIT}: no {key}= in [Service]"))
    }

    fn seconds(&self, key: &str) -> u64 {
        let value = self.get(key);
        parse_timespan(value).unwrap_or_else(|| panic!("{UNIT}: {key}={value} is no time span"))
    }

    /// `Environment=` assignments, in order (later ones win).
    fn environment(&self) -> Vec<(String, String)> {
        self.all("Service", "Environment")
            .iter()
            .flat_map(|v| v.split_whitespace())
            .map(|a| {
                let (k, v) = a
                    .split_once('=')
                    .unwrap_or_else(|| panic!("{UNIT}: Environment={a} is no VAR=VALUE"));
                assert!(
                    !v.starts_with(['"', '\'']),
                    "{UNIT}: keep Environment= unquoted (this test splits on spaces): {a}"
                );
                (k.to_owned(), v.to_owned())
            })
            .collect()
    }
}

/// systemd time spans the unit may use: `30`, `30s`, `2min`, `1min 30s`.
fn parse_timespan(value: &str) -> Option<u64> {
    let mut total = 0;
    for part in value.split_whitespace() {
        let digits = part
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(part.len());
        let n: u64 = part[..digits].parse().ok()?;
        total += match &part[digits..] {
            "" | "s" | "sec" => n,
            "m" | "min" => n * 60,
            "h" | "hr" => n * 3600,
            _ => return None,
        };
    }
    Some(total)
}

fn unit() -> Unit {
    Unit::parse(&read(UNIT))
}

/// The unit's Environment= as the daemon sees it: its settings, checked by the binary.
fn unit_settings(unit: &Unit) -> Value {
    let env: Vec<_> = unit
        .environment()
        .into_iter()
        .filter(|(k, _)| k.starts_with("CTC__"))
        .collect();
    config_check(None, &env)
}

#[test]
fn systemd_unit_is_a_notify_service_with_a_watchdog_restart_and_stop_timeout() {
    let unit = unit();
    let settings = unit_settings(&unit);
    let grace = grace_seconds(&settings);

    assert_eq!(unit.get("Type"), "notify", "the daemon sends READY=1");
    assert_eq!(
        unit.get("NotifyAccess"),
        "main",
        "only the daemon itself notifies"
    );
    let watchdog = unit.seconds("WatchdogSec");
    assert!(
        (10..=300).contains(&watchdog),
        "WatchdogSec={watchdog}: the daemon pings every WatchdogSec/2 from its main loop; keep it 10 s ..= 5 min"
    );
    let stop = unit.seconds("TimeoutStopSec");
    assert!(
        stop >= grace + 5,
        "TimeoutStopSec={stop} must stay above worker.shutdown_grace_seconds ({grace}) with a margin, or systemd kills a draining daemon"
    );
    assert_eq!(
        unit.all("Service", "KillSignal").last().copied(),
        Some("SIGTERM"),
        "SIGTERM starts the drain"
    );
    assert_eq!(unit.get("Restart"), "on-failure");
    assert!(unit.seconds("RestartSec") >= 1, "no tight restart loop");

    let exec: Vec<&str> = unit.get("ExecStart").split_whitespace().collect();
    assert!(
        exec[0].starts_with('/'),
        "ExecStart needs an absolute path: {exec:?}"
    );
    assert_eq!(exec.last(), Some(&"run"), "ExecStart runs the daemon");
    let config = exec
        .iter()
        .position(|a| *a == "--config")
        .map(|i| exec[i + 1])
        .expect("ExecStart passes --config");
    assert!(config.starts_with("/etc/"), "--config {config}");

    let env_file = unit.get("EnvironmentFile");
    assert!(
        env_file.trim_start_matches('-').starts_with("/etc/"),
        "EnvironmentFile={env_file}: secrets from a root-owned file"
    );
}

#[test]
fn systemd_unit_runs_unprivileged_and_keeps_the_sqlite_store_in_its_state_directory() {
    let unit = unit();
    let dynamic = unit.all("Service", "DynamicUser").last().copied() == Some("yes");
    let user = unit.all("Service", "User").last().copied();
    assert!(
        dynamic || user.is_some_and(|u| u != "root" && u != "0"),
        "DynamicUser=yes or a dedicated User="
    );

    let state = unit.get("StateDirectory");
    assert!(
        !state.is_empty() && !state.contains(' '),
        "StateDirectory={state}"
    );
    let state_dir = format!("/var/lib/{state}");
    assert_eq!(unit.get("WorkingDirectory"), state_dir);
    let settings = unit_settings(&unit);
    let store = settings["subscriptions"]["store"]
        .as_str()
        .expect("subscriptions.store");
    assert!(
        store.starts_with(&format!("sqlite:{state_dir}/")),
        "the SQLite store must live in the StateDirectory (the only writable place): {store}"
    );

    for (key, want) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("RestrictSUIDSGID", "yes"),
    ] {
        assert_eq!(unit.get(key), want, "{key}");
    }
    assert!(
        ["yes", "read-only", "tmpfs"].contains(&unit.get("ProtectHome")),
        "ProtectHome={}",
        unit.get("ProtectHome")
    );
    // An empty assignment resets the set to nothing: no capability at all.
    assert_eq!(
        unit.get("CapabilityBoundingSet"),
        "",
        "CapabilityBoundingSet= (empty)"
    );
    assert_eq!(
        unit.all("Service", "AmbientCapabilities").last().copied(),
        Some(""),
        "AmbientCapabilities= (empty)"
    );
    let families = unit.get("RestrictAddressFamilies");
    for family in ["AF_INET", "AF_INET6", "AF_UNIX"] {
        assert!(
            families.split_whitespace().any(|f| f == family),
            "RestrictAddressFamilies must allow {family} (AWS, BigPanda, the listeners, sd_notify): {families}"
        );
    }
}

#[test]
fn systemd_env_example_names_only_known_settings() {
    let known = config_check(None, &[]);
    let mut names = BTreeSet::new();
    for line in read(ENV_EXAMPLE).lines() {
        let line = line.trim_start_matches('#').trim();
        let Some((name, _)) = line.split_once('=') else {
            continue;
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        {
            continue;
        }
        names.insert(name.to_owned());
    }
    assert!(
        names.contains("CTC__SUBSCRIPTIONS__ENCRYPTION_KEY"),
        "{ENV_EXAMPLE} shows where the encryption key goes"
    );
    for name in names.iter().filter(|n| n.starts_with("CTC__")) {
        let setting = setting_of(name).unwrap_or_else(|| panic!("{name} is no CTC__SECTION__KEY"));
        let (section, key) = setting.split_once('.').expect("section.key");
        assert!(
            known[section].get(key).is_some(),
            "{ENV_EXAMPLE}: {name} names no setting ({setting}): the daemon would refuse to start"
        );
    }
}

const NO_SYSTEMD_ANALYZE: &str = "systemd-analyze is not installed (apt-get install systemd)";

/// `systemd-analyze ARGS UNIT`; `None` when it is not installed.
fn systemd_analyze(args: &[&str], unit: &Path) -> Option<Output> {
    match Command::new("systemd-analyze")
        .args(args)
        .arg(unit)
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) => Some(out),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => panic!("systemd-analyze: {e}"),
    }
}

/// The unit with ExecStart on the binary just built (verify wants an existing executable).
fn unit_for_verify() -> Scratch {
    let exe = env!("CARGO_BIN_EXE_cloudtrail-changes");
    let text = read(UNIT).replace(
        "ExecStart=/usr/local/bin/cloudtrail-changes ",
        &format!("ExecStart={exe} "),
    );
    assert!(
        text.contains(exe),
        "{UNIT}: ExecStart=/usr/local/bin/cloudtrail-changes ..."
    );
    Scratch::new("cloudtrail-changes.service", &text)
}

#[test]
fn systemd_analyze_verify_accepts_the_unit() {
    let unit = unit_for_verify();
    let path = &unit.path;
    let Some(out) = systemd_analyze(&["verify", "--man=no"], path) else {
        prerequisite::missing(
            "systemd_analyze_verify_accepts_the_unit",
            NO_SYSTEMD_ANALYZE,
        );
        return;
    };
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    println!("systemd-analyze verify: {}\n{stdout}{stderr}", out.status);
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{stdout}{stderr}"
    );
    // Unknown keys and bad values are only warnings (exit status 0), naming the file.
    let name = path.file_name().and_then(|n| n.to_str()).expect("name");
    let complaints: Vec<&str> = stdout
        .lines()
        .chain(stderr.lines())
        .filter(|l| l.contains(name))
        .collect();
    assert!(
        complaints.is_empty(),
        "systemd-analyze verify complains about the unit:\n{}",
        complaints.join("\n")
    );
}

#[test]
fn systemd_analyze_security_rates_the_unit_well_hardened() {
    let unit = unit_for_verify();
    // 0 (hardened) ..= 10 (exposed); the unit is about 1.2, a loosened sandbox goes above 2.5.
    let Some(out) = systemd_analyze(&["security", "--offline=yes", "--no-pager"], &unit.path)
    else {
        prerequisite::missing(
            "systemd_analyze_security_rates_the_unit_well_hardened",
            NO_SYSTEMD_ANALYZE,
        );
        return;
    };
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    if stderr.contains("unrecognized option") {
        prerequisite::missing(
            "systemd_analyze_security_rates_the_unit_well_hardened",
            &format!("this systemd-analyze has no offline security report (systemd 250 or later has): {stderr}"),
        );
        return;
    }
    let verdict = stdout
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_default();
    println!("{verdict}");
    let exposure: f64 = verdict
        .split_once(": ")
        .and_then(|(_, r)| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{stdout}{stderr}"));
    assert!(
        exposure <= 2.5,
        "exposure {exposure} > 2.5: a hardening directive went missing:\n{stdout}"
    );
}

// ---------------------------------------------------------------------------------------------
// Kubernetes

/// The project's venv (`scripts/moto.sh install` makes it).
fn venv() -> PathBuf {
    std::env::var_os("CTC_MOTO_VENV").map_or_else(|| repo().join("target/moto-venv"), PathBuf::from)
}

/// The venv's Python (PyYAML, tomllib).
fn python() -> PathBuf {
    let python = venv().join("bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run scripts/moto.sh install (its venv's PyYAML parses the manifests)",
        python.display()
    );
    python
}

fn run_python(script: &str, args: &[&Path], stdin: &str) -> Value {
    let mut child = Command::new(python())
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write to python");
    let out = child.wait_with_output().expect("python runs");
    assert!(
        out.status.success(),
        "python failed (scripts/moto.sh install provides PyYAML): {}",
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("python prints JSON")
}

fn toml_to_json(toml: &str) -> Value {
    run_python(
        "import json, sys, tomllib; json.dump(tomllib.loads(sys.stdin.read()), sys.stdout)",
        &[],
        toml,
    )
}

/// Every `.yaml` under `config/kubernetes`, recursively, sorted.
fn manifest_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read config/kubernetes") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&repo().join(MANIFESTS), &mut files);
    files.sort();
    assert!(!files.is_empty(), "no manifests under {MANIFESTS}");
    files
}

/// Every document of every manifest, with the file it came from.
fn documents() -> Vec<(PathBuf, Value)> {
    let files = manifest_files();
    let args: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let parsed = run_python(
        "import json, sys, yaml\n\
         json.dump({p: [d for d in yaml.safe_load_all(open(p)) if d is not None] \
         for p in sys.argv[1:]}, sys.stdout)",
        &args,
        "",
    );
    let mut docs = Vec::new();
    for file in files {
        let list = parsed[file.to_str().expect("UTF-8 path")]
            .as_array()
            .expect("documents")
            .clone();
        assert!(!list.is_empty(), "{}: no document", file.display());
        for doc in list {
            for field in ["apiVersion", "kind"] {
                assert!(doc[field].is_string(), "{}: no {field}", file.display());
            }
            assert!(
                doc["metadata"]["name"].is_string(),
                "{}: no metadata.name",
                file.display()
            );
            docs.push((file.clone(), doc));
        }
    }
    docs
}

struct Manifests(Vec<(PathBuf, Value)>);

impl Manifests {
    fn load() -> Self {
        Self(documents())
    }

    fn all(&self, kind: &str) -> Vec<&Value> {
        self.0
            .iter()
            .filter(|(_, d)| d["kind"] == kind)
            .map(|(_, d)| d)
            .collect()
    }

    fn one(&self, kind: &str) -> &Value {
        let found = self.all(kind);
        assert_eq!(found.len(), 1, "exactly one {kind} in {MANIFESTS}");
        found[0]
    }

    fn deployment(&self) -> &Value {
        self.one("Deployment")
    }

    fn pod(&self) -> &Value {
        &self.deployment()["spec"]["template"]
    }

    fn container(&self) -> &Value {
        let containers = self.pod()["spec"]["containers"]
            .as_array()
            .expect("containers");
        containers
            .iter()
            .find(|c| c["name"] == "cloudtrail-changes")
            .expect("a container named cloudtrail-changes")
    }

    /// The `config.toml` the daemon is given: `--config PATH` resolved through the volume
    /// mounts to a ConfigMap key.
    fn config_toml(&self) -> String {
        let container = self.container();
        let args: Vec<&str> = container["args"]
            .as_array()
            .expect("args")
            .iter()
            .map(|a| a.as_str().expect("string args"))
            .collect();
        assert_eq!(args.last(), Some(&"run"), "the container runs the daemon");
        let path = args
            .iter()
            .position(|a| *a == "--config")
            .map(|i| args[i + 1])
            .expect("--config PATH in args");
        let (dir, file) = path.rsplit_once('/').expect("an absolute --config path");
        let mount = container["volumeMounts"]
            .as_array()
            .expect("volumeMounts")
            .iter()
            .find(|m| m["mountPath"].as_str().map(|p| p.trim_end_matches('/')) == Some(dir))
            .unwrap_or_else(|| panic!("no volume mounted at {dir} for --config {path}"));
        let volume = self.volume(mount["name"].as_str().expect("mount name"));
        let map = self.one("ConfigMap");
        assert_eq!(
            volume["configMap"]["name"], map["metadata"]["name"],
            "--config {path} must come from the ConfigMap"
        );
        // With `items`, a key is mounted under another file name.
        let key = volume["configMap"]["items"]
            .as_array()
            .and_then(|items| items.iter().find(|i| i["path"] == file))
            .map_or(file, |i| i["key"].as_str().expect("item key"));
        map["data"][key]
            .as_str()
            .unwrap_or_else(|| panic!("the ConfigMap has no key {key} for --config {path}"))
            .to_owned()
    }

    fn volume(&self, name: &str) -> &Value {
        self.pod()["spec"]["volumes"]
            .as_array()
            .expect("volumes")
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no volume {name}"))
    }

    /// The literal env of the container, plus a stand-in for each value from a Secret.
    fn env(&self) -> Vec<(String, String)> {
        self.container()["env"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|e| {
                let name = e["name"].as_str().expect("env name").to_owned();
                let value = match e["value"].as_str() {
                    Some(v) => v.to_owned(),
                    None if e["valueFrom"]["secretKeyRef"].is_object() => SAMPLE_KEY.to_owned(),
                    None => panic!("env {name}: neither value nor secretKeyRef"),
                };
                (name, value)
            })
            .collect()
    }

    /// The daemon's effective settings in the pod (the binary's own `config check`).
    fn settings(&self) -> Value {
        let overlay = Scratch::new("config.toml", &self.config_toml());
        let env: Vec<_> = self
            .env()
            .into_iter()
            .filter(|(k, _)| k.starts_with("CTC__"))
            .collect();
        config_check(Some(&overlay.path), &env)
    }

    /// A container port, by name or number, as a number.
    fn container_port(&self, port: &Value) -> u64 {
        if let Some(n) = port.as_u64() {
            return n;
        }
        let name = port.as_str().expect("a port name or number");
        self.container()["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .find(|p| p["name"] == name)
            .and_then(|p| p["containerPort"].as_u64())
            .unwrap_or_else(|| panic!("no container port named {name}"))
    }
}

/// Every label of `selector` is on the pods, with the same value.
fn labels_match(selector: &Value, labels: &Value, what: &str) {
    let selector = selector.as_object().expect("selector labels");
    assert!(!selector.is_empty(), "{what}: empty selector");
    for (k, v) in selector {
        assert_eq!(
            &labels[k], v,
            "{what}: selector {k}={v} does not match the pods"
        );
    }
}

#[test]
fn kubernetes_manifests_parse_and_each_kind_is_there() {
    let m = Manifests::load();
    for kind in ["Deployment", "ConfigMap", "Service", "ServiceAccount"] {
        m.one(kind);
    }
    let kinds: BTreeSet<&str> = m.0.iter().filter_map(|(_, d)| d["kind"].as_str()).collect();
    assert!(
        !kinds.contains("Secret"),
        "no Secret in the repository: the README says how to create it"
    );
}

#[test]
fn kubernetes_config_map_is_an_overlay_the_daemon_accepts() {
    let m = Manifests::load();
    let overlay = toml_to_json(&m.config_toml());
    let defaults = toml_to_json(&read("config/default.toml"));
    // Unknown keys make the daemon refuse to start: every key must be a default's, same type.
    let kind = |v: &Value| match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "table",
    };
    let mut unknown = Vec::new();
    for (section, table) in overlay.as_object().expect("a TOML table") {
        let Some(table) = table.as_object() else {
            unknown.push(format!("{section} (not a [section])"));
            continue;
        };
        for (key, value) in table {
            match defaults.get(section).and_then(|s| s.get(key)) {
                None => unknown.push(format!("{section}.{key}")),
                Some(default) => assert_eq!(
                    kind(value),
                    kind(default),
                    "{section}.{key}: the ConfigMap's value has another type than the default's"
                ),
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "the ConfigMap's config.toml has keys config/default.toml lacks: {unknown:?}"
    );
    assert!(
        overlay["subscriptions"].get("encryption_key").is_none(),
        "the encryption key comes from the Secret, never the ConfigMap"
    );

    let settings = m.settings();
    for listener in ["api", "admin"] {
        let listen = settings[listener]["listen"].as_str().expect("listen");
        assert!(
            listen.starts_with("0.0.0.0:"),
            "{listener}.listen = {listen}: inside a pod it must listen on every address"
        );
    }
    let store = settings["subscriptions"]["store"].as_str().expect("store");
    assert!(
        store.starts_with("dynamodb:"),
        "subscriptions.store = {store}: replicas share the queue, so they need DynamoDB"
    );
    let queue = settings["sqs"]["queue_url"].as_str().expect("queue_url");
    assert!(queue.starts_with("https://sqs."), "sqs.queue_url = {queue}");
    assert_eq!(
        settings["subscriptions"]["encryption_key"], "[redacted]",
        "the Secret's key reaches the daemon"
    );
}

#[test]
fn kubernetes_deployment_probes_the_admin_port_and_outlasts_the_shutdown_grace() {
    let m = Manifests::load();
    let settings = m.settings();
    let admin = u64::from(port_of(
        settings["admin"]["listen"].as_str().expect("admin"),
    ));
    let api = u64::from(port_of(settings["api"]["listen"].as_str().expect("api")));
    let container = m.container();

    for (probe, path) in [
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
        ("startupProbe", "/healthz"),
    ] {
        if probe == "startupProbe" && container[probe].is_null() {
            continue;
        }
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe} path");
        assert_eq!(
            m.container_port(&get["port"]),
            admin,
            "{probe} must reach admin.listen's port"
        );
    }
    let ports: BTreeMap<u64, &Value> = container["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .map(|p| (p["containerPort"].as_u64().expect("containerPort"), p))
        .collect();
    assert!(ports.contains_key(&admin), "container port {admin} (admin)");
    assert!(ports.contains_key(&api), "container port {api} (api)");

    let grace = grace_seconds(&settings);
    let termination = m.pod()["spec"]["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("terminationGracePeriodSeconds");
    assert!(
        termination >= grace + 5,
        "terminationGracePeriodSeconds {termination} must stay above worker.shutdown_grace_seconds ({grace}) with a margin"
    );

    let annotations = &m.pod()["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/port"], admin.to_string());
    assert_eq!(annotations["prometheus.io/path"], "/metrics");
}

#[test]
fn kubernetes_deployment_is_locked_down_and_sized() {
    let m = Manifests::load();
    let pod = &m.pod()["spec"];
    let container = m.container();
    let security = &container["securityContext"];
    assert!(
        security["runAsNonRoot"] == true || pod["securityContext"]["runAsNonRoot"] == true,
        "runAsNonRoot"
    );
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert!(
        security["capabilities"]["drop"]
            .as_array()
            .is_some_and(|d| d.iter().any(|c| c == "ALL")),
        "capabilities drop ALL"
    );
    for bound in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(
                container["resources"][bound][resource].is_string(),
                "resources.{bound}.{resource}"
            );
        }
    }

    // Spool files go to $TMPDIR (default /tmp): a writable emptyDir on a read-only root.
    let tmpdir = m
        .env()
        .into_iter()
        .find(|(k, _)| k == "TMPDIR")
        .map_or_else(|| "/tmp".to_owned(), |(_, v)| v);
    let mount = container["volumeMounts"]
        .as_array()
        .expect("volumeMounts")
        .iter()
        .find(|v| v["mountPath"] == tmpdir.as_str())
        .unwrap_or_else(|| panic!("nothing mounted at $TMPDIR ({tmpdir}) for spool files"));
    assert!(
        m.volume(mount["name"].as_str().expect("name"))["emptyDir"].is_object(),
        "{tmpdir} is an emptyDir"
    );

    // Secrets only by reference.
    let env = container["env"].as_array().expect("env");
    let key = env
        .iter()
        .find(|e| e["name"] == "CTC__SUBSCRIPTIONS__ENCRYPTION_KEY")
        .expect("CTC__SUBSCRIPTIONS__ENCRYPTION_KEY in env");
    let secret = &key["valueFrom"]["secretKeyRef"];
    assert!(
        secret["name"].is_string() && secret["key"].is_string(),
        "the encryption key comes from a Secret: {key}"
    );
    for e in env {
        let name = e["name"].as_str().expect("name");
        assert!(
            !(e["value"].is_string() && (name.contains("KEY") || name.contains("SECRET"))),
            "{name}: keys and secrets come from a Secret, not a literal"
        );
    }

    // The IRSA role of the pods.
    let account = m.one("ServiceAccount");
    assert_eq!(pod["serviceAccountName"], account["metadata"]["name"]);
    let role = account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
        .as_str()
        .expect("an eks.amazonaws.com/role-arn annotation (IRSA)");
    assert!(
        role.starts_with("arn:aws") && role.contains(":role/"),
        "role ARN {role}"
    );
}

#[test]
fn kubernetes_service_budget_and_autoscaler_point_at_the_deployment() {
    let m = Manifests::load();
    let settings = m.settings();
    let deployment = m.deployment();
    let labels = &m.pod()["metadata"]["labels"];
    labels_match(
        &deployment["spec"]["selector"]["matchLabels"],
        labels,
        "Deployment",
    );

    let service = m.one("Service");
    labels_match(&service["spec"]["selector"], labels, "Service");
    let targets: BTreeSet<u64> = service["spec"]["ports"]
        .as_array()
        .expect("Service ports")
        .iter()
        .map(|p| m.container_port(&p["targetPort"]))
        .collect();
    for listener in ["api", "admin"] {
        let port = u64::from(port_of(
            settings[listener]["listen"].as_str().expect("listen"),
        ));
        assert!(
            targets.contains(&port),
            "the Service exposes {listener} ({port})"
        );
    }

    for budget in m.all("PodDisruptionBudget") {
        labels_match(
            &budget["spec"]["selector"]["matchLabels"],
            labels,
            "PodDisruptionBudget",
        );
    }

    let name = &deployment["metadata"]["name"];
    for scaled in m.all("ScaledObject") {
        assert_eq!(&scaled["spec"]["scaleTargetRef"]["name"], name);
        let trigger = scaled["spec"]["triggers"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["type"] == "aws-sqs-queue"))
            .expect("an aws-sqs-queue trigger");
        assert_eq!(
            trigger["metadata"]["queueURL"], settings["sqs"]["queue_url"],
            "the autoscaler watches the daemon's queue"
        );
        assert!(
            trigger["metadata"]["queueLength"].is_string(),
            "queueLength"
        );
        if let Some(auth) = trigger["authenticationRef"]["name"].as_str() {
            assert!(
                m.all("TriggerAuthentication")
                    .iter()
                    .any(|t| t["metadata"]["name"] == auth),
                "no TriggerAuthentication {auth}"
            );
        }
    }
}

/// `kubernetes-validate` (PyPI; bundles the Kubernetes JSON schemas, works offline).
fn kubernetes_validate() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CTC_KUBERNETES_VALIDATE") {
        return Some(PathBuf::from(path));
    }
    let venv = venv().join("bin/kubernetes-validate");
    if venv.is_file() {
        return Some(venv);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("kubernetes-validate"))
            .find(|p| p.is_file())
    })
}

#[test]
fn kubernetes_manifests_match_the_kubernetes_schemas() {
    let Some(validator) = kubernetes_validate() else {
        prerequisite::missing(
            "kubernetes_manifests_match_the_kubernetes_schemas",
            "kubernetes-validate is not installed (scripts/test.sh installs it into the venv, or set CTC_KUBERNETES_VALIDATE)",
        );
        return;
    };
    // Strict: unknown fields are errors. Custom kinds (KEDA) have no schema: a warning only.
    let out = Command::new(&validator)
        .args(["--strict", "--quiet"])
        .args(manifest_files())
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", validator.display()));
    println!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        out.status.success(),
        "kubernetes-validate rejects the manifests:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// The container image (Dockerfile, scripts/image.sh) and the Deployment that runs it

/// The `runtime` stage of the Dockerfile: the lines after `FROM scratch AS runtime`.
fn runtime_stage() -> Vec<String> {
    let dockerfile = read("Dockerfile");
    let (_, runtime) = dockerfile
        .split_once("FROM scratch AS runtime\n")
        .expect("the Dockerfile has a `FROM scratch AS runtime` stage");
    runtime.lines().map(str::to_owned).collect()
}

fn instruction<'a>(stage: &'a [String], name: &str) -> &'a str {
    stage
        .iter()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in the Dockerfile's runtime stage"))
}

#[test]
fn kubernetes_deployment_runs_the_image_as_built_with_a_writable_spool_under_a_read_only_root() {
    let m = Manifests::load();
    let container = m.container();
    let stage = runtime_stage();

    // The name and tag scripts/image.sh gives the image, with any registry in front.
    let tag = format!("cloudtrail-changes:{}", env!("CARGO_PKG_VERSION"));
    let image = container["image"].as_str().expect("image");
    assert!(
        image == tag || image.ends_with(&format!("/{tag}")),
        "the Deployment runs {image}, the image is {tag}"
    );
    assert!(read("scripts/image.sh").contains("image=cloudtrail-changes:$version"));

    // The binary where the image has it, as the image's user.
    let entrypoint: Vec<String> =
        serde_json::from_str(instruction(&stage, "ENTRYPOINT")).expect("ENTRYPOINT is JSON");
    assert_eq!(
        container["command"][0].as_str(),
        Some(entrypoint[0].as_str())
    );
    let uid: u64 = instruction(&stage, "USER")
        .split(':')
        .next()
        .and_then(|u| u.parse().ok())
        .expect("USER uid:gid");
    assert_ne!(uid, 0, "the image runs as root");
    assert_eq!(m.pod()["spec"]["securityContext"]["runAsUser"], uid);

    // A read-only root, and TMPDIR (where the spool goes) on a writable emptyDir.
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    let tmpdir = container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["name"] == "TMPDIR")
        .and_then(|e| e["value"].as_str())
        .expect("TMPDIR set in the container");
    assert!(stage
        .iter()
        .any(|l| l.contains(&format!("TMPDIR={tmpdir}"))));
    let mount = container["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["mountPath"] == tmpdir)
        .unwrap_or_else(|| panic!("nothing mounted at TMPDIR {tmpdir}"));
    assert_ne!(mount["readOnly"], true, "the spool must be writable");
    let volume = m.pod()["spec"]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["name"] == mount["name"])
        .expect("the spool's volume");
    assert!(
        volume["emptyDir"].is_object(),
        "the spool is an emptyDir: {volume}"
    );
}
