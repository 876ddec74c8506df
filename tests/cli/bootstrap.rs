//! PKI, node bootstrap, the addon channel and `export kubecfg`, checked with the
//! real tools: cloud-init, shellcheck, kubernetes-validate, kubectl and openssl.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use crate::harness::*;

/// The directory of the pinned PyPI tools (kubectl, kubernetes-validate), after
/// `scripts/tools install` has also made sure of the Debian ones.
pub(crate) fn tools() -> &'static PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let script = manifest_dir().join("scripts/tools");
        let out = Command::new(script)
            .arg("install")
            .output()
            .expect("run scripts/tools");
        assert!(
            out.status.success(),
            "scripts/tools install failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
}

fn sha256_file(path: &str) -> String {
    use sha2::Digest;
    let bytes = std::fs::read(path).unwrap();
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Runs a tool; returns (success, stdout + stderr).
fn tool(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}; run scripts/tools install"));
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The user-data of every launch template in a JSON plan, by address.
fn planned_user_data(plan: &serde_json::Value) -> Vec<(String, String)> {
    plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == "launch_template")
        .map(|c| {
            (
                c["address"].as_str().unwrap().to_string(),
                c["after"]["user_data"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn bootstrap_for_every_role_passes_cloud_init_and_shellcheck_and_holds_no_secret() {
    tools();
    let sb = Sandbox::new("bootstrap");
    let name = &sb.cluster("boot");
    create_small_with(&sb, name, &[]);
    let r = sb.ok(&["update", "cluster", name, "-o", "json"]);
    let plan: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let human = sb.ok(&["update", "cluster", name]);
    let user_data = planned_user_data(&plan);
    assert_eq!(user_data.len(), 3, "master, node and bastion templates");

    // The secrets that exist by now: none may appear in what keelson shows.
    // There is no join token: nodes attest with AWS (docs/bootstrap.md).
    assert!(
        !sb.keys().iter().any(|k| k.contains("bootstrap-token")),
        "no join secret in the state store"
    );
    let encryption = sb.object(&format!("{name}/secrets/encryption-config.yaml"));
    let token = encryption
        .lines()
        .find_map(|l| l.trim().strip_prefix("secret: "))
        .expect("the encryption key")
        .to_string();
    let ca_key = sb.object(&format!("{name}/pki/private/ca.key"));
    for shown in [&r.stdout, &r.stderr, &human.stdout, &human.stderr] {
        assert!(!shown.contains(&token), "the encryption key was printed");
        assert!(!shown.contains("PRIVATE KEY"), "a private key was printed");
        assert!(!shown.contains(ca_key.lines().nth(1).unwrap()));
    }
    // The preview lists the state-store writes, never their content.
    assert!(
        human
            .stdout
            .contains(&format!("+ {name}/addons/bootstrap-channel.yaml")),
        "{}",
        human.stdout
    );

    for (address, text) in &user_data {
        assert!(!text.contains(&token) && !text.contains("PRIVATE KEY"));
        assert!(text.len() < 16 * 1024, "{address}: {} bytes", text.len());
        let file = sb.path("user-data.yaml");
        std::fs::write(&file, text).unwrap();
        let (ok, out) = tool(
            Command::new("cloud-init")
                .args(["schema", "--config-file"])
                .arg(&file),
        );
        assert!(ok, "{address}: cloud-init schema failed:\n{out}");
        // Every script the user-data writes passes shellcheck as it will run.
        let doc: serde_yaml::Value = serde_yaml::from_str(text).unwrap();
        let files = doc["write_files"].as_sequence().unwrap();
        let scripts: Vec<&str> = files
            .iter()
            .filter(|f| f["path"].as_str().unwrap().ends_with(".sh"))
            .map(|f| f["content"].as_str().unwrap())
            .collect();
        assert_eq!(scripts.len(), 1, "{address}");
        let script = sb.path("bootstrap.sh");
        std::fs::write(&script, scripts[0]).unwrap();
        let (ok, out) = tool(Command::new("shellcheck").arg(&script));
        assert!(ok, "{address}: shellcheck failed:\n{out}");
        // The role's own script: SSH hardening on the bastion; elsewhere the stub
        // that fetches the node agent, checks its digest, and hands over to systemd.
        if address.contains(".bastions.") {
            assert!(scripts[0].contains("PermitRootLogin no"), "{address}");
        } else {
            assert!(scripts[0].contains("sha256sum -c"), "{address}");
            assert!(
                text.contains(&format!(
                    "KEELSON_AGENT_SHA256='{}'",
                    sha256_file(stand_in_agent())
                )),
                "{address}"
            );
            assert!(
                text.contains("ExecStart=/usr/local/bin/keelson node bootstrap"),
                "{address}"
            );
            let master = address.contains(".masters.");
            assert_eq!(
                text.contains("ExecStart=/usr/local/bin/keelson node agent"),
                master,
                "{address}: the long-running agent runs on masters only"
            );
            // A short stub: the work is in the agent.
            assert!(text.len() < 6 * 1024, "{address}: {} bytes", text.len());
        }
        assert!(
            text.contains(&format!("KEELSON_CLUSTER='{name}'")),
            "{address}"
        );
    }
}

/// The bastion's script on a stand-in system: `systemctl` and `sshd` are stubs
/// on PATH that behave as systemd's and OpenSSH's do (a reload of an inactive
/// unit fails; `sshd -t` fails without its privilege separation directory), with
/// the units active that each distribution has at first boot.
fn run_bastion_script(name: &str, active: &str) -> (bool, String, String, String) {
    let dir = std::env::temp_dir().join(format!("keelson-bastion-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let bin = dir.join("bin");
    let root = dir.join("root");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&root).unwrap();
    let log = dir.join("systemctl.log");
    script(
        &bin.join("systemctl"),
        &format!(
            r#"echo "$*" >>'{log}'
unit() {{ for u in {active}; do [ "$u" = "$1" ] && return 0; done; return 1; }}
case "$1" in
  is-active) unit "$3" ;;
  reload) unit "$2" || {{ echo "Failed to reload $2: Job type reload is not applicable" >&2; exit 1; }} ;;
  start) exit 0 ;;
  *) exit 1 ;;
esac"#,
            log = log.display()
        ),
    );
    script(
        &bin.join("sshd"),
        r#"[ "$1" = -t ] && [ -d "$KEELSON_ROOT/run/sshd" ] || { echo "Missing privilege separation directory: /run/sshd" >&2; exit 255; }"#,
    );
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let out = Command::new("bash")
        .arg(manifest_dir().join("templates/bootstrap/bastion.sh"))
        .env("PATH", path)
        .env("KEELSON_ROOT", &root)
        .output()
        .unwrap();
    let conf = std::fs::read_to_string(root.join("etc/ssh/sshd_config.d/01-keelson-bastion.conf"))
        .unwrap_or_default();
    let calls = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        calls,
        conf,
    )
}

#[test]
fn the_bastion_forwards_no_agent_and_reloads_sshd_with_or_without_socket_activation() {
    // Ubuntu 24.04 at first boot: only ssh.socket listens; ssh.service has not
    // run (no /run/sshd), and reloading it fails.
    let (ok, err, calls, conf) = run_bastion_script("socket", "ssh.socket");
    assert!(
        ok,
        "{err}
{calls}"
    );
    assert!(!calls.contains("reload"), "{calls}");
    assert!(conf.contains("AllowAgentForwarding no\n"), "{conf}");
    assert!(conf.contains("AllowTcpForwarding local\n"), "{conf}");
    assert!(!conf.contains(" yes"), "{conf}");
    // Ubuntu 24.04 after a connection started it, or 22.04: ssh.service reloads.
    let (ok, err, calls, _) = run_bastion_script("service", "ssh.socket ssh.service");
    assert!(ok, "{err}");
    assert!(calls.contains("reload ssh.service"), "{calls}");
    let (ok, err, calls, _) = run_bastion_script("debian", "ssh.service");
    assert!(ok, "{err}");
    assert!(calls.contains("reload ssh.service"), "{calls}");
    // Distributions that call it sshd.
    let (ok, err, calls, _) = run_bastion_script("sshd", "sshd.service");
    assert!(ok, "{err}");
    assert!(calls.contains("reload sshd.service"), "{calls}");
    // Nothing running or listening: it is started.
    let (ok, err, calls, _) = run_bastion_script("none", "");
    assert!(ok, "{err}");
    assert!(calls.contains("start ssh.service"), "{calls}");
}

#[test]
fn every_script_in_templates_passes_shellcheck() {
    tools();
    let dir = manifest_dir().join("templates");
    let mut scripts = Vec::new();
    let mut stack = vec![dir];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "sh") {
                scripts.push(p);
            }
        }
    }
    assert!(scripts.len() >= 2, "{scripts:?}");
    let (ok, out) = tool(Command::new("shellcheck").args(&scripts));
    assert!(ok, "shellcheck:\n{out}");
}

