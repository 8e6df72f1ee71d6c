//! The "minimal client" of `scripts/bench-daemon.sh`: drains a queue of S3 notifications with
//! nothing but receive, GetObject (body read fully) and batched delete, at the daemon's
//! concurrency, to measure what the local endpoint itself allows.
//!
//!   cargo run --release --example drain_baseline -- --endpoint URL --queue-url URL \
//!       [--pollers 2] [--inflight 8] [--wait-seconds 1] [--idle-seconds 3] [--expect N]
//!
//! Shaped like the daemon's worker, minus the work: `--pollers` receive loops share
//! `--inflight` slots; a loop takes a free slot (and up to 9 more that are free at once),
//! receives that many messages (long poll `--wait-seconds`), starts one task per message
//! (parse the SNS envelope -> Message -> Records[].s3.{bucket.name,object.key}, form-decode the
//! key, skip `s3:TestEvent`, GetObject and read the body), and hands finished messages to one
//! deleter that sends DeleteMessageBatch of up to 10 (gathered for 20 ms).
//!
//! Stops when `--expect` distinct objects were read and every received message deleted, or when
//! the queue stayed empty with nothing in flight for `--idle-seconds`. Prints one JSON line:
//! objects (GETs), distinct (objects), messages, deleted, bytes, errors, seconds (start to the
//! last delete), objects_per_s (distinct objects / seconds).
//!
//! Endpoint: `--endpoint` or `AWS_ENDPOINT_URL`; queue: `--queue-url` or `QUEUE_URL`.
//! Credentials test/test, region us-east-1, S3 path-style.

use aws_config::{BehaviorVersion, Region};
use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Semaphore};

struct Args {
    endpoint: String,
    queue_url: String,
    pollers: usize,
    inflight: usize,
    wait_seconds: i32,
    idle: Duration,
    expect: Option<u64>,
}

fn parse_args() -> Args {
    let argv: Vec<String> = std::env::args().collect();
    let get = |name: &str| {
        argv.iter()
            .position(|a| a == name)
            .and_then(|i| argv.get(i + 1).cloned())
    };
    let num = |name: &str, default: u64| -> u64 {
        get(name).map_or(default, |v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}: a number, not {v:?}"))
        })
    };
    let endpoint = get("--endpoint")
        .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
        .expect("--endpoint URL (or AWS_ENDPOINT_URL)");
    let queue_url = get("--queue-url")
        .or_else(|| std::env::var("QUEUE_URL").ok())
        .expect("--queue-url URL (or QUEUE_URL)");
    Args {
        endpoint,
        queue_url,
        pollers: num("--pollers", 2).max(1) as usize,
        inflight: num("--inflight", 8).max(1) as usize,
        wait_seconds: num("--wait-seconds", 1) as i32,
        idle: Duration::from_secs_f64(
            get("--idle-seconds").map_or(3.0, |v| v.parse().expect("--idle-seconds")),
        ),
        expect: get("--expect").map(|v| v.parse().expect("--expect N")),
    }
}

/// `(bucket, key)` of every object an S3 event notification names, in an SNS envelope or not;
/// none for `s3:TestEvent` or anything else.
fn objects(body: &str) -> Vec<(String, String)> {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(body) else {
        return Vec::new();
    };
    let event = match value.get("Message").and_then(|m| m.as_str()) {
        Some(inner) => serde_json::from_str(inner).unwrap_or_default(),
        None => value,
    };
    if event.get("Event").and_then(|e| e.as_str()) == Some("s3:TestEvent") {
        return Vec::new();
    }
    let Some(records) = event.get("Records").and_then(|r| r.as_array()) else {
        return Vec::new();
    };
    records
        .iter()
        .filter_map(|r| {
            let bucket = r["s3"]["bucket"]["name"].as_str()?;
            let key = r["s3"]["object"]["key"].as_str()?.replace('+', " ");
            let key = percent_encoding::percent_decode_str(&key)
                .decode_utf8_lossy()
                .into_owned();
            Some((bucket.to_owned(), key))
        })
        .collect()
}

struct Counters {
    objects: AtomicU64,
    messages: AtomicU64,
    bytes: AtomicU64,
    deleted: AtomicU64,
    errors: AtomicU64,
    /// Every object read, once: moto may hand one message to two concurrent receives.
    distinct: Mutex<HashSet<String>>,
    /// The last time something was received or was in flight.
    last_busy: Mutex<Instant>,
    last_delete: Mutex<Instant>,
}

fn touch(m: &Mutex<Instant>) {
    *m.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
}

