//! What the List RPCs' filters share.

use std::collections::{BTreeMap, HashMap};

/// Whether `labels` has every key of `selector` with the same value (an empty selector matches
/// everything), as containerd matches `label_selector`.
pub(super) fn labels_match(selector: &HashMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_selected_label_must_match() {
        let labels: BTreeMap<String, String> = [("app", "web"), ("tier", "a")].map(|(k, v)| (k.into(), v.into())).into();
        let sel =
            |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect::<HashMap<String, String>>();
        assert!(labels_match(&sel(&[]), &labels));
        assert!(labels_match(&sel(&[("app", "web")]), &labels));
        assert!(!labels_match(&sel(&[("app", "web"), ("tier", "b")]), &labels));
        assert!(!labels_match(&sel(&[("zone", "")]), &labels), "a missing key is not an empty value");
    }
}
