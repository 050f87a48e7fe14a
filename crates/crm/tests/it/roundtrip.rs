//! Import/export round trips over the whole corpus.

use std::path::PathBuf;

#[test]
fn export_then_import_gives_the_same_cib() {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/pcmk-scheduler-cases/xml"));
    let mut n = 0;
    for e in std::fs::read_dir(&dir).expect("corpus present") {
        let path = e.expect("entry").path();
        let xml = std::fs::read_to_string(&path).expect("readable");
        let (cib, _) = crm::cib::parse_cib(&xml).expect("corpus parses");
        let again = crm::cib::to_xml(&cib);
        let (back, _) = crm::cib::parse_cib(&again).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // Exported with current names: legacy promotable clones gain a meta attribute, and
        // option names are modernised, so compare the scheduling outcome and the shape.
        assert_eq!(back.status.len(), cib.status.len(), "{}", path.display());
        assert_eq!(back.config.resources.len(), cib.config.resources.len(), "{}", path.display());
        assert_eq!(back.config.constraints.len(), cib.config.constraints.len(), "{}", path.display());
        let a = crm::schedule(&cib, None, 2_000_000_000);
        let b = crm::schedule(&back, None, 2_000_000_000);
        assert_eq!(a.summary, b.summary, "{}", path.display());
        n += 1;
    }
    assert!(n > 300);
}
