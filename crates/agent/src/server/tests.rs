use std::sync::atomic::{AtomicBool, Ordering};

use super::*;

#[test]
fn routes() {
    let cases: &[(Method, &str, Result<Route<'static>, StatusCode>)] = &[
        (Method::GET, "/healthz", Ok(Route::Healthz)),
        (
            Method::GET,
            "/containerLogs/ns/p/c",
            Ok(Route::Logs("ns", "p", "c")),
        ),
        (
            Method::POST,
            "/containerLogs/ns/p/c",
            Err(StatusCode::METHOD_NOT_ALLOWED),
        ),
        (
            Method::POST,
            "/exec/ns/p/c",
            Ok(Route::Exec("ns", "p", "c")),
        ),
        (Method::GET, "/exec/ns/p/c", Ok(Route::Exec("ns", "p", "c"))),
        (
            Method::PUT,
            "/exec/ns/p/c",
            Err(StatusCode::METHOD_NOT_ALLOWED),
        ),
        (
            Method::GET,
            "/attach/ns/p/c",
            Ok(Route::Attach("ns", "p", "c")),
        ),
        (
            Method::POST,
            "/portForward/ns/p",
            Ok(Route::PortForward("ns", "p")),
        ),
        (Method::GET, "/exec/ns/p", Err(StatusCode::NOT_FOUND)),
        (Method::GET, "/pods", Ok(Route::Pods)),
        (Method::GET, "/stats/summary", Ok(Route::StatsSummary)),
        (
            Method::POST,
            "/stats/summary",
            Err(StatusCode::METHOD_NOT_ALLOWED),
        ),
        (Method::GET, "/stats", Err(StatusCode::NOT_FOUND)),
    ];
    for (m, path, want) in cases {
        assert_eq!(route(m, path), *want, "{m} {path}");
    }
}

#[test]
fn exec_options() {
    // (command, stdin, stdout, stderr, tty) or the error.
    type Want = Result<(Vec<&'static str>, bool, bool, bool, bool), &'static str>;
    let cases: &[(&str, Want)] = &[
        (
            "command=sh&command=-c&command=echo+hi&output=1&error=1",
            Ok((vec!["sh", "-c", "echo hi"], false, true, true, false)),
        ),
        (
            "command=cat&input=1&output=1",
            Ok((vec!["cat"], true, true, false, false)),
        ),
        // A terminal has no separate stderr.
        (
            "command=sh&input=true&output=true&error=true&tty=true",
            Ok((vec!["sh"], true, true, false, true)),
        ),
        (
            "command=ls",
            Err("you must specify at least 1 of stdin, stdout, stderr"),
        ),
    ];
    for (q, want) in cases {
        let got = stream_options(Some(q)).map(|(cmd, r)| (cmd, r.stdin, r.stdout, r.stderr, r.tty));
        let want = want
            .clone()
            .map(|(c, i, o, e, t)| {
                (
                    c.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                    i,
                    o,
                    e,
                    t,
                )
            })
            .map_err(|e| e.to_owned());
        assert_eq!(got, want, "{q}");
    }
}

#[test]
fn stream_urls() {
    let cases = [
        (
            "http://127.0.0.1:4321/exec/abc",
            Some(("127.0.0.1:4321", "/exec/abc")),
        ),
        ("http://[::1]:80", Some(("[::1]:80", "/"))),
        ("https://x/y", None),
    ];
    for (url, want) in cases {
        assert_eq!(proxy::split_url(url), want, "{url}");
    }
    assert!(proxy::forwarded("Sec-WebSocket-Protocol"));
    assert!(proxy::forwarded("X-Stream-Protocol-Version"));
    assert!(!proxy::forwarded("Authorization"));
}

async fn collect(mut rx: mpsc::Receiver<Bytes>) -> String {
    let mut out = Vec::new();
    while let Some(b) = rx.recv().await {
        out.extend_from_slice(&b);
    }
    String::from_utf8(out).unwrap()
}

fn append(path: &std::path::Path, s: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(s.as_bytes()).unwrap();
}

#[tokio::test]
async fn follow_reads_until_the_container_exits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("0.log");
    std::fs::write(
        &path,
        "2026-01-01T00:00:01Z stdout F a\n2026-01-01T00:00:02Z stdout P b",
    )
    .unwrap();
    let running = Arc::new(AtomicBool::new(true));
    let (tx, rx) = mpsc::channel(16);
    let opts = LogOptions {
        follow: true,
        timestamps: true,
        ..Default::default()
    };
    let r = running.clone();
    let p = path.clone();
    let task = tokio::spawn(async move {
        stream_log(
            &p,
            &opts,
            move || {
                let r = r.clone();
                async move { r.load(Ordering::SeqCst) }
            },
            tx,
        )
        .await
    });
    let reader = tokio::spawn(collect(rx));
    tokio::time::sleep(Duration::from_millis(300)).await;
    append(&path, "\n2026-01-01T00:00:03Z stdout F c\n");
    tokio::time::sleep(Duration::from_millis(300)).await;
    append(&path, "2026-01-01T00:00:04Z stderr F d\n");
    running.store(false, Ordering::SeqCst);
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        reader.await.unwrap(),
        "2026-01-01T00:00:01Z a\n2026-01-01T00:00:02Z bc\n2026-01-01T00:00:04Z d\n"
    );
}

#[tokio::test]
async fn follow_ends_on_rotation_and_when_the_client_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("0.log");
    std::fs::write(&path, "2026-01-01T00:00:01Z stdout F a\n").unwrap();
    let opts = LogOptions {
        follow: true,
        ..Default::default()
    };
    // Rotation: the file is replaced.
    let (tx, rx) = mpsc::channel(16);
    let p = path.clone();
    let o = opts.clone();
    let task = tokio::spawn(async move { stream_log(&p, &o, || async { true }, tx).await });
    let reader = tokio::spawn(collect(rx));
    tokio::time::sleep(Duration::from_millis(300)).await;
    std::fs::rename(&path, dir.path().join("0.log.1")).unwrap();
    std::fs::write(&path, "").unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(reader.await.unwrap(), "a\n");
    // The client goes away.
    let (tx, mut rx) = mpsc::channel(16);
    std::fs::write(&path, "2026-01-01T00:00:01Z stdout F a\n").unwrap();
    let p = path.clone();
    let task = tokio::spawn(async move { stream_log(&p, &opts, || async { true }, tx).await });
    assert_eq!(rx.recv().await.unwrap(), Bytes::from("a\n"));
    drop(rx);
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn limit_bytes_ends_a_follow() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("0.log");
    std::fs::write(&path, "2026-01-01T00:00:01Z stdout F abc\n").unwrap();
    let opts = LogOptions {
        follow: true,
        limit_bytes: Some(6),
        ..Default::default()
    };
    let (tx, rx) = mpsc::channel(16);
    let p = path.clone();
    let task = tokio::spawn(async move { stream_log(&p, &opts, || async { true }, tx).await });
    let reader = tokio::spawn(collect(rx));
    tokio::time::sleep(Duration::from_millis(200)).await;
    append(&path, "2026-01-01T00:00:02Z stdout F defgh\n");
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(reader.await.unwrap(), "abc\nde");
}
