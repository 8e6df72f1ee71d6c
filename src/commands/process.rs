//! `process`: the pipeline over local files, the same bytes the daemon reads from S3. Writes
//! each change as one line of JSON (the exact body the daemon POSTs) and reports the rest.

use crate::core::filter::{Dedup, Reason};
use crate::core::normalize::Origin;
use crate::core::pipeline::{Outcome, Pipeline, PipelineError, Tally};
use crate::core::records;
use crate::settings::Settings;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What `process` is asked to do.
#[derive(Debug, Clone)]
pub struct Request {
    pub paths: Vec<PathBuf>,
    pub explain: bool,
    pub bucket: Option<String>,
}

/// What `process` did.
#[derive(Debug, Default)]
pub struct Summary {
    pub files: u64,
    /// Files that failed, with their errors.
    pub failed: Vec<(PathBuf, String)>,
    /// Files skipped in directories (CloudTrail digest and Insights files).
    pub skipped: u64,
    pub tally: Tally,
    pub compressed_bytes: u64,
    pub elapsed: Duration,
}

/// A failure of the output itself (stdout closed, disk full): it stops the run.
#[derive(Debug, thiserror::Error)]
#[error("writing output failed: {0}")]
pub struct OutputError(#[from] pub io::Error);

/// `process`: the pipeline over the named files, changes to stdout, the summary to stderr;
/// `Ok(false)` when any file failed (the others were still processed).
///
/// # Errors
/// [`OutputError`] when stdout or stderr cannot be written (a closed pipe is not an error).
pub fn command(settings: &Settings, args: crate::cli::ProcessArgs) -> Result<bool, OutputError> {
    let request = Request {
        paths: args.paths,
        explain: args.explain,
        bucket: args.bucket,
    };
    let mut out = io::BufWriter::with_capacity(256 * 1024, io::stdout().lock());
    let mut err = io::stderr().lock();
    let summary = match run(settings, &request, &mut out, &mut err) {
        Ok(summary) => summary,
        // The reader of our output went away (`| head`): nothing left to report.
        Err(e) if e.0.kind() == io::ErrorKind::BrokenPipe => return Ok(true),
        Err(e) => return Err(e),
    };
    writeln!(err, "{}", summary.report())?;
    Ok(summary.failed.is_empty())
}

/// Runs the pipeline over `request.paths`, writing changes to `out` and `--explain` lines and
/// per-file errors to `err`. A file that fails is reported and the run goes on.
///
/// # Errors
/// [`OutputError`] when `out` or `err` cannot be written.
pub fn run(
    settings: &Settings,
    request: &Request,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Summary, OutputError> {
    let started = Instant::now();
    let mut summary = Summary::default();
    let mut dedup = Dedup::default();
    let pipeline = Pipeline {
        policy: &settings.policy,
        normalize: settings.normalize,
        max_record_bytes: settings.records.max_record_bytes,
        // One moment for the whole run: the plausibility bound allows a day of slack.
        now: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
    };
    for path in &request.paths {
        let files = match list_files(path, &mut summary.skipped) {
            Ok(files) => files,
            Err(e) => {
                report_failure(&mut summary, err, path, &format!("cannot read: {e}"))?;
                continue;
            }
        };
        for file in files {
            summary.files += 1;
            match process_file(
                &pipeline,
                settings,
                request,
                &file,
                &mut dedup,
                &mut summary,
                out,
                err,
            ) {
                Ok(()) => {}
                Err(FileError::Output(e)) => return Err(OutputError(e)),
                Err(FileError::Input(msg)) => report_failure(&mut summary, err, &file, &msg)?,
            }
        }
    }
    out.flush()?;
    summary.elapsed = started.elapsed();
    Ok(summary)
}

enum FileError {
    Input(String),
    Output(io::Error),
}

#[allow(clippy::too_many_arguments)]
fn process_file(
    pipeline: &Pipeline<'_>,
    settings: &Settings,
    request: &Request,
    path: &Path,
    dedup: &mut Dedup,
    summary: &mut Summary,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), FileError> {
    let file = File::open(path).map_err(|e| FileError::Input(format!("cannot open: {e}")))?;
    summary.compressed_bytes += file.metadata().map(|m| m.len()).unwrap_or(0);
    let (_, json) =
        records::open(file, &settings.records).map_err(|e| FileError::Input(e.to_string()))?;
    let key = path.to_string_lossy();
    let origin = Origin {
        bucket: request.bucket.as_deref(),
        key: &key,
    };
    let result = pipeline.run(
        records::pipelined(json),
        origin,
        dedup,
        &mut summary.tally,
        |outcome| write_outcome(outcome, request.explain, out, err),
    );
    match result {
        Ok(()) => Ok(()),
        Err(PipelineError::Handler(e)) => Err(FileError::Output(e)),
        Err(PipelineError::Records(e)) => Err(FileError::Input(e.to_string())),
    }
}

fn write_outcome(
    outcome: Outcome<'_>,
    explain: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<()> {
    match outcome {
        Outcome::Change(change) => {
            serde_json::to_writer(&mut *out, &change)?;
            out.write_all(b"\n")
        }
        Outcome::Dropped(d) if explain => {
            let detail = d.detail.map(|s| format!(" ({s})")).unwrap_or_default();
            writeln!(
                err,
                "dropped record {}: eventID={} eventName={} reason={}{detail}",
                d.index,
                d.event_id.unwrap_or("-"),
                d.event_name.unwrap_or("-"),
                d.reason.as_str(),
            )
        }
        Outcome::Dropped(_) => Ok(()),
    }
}

fn report_failure(
    summary: &mut Summary,
    err: &mut dyn Write,
    path: &Path,
    msg: &str,
) -> io::Result<()> {
    writeln!(err, "error: {}: {msg}", path.display())?;
    summary.failed.push((path.to_owned(), msg.to_owned()));
    Ok(())
}

/// The files a path names: itself, or the `.json.gz` and `.json` files under a directory, in
/// name order. CloudTrail digest and Insights files under a directory are skipped and counted.
fn list_files(path: &Path, skipped: &mut u64) -> io::Result<Vec<PathBuf>> {
    if !path.is_dir() {
        // Opening it reports a missing file.
        return Ok(vec![path.to_owned()]);
    }
    let mut found = Vec::new();
    let mut pending = vec![path.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let p = entry.path();
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push(p);
            } else if is_log_file_name(&p) {
                if is_digest_or_insight(&p) {
                    *skipped += 1;
                } else {
                    found.push(p);
                }
            }
        }
    }
    found.sort();
    Ok(found)
}

fn is_log_file_name(p: &Path) -> bool {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.ends_with(".json.gz") || name.ends_with(".json")
}

fn is_digest_or_insight(p: &Path) -> bool {
    p.components().any(|c| {
        let c = c.as_os_str();
        c == "CloudTrail-Digest" || c == "CloudTrail-Insight"
    })
}

impl Summary {
    /// The human summary printed on stderr.
    pub fn report(&self) -> String {
        let t = &self.tally;
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let mb = t.json_bytes as f64 / 1e6;
        let dropped: Vec<String> = Reason::ALL
            .iter()
            .map(|r| format!("{}={}", r.as_str(), t.dropped(*r)))
            .collect();
        format!(
            "files: {} ({} failed, {} skipped)\nrecords: {}  changes: {}  malformed: {}\ndropped: {}\nread {:.1} MB of JSON ({:.1} MB stored) in {:.3} s: {:.1} MB/s, {:.0} records/s",
            self.files,
            self.failed.len(),
            self.skipped,
            t.records,
            t.changes,
            t.dropped(Reason::Malformed),
            dropped.join(" "),
            mb,
            self.compressed_bytes as f64 / 1e6,
            secs,
            mb / secs,
            t.records as f64 / secs,
        )
    }
}