#[test]
fn the_first_apply_writes_pki_addons_and_a_kubeconfig_that_kubectl_and_openssl_accept() {
    let bin = tools();
    let sb = Sandbox::new("kubecfg");
    let name = &sb.cluster("kcfg");
    create_small_with(&sb, name, &["--yes"]);

    // The PKI was made at create, once; nothing of it is in the user's face.
    let keys = sb.keys();
    for k in [
        "pki/public/ca.crt",
        "pki/private/ca.key",
        "pki/public/front-proxy-ca.crt",
        "pki/private/front-proxy-ca.key",
        "pki/public/etcd-ca.crt",
        "pki/private/etcd-ca.key",
        "pki/public/sa.pub",
        "pki/private/sa.key",
        "secrets/encryption-config.yaml",
        "addons/bootstrap-channel.yaml",
    ] {
        assert!(
            keys.contains(&format!("{name}/{k}")),
            "{k} missing: {keys:?}"
        );
    }
    // The node agent, stored under its digest, byte for byte what the plan hashed.
    let sha = sha256_file(stand_in_agent());
    // A real executable, though it only exits.
    assert!(Command::new(stand_in_agent()).status().unwrap().success());
    let agent = format!("{name}/agent/keelson-{sha}");
    assert!(keys.contains(&agent), "{keys:?}");
    let stored = block_on(async {
        s3().get_object()
            .bucket(&sb.bucket)
            .key(&agent)
            .send()
            .await
            .unwrap()
            .body
            .collect()
            .await
            .unwrap()
            .to_vec()
    });
    assert_eq!(stored, std::fs::read(stand_in_agent()).unwrap());

    // The channel's manifests exist and pass strict schema validation for the
    // cluster's Kubernetes version.
    let channel = sb.object(&format!("{name}/addons/bootstrap-channel.yaml"));
    let manifests: Vec<&str> = channel
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("manifest: "))
        .collect();
    // The CNI first, then the cloud controller and the other default bundles.
    let bundles: Vec<&str> = manifests
        .iter()
        .map(|m| m.split('/').next().unwrap())
        .collect();
    assert_eq!(
        bundles,
        [
            "networking.flannel",
            "aws-cloud-controller-manager",
            "aws-ebs-csi-driver",
            "metrics-server",
            "aws-node-termination-handler"
        ],
        "{channel}"
    );
    let mut files = Vec::new();
    for (i, m) in manifests.iter().enumerate() {
        let f = sb.path(&format!("manifest-{i}.yaml"));
        std::fs::write(&f, sb.object(&format!("{name}/addons/{m}"))).unwrap();
        files.push(f);
    }
    let spec = sb.object(&format!("{name}/config"));
    let version = spec
        .lines()
        .find_map(|l| l.trim().strip_prefix("kubernetesVersion: "))
        .unwrap()
        .trim_matches('"')
        .to_string();
    let (ok, out) = tool(
        Command::new(bin.join("kubernetes-validate"))
            .args(["--strict", "--quiet", "-k", &version])
            .args(&files),
    );
    assert!(ok, "kubernetes-validate:\n{out}");

    // The first apply set up kubectl in the sandbox's HOME.
    let home_config = sb.dir.join("home/.kube/config");
    assert!(home_config.exists());

    // export kubecfg into a file that already has another context.
    let file = sb.path("kubeconfig");
    std::fs::write(
        &file,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: other\n  cluster:\n    server: https://other.example.com\n\
         users:\n- name: other\n  user:\n    token: abc\ncontexts:\n- name: other\n  context:\n    cluster: other\n    user: other\n\
         current-context: other\n",
    )
    .unwrap();
    let r = sb.ok(&[
        "export",
        "kubecfg",
        name,
        "--admin",
        "2h",
        "--kubeconfig",
        file.to_str().unwrap(),
    ]);
    assert!(r.stderr.contains("valid for 2h"), "{}", r.stderr);
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let kubectl = bin.join("kubectl");
    let (ok, contexts) = tool(
        Command::new(&kubectl)
            .args(["config", "get-contexts", "-o", "name", "--kubeconfig"])
            .arg(&file),
    );
    assert!(ok, "{contexts}");
    let mut contexts: Vec<&str> = contexts.lines().collect();
    contexts.sort();
    let mut expected = ["other", name.as_str()];
    expected.sort();
    assert_eq!(contexts, expected);
    let (ok, current) = tool(
        Command::new(&kubectl)
            .args(["config", "current-context", "--kubeconfig"])
            .arg(&file),
    );
    assert!(ok && current.trim() == name, "{current}");
    let (ok, server) = tool(
        Command::new(&kubectl)
            .args(["config", "view", "--raw", "-o"])
            .arg(format!(
                "jsonpath={{.clusters[?(@.name==\"{name}\")].cluster.server}}"
            ))
            .arg("--kubeconfig")
            .arg(&file),
    );
    assert!(ok, "{server}");
    let status = sb.object(&format!("{name}/status"));
    assert!(
        server.starts_with("https://") && status.contains(&server["https://".len()..]),
        "{server} vs {status}"
    );

    // The client certificate verifies against the stored CA and is an admin's.
    let (ok, cert) = tool(
        Command::new(&kubectl)
            .args(["config", "view", "--raw", "-o"])
            .arg(format!(
                "jsonpath={{.users[?(@.name==\"{name}\")].user.client-certificate-data}}"
            ))
            .arg("--kubeconfig")
            .arg(&file),
    );
    assert!(ok, "{cert}");
    use base64::Engine as _;
    let cert = base64::engine::general_purpose::STANDARD
        .decode(cert.trim())
        .unwrap();
    std::fs::write(sb.path("admin.crt"), cert).unwrap();
    std::fs::write(
        sb.path("ca.crt"),
        sb.object(&format!("{name}/pki/public/ca.crt")),
    )
    .unwrap();
    let (ok, out) = tool(
        Command::new("openssl")
            .args(["verify", "-CAfile"])
            .arg(sb.path("ca.crt"))
            .arg(sb.path("admin.crt")),
    );
    assert!(ok, "openssl verify:\n{out}");
    let (ok, subject) = tool(
        Command::new("openssl")
            .args(["x509", "-noout", "-subject", "-in"])
            .arg(sb.path("admin.crt")),
    );
    assert!(ok && subject.contains("O = system:masters"), "{subject}");

    // A second apply changes nothing, in the cloud or in the state store.
    let r = sb.ok(&["update", "cluster", name, "--yes"]);
    assert!(
        r.stderr.contains("No changes need to be applied"),
        "{}",
        r.stderr
    );
    assert_eq!(sb.keys(), keys);

    // A changed bootstrap shows as a unified diff of the script, and only the
    // template of the group that changed is touched.
    let key = format!("{name}/instancegroup/nodes-us-east-1a");
    let mut g = keelson::spec::parse::parse_instance_group(&sb.object(&key), &key).unwrap();
    g.spec.node_labels.insert("team".into(), "data".into());
    std::fs::write(sb.path("nodes.yaml"), keelson::spec::parse::to_yaml(&g)).unwrap();
    sb.ok(&["replace", "-f", "nodes.yaml"]);
    let r = sb.ok(&["update", "cluster", name]);
    assert!(
        r.stdout.contains(&format!(
            "  ~ 1 launch_template\n    ~ nodes-us-east-1a.{name} ("
        )) && r.stdout.contains("-      KEELSON_NODE_LABELS=''")
            && r.stdout.contains("+      KEELSON_NODE_LABELS='team=data'")
            && r.stdout
                .contains("Plan: 0 to add, 1 to change, 0 to destroy"),
        "{}",
        r.stdout
    );
    sb.ok(&["update", "cluster", name, "--yes"]);
    let r = sb.ok(&["update", "cluster", name, "--detailed-exitcode"]);
    assert!(
        r.stderr.contains("No changes need to be applied"),
        "{}",
        r.stderr
    );

    // Bad input writes nothing: a bad duration, and an unparseable kubeconfig.
    let before = std::fs::read(&file).unwrap();
    let r = sb.run(&[
        "export",
        "kubecfg",
        name,
        "--admin",
        "soon",
        "--kubeconfig",
        file.to_str().unwrap(),
        "--state",
        &sb.state(),
    ]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("--admin") && r.stderr.contains("30s, 10m"),
        "{}",
        r.stderr
    );
    let broken = sb.path("broken");
    std::fs::write(&broken, "clusters: [unclosed").unwrap();
    let r = sb.run(&[
        "export",
        "kubecfg",
        name,
        "--kubeconfig",
        broken.to_str().unwrap(),
        "--state",
        &sb.state(),
    ]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("is not a kubeconfig"), "{}", r.stderr);
    assert_eq!(std::fs::read(&broken).unwrap(), b"clusters: [unclosed");
    assert_eq!(std::fs::read(&file).unwrap(), before);
}

