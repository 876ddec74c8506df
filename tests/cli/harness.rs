//! Test harness: the shared local AWS emulator (started through `scripts/local-aws`,
//! exactly as a user starts it), one bucket per test, and the real `keelson` binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

pub const ED25519: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJlU/LYUVmNa5ryLb+i/gjjrF0cnQumo/6n217TlW2IJ demo@keelson";

/// The `export` lines of `scripts/local-aws start`, as (name, value) pairs.
pub fn aws_env() -> &'static Vec<(String, String)> {
    static ENV: OnceLock<Vec<(String, String)>> = OnceLock::new();
    ENV.get_or_init(|| {
        let script = manifest_dir().join("scripts/local-aws");
        let out = Command::new(script)
            .arg("start")
            .stderr(Stdio::inherit())
            .output()
            .expect("run scripts/local-aws");
        assert!(out.status.success(), "scripts/local-aws start failed");
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter_map(|l| l.strip_prefix("export ")?.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    })
}

pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap()
    })
}

pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    runtime().block_on(f)
}

/// The SDK configuration of the emulator: its endpoint, region and test credentials.
pub fn sdk_config() -> &'static aws_config::SdkConfig {
    static CONFIG: OnceLock<aws_config::SdkConfig> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let env = aws_env();
        let get = |k: &str| {
            env.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        let creds = aws_sdk_s3::config::Credentials::new(
            get("AWS_ACCESS_KEY_ID"),
            get("AWS_SECRET_ACCESS_KEY"),
            None,
            None,
            "test",
        );
        aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .endpoint_url(get("AWS_ENDPOINT_URL"))
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_s3::config::SharedCredentialsProvider::new(creds))
            .http_client(aws_smithy_http_client::Builder::new().build_http())
            .build()
    })
}

/// S3 on the emulator, for creating buckets and inspecting what keelson wrote.
pub fn s3() -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(sdk_config())
            .force_path_style(true)
            .build(),
    )
}

/// EC2, IAM and Auto Scaling on the emulator, for inspecting what keelson built.
pub fn ec2() -> aws_sdk_ec2::Client {
    aws_sdk_ec2::Client::new(sdk_config())
}

pub fn iam() -> aws_sdk_iam::Client {
    aws_sdk_iam::Client::new(sdk_config())
}

/// The id of the VPC the cluster owns.
pub fn cluster_vpc(cluster: &str) -> String {
    let filter = aws_sdk_ec2::types::Filter::builder()
        .name(format!("tag:kubernetes.io/cluster/{cluster}"))
        .values("owned")
        .build();
    block_on(async {
        ec2()
            .describe_vpcs()
            .filters(filter)
            .send()
            .await
            .unwrap()
            .vpcs()[0]
            .vpc_id()
            .unwrap()
            .to_string()
    })
}

pub fn autoscaling() -> aws_sdk_autoscaling::Client {
    aws_sdk_autoscaling::Client::new(sdk_config())
}

/// The node binary the tests ship (see [`Sandbox::command`]): the smallest
/// Linux x86_64 executable, 132 bytes that `exit(0)`, the same on every machine
/// so that snapshots of the user-data (which carry its digest) are stable.
pub fn stand_in_agent() -> &'static str {
    static PATH: OnceLock<String> = OnceLock::new();
    PATH.get_or_init(|| {
        let mut elf = Vec::new();
        // ELF64 header: little-endian, executable, x86-64, entry after the headers.
        elf.extend(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
        elf.extend(2u16.to_le_bytes()); // ET_EXEC
        elf.extend(0x3eu16.to_le_bytes()); // EM_X86_64
        elf.extend(1u32.to_le_bytes());
        elf.extend(0x400078u64.to_le_bytes()); // e_entry
        elf.extend(64u64.to_le_bytes()); // e_phoff
        elf.extend(0u64.to_le_bytes()); // e_shoff
        elf.extend(0u32.to_le_bytes());
        for v in [64u16, 56, 1, 0, 0, 0] {
            elf.extend(v.to_le_bytes());
        }
        // One loadable segment: the whole file, read and execute.
        elf.extend(1u32.to_le_bytes());
        elf.extend(5u32.to_le_bytes());
        for v in [0u64, 0x400000, 0x400000, 132, 132, 0x1000] {
            elf.extend(v.to_le_bytes());
        }
        // mov edi, 0; mov eax, 60 (exit); syscall
        elf.extend([0xbf, 0, 0, 0, 0, 0xb8, 60, 0, 0, 0, 0x0f, 0x05]);
        assert_eq!(elf.len(), 132);
        let path =
            std::env::temp_dir().join(format!("keelson-stand-in-agent-{}", std::process::id()));
        std::fs::write(&path, &elf).unwrap();
        let mut perm = std::fs::metadata(&path).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
        std::fs::set_permissions(&path, perm).unwrap();
        path.to_str().unwrap().to_string()
    })
}

