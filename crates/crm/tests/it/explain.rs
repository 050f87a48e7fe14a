//! `explain` names the constraints that decide a placement, for members through their group.

#[test]
fn explain_shows_the_groups_scores_for_a_member_and_names_the_constraints() {
    let xml =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/demo-cib.xml")).expect("demo CIB");
    let (cib, _) = crm::cib::parse_cib(&xml).expect("parses");
    let t = crm::schedule(&cib, None, 0);
    let text = crm::simulate::explain(&t, "www").expect("www exists");
    assert!(text.starts_with("www (ocf:heartbeat:nginx) runs on node1 now and will run on node1 (Started)."), "{text}");
    assert!(text.contains("placed as part of group web"), "{text}");
    assert!(text.contains("+50  location web-prefers-node1"), "{text}");
    let fence = crm::simulate::explain(&t, "fence-node1").expect("exists");
    assert!(fence.contains("node1: -INFINITY") && fence.contains("location fence-node1-not-on-node1"), "{fence}");
    assert!(crm::simulate::explain(&t, "nosuch").is_none());
}
