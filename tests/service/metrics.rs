//! The README's metrics table is the contract with operators: a daemon that has not received a
//! single message already shows every family of the table, every label value the table names
//! at 0, and nothing the table does not name.

use crate::support::stack::Stack;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

/// A row of the README's metrics table: `ctc_x_total{label}` and the backticked words of its
/// description.
struct Row {
    name: String,
    label: Option<String>,
    values: Vec<String>,
}

/// The rows of the table under "### Metrics" in README.md.
fn readme_rows() -> Vec<Row> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = std::fs::read_to_string(&path).expect("read README.md");
    let section = readme
        .split_once("### Metrics")
        .expect("README has a ### Metrics section")
        .1;
    let rows: Vec<Row> = section
        .lines()
        .skip_while(|l| !l.starts_with("| metric |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|line| {
            let mut cells = line.split('|').skip(1);
            let metric = cells.next().unwrap_or_default().trim().trim_matches('`');
            let what = cells.next().unwrap_or_default();
            let (name, label) = match metric.split_once('{') {
                Some((name, label)) => (name, Some(label.trim_end_matches('}').to_owned())),
                None => (metric, None),
            };
            let values = what
                .split('`')
                .skip(1)
                .step_by(2)
                .filter(|w| {
                    w.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                })
                .map(str::to_owned)
                .collect();
            Row {
                name: name.to_owned(),
                label,
                values,
            }
        })
        .collect();
    assert!(rows.len() > 10, "the metrics table has {} rows", rows.len());
    rows
}

/// The families of a `/metrics` page (its `# TYPE` lines).
fn families(page: &str) -> BTreeSet<String> {
    page.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// The value of the sample line that starts with `series` followed by a space.
fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_daemon_shows_the_readmes_whole_metrics_table_at_zero_before_any_message() {
    let stack = Stack::new("fresh", 5, None).await;
    // The notification set-up queued S3's test event: without it no message ever arrives.
    stack.aws.drain(&stack.queues.url).await;
    let ops = crate::support::free_addr();
    let log = stack.dir.join("fresh.log");
    let mut env = stack.env(&[]);
    env.insert("CTC__ADMIN__LISTEN".into(), ops.to_string());
    // The real binary: the test process's recorder holds other tests' series.
    let mut child = crate::support::binary::command(&["run"], env)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("start the daemon binary");
    let started = Instant::now();
    let page = loop {
        if let Ok(r) = reqwest::get(format!("http://{ops}/metrics")).await {
            break r.text().await.expect("the /metrics body");
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the daemon never served /metrics: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let _ = child.kill();
    let _ = child.wait();

    assert_eq!(
        sample(&page, "ctc_messages_received_total"),
        Some(0.0),
        "scraped before the first message:\n{page}"
    );
    let rows = readme_rows();
    let documented: BTreeSet<String> = rows.iter().map(|r| r.name.clone()).collect();
    let exported = families(&page);
    let undocumented: Vec<_> = exported.difference(&documented).collect();
    let missing: Vec<_> = documented.difference(&exported).collect();
    assert!(
        undocumented.is_empty() && missing.is_empty(),
        "exported but not in the README's table: {undocumented:?}; in the table but not \
         exported: {missing:?}\n{page}"
    );
    for row in &rows {
        match &row.label {
            Some(label) if label != "version" => {
                let prefix = format!("{}{{{label}=\"", row.name);
                assert!(
                    page.lines()
                        .any(|l| l.starts_with(&prefix) && l.ends_with(" 0")),
                    "no {prefix}...\"}} 0 series:\n{page}"
                );
                for value in &row.values {
                    let series = format!("{}{{{label}=\"{value}\"}}", row.name);
                    assert_eq!(sample(&page, &series), Some(0.0), "{series} at 0:\n{page}");
                }
            }
            Some(_) => assert!(page.contains(&format!("{}{{version=", row.name))),
            None if page.contains(&format!("# TYPE {} histogram", row.name)) => {
                let count = format!("{}_count", row.name);
                assert_eq!(sample(&page, &count), Some(0.0), "{count}:\n{page}");
            }
            None => {
                assert_eq!(sample(&page, &row.name), Some(0.0), "{}:\n{page}", row.name);
            }
        }
    }
}