#[test]
fn create_refuses_to_overwrite_existing_pki() {
    let sb = Sandbox::new("pki-exists");
    let name = &sb.cluster("pkix");
    sb.put(&format!("{name}/pki/private/ca.key"), "an old key");
    let before = sb.keys();
    let key = sb.path("admin.pub");
    let r = sb.run(&[
        "create",
        "cluster",
        name,
        "--zones",
        "us-east-1a",
        "--ssh-public-key",
        key.to_str().unwrap(),
        "--state",
        &sb.state(),
    ]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("{name}/pki/private/ca.key"))
            && r.stderr.contains("never overwrites"),
        "{}",
        r.stderr
    );
    assert_eq!(sb.keys(), before, "nothing written");
    assert_eq!(
        sb.object(&format!("{name}/pki/private/ca.key")),
        "an old key"
    );
}

#[test]
fn cilium_and_the_cloud_controller_render_valid_manifests() {
    // The rendered bundles are snapshot-tested in the library; here their
    // snapshots go through the real validator, for every bundle and plugin.
    let bin = tools();
    let dir = manifest_dir().join("src/addons/snapshots");
    let sb = Sandbox::new("cilium");
    let mut files = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let text = std::fs::read_to_string(&p).unwrap();
        // An insta snapshot: a YAML header between `---` lines, then the manifest.
        let body = text.splitn(3, "---\n").nth(2).unwrap();
        let f = sb.path(p.file_name().unwrap().to_str().unwrap());
        std::fs::write(&f, body).unwrap();
        files.push(f);
    }
    assert!(files.len() >= 4, "{files:?}");
    // Every minor keelson supports: a field one minor lacks is caught there.
    for minor in keelson::spec::validate::SUPPORTED_MINORS {
        let version = format!("1.{minor}.0");
        let (ok, out) = tool(
            Command::new(bin.join("kubernetes-validate"))
                .args(["--strict", "--quiet", "-k", &version])
                .args(&files),
        );
        assert!(ok, "kubernetes-validate {version}:\n{out}");
    }
}

