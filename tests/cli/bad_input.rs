//! Bad input: every case exits non-zero with a message that names the field, the
//! bad value and the fix, and writes nothing: the bucket's objects are unchanged.

use crate::harness::*;

const IG_TYPO: &str = "apiVersion: keelson.dev/v1alpha1
kind: InstanceGroup
metadata:
  name: nodes-us-east-1a
  labels: {keelson.dev/cluster: exists.k8s.local}
spec:
  role: Node
  image: ami-0123456789abcdef0
  machineTyp: t3.large
  minSize: 1
  maxSize: 1
  subnets: [us-east-1a]
  rootVolume: {size: 128, type: gp3, encrypted: true}
";

#[test]
fn bad_inputs_are_refused_and_write_nothing() {
    let sb = Sandbox::new("bad-input");
    sb.create_demo("exists.k8s.local");
    std::fs::write(sb.path("private.key"), "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n").unwrap();
    std::fs::write(sb.path("typo.yaml"), IG_TYPO).unwrap();
    std::fs::write(
        sb.path("version.yaml"),
        IG_TYPO
            .replace("v1alpha1", "v1beta9")
            .replace("machineTyp", "machineType"),
    )
    .unwrap();
    std::fs::write(
        sb.path("minmax.yaml"),
        IG_TYPO
            .replace("machineTyp", "machineType")
            .replace("minSize: 1", "minSize: 3"),
    )
    .unwrap();
    std::fs::write(
        sb.path("other.yaml"),
        IG_TYPO
            .replace("machineTyp", "machineType")
            .replace("exists.k8s.local", "other.k8s.local"),
    )
    .unwrap();
    let c = |extra: &[&'static str]| -> Vec<&'static str> {
        let mut v = vec![
            "create",
            "cluster",
            "new.k8s.local",
            "--zones",
            "us-east-1a",
        ];
        v.extend_from_slice(extra);
        v
    };
    // (arguments, expected fragments of the error, whether to add --state)
    let cases: Vec<(Vec<&str>, Vec<&str>, bool)> = vec![
        (
            vec![
                "create",
                "cluster",
                "bad_name.k8s.local",
                "--zones",
                "us-east-1a",
            ],
            vec![
                "metadata.name: bad_name.k8s.local is not a DNS name",
                "use a lowercase name",
            ],
            true,
        ),
        (
            vec!["create", "cluster", "nodot", "--zones", "us-east-1a"],
            vec!["metadata.name: nodot is not a DNS name with at least one dot"],
            true,
        ),
        (
            vec!["create", "cluster", "new.k8s.local"],
            vec!["--zones: is required", "list the availability zones"],
            true,
        ),
        (
            vec!["create", "cluster", "new.k8s.local", "--zones", "useast1a"],
            vec![
                "--zones: useast1a is not an availability zone name",
                "use zones such as",
            ],
            true,
        ),
        (
            vec![
                "create",
                "cluster",
                "new.k8s.local",
                "--zones",
                "us-east-1a,us-west-2a",
            ],
            vec![
                "--zones: us-east-1a,us-west-2a spans regions us-east-1 and us-west-2",
                "use zones of one region",
            ],
            true,
        ),
        (
            vec![
                "create",
                "cluster",
                "new.k8s.local",
                "--zones",
                "us-east-1z",
            ],
            vec![
                "--zones: us-east-1z is not an available zone of region us-east-1",
                "use zones from: us-east-1a",
            ],
            true,
        ),
        (
            c(&["--master-count", "2"]),
            vec!["--master-count: 2 is not odd", "use an odd count"],
            true,
        ),
        (
            c(&["--master-count", "0"]),
            vec!["--master-count: 0 is not odd"],
            true,
        ),
        (
            vec![
                "create",
                "cluster",
                "new.k8s.local",
                "--zones",
                "us-east-1a,us-east-1b,us-east-1c",
                "--master-zones",
                "us-east-1a,us-east-1b",
            ],
            vec![
                "--master-zones: us-east-1a,us-east-1b is an even number of zones",
                "use an odd number",
            ],
            true,
        ),
        (
            c(&["--master-zones", "us-east-1b"]),
            vec!["--master-zones: us-east-1b is not one of --zones"],
            true,
        ),
        (
            c(&["--bastion"]),
            vec![
                "--bastion: true needs a private topology",
                "add --topology private",
            ],
            true,
        ),
        (
            c(&["--nat", "single"]),
            vec!["--nat: single only applies to a private topology"],
            true,
        ),
        (
            c(&["--network-cidr", "10.0.0.1/16"]),
            vec![
                "invalid value '10.0.0.1/16' for '--network-cidr",
                "the network address is 10.0.0.0/16",
            ],
            true,
        ),
        (
            c(&["--network-cidr", "10.0.0.0/8"]),
            vec![
                "spec.networkCIDR: 10.0.0.0/8 has a prefix AWS does not allow for a VPC",
                "between /16 and /28",
            ],
            true,
        ),
        (
            vec![
                "create",
                "cluster",
                "new.k8s.local",
                "--zones",
                "us-east-1a,us-east-1b,us-east-1c",
                "--network-cidr",
                "10.0.0.0/28",
            ],
            vec![
                "--network-cidr: 10.0.0.0/28 is too small to split into subnets for 3 zones",
                "use a larger network",
            ],
            true,
        ),
        (
            c(&["--topology", "hybrid"]),
            vec![
                "invalid value 'hybrid' for '--topology",
                "possible values: public, private",
            ],
            true,
        ),
        (
            c(&["--networking", "weave"]),
            vec![
                "invalid value 'weave' for '--networking",
                "possible values: flannel, calico, cilium",
            ],
            true,
        ),
        (
            c(&["--ssh-public-key", "/no/such/key.pub"]),
            vec![
                "--ssh-public-key: cannot read /no/such/key.pub",
                "pass a readable public key file",
            ],
            true,
        ),
        (
            c(&["--ssh-public-key", "private.key"]),
            vec!["--ssh-public-key: private.key looks like a private key; pass the .pub file"],
            true,
        ),
        (
            vec![
                "create",
                "cluster",
                "prod.example.com",
                "--zones",
                "us-east-1a",
                "--dns",
                "none",
            ],
            vec![
                "--dns: none needs a gossip cluster name",
                "name the cluster NAME.k8s.local",
            ],
            true,
        ),
        (
            c(&["--dns-zone", "example.com"]),
            vec![
                "--dns: none is set for a gossip cluster",
                "drop --dns and --dns-zone",
            ],
            true,
        ),
        (
            c(&["--kubernetes-version", "1.20.0"]),
            vec![
                "spec.kubernetesVersion: 1.20.0 is not supported",
                "use a version from 1.32 to 1.37",
            ],
            true,
        ),
        (
            c(&["--kubernetes-version", "latest"]),
            vec!["spec.kubernetesVersion: latest is not a version like 1.35.0"],
            true,
        ),
        (
            c(&["--node-size", "big"]),
            vec![
                "spec.machineType: big is not an EC2 instance type",
                "use a type such as t3.medium",
            ],
            true,
        ),
        (
            c(&["--admin-access", "1.2.3.4"]),
            vec![
                "invalid value '1.2.3.4' for '--admin-access",
                "IPv4 CIDR such as 172.20.0.0/16",
            ],
            true,
        ),
        (
            c(&["--cloud-labels", "aws:team=x"]),
            vec![
                "spec.cloudLabels: aws:team uses the aws: prefix, which AWS reserves",
                "choose another key",
            ],
            true,
        ),
        (
            c(&["--cloud-labels", "KubernetesCluster=x"]),
            vec!["would override a tag keelson uses for ownership"],
            true,
        ),
        (
            c(&["--zone", "us-east-1a"]),
            vec!["unexpected argument '--zone'", "'--zones'"],
            true,
        ),
        (
            vec![
                "create",
                "cluster",
                "exists.k8s.local",
                "--zones",
                "us-east-1a",
            ],
            vec![
                "cluster \"exists.k8s.local\" already exists",
                "keelson edit cluster exists.k8s.local",
            ],
            true,
        ),
        (
            c(&[]),
            vec!["no state store given; pass --state s3://BUCKET"],
            false,
        ),
        (
            c(&["--state", "gs://bucket"]),
            vec![
                "state store \"gs://bucket\" is not supported; use s3://BUCKET[/PREFIX] or file://DIR",
            ],
            false,
        ),
        (
            c(&["--state", "s3://kt-no-such-bucket"]),
            vec![
                "S3 bucket \"kt-no-such-bucket\" does not exist; create it with `aws s3 mb s3://kt-no-such-bucket`",
            ],
            false,
        ),
        (
            vec![
                "create",
                "ig",
                "big",
                "--name",
                "exists.k8s.local",
                "--subnet",
                "us-east-1a",
                "--min-size",
                "5",
                "--max-size",
                "2",
            ],
            vec![
                "InstanceGroup big spec.minSize: 5 is greater than spec.maxSize 2",
                "make minSize at most maxSize",
            ],
            true,
        ),
        (
            vec![
                "create",
                "ig",
                "far",
                "--name",
                "exists.k8s.local",
                "--subnet",
                "us-east-1z",
            ],
            vec![
                "spec.subnets[0]: us-east-1z is not a subnet of the cluster",
                "use one of us-east-1a",
            ],
            true,
        ),
        (
            vec![
                "create",
                "ig",
                "Bad_Group",
                "--name",
                "exists.k8s.local",
                "--subnet",
                "us-east-1a",
            ],
            vec!["InstanceGroup Bad_Group metadata.name: Bad_Group is not a DNS label"],
            true,
        ),
        (
            vec![
                "create",
                "ig",
                "master-extra",
                "--name",
                "exists.k8s.local",
                "--subnet",
                "us-east-1a",
                "--role",
                "Master",
            ],
            vec![
                "master-extra is a master group without an etcd member",
                "add a member for it",
            ],
            true,
        ),
        (
            vec![
                "create",
                "ig",
                "x",
                "--name",
                "nope.k8s.local",
                "--subnet",
                "us-east-1a",
            ],
            vec![
                "cluster \"nope.k8s.local\" not found",
                "keelson get clusters",
            ],
            true,
        ),
        (
            vec!["replace", "-f", "typo.yaml"],
            vec![
                "typo.yaml (document 1): spec.machineTyp: unknown field `machineTyp`",
                "expected one of",
            ],
            true,
        ),
        (
            vec!["replace", "-f", "version.yaml"],
            vec![
                "apiVersion \"keelson.dev/v1beta9\" is not supported; use apiVersion: keelson.dev/v1alpha1",
            ],
            true,
        ),
        (
            vec!["replace", "-f", "minmax.yaml"],
            vec!["InstanceGroup nodes-us-east-1a spec.minSize: 3 is greater than spec.maxSize 1"],
            true,
        ),
        (
            vec!["replace", "-f", "other.yaml"],
            vec!["cluster \"other.k8s.local\" not found"],
            true,
        ),
        (
            vec!["replace", "-f", "missing.yaml"],
            vec!["-f: cannot read missing.yaml"],
            true,
        ),
        (
            vec!["edit", "cluster", "nope.k8s.local"],
            vec!["cluster \"nope.k8s.local\" not found"],
            true,
        ),
        (
            vec!["edit", "ig", "nope", "--name", "exists.k8s.local"],
            vec!["instance group \"nope\" of cluster \"exists.k8s.local\" not found"],
            true,
        ),
        (
            vec![
                "unlock",
                "cluster",
                "a.k8s.local",
                "--name",
                "b.k8s.local",
                "--yes",
            ],
            vec!["the cluster is named twice: a.k8s.local and --name b.k8s.local"],
            true,
        ),
    ];
    assert!(cases.len() >= 20);
    let before = sb.keys();
    let state = sb.state();
    let mut failures = Vec::new();
    for (args, expects, add_state) in &cases {
        let mut a = args.clone();
        if *add_state {
            a.extend(["--state", state.as_str()]);
        }
        let r = sb.run(&a);
        if r.code == 0 {
            failures.push(format!("{args:?}: exited 0\n{}", r.stderr));
            continue;
        }
        for e in expects {
            if !r.stderr.contains(e) {
                failures.push(format!("{args:?}: stderr lacks {e:?}:\n{}", r.stderr));
            }
        }
        if r.stderr.contains("panicked") {
            failures.push(format!("{args:?}: panicked:\n{}", r.stderr));
        }
        if sb.keys() != before {
            failures.push(format!("{args:?}: the bucket changed"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}
