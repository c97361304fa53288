//! Hostile HTTP answers to `pulp-entrypoint probe`, from a real TCP server on
//! 127.0.0.1 (a port from the kernel): a chunk size of 2^64-1, a Content-Length
//! far beyond what arrives, endless headers, a status line that is not HTTP,
//! bodies cut short. Each is "not ready" (1) with one line on stderr, never a
//! panic; and a complete answer is read as complete even when the server keeps
//! the connection open, so the probe answers at once, well inside --timeout.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::command::{Finished, TestCommand};

/// The probe's --timeout where the answer must come well before it.
const TIMEOUT: &str = "10s";
/// "At once": well inside [`TIMEOUT`], generous for a loaded machine.
const PROMPT: Duration = Duration::from_secs(3);

/// What the server does after reading the request.
enum Then {
    /// Keep the connection open until the probe closes it.
    KeepOpen,
    /// Close the connection.
    Close,
    /// Write this again and again until the probe stops reading.
    Repeat(Vec<u8>),
}

/// A one-connection server that answers `answer`; the request it read comes
/// back on the channel.
fn serve(answer: impl Into<Vec<u8>>, then: Then) -> (String, mpsc::Receiver<String>) {
    let answer = answer.into();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let address = listener.local_addr().unwrap().to_string();
    let (sender, requests) = mpsc::channel();
    thread::spawn(move || {
        let Ok((mut stream, _)) = listener.accept() else {
            return;
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let _ = sender.send(read_request(&mut stream));
        if stream.write_all(&answer).is_err() {
            return;
        }
        match then {
            Then::Close => {}
            Then::KeepOpen => {
                // Until the probe closes its end (or 30 s pass).
                let mut sink = [0; 512];
                while matches!(stream.read(&mut sink), Ok(1..)) {}
            }
            Then::Repeat(bytes) => while stream.write_all(&bytes).is_ok() {},
        }
    });
    (address, requests)
}

fn read_request(stream: &mut TcpStream) -> String {
    let mut request = Vec::new();
    let mut byte = [0];
    while !request.ends_with(b"\r\n\r\n") && matches!(stream.read(&mut byte), Ok(1)) {
        request.push(byte[0]);
    }
    String::from_utf8_lossy(&request).into_owned()
}

/// `probe KIND ROLE --address ADDRESS --timeout TIMEOUT`, and how long it took.
fn probe(words: &[&str], address: &str, timeout: &str) -> (Finished, Duration) {
    probe_with(words, address, timeout, &[])
}

fn probe_with(
    words: &[&str],
    address: &str,
    timeout: &str,
    env: &[(&str, &str)],
) -> (Finished, Duration) {
    let settings = tempfile::NamedTempFile::with_suffix(".py").unwrap();
    let mut command = TestCommand::new();
    command
        .env("PULP_SETTINGS", settings.path())
        .arg("probe")
        .args(words)
        .args(["--address", address, "--timeout", timeout]);
    for (key, value) in env {
        command.env(key, value);
    }
    let started = Instant::now();
    let finished = command.run();
    (finished, started.elapsed())
}

/// Exit code `code`, one line on stderr containing `contains`, no panic.
fn assert_refused(finished: &Finished, code: i32, contains: &str) {
    finished.assert_code(code);
    let stderr = finished.stderr.trim_end();
    assert!(!stderr.contains("panicked"), "{finished}");
    assert_eq!(stderr.lines().count(), 1, "{finished}");
    assert!(stderr.contains(contains), "wanted {contains:?}: {finished}");
}

fn assert_prompt(took: Duration, finished: &Finished) {
    assert!(
        took < PROMPT,
        "took {took:?} (--timeout {TIMEOUT}), wanted under {PROMPT:?}: {finished}"
    );
}

const STATUS_UP: &str =
    r#"{"database_connection":{"connected":true},"redis_connection":{"connected":true}}"#;

#[test]
fn a_complete_answer_on_a_kept_open_connection_is_ready_at_once() {
    let (address, requests) = serve(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
        Then::KeepOpen,
    );
    let (live, took) = probe(&["live", "api"], &address, TIMEOUT);
    live.assert_code(0);
    assert_eq!((live.stdout.as_str(), live.stderr.as_str()), ("", ""));
    assert_prompt(took, &live);
    let request = requests.recv_timeout(PROMPT).unwrap();
    assert!(
        request.starts_with("GET /pulp/api/v3/livez/ HTTP/1.0\r\n"),
        "{request:?}"
    );

    // A chunked status answer, trailers and all.
    let chunked = format!(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n{}\r\n{:x}\r\n{}\r\n0\r\nX-Trailer: 1\r\n\r\n",
        &STATUS_UP[..16],
        STATUS_UP.len() - 16,
        &STATUS_UP[16..]
    );
    let (address, _) = serve(chunked, Then::KeepOpen);
    let (ready, took) = probe(&["ready", "api"], &address, TIMEOUT);
    ready.assert_code(0);
    assert_prompt(took, &ready);

    // HEAD (the content app): the headers are the whole answer, whatever their Content-Length.
    let (address, _) = serve(
        "HTTP/1.1 404 Not Found\r\nContent-Length: 14\r\n\r\n",
        Then::KeepOpen,
    );
    let (live, took) = probe(&["live", "content"], &address, TIMEOUT);
    live.assert_code(0);
    assert_prompt(took, &live);
}

#[test]
fn the_exit_codes_hold_on_a_kept_open_connection() {
    let answer = |body: &str| {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let db_down =
        r#"{"database_connection":{"connected":false},"redis_connection":{"connected":true}}"#;
    let (address, _) = serve(answer(db_down), Then::KeepOpen);
    let (finished, took) = probe(&["ready", "api"], &address, TIMEOUT);
    assert_refused(&finished, 3, "database not connected");
    assert_prompt(took, &finished);

    let redis_down =
        r#"{"database_connection":{"connected":true},"redis_connection":{"connected":false}}"#;
    let (address, _) = serve(answer(redis_down), Then::KeepOpen);
    let (finished, took) = probe_with(
        &["ready", "api"],
        &address,
        TIMEOUT,
        &[("PULP_CACHE_ENABLED", "true")],
    );
    assert_refused(&finished, 4, "Redis not connected");
    assert_prompt(took, &finished);

    let (address, _) = serve(
        "HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot here!",
        Then::KeepOpen,
    );
    let (finished, took) = probe(&["live", "api"], &address, TIMEOUT);
    assert_refused(&finished, 1, "answered HTTP 404");
    assert_prompt(took, &finished);
}

#[test]
fn a_chunk_size_of_ffffffffffffffff_is_not_ready_not_a_panic() {
    let answer = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nabc";
    for then in [Then::Close, Then::KeepOpen] {
        let (address, _) = serve(answer, then);
        let (finished, took) = probe(&["ready", "api"], &address, TIMEOUT);
        assert_refused(
            &finished,
            1,
            "a chunk of 18446744073709551615 bytes makes the body larger than 4194304 bytes",
        );
        assert_prompt(took, &finished);
    }
    let (address, _) = serve(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1ffffffffffffffff\r\n",
        Then::KeepOpen,
    );
    let (finished, took) = probe(&["ready", "api"], &address, TIMEOUT);
    assert_refused(&finished, 1, "not a hex number of at most 16 digits");
    assert_prompt(took, &finished);
}

#[test]
fn a_huge_content_length_is_refused_before_its_body() {
    let (address, _) = serve(
        "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999\r\n\r\n{}",
        Then::KeepOpen,
    );
    let (finished, took) = probe(&["ready", "api"], &address, TIMEOUT);
    assert_refused(
        &finished,
        1,
        "Content-Length 99999999999999 is larger than the 4194304 bytes the probe reads",
    );
    assert_prompt(took, &finished);
}

#[test]
fn a_body_short_of_its_content_length_is_not_ready() {
    let answer = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{}";
    // Kept open: the probe's --timeout, and the message says how far the answer got.
    let (address, _) = serve(answer, Then::KeepOpen);
    let (finished, took) = probe(&["live", "api"], &address, "1s");
    assert_refused(
        &finished,
        1,
        &format!(
            "no answer within 1s while reading the body of http://{address}/pulp/api/v3/livez/ (2 of 100 bytes)"
        ),
    );
    assert!(took >= Duration::from_millis(900), "{took:?}: {finished}");
    assert!(took < Duration::from_secs(4), "{took:?}: {finished}");

    let (address, _) = serve(answer, Then::Close);
    let (finished, took) = probe(&["live", "api"], &address, TIMEOUT);
    assert_refused(&finished, 1, "the body was cut short (2 of 100 bytes)");
    assert_prompt(took, &finished);
}

#[test]
fn a_header_flood_is_cut_off() {
    let (address, _) = serve(
        "HTTP/1.1 200 OK\r\n",
        Then::Repeat(b"X-Flood: yes\r\n".to_vec()),
    );
    let (finished, took) = probe(&["ready", "api"], &address, TIMEOUT);
    assert_refused(&finished, 1, "more than 100 header fields");
    assert_prompt(took, &finished);

    let (address, _) = serve(
        "HTTP/1.1 200 OK\r\nX-Endless: ",
        Then::Repeat(vec![b'a'; 4096]),
    );
    let (finished, took) = probe(&["ready", "api"], &address, TIMEOUT);
    assert_refused(&finished, 1, "the headers are longer than 65536 bytes");
    assert_prompt(took, &finished);
}

#[test]
fn an_endless_body_is_cut_off() {
    let (address, _) = serve("HTTP/1.0 200 OK\r\n\r\n", Then::Repeat(vec![b'{'; 4096]));
    let (finished, took) = probe(&["ready", "api"], &address, TIMEOUT);
    assert_refused(&finished, 1, "the body is larger than 4194304 bytes");
    assert_prompt(took, &finished);

    let (address, _) = serve(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        Then::Repeat(
            b"1000\r\n"
                .iter()
                .chain(&[b'x'; 4096])
                .chain(b"\r\n")
                .copied()
                .collect(),
        ),
    );
    let (finished, took) = probe(&["ready", "api"], &address, TIMEOUT);
    assert_refused(&finished, 1, "makes the body larger than 4194304 bytes");
    assert_prompt(took, &finished);
}

#[test]
fn a_garbage_status_line_is_not_ready() {
    let (address, _) = serve("SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n", Then::KeepOpen);
    let (finished, took) = probe(&["ready", "api"], &address, TIMEOUT);
    assert_refused(
        &finished,
        1,
        &format!(
            "http://{address}/pulp/api/v3/status/ gave an answer the probe cannot read: not an HTTP answer: \"SSH-2.0-OpenSSH_9.2p1 Debian-2\""
        ),
    );
    assert_prompt(took, &finished);

    let (address, _) = serve("HTTP/1.1 2xx OK\r\n\r\n", Then::Close);
    let (finished, took) = probe(&["live", "content"], &address, TIMEOUT);
    assert_refused(&finished, 1, "not an HTTP answer: \"HTTP/1.1 2xx OK\"");
    assert_prompt(took, &finished);
}

#[test]
fn a_truncated_chunked_body_is_not_ready() {
    let answer = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc";
    let (address, _) = serve(answer, Then::Close);
    let (finished, took) = probe(&["ready", "api"], &address, TIMEOUT);
    assert_refused(
        &finished,
        1,
        "the chunked body was cut short (after 3 bytes of chunk data)",
    );
    assert_prompt(took, &finished);

    let (address, _) = serve(answer, Then::KeepOpen);
    let (finished, _) = probe(&["ready", "api"], &address, "1s");
    assert_refused(
        &finished,
        1,
        "no answer within 1s while reading the chunked body of",
    );

    // Chunk data running past its size.
    let (address, _) = serve(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}}\r\n0\r\n\r\n",
        Then::KeepOpen,
    );
    let (finished, took) = probe(&["ready", "api"], &address, TIMEOUT);
    assert_refused(&finished, 1, "a chunk is longer than its size says");
    assert_prompt(took, &finished);
}
