//! Checking that a text is the Prometheus exposition format (version
//! 0.0.4) rather than something that only looks like it, and reading its samples.

use std::collections::BTreeMap;

/// The samples of a Prometheus text exposition by series (`name{labels}`),
/// after checking its form: each sample's family is declared by a `# TYPE`
/// before it, names and labels are well formed, values are numbers, and each
/// histogram's buckets only grow and end with `+Inf` equal to its count.
pub fn parse_prometheus(text: &str) -> BTreeMap<String, f64> {
    let is_name = |name: &str| {
        name.chars()
            .enumerate()
            .all(|(i, c)| c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit()))
            && !name.is_empty()
    };
    let mut types: BTreeMap<&str, &str> = BTreeMap::new();
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if let Some(declared) = line.strip_prefix("# TYPE ") {
            let (name, kind) = declared.split_once(' ').expect("# TYPE name kind");
            assert!(is_name(name), "{line}");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            types.insert(name, kind);
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("not a number: {line}"));
        let (name, labels) = match series.split_once('{') {
            Some((name, labels)) => (name, labels.strip_suffix('}').expect("labels end with }")),
            None => (series, ""),
        };
        assert!(is_name(name), "{line}");
        for label in split_labels(labels) {
            let (key, quoted) = label.split_once('=').expect("key=\"value\"");
            assert!(
                is_name(key) && quoted.starts_with('"') && quoted.ends_with('"'),
                "{line}"
            );
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix)
                    .filter(|f| types.get(f) == Some(&"histogram"))
            })
            .unwrap_or(name);
        assert!(types.contains_key(family), "no # TYPE before {line}");
        samples.insert(series.to_owned(), value);
    }
    check_histograms(&samples);
    samples
}

/// The `key="value"` pairs of a label set, minding escaped quotes in values.
fn split_labels(labels: &str) -> Vec<&str> {
    let (mut pairs, mut start, mut quoted, mut escaped) = (Vec::new(), 0, false, false);
    for (i, c) in labels.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                pairs.push(&labels[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < labels.len() {
        pairs.push(&labels[start..]);
    }
    pairs
}

fn check_histograms(samples: &BTreeMap<String, f64>) {
    let mut buckets: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for (series, value) in samples {
        let Some((head, le)) = series.split_once(",le=\"") else {
            continue;
        };
        let le = le.trim_end_matches("\"}");
        let bound = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().unwrap()
        };
        let count_series = format!("{}}}", head.replacen("_bucket{", "_count{", 1));
        buckets.entry(count_series).or_default().push((bound, *value));
    }
    for (count_series, mut histogram) in buckets {
        histogram.sort_by(|a, b| a.0.total_cmp(&b.0));
        assert!(
            histogram.windows(2).all(|pair| pair[0].1 <= pair[1].1),
            "buckets only grow: {count_series} {histogram:?}"
        );
        let (last_bound, last) = *histogram.last().expect("buckets");
        assert_eq!(last_bound, f64::INFINITY, "{count_series}");
        assert_eq!(
            Some(&last),
            samples.get(&count_series),
            "+Inf is the count: {count_series}"
        );
    }
}
