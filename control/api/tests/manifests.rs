//! Manifests as users write them: real-world YAML is accepted unchanged; broken YAML is
//! rejected with the document, the line and the field.

use skiff_api::{parse_manifests, Kind};

const GUESTBOOK: &str = include_str!("manifests/guestbook.yaml");

#[test]
fn real_world_manifests_are_accepted() {
    let objects = parse_manifests(GUESTBOOK).unwrap_or_else(|e| panic!("{e}"));
    let kinds: Vec<Kind> = objects.iter().map(|o| o.kind()).collect();
    assert_eq!(
        kinds,
        [
            Kind::Namespace,
            Kind::Deployment,
            Kind::Service,
            Kind::Deployment,
            Kind::Service,
            Kind::Service,
            Kind::NetworkPolicy,
            Kind::HorizontalPodAutoscaler,
            Kind::Pod
        ]
    );
    let skiff_api::Object::Deployment(d) = &objects[1] else {
        panic!()
    };
    assert_eq!(
        d.surge_and_unavailable(),
        (1, 0),
        "25% of 3 rounds up; 0 stays 0"
    );
    assert_eq!(
        d.spec.template.spec.containers[0]
            .resources
            .reserved_millicores(),
        100
    );
}

/// (what to break, replacement, document, line, message fragment)
const BROKEN: &[(&str, &str, usize, usize, &str)] = &[
    // unknown field, deep in a container
    ("        imagePullPolicy: IfNotPresent", "        imagePullPolicyy: IfNotPresent", 2, 41, "unknown field `imagePullPolicyy`"),
    // a field Skiff does not support (startupProbe) is refused, not dropped
    ("        livenessProbe:\n          tcpSocket:", "        startupProbe:\n          tcpSocket:", 2, 61, "unknown field `startupProbe`"),
    // wrong type
    ("  replicas: 3", "  replicas: three", 2, 20, "spec.replicas: invalid type"),
    // validation: named port too long, at its line
    ("        - name: http\n          containerPort: 80", "        - name: http-port-name-too-long\n          containerPort: 80", 2, 53, "spec.template.spec.containers[0].ports[0].name: \"http-port-name-too-long\""),
    // validation: selector does not match the template
    ("      labels:\n        app: guestbook\n        tier: frontend\n    spec:\n      terminationGracePeriodSeconds", "      labels:\n        app: guestbook\n        tier: backend\n    spec:\n      terminationGracePeriodSeconds", 2, 33, "expected labels that match spec.selector"),
    // validation: NodePort on a ClusterIP service
    ("  - port: 6379\n    targetPort: 6379", "  - port: 6379\n    nodePort: 30001\n    targetPort: 6379", 5, 128, "spec.ports[0].nodePort: 30001"),
    // an unsupported HPA metric
    ("        type: Utilization", "        type: AverageValue", 8, 172, "spec.metrics[0]"),
    // bad quantity
    ("            memory: 256Mi", "            memory: lots", 2, 51, "resources.limits.memory: \"lots\""),
    // wrong apiVersion for the kind
    ("apiVersion: autoscaling/v2", "apiVersion: autoscaling/v1", 8, 159, "expected \"autoscaling/v2\""),
    // YAML syntax error
    ("    matchLabels: {app: redis, role: leader}", "    matchLabels: {app: redis, role: leader", 4, 98, "while parsing a flow mapping"),
];

#[test]
fn broken_manifests_name_document_line_and_field() {
    for (from, to, document, line, fragment) in BROKEN {
        assert!(GUESTBOOK.contains(from), "fixture lacks {from:?}");
        let broken = GUESTBOOK.replacen(from, to, 1);
        let e = parse_manifests(&broken).expect_err(to);
        assert_eq!((e.document, e.line), (*document, *line), "{to:?}: {e}");
        assert!(e.message.contains(fragment), "{to:?}: {e}");
    }
}

#[test]
fn dns_policy_and_service_links_are_read_and_checked() {
    let pod = |extra: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: web}}\nspec:\n  {extra}\n  containers: [{{name: c, image: x}}]\n"
        )
    };
    let objects = parse_manifests(&pod("dnsPolicy: Default\n  enableServiceLinks: false")).unwrap();
    let skiff_api::Object::Pod(p) = &objects[0] else {
        panic!("not a pod")
    };
    assert!(!p.spec.uses_cluster_dns());
    assert_eq!(p.spec.enable_service_links, Some(false));
    let objects = parse_manifests(&pod("dnsPolicy: ClusterFirstWithHostNet")).unwrap();
    let skiff_api::Object::Pod(p) = &objects[0] else {
        panic!("not a pod")
    };
    assert!(p.spec.uses_cluster_dns());
    let e = parse_manifests(&pod("dnsPolicy: None")).unwrap_err();
    assert!(
        e.message.contains("dnsPolicy") && e.message.contains("ClusterFirst"),
        "{e}"
    );
}