#[test]
fn a_cluster_without_pki_gets_it_from_the_next_update() {
    // A cluster made before keelson had PKI: the preview says what it will
    // generate (never its content) and --yes writes it before the cloud apply.
    let sb = Sandbox::new("pki-later");
    let name = &sb.cluster("pkil");
    create_small_with(&sb, name, &[]);
    let client = s3();
    for key in sb.keys() {
        if key.contains("/pki/public/")
            || key.contains("/pki/private/")
            || key.contains("/secrets/")
        {
            block_on(client.delete_object().bucket(&sb.bucket).key(&key).send()).unwrap();
        }
    }
    let r = sb.ok(&["update", "cluster", name]);
    assert!(
        r.stdout
            .contains(&format!("+ {name}/pki/public/* and {name}/pki/private/*")),
        "{}",
        r.stdout
    );
    assert!(
        !sb.keys().iter().any(|k| k.contains("/pki/private/")),
        "a preview writes nothing"
    );
    sb.ok(&["update", "cluster", name, "--yes"]);
    let keys = sb.keys();
    for k in [
        "pki/private/ca.key",
        "pki/public/ca.crt",
        "secrets/encryption-config.yaml",
    ] {
        assert!(keys.contains(&format!("{name}/{k}")), "{k}: {keys:?}");
    }
    let r = sb.ok(&["update", "cluster", name, "--detailed-exitcode"]);
    assert!(
        r.stderr.contains("No changes need to be applied"),
        "{}",
        r.stderr
    );
}