fn read(m: &Mutex<Instant>) -> Instant {
    *m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[tokio::main]
async fn main() {
    let args = Arc::new(parse_args());
    let config = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "test", "test", None, None, "static",
        ))
        .endpoint_url(&args.endpoint)
        .load()
        .await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .build(),
    );
    let started = Instant::now();
    let counters = Arc::new(Counters {
        objects: AtomicU64::new(0),
        messages: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        deleted: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        distinct: Mutex::new(HashSet::new()),
        last_busy: Mutex::new(started),
        last_delete: Mutex::new(started),
    });
    let slots = Arc::new(Semaphore::new(args.inflight));
    let (tx, rx) = mpsc::channel::<String>(1024);
    let deleter = tokio::spawn(delete_loop(
        sqs.clone(),
        args.queue_url.clone(),
        rx,
        Arc::clone(&counters),
    ));
    let done = tokio_util::sync::CancellationToken::new();
    let mut pollers = Vec::new();
    for _ in 0..args.pollers {
        let (sqs, s3, args, counters, slots, tx, done) = (
            sqs.clone(),
            s3.clone(),
            Arc::clone(&args),
            Arc::clone(&counters),
            Arc::clone(&slots),
            tx.clone(),
            done.clone(),
        );
        pollers.push(tokio::spawn(async move {
            loop {
                if done.is_cancelled() {
                    return;
                }
                let Ok(first) = Arc::clone(&slots).acquire_owned().await else {
                    return;
                };
                let mut permits = vec![first];
                while permits.len() < 10 {
                    match Arc::clone(&slots).try_acquire_owned() {
                        Ok(p) => permits.push(p),
                        Err(_) => break,
                    }
                }
                let received = tokio::select! {
                    () = done.cancelled() => return,
                    r = sqs
                        .receive_message()
                        .queue_url(&args.queue_url)
                        .max_number_of_messages(permits.len() as i32)
                        .wait_time_seconds(args.wait_seconds)
                        .send() => r,
                };
                let messages = match received {
                    Ok(out) => out.messages.unwrap_or_default(),
                    Err(e) => {
                        counters.errors.fetch_add(1, Ordering::Relaxed);
                        eprintln!("drain_baseline: ReceiveMessage: {e:?}");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                };
                if messages.is_empty() {
                    let idle = read(&counters.last_busy).elapsed();
                    // Idle only counts with nothing in flight (all slots free but ours).
                    if slots.available_permits() + permits.len() == args.inflight
                        && idle >= args.idle
                    {
                        done.cancel();
                        return;
                    }
                    continue;
                }
                touch(&counters.last_busy);
                counters
                    .messages
                    .fetch_add(messages.len() as u64, Ordering::Relaxed);
                for message in messages {
                    let Some(permit) = permits.pop() else { break };
                    let (s3, counters, tx) = (s3.clone(), Arc::clone(&counters), tx.clone());
                    tokio::spawn(async move {
                        let body = message.body().unwrap_or_default();
                        let mut ok = true;
                        for (bucket, key) in objects(body) {
                            match get_object(&s3, &bucket, &key).await {
                                Ok(n) => {
                                    counters
                                        .distinct
                                        .lock()
                                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                                        .insert(format!("{bucket}/{key}"));
                                    counters.objects.fetch_add(1, Ordering::Relaxed);
                                    counters.bytes.fetch_add(n, Ordering::Relaxed);
                                }
                                Err(e) => {
                                    ok = false;
                                    counters.errors.fetch_add(1, Ordering::Relaxed);
                                    eprintln!("drain_baseline: GetObject {bucket}/{key}: {e}");
                                }
                            }
                        }
                        if ok {
                            if let Some(h) = message.receipt_handle() {
                                let _ = tx.send(h.to_owned()).await;
                            }
                        }
                        touch(&counters.last_busy);
                        drop(permit);
                    });
                }
            }
        }));
    }
    drop(tx);
    if let Some(expect) = args.expect {
        let counters = Arc::clone(&counters);
        let done = done.clone();
        tokio::spawn(async move {
            loop {
                let distinct = counters
                    .distinct
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .len() as u64;
                if distinct >= expect
                    && counters.deleted.load(Ordering::Relaxed)
                        >= counters.messages.load(Ordering::Relaxed)
                {
                    done.cancel();
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
    }
    for p in pollers {
        let _ = p.await;
    }
    // In-flight tasks hold senders; wait for them by waiting for every slot.
    let _all = slots.acquire_many(args.inflight as u32).await;
    let _ = tokio::time::timeout(Duration::from_secs(30), deleter).await;
    let seconds = read(&counters.last_delete)
        .duration_since(started)
        .as_secs_f64();
    let objects = counters.objects.load(Ordering::Relaxed);
    let distinct = counters
        .distinct
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .len();
    println!(
        "{{\"objects\":{objects},\"distinct\":{distinct},\"messages\":{},\"deleted\":{},\"bytes\":{},\"errors\":{},\"seconds\":{seconds:.4},\"objects_per_s\":{:.2},\"pollers\":{},\"inflight\":{}}}",
        counters.messages.load(Ordering::Relaxed),
        counters.deleted.load(Ordering::Relaxed),
        counters.bytes.load(Ordering::Relaxed),
        counters.errors.load(Ordering::Relaxed),
        if seconds > 0.0 {
            distinct as f64 / seconds
        } else {
            0.0
        },
        args.pollers,
        args.inflight,
    );
}

async fn get_object(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Result<u64, String> {
    let out = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| format!("{}", aws_sdk_s3::error::DisplayErrorContext(&e)))?;
    let body = out
        .body
        .collect()
        .await
        .map_err(|e| format!("reading the body: {e}"))?;
    Ok(body.into_bytes().len() as u64)
}

/// Deletes handles in batches of up to 10, gathered for 20 ms (as the daemon does).
async fn delete_loop(
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    mut rx: mpsc::Receiver<String>,
    counters: Arc<Counters>,
) {
    let mut batch = Vec::with_capacity(10);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        let gather = tokio::time::sleep(Duration::from_millis(20));
        tokio::pin!(gather);
        while batch.len() < 10 {
            tokio::select! {
                () = &mut gather => break,
                next = rx.recv() => match next { Some(h) => batch.push(h), None => break },
            }
        }
        let entries: Vec<_> = batch
            .drain(..)
            .enumerate()
            .filter_map(|(i, h)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(h)
                    .build()
                    .ok()
            })
            .collect();
        let n = entries.len() as u64;
        match sqs
            .delete_message_batch()
            .queue_url(&queue_url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            Ok(out) => {
                let failed = out.failed().len() as u64;
                counters.errors.fetch_add(failed, Ordering::Relaxed);
                counters.deleted.fetch_add(n - failed, Ordering::Relaxed);
            }
            Err(e) => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                eprintln!("drain_baseline: DeleteMessageBatch: {e:?}");
            }
        }
        touch(&counters.last_delete);
    }
}
