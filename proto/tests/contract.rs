//! The compiled `runtime/v1/api.proto` against the table of upstream facts
//! (`upstream-runtime-v1.tsv`, written by `upstream-table.py` from the published kubernetes/cri-api
//! file): every message, field (number, label, type, options), enum value, service and method,
//! compared both ways. A failure lists every difference, each naming the fact.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use prost_reflect::{DescriptorPool, FieldDescriptor, Kind, Value};

/// A fact's kind and full name, e.g. ("field", "runtime.v1.Mount.readonly").
type Key = (String, String);
/// The rest of its row, e.g. ["3", "singular", "bool", "-"].
type Table = BTreeMap<Key, Vec<String>>;

const UPSTREAM: &str = include_str!("../upstream-runtime-v1.tsv");

fn upstream_table() -> Table {
    let mut table = Table::new();
    for (n, line) in UPSTREAM.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let mut cols = line.split('\t').map(str::to_owned);
        let (Some(kind), Some(name)) = (cols.next(), cols.next()) else {
            panic!("upstream-runtime-v1.tsv line {}: fewer than two columns: {line:?}", n + 1);
        };
        let previous = table.insert((kind, name), cols.collect());
        assert!(previous.is_none(), "upstream-runtime-v1.tsv line {}: a second row for {line:?}", n + 1);
    }
    table
}

fn type_name(kind: &Kind) -> String {
    match kind {
        Kind::Double => "double".into(),
        Kind::Float => "float".into(),
        Kind::Int32 => "int32".into(),
        Kind::Int64 => "int64".into(),
        Kind::Uint32 => "uint32".into(),
        Kind::Uint64 => "uint64".into(),
        Kind::Sint32 => "sint32".into(),
        Kind::Sint64 => "sint64".into(),
        Kind::Fixed32 => "fixed32".into(),
        Kind::Fixed64 => "fixed64".into(),
        Kind::Sfixed32 => "sfixed32".into(),
        Kind::Sfixed64 => "sfixed64".into(),
        Kind::Bool => "bool".into(),
        Kind::String => "string".into(),
        Kind::Bytes => "bytes".into(),
        Kind::Message(message) => message.full_name().into(),
        Kind::Enum(en) => en.full_name().into(),
    }
}

/// label and type columns of a field, as the table writes them.
fn label_and_type(field: &FieldDescriptor) -> (String, String) {
    if field.is_map() {
        let Kind::Message(entry) = field.kind() else { unreachable!("a map field's kind is its entry message") };
        let key = type_name(&entry.map_entry_key_field().kind());
        let value = type_name(&entry.map_entry_value_field().kind());
        return ("map".into(), format!("map<{key},{value}>"));
    }
    let label = if field.is_list() {
        "repeated".into()
    } else if field.field_descriptor_proto().proto3_optional() {
        "optional".into()
    } else if let Some(oneof) = field.containing_oneof() {
        format!("oneof:{}", oneof.name())
    } else {
        "singular".into()
    };
    (label, type_name(&field.kind()))
}

/// The options set on a field, as `name=value`, comma-separated, or "-".
fn options(field: &FieldDescriptor) -> String {
    let options = field.options();
    let set: Vec<String> = options
        .fields()
        .map(|(option, value)| {
            let value = match value {
                Value::Bool(b) => b.to_string(),
                Value::I32(n) | Value::EnumNumber(n) => n.to_string(),
                Value::String(s) => s.clone(),
                other => format!("{other:?}"),
            };
            format!("{}={value}", option.name())
        })
        .collect();
    if set.is_empty() {
        "-".into()
    } else {
        set.join(",")
    }
}

fn stream_word(streaming: bool) -> String {
    if streaming { "stream" } else { "unary" }.into()
}