#[test]
fn an_older_clusters_join_token_goes_and_its_secrets_get_encrypted() {
    let sb = Sandbox::new("legacy-token");
    let name = &sb.cluster("legacy");
    create_small_with(&sb, name, &[]);
    // As an older keelson left it: a shared join token, no encryption key.
    let (token, encryption) = (
        format!("{name}/secrets/node-bootstrap-token"),
        format!("{name}/secrets/encryption-config.yaml"),
    );
    block_on(
        s3().delete_object()
            .bucket(&sb.bucket)
            .key(&encryption)
            .send(),
    )
    .unwrap();
    sb.put(&token, "abcdef.0123456789abcdef\n");
    let r = sb.ok(&["update", "cluster", name]);
    for line in [
        format!("+ {encryption} (the key Secrets are encrypted with in etcd)"),
        format!("- {token} (no longer used: nodes prove who they are with AWS)"),
    ] {
        assert!(r.stdout.contains(&line), "{line}:\n{}", r.stdout);
    }
    assert!(!r.stdout.contains("abcdef.0123456789abcdef"));
    assert!(sb.keys().contains(&token), "a preview writes nothing");
    sb.ok(&["update", "cluster", name, "--yes"]);
    let keys = sb.keys();
    assert!(!keys.contains(&token), "{keys:?}");
    assert!(sb.object(&encryption).contains("secretbox"));
    let r = sb.ok(&["update", "cluster", name, "--detailed-exitcode"]);
    assert!(
        r.stderr.contains("No changes need to be applied"),
        "{}",
        r.stderr
    );
}

