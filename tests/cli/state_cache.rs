//! The state store's read path: a re-plan reads unchanged specs from the local
//! cache (checked against the listing's ETags) and changed ones from S3, and a
//! bucket in another region is followed without a bucket check up front.

use crate::harness::*;
use crate::proxy::{Fault, FaultProxy};

fn via(sb: &Sandbox, url: &str, args: &[&str]) -> Run {
    let mut cmd = sb.command(args);
    cmd.args(["--state", &sb.state()])
        .env("AWS_ENDPOINT_URL", url);
    sb.run_cmd(cmd)
}

fn cache_dir(sb: &Sandbox) -> std::path::PathBuf {
    sb.path("home/.cache/keelson/state-objects")
}

#[test]
fn a_re_plan_reads_only_what_changed_since_the_cache_saw_it() {
    let sb = Sandbox::new("state-cache");
    let name = sb.cluster("cache");
    create_small(&sb, &name);
    let copies = std::fs::read_dir(cache_dir(&sb)).unwrap().count();
    assert!(copies >= 5, "spec, 4 groups' worth, key, channel: {copies}");

    // Unchanged: the listing is the one request to the state store.
    let proxy = FaultProxy::start(Fault::Fail(vec![]));
    let plan = ["update", "cluster", name.as_str(), "--detailed-exitcode"];
    let r = via(&sb, &proxy.url, &plan);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(
        proxy.stats().requests.get("s3"),
        Some(&1),
        "{:?}",
        proxy.stats()
    );

    // Changed behind keelson's back (another operator, another tool): the ETag
    // in the listing differs, so that object is read, and the plan shows it.
    let key = format!("{name}/instancegroup/nodes-us-east-1a");
    let text = sb.object(&key);
    assert!(text.contains("maxSize: 2"), "{text}");
    sb.put(&key, &text.replace("maxSize: 2", "maxSize: 4"));
    let proxy = FaultProxy::start(Fault::Fail(vec![]));
    let r = via(&sb, &proxy.url, &plan);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("max_size"), "{}", r.stdout);
    assert_eq!(
        proxy.stats().requests.get("s3"),
        Some(&2),
        "{:?}",
        proxy.stats()
    );

    // Damaged copies are detected by their hash and read again from S3; with
    // the cache off every object is read: the same plan either way.
    for f in std::fs::read_dir(cache_dir(&sb)).unwrap() {
        std::fs::write(f.unwrap().path(), b"kind: Damaged\n").unwrap();
    }
    let damaged = sb.run(&["update", "cluster", &name, "--state", &sb.state()]);
    let mut cmd = sb.command(&["update", "cluster", &name, "--state", &sb.state()]);
    cmd.env("KEELSON_STATE_CACHE", "off");
    let off = sb.run_cmd(cmd);
    let warm = sb.run(&["update", "cluster", &name, "--state", &sb.state()]);
    assert_eq!(damaged.code, 0, "{}", damaged.stderr);
    assert_eq!(damaged.stdout, off.stdout);
    assert_eq!(damaged.stdout, warm.stdout);
    assert!(damaged.stdout.contains("max_size"), "{}", damaged.stdout);
}

#[test]
fn a_bucket_in_another_region_is_followed_there() {
    let sb = Sandbox::new("bucket-region");
    let name = sb.cluster("region");
    create_small_with(&sb, &name, &[]);
    let proxy = FaultProxy::start(Fault::BucketIn {
        region: "eu-west-1",
    });
    // A read (no bucket check) and a write (the versioning check moves first).
    for args in [
        vec!["get", "cluster", name.as_str(), "-o", "yaml"],
        vec!["update", "cluster", name.as_str(), "--yes"],
    ] {
        let r = via(&sb, &proxy.url, &args);
        assert_eq!(r.code, 0, "{args:?}:\n{}", r.stderr);
    }
    let stats = proxy.stats();
    // One refused request per command, every other one signed for the bucket's region.
    assert_eq!(stats.faults.get("s3"), Some(&2), "{stats:?}");
    assert!(
        stats.signed.get("s3 eu-west-1").copied().unwrap_or(0) > 5,
        "{stats:?}"
    );
    let r = sb.ok(&["update", "cluster", &name, "--detailed-exitcode"]);
    assert_eq!(r.code, 0);
}
