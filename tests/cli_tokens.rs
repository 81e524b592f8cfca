//! The `smogwatch token` commands as an operator runs them: on the store while the server is
//! stopped, and through a running server with `--server` (the store is then held by the server).
mod common;

use common::*;
use smogwatch::proto::{self, violations_client::ViolationsClient};
use std::process::{Command, Output};

fn smogwatch(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_smogwatch"))
        .args(args)
        .env("SMOGWATCH_DATA_DIR", dir)
        .env_remove("SMOGWATCH_TOKEN")
        .output()
        .expect("the binary runs")
}

fn ok(out: Output) -> (String, String) {
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "exit {:?}\nstdout: {stdout}\nstderr: {stderr}", out.status);
    (stdout, stderr)
}

/// The id of the token named `label` in a `token list` table.
fn id_of(listing: &str, label: &str) -> String {
    let line = listing.lines().find(|l| l.ends_with(label)).unwrap_or_else(|| panic!("{label} in {listing}"));
    line.split_whitespace().next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_managed_offline_and_through_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let admin = admin_token(dir.path());
    let grpc = free_port();
    let mut child = spawn(dir.path(), grpc);
    let _ = connect(grpc, &admin).await; // up
    let server = format!("http://127.0.0.1:{grpc}");

    // The store is the server's now: offline commands refuse with the way out.
    let out = smogwatch(dir.path(), &["token", "list"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--server"), "{:?}", out);

    // Through the server.
    let (secret, stderr) = ok(smogwatch(
        dir.path(),
        &[
            "token",
            "create",
            "--server",
            &server,
            "--token",
            &admin,
            "--role",
            "police",
            "--city",
            "330100",
            "--label",
            "Hangzhou desk 3",
        ],
    ));
    let secret = secret.trim().to_string();
    assert!(secret.starts_with("swt_") && stderr.contains("police"), "{stderr}");
    let police = connect(grpc, &secret).await;
    ViolationsClient::new(police.clone())
        .list(proto::ListViolationsRequest::default())
        .await
        .expect("works at once");
    let (listing, _) = ok(smogwatch(dir.path(), &["token", "list", "--server", &server, "--token", &admin]));
    assert!(listing.contains("city 330100") && listing.contains("e2e operator"), "{listing}");
    assert!(!listing.contains(&secret), "no secrets in listings");
    let id = id_of(&listing, "Hangzhou desk 3");
    ok(smogwatch(dir.path(), &["token", "revoke", &id, "--server", &server, "--token", &admin]));
    let e = ViolationsClient::new(police).list(proto::ListViolationsRequest::default()).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "refused at once after revocation");

    // A police token cannot manage tokens; a missing token is a clear error, not a call.
    let out = smogwatch(dir.path(), &["token", "list", "--server", &server, "--token", &secret]);
    assert!(!out.status.success());
    let out = smogwatch(dir.path(), &["token", "list", "--server", &server]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("admin token"), "{:?}", out);

    // Stopped server: the offline listing shows the revocation made through the server.
    child.kill();
    let (listing, _) = ok(smogwatch(dir.path(), &["token", "list"]));
    let line = listing.lines().find(|l| l.ends_with("Hangzhou desk 3")).unwrap();
    assert!(!line.contains(" - "), "revoked time shown: {line}");
}