/// One test's world: its own bucket, HOME and scratch directory.
pub struct Sandbox {
    pub bucket: String,
    pub dir: PathBuf,
}

impl Sandbox {
    pub fn new(test: &str) -> Sandbox {
        let bucket = format!("kt-{}-{}", test.replace('_', "-"), std::process::id());
        let dir = std::env::temp_dir().join(&bucket);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("home/.ssh")).unwrap();
        std::fs::write(dir.join("admin.pub"), format!("{ED25519}\n")).unwrap();
        let client = s3();
        block_on(async { client.create_bucket().bucket(&bucket).send().await })
            .expect("create bucket");
        Sandbox { bucket, dir }
    }

    /// A cluster name unique to this run: the emulator keeps what earlier runs built.
    pub fn cluster(&self, prefix: &str) -> String {
        format!("{prefix}-{}.k8s.local", std::process::id())
    }

    pub fn state(&self) -> String {
        format!("s3://{}", self.bucket)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A `keelson` command with the emulator's environment and nothing of the
    /// developer's: its own HOME, no KEELSON_* or KOPS_* variables.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_keelson"));
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.dir.join("home"))
            .env("USER", "tester")
            .env("EDITOR", "false")
            .current_dir(&self.dir);
        for (k, v) in aws_env() {
            cmd.env(k, v);
        }
        // No instance boots on the emulator, so the node agent's bytes are never
        // run: a small real Linux executable stands in for this 300 MB debug
        // build, which every applying test would otherwise upload to the emulator.
        // (bootstrap.rs checks the default, this keelson, and what a node fetches.)
        cmd.env("KEELSON_NODE_BINARY", stand_in_agent());
        // One emulator account holds every test's clusters, far past a real
        // account's quotas: only tests/cli/preflight.rs checks them (docs/preflight.md).
        cmd.env("KEELSON_QUOTAS", "off");
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.run_cmd(self.command(args))
    }

    pub fn run_cmd(&self, mut cmd: Command) -> Run {
        let out = cmd.stdin(Stdio::null()).output().expect("run keelson");
        Run::from(out)
    }

    /// `keelson ARGS --state s3://BUCKET`, expected to succeed.
    pub fn ok(&self, args: &[&str]) -> Run {
        let mut a = args.to_vec();
        let state = self.state();
        a.extend(["--state", &state]);
        let r = self.run(&a);
        assert_eq!(r.code, 0, "keelson {args:?} failed:\n{}", r.stderr);
        r
    }

    pub fn keys(&self) -> Vec<String> {
        let client = s3();
        block_on(async {
            let out = client
                .list_objects_v2()
                .bucket(&self.bucket)
                .send()
                .await
                .unwrap();
            out.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_string))
                .collect()
        })
    }

    pub fn object(&self, key: &str) -> String {
        let client = s3();
        block_on(async {
            let out = client
                .get_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await
                .unwrap();
            String::from_utf8(out.body.collect().await.unwrap().to_vec()).unwrap()
        })
    }

    pub fn put(&self, key: &str, body: &str) {
        let client = s3();
        block_on(async {
            client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .body(body.as_bytes().to_vec().into())
                .send()
                .await
        })
        .unwrap();
    }

    /// `keelson edit ig GROUP` with an editor that applies the sed expression `expr`.
    pub fn edit_group(&self, cluster: &str, group: &str, expr: &str) {
        let editor = script(
            &self.path(&format!("edit-{group}.sh")),
            &format!("sed -i '{expr}' \"$1\""),
        );
        let mut cmd = self.command(&[
            "edit",
            "ig",
            group,
            "--name",
            cluster,
            "--state",
            &self.state(),
        ]);
        cmd.env("EDITOR", &editor);
        let r = self.run_cmd(cmd);
        assert_eq!(r.code, 0, "edit ig {group} failed:\n{}", r.stderr);
    }

    /// Creates the standard demo cluster: 3 zones, private, bastion, 3+3.
    pub fn create_demo(&self, name: &str) {
        let key = self.path("admin.pub");
        self.ok(&[
            "create",
            "cluster",
            name,
            "--zones",
            "us-east-1a,us-east-1b,us-east-1c",
            "--topology",
            "private",
            "--bastion",
            "--master-count",
            "3",
            "--node-count",
            "3",
            "--ssh-public-key",
            key.to_str().unwrap(),
        ]);
    }
}

