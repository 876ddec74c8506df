//! Planning CPU time for a synthetic spec with 200 instance groups (run by
//! scripts/bench): validation, the model and the planner, against an empty cloud
//! and against a cloud that already matches (the no-op re-plan).

use std::time::Instant;

use keelson::model;
use keelson::plan::{Actual, ActualResource, plan, specs_fingerprint};
use keelson::spec::defaults::{NewCluster, new_cluster};
use keelson::spec::{TopologyKind, validate::validate};

fn main() {
    let zones: Vec<String> = ["a", "b", "c", "d", "e", "f"]
        .iter()
        .map(|z| format!("us-east-1{z}"))
        .collect();
    let (cluster, mut groups) = new_cluster(&NewCluster {
        name: "bench.k8s.local".into(),
        zones: zones.clone(),
        topology: TopologyKind::Private,
        master_count: Some(3),
        node_count: Some(600),
        ..Default::default()
    })
    .unwrap();
    let template = groups
        .iter()
        .find(|g| g.name() == "nodes-us-east-1a")
        .unwrap()
        .clone();
    let mut i = 0;
    while groups.len() < 200 {
        let mut g = template.clone();
        g.metadata.name = format!("pool-{i}");
        g.spec.subnets = vec![zones[i % zones.len()].clone()];
        groups.push(g);
        i += 1;
    }
    let images = std::collections::BTreeMap::from([(
        groups[0].spec.image.clone(),
        "ami-0123456789abcdef0".to_string(),
    )]);
    let iterations = 200;
    let start = Instant::now();
    let mut resources = 0;
    let mut noop_changes = 0;
    for _ in 0..iterations {
        validate(&cluster, &groups).unwrap();
        let desired = model::build(&model::Inputs {
            cluster: &cluster,
            groups: &groups,
            ssh_key: None,
            images: &images,
            node_agent: &model::instances::NodeAgent {
                sha256: "0".repeat(64),
            },
        })
        .unwrap();
        let fp = specs_fingerprint(&cluster, &groups);
        let first = plan(&desired, &Actual::default(), &fp).unwrap();
        let mut actual = Actual::default();
        for (n, c) in first.changes.iter().enumerate() {
            actual.insert(ActualResource {
                id: format!("id-{n}"),
                resource: c.desired.clone().unwrap().resource,
                owned: true,
                state: None,
            });
        }
        noop_changes += plan(&desired, &actual, &fp).unwrap().changes.len();
        resources = desired.resources.len();
    }
    let per = start.elapsed() / iterations;
    assert_eq!(noop_changes, 0, "the no-op re-plan must be empty");
    println!(
        "groups={} resources={resources} validate+model+plan(empty)+plan(no-op) per iteration: {:.2} ms",
        groups.len(),
        per.as_secs_f64() * 1000.0
    );
}