#[test]
fn the_node_agent_is_this_keelson_unless_told_and_a_wrong_one_is_refused() {
    let sb = Sandbox::new("agent-binary");
    let name = &sb.cluster("agentbin");
    create_small_with(&sb, name, &[]);
    // By default the instances run the keelson that plans: its digest is in the
    // user-data and the preview names the upload.
    let mut cmd = sb.command(&[
        "update",
        "cluster",
        name,
        "--state",
        &sb.state(),
        "-o",
        "json",
    ]);
    cmd.env_remove("KEELSON_NODE_BINARY");
    let r = sb.run_cmd(cmd);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let me = sha256_file(env!("CARGO_BIN_EXE_keelson"));
    assert!(r.stdout.contains(&format!("KEELSON_AGENT_SHA256='{me}'")));
    let mut cmd = sb.command(&["update", "cluster", name, "--state", &sb.state()]);
    cmd.env_remove("KEELSON_NODE_BINARY");
    let r = sb.run_cmd(cmd);
    assert!(
        r.stdout
            .contains(&format!("{name}/agent/keelson-{me} (the node agent")),
        "{}",
        r.stdout
    );
    // Not a Linux executable: refused before anything is written, with the fix.
    let before = sb.keys();
    let script = sb.path("not-elf");
    std::fs::write(&script, "#!/bin/sh\n").unwrap();
    let r = sb.run(&[
        "update",
        "cluster",
        name,
        "--state",
        &sb.state(),
        "--yes",
        "--node-binary",
        script.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("not a Linux executable") && r.stderr.contains("--node-binary"),
        "{}",
        r.stderr
    );
    // An arm64 group with an x86_64 binary: named, with the machine type.
    sb.edit_group(
        name,
        "nodes-us-east-1a",
        "s/machineType: .*/machineType: m7g.large/",
    );
    let r = sb.run(&["update", "cluster", name, "--state", &sb.state(), "--yes"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("nodes-us-east-1a")
            && r.stderr.contains("m7g.large")
            && r.stderr.contains("arm64"),
        "{}",
        r.stderr
    );
    assert_eq!(sb.keys(), before, "nothing written");
}