/// A small cluster built for real on the emulator: one zone, private, a bastion,
/// one master and two nodes.
pub fn create_small(sb: &Sandbox, name: &str) {
    create_small_with(sb, name, &["--yes"]);
}

/// The small cluster with extra `create cluster` flags (without `--yes`, only written).
pub fn create_small_with(sb: &Sandbox, name: &str, extra: &[&str]) {
    let key = sb.path("admin.pub");
    let mut args = vec![
        "create",
        "cluster",
        name,
        "--image",
        "ami-0123456789abcdef0",
        "--zones",
        "us-east-1a",
        "--topology",
        "private",
        "--bastion",
        "--master-count",
        "1",
        "--node-count",
        "2",
        "--ssh-public-key",
        key.to_str().unwrap(),
    ];
    args.extend(extra);
    sb.ok(&args);
}

impl Sandbox {
    /// The Kubernetes API simulator mirroring this cluster's instances on the emulator.
    pub fn kube_sim(&self, cluster: &str) -> kube_sim::Handle {
        let dir = self.path("kube-sim");
        let ec2 = ec2();
        block_on(kube_sim::start(kube_sim::Config {
            cluster: cluster.to_string(),
            dir,
            port: 0,
            ready_after: std::time::Duration::from_millis(1500),
            poll: std::time::Duration::from_millis(300),
            kubernetes_version: "v1.35.0".into(),
            ec2: Some(ec2),
            extra_instances: vec![],
        }))
        .expect("start kube-sim")
    }
}

/// Waits for `cond`, polling every 200 ms, failing the test after `secs`.
pub fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into(),
            stderr: String::from_utf8_lossy(&o.stderr).into(),
        }
    }
}

/// Writes an executable script (an $EDITOR for tests).
pub fn script(path: &Path, body: &str) -> String {
    std::fs::write(path, format!("#!/bin/sh\nset -e\n{body}\n")).unwrap();
    let mut perm = std::fs::metadata(path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(path, perm).unwrap();
    path.to_str().unwrap().to_string()
}

/// The package's directory, as cargo gives it to the running test: the value
/// baked in at build time names whichever checkout built the binary, and a
/// build directory shared between checkouts (CI's) may not have rebuilt it.
pub fn manifest_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// A subnet of the emulator in 127.N.M.0/24, so that the private addresses of
/// instances launched into it are this machine's loopback (AWS refuses such a
/// CIDR; moto takes it, which is all the tests of the node side need). `salt`
/// keeps concurrent tests of one run apart; `N` comes from the process id, so
/// concurrent runs do not meet.
pub fn loopback_subnet(salt: u32) -> String {
    let n = 20 + (std::process::id() + salt) % 200;
    block_on(async {
        let ec2 = ec2();
        let vpc = ec2
            .create_vpc()
            .cidr_block(format!("127.{n}.0.0/16"))
            .send()
            .await
            .unwrap();
        let vpc = vpc.vpc().unwrap().vpc_id().unwrap().to_string();
        ec2.create_subnet()
            .vpc_id(&vpc)
            .cidr_block(format!("127.{n}.{}.0/24", salt % 250))
            .send()
            .await
            .unwrap()
            .subnet()
            .unwrap()
            .subnet_id()
            .unwrap()
            .to_string()
    })
}

/// An instance launched into `subnet` (see [`loopback_subnet`]) with these tags:
/// its id, private address and private DNS name.
pub fn launch_tagged(subnet: &str, tags: &[(&str, &str)]) -> (String, String, String) {
    use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
    let mut spec = TagSpecification::builder().resource_type(ResourceType::Instance);
    for (k, v) in tags {
        spec = spec.tags(Tag::builder().key(*k).value(*v).build());
    }
    let out = block_on(async {
        ec2()
            .run_instances()
            .image_id("ami-12c6146b")
            .instance_type(aws_sdk_ec2::types::InstanceType::T3Medium)
            .min_count(1)
            .max_count(1)
            .subnet_id(subnet)
            .tag_specifications(spec.build())
            .send()
            .await
            .unwrap()
    });
    let i = &out.instances()[0];
    (
        i.instance_id().unwrap().to_string(),
        i.private_ip_address().unwrap().to_string(),
        i.private_dns_name().unwrap().to_string(),
    )
}