fn compiled_table() -> Table {
    let pool = DescriptorPool::decode(roci_cri_proto::FILE_DESCRIPTOR_SET).expect("decode the compiled descriptor set");
    let mut table = Table::new();
    let mut add = |kind: &str, name: String, rest: Vec<String>| {
        let previous = table.insert((kind.into(), name.clone()), rest);
        assert!(previous.is_none(), "the compiled descriptors hold {kind} {name} twice");
    };
    for file in pool.files() {
        add("syntax", file.file_descriptor_proto().syntax().into(), vec![]);
        add("package", file.package_name().into(), vec![]);
    }
    for message in pool.all_messages().filter(|m| !m.is_map_entry()) {
        add("message", message.full_name().into(), vec![]);
        for field in message.fields() {
            let (label, ty) = label_and_type(&field);
            add("field", field.full_name().into(), vec![field.number().to_string(), label, ty, options(&field)]);
        }
    }
    for en in pool.all_enums() {
        add("enum", en.full_name().into(), vec![]);
        for value in en.values() {
            add("value", format!("{}.{}", en.full_name(), value.name()), vec![value.number().to_string()]);
        }
    }
    for service in pool.services() {
        add("service", service.full_name().into(), vec![]);
        for method in service.methods() {
            add(
                "rpc",
                method.full_name().into(),
                vec![
                    method.input().full_name().into(),
                    method.output().full_name().into(),
                    stream_word(method.is_client_streaming()),
                    stream_word(method.is_server_streaming()),
                ],
            );
        }
    }
    table
}

/// Every difference between the two tables, one line each, naming the fact.
fn differences(upstream: &Table, ours: &Table) -> Vec<String> {
    let mut diffs = Vec::new();
    for ((kind, name), want) in upstream {
        match ours.get(&(kind.clone(), name.clone())) {
            None => diffs.push(format!("missing: {kind} {name} [{}] is upstream's, not in api.proto", want.join(" "))),
            Some(got) if got != want => {
                diffs.push(format!("different: {kind} {name}: upstream [{}], api.proto [{}]", want.join(" "), got.join(" ")))
            }
            Some(_) => {}
        }
    }
    for ((kind, name), got) in ours {
        if !upstream.contains_key(&(kind.clone(), name.clone())) {
            diffs.push(format!("extra: {kind} {name} [{}] is in api.proto, not upstream's", got.join(" ")));
        }
    }
    diffs
}

#[test]
fn api_proto_matches_upstream_runtime_v1() {
    let upstream = upstream_table();
    let ours = compiled_table();
    let diffs = differences(&upstream, &ours);
    if !diffs.is_empty() {
        let mut report = format!("{} difference(s) between api.proto and upstream-runtime-v1.tsv:\n", diffs.len());
        for d in &diffs {
            writeln!(report, "  {d}").unwrap();
        }
        panic!("{report}");
    }
    // The table is not empty by accident: the CRI has ~170 messages and two services.
    let count = |kind: &str| upstream.keys().filter(|(k, _)| k == kind).count();
    assert!(count("message") > 150 && count("field") > 400 && count("rpc") > 40, "the upstream table looks truncated");
    assert_eq!(count("service"), 2);
}

#[test]
fn differences_name_missing_extra_and_changed_facts() {
    let upstream = upstream_table();
    let mut ours = upstream.clone();
    let readonly = ("field".to_owned(), "runtime.v1.Mount.readonly".to_owned());
    ours.get_mut(&readonly).expect("Mount.readonly is in the table")[0] = "30".into();
    let kill = ("value".to_owned(), "runtime.v1.Signal.SIGKILL".to_owned());
    ours.remove(&kill);
    ours.insert(("rpc".into(), "runtime.v1.RuntimeService.Invented".into()), vec![]);

    let diffs = differences(&upstream, &ours);
    assert_eq!(diffs.len(), 3, "{diffs:#?}");
    assert!(diffs
        .iter()
        .any(|d| d.starts_with("different: field runtime.v1.Mount.readonly: upstream [3 ") && d.contains("[30 ")));
    assert!(diffs.iter().any(|d| d.starts_with("missing: value runtime.v1.Signal.SIGKILL [13]")));
    assert!(diffs.iter().any(|d| d.starts_with("extra: rpc runtime.v1.RuntimeService.Invented")));
}
